# examples/coming_from_langgraph.py: code written for LangGraph's PostgresSaver,
# AsyncPostgresSaver, SqliteSaver and AsyncSqliteSaver, on CheckpointSaver
# (pip install -e '.[langgraph,postgres]'). Run with a PostgreSQL URL or a SQLite path:
#     python examples/coming_from_langgraph.py postgresql://postgres@127.0.0.1/postgres
#     python examples/coming_from_langgraph.py checkpoints.sqlite
import asyncio
import operator
import sys
from pathlib import Path
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

from checkpointers import EncryptedStore, KeyRing
from checkpointers.crypto import create_key_file
from checkpointers.langgraph import CheckpointSaver

DB_URI = sys.argv[1] if len(sys.argv) > 1 else "checkpoints.sqlite"
KEY_FILE = Path("app.key")  # development key, mode 0600; production: Azure Key Vault
if not KEY_FILE.exists():  # as `checkpointers keys generate --file app.key` does
    create_key_file(KEY_FILE)
keys = KeyRing.from_key_file(KEY_FILE)


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def reply(state: Chat) -> Chat:
    return {"messages": [f"echo: {state['messages'][-1]}"]}


builder = StateGraph(Chat)
builder.add_node("reply", reply)
builder.add_edge(START, "reply")
builder.add_edge("reply", END)
config = {"configurable": {"thread_id": "coming-from"}}


def sync_saver() -> None:  # was PostgresSaver / SqliteSaver
    with CheckpointSaver.from_conn_string(DB_URI, keys=keys) as checkpointer:
        checkpointer.setup()  # optional: the store migrates on first use
        graph = builder.compile(checkpointer=checkpointer)
        graph.invoke({"messages": ["sync"]}, config)


async def async_saver() -> None:  # was AsyncPostgresSaver / AsyncSqliteSaver
    async with CheckpointSaver.from_conn_string(DB_URI, keys=keys) as checkpointer:
        await checkpointer.asetup()  # optional, as above
        graph = builder.compile(checkpointer=checkpointer)
        await graph.ainvoke({"messages": ["async"]}, config)


async def own_pool() -> None:  # was AsyncPostgresSaver(pool): bring an asyncpg pool
    import asyncpg

    from checkpointers.stores.postgres import PostgresStore

    async with (
        asyncpg.create_pool(DB_URI) as pool,  # yours: the store borrows it, never closes it
        EncryptedStore(PostgresStore(pool), keys) as store,
    ):
        checkpointer = CheckpointSaver(store)
        graph = builder.compile(checkpointer=checkpointer)
        state = await graph.aget_state(config)
        print(state.values["messages"])


sync_saver()
asyncio.run(async_saver())
if DB_URI.startswith("postgres"):
    asyncio.run(own_pool())
else:
    with CheckpointSaver.from_conn_string(DB_URI, keys=keys) as checkpointer:
        print(checkpointer.get_tuple(config).checkpoint["channel_values"]["messages"])
