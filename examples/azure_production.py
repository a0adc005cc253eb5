# examples/azure_production.py: production on Azure, Key Vault key and three tiers
# (pip install -e '.[langgraph,redis,postgres,azure]'). Runs where the managed identity
# and the outputs of infra/ are (CI only compiles it): CHECKPOINTERS_KEYVAULT_URL,
# CHECKPOINTERS_KEYVAULT_KEY and AZURE_CLIENT_ID in the environment.
import asyncio
import operator
import os
from typing import Annotated, TypedDict

from azure.identity.aio import ManagedIdentityCredential
from langgraph.graph import END, START, StateGraph

from checkpointers.crypto.azure_keyvault import key_ring_from_environment
from checkpointers.langgraph import CheckpointSaver

TIER_URLS = [  # infra/ outputs redisUrl, postgresUrl and archiveUrl (tierUrls)
    "rediss://<principal-id>@redis-ckpt-prod.redis.cache.windows.net:6380/0"
    "?ttl=86400",  # hot: recent threads, kept 24 h
    "postgresql://id-ckpt-prod@psql-ckpt-prod.postgres.database.azure.com/checkpointers"
    "?sslmode=require",  # durable: the source of truth
    "https://stckptprod.blob.core.windows.net/checkpointers-archive",  # archive: old threads
]


class Chat(TypedDict):
    messages: Annotated[list[str], operator.add]


def reply(state: Chat) -> Chat:
    return {"messages": [f"echo: {state['messages'][-1]}"]}


builder = StateGraph(Chat)
builder.add_node("reply", reply)
builder.add_edge(START, "reply")
builder.add_edge("reply", END)


async def main() -> None:
    # One credential for the vault and every tier: Redis and PostgreSQL log in with an
    # Entra ID token, Blob Storage uses it too. Borrowed: closed here, never by the saver.
    client_id = os.environ["AZURE_CLIENT_ID"]
    async with (
        ManagedIdentityCredential(client_id=client_id) as credential,
        await key_ring_from_environment(credential) as keys,
        CheckpointSaver.from_url(TIER_URLS, keys=keys, credential=credential) as saver,
    ):
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "conversation-42"}}
        await graph.ainvoke({"messages": ["hello"]}, config)


asyncio.run(main())
