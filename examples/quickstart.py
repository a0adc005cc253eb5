"""The README's code, runnable: LangGraph (async and sync), pydantic-graph, the core API.

    python examples/quickstart.py

Everything goes to a SQLite file in a temporary directory, encrypted with a fresh key
(a real deployment keeps its key in a 0600 key file or in Azure Key Vault).
"""

from __future__ import annotations

import asyncio
import base64
import operator
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph
from pydantic_graph import BaseNode, End, GraphRunContext
from pydantic_graph.graph import Graph

from checkpointers import EncryptedStore
from checkpointers.langgraph import CheckpointSaver
from checkpointers.pydantic_graph import StatePersistence


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def reply(state: Chat) -> Chat:
    return {"messages": [f"echo: {state['messages'][-1]}"]}


builder = StateGraph(Chat)
builder.add_node("reply", reply)
builder.add_edge(START, "reply")
builder.add_edge("reply", END)


@dataclass
class Tally:
    total: int = 0


@dataclass
class Add(BaseNode[Tally, None, int]):
    amount: int

    async def run(self, ctx: GraphRunContext[Tally]) -> Add | End[int]:
        ctx.state.total += self.amount
        return Add(self.amount - 1) if self.amount > 1 else End(ctx.state.total)


tally_graph = Graph(nodes=[Add])


async def langgraph_async(url: str) -> None:
    # --8<-- [start:langgraph-async]
    async with CheckpointSaver.from_url(url) as saver:
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "conversation-42"}}
        await graph.ainvoke({"messages": ["hello"]}, config)
        state = await graph.aget_state(config)
        print(state.values["messages"])  # ['hello', 'echo: hello']
    # --8<-- [end:langgraph-async]


def langgraph_sync(url: str) -> None:
    # --8<-- [start:langgraph-sync]
    with CheckpointSaver.from_url(url) as saver:
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "conversation-43"}}
        graph.invoke({"messages": ["hi"]}, config)
        print(len(list(saver.list(config))))  # checkpoints saved for this thread
    # --8<-- [end:langgraph-sync]


async def pydantic_graph(url: str) -> None:
    # --8<-- [start:pydantic-graph]
    async with (
        StatePersistence.from_url(url, run_id="tally-1") as persistence,
        tally_graph.iter(Add(3), state=Tally(), persistence=persistence) as run,
    ):
        await run.next()  # one node runs, then this process stops (deploy, crash...)
    # later, in a new process: requeue what a dead worker held, then resume
    async with StatePersistence.from_url(url, run_id="tally-1") as persistence:
        persistence.set_graph_types(tally_graph)
        await persistence.recover()
        async with tally_graph.iter_from_persistence(persistence) as run:
            async for _node in run:
                pass
        assert run.result is not None
        print(run.result.output)  # 6
    # --8<-- [end:pydantic-graph]


async def core(url: str) -> None:
    # --8<-- [start:core]
    async with EncryptedStore.from_url(url, tenant="acme") as store:
        record = store.record_id(thread="t-1", namespace="", kind="note", key="n-1")
        await store.put(record, b"any bytes", index={"topic": "billing"})
        entry = await store.get(record)
        assert entry is not None and entry.data == b"any bytes"
        billing = await store.find(store.query(tokens=await store.tokens({"topic": "billing"})))
        print([e.id.key for e in billing])  # ['n-1']
    # --8<-- [end:core]


async def main() -> None:
    if not (os.environ.get("CHECKPOINTERS_KEY") or os.environ.get("CHECKPOINTERS_KEY_FILE")):
        os.environ["CHECKPOINTERS_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'checkpoints.db'}"
        await langgraph_async(url)
        await asyncio.to_thread(langgraph_sync, url)
        await pydantic_graph(url)
        await core(url)


if __name__ == "__main__":
    asyncio.run(main())
