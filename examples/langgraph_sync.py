# examples/langgraph_sync.py: LangGraph, sync, on SQLite (pip install -e '.[langgraph]')
import operator
from pathlib import Path
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

from checkpointers import KeyRing
from checkpointers.crypto import create_key_file
from checkpointers.langgraph import CheckpointSaver

URL = "sqlite:///checkpoints.db"  # or redis://..., postgresql://..., a list of tiers
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

with CheckpointSaver.from_url(URL, keys=keys) as saver:
    graph = builder.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "conversation-43"}}
    graph.invoke({"messages": ["hi"]}, config)
    print(len(list(saver.list(config))))  # 3 checkpoints saved for this thread
