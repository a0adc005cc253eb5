"""Every backend on real services, for tests that must hold on all of them.

`any_store` (a plugin listed in conftest) is parametrized over memory, sqlite, postgres, redis, azure_blob and tiered
(redis hot over postgres durable over an Azurite archive); each yields a fresh, set-up,
empty store that is cleaned up afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import pytest

from checkpointers import MemoryStore, SqliteStore, Store

ALL_BACKENDS = ["memory", "sqlite", "postgres", "redis", "azure_blob", "tiered"]


async def _postgres(request: pytest.FixtureRequest, stack: AsyncExitStack) -> Store:
    from checkpointers.stores.postgres import PostgresStore

    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"t_{secrets.token_hex(6)}"

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    stack.push_async_callback(drop)
    return await stack.enter_async_context(PostgresStore.from_url(dsn, schema=schema))


async def _redis(request: pytest.FixtureRequest, stack: AsyncExitStack) -> Store:
    from checkpointers.stores.redis import RedisStore

    url: str = request.getfixturevalue("redis_server_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    return await stack.enter_async_context(RedisStore.from_url(url, prefix=prefix))


async def _azure_blob(request: pytest.FixtureRequest, stack: AsyncExitStack) -> Store:
    from azure.storage.blob.aio import ContainerClient

    from checkpointers.stores.azure_blob import AzureBlobStore

    azurite = request.getfixturevalue("azurite")
    client = ContainerClient.from_connection_string(
        azurite.connection_string, f"t{secrets.token_hex(8)}", retry_total=1
    )
    await stack.enter_async_context(client)
    await client.create_container()
    stack.push_async_callback(client.delete_container)
    return await stack.enter_async_context(AzureBlobStore(client, prefix="cp/"))


async def open_tiered(request: pytest.FixtureRequest, stack: AsyncExitStack) -> Store:
    from checkpointers.tiered import TieredStore

    hot = await _redis(request, stack)
    durable = await _postgres(request, stack)
    archive = await _azure_blob(request, stack)
    return await stack.enter_async_context(TieredStore(durable, hot=hot, archive=archive))


@pytest.fixture(params=ALL_BACKENDS)
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh store of each backend, on real services."""
    async with AsyncExitStack() as stack:
        name = request.param
        if name == "memory":
            store: Store = await stack.enter_async_context(MemoryStore())
        elif name == "sqlite":
            store = await stack.enter_async_context(SqliteStore(tmp_path / "records.db"))
        else:
            store = await {"postgres": _postgres, "redis": _redis, "azure_blob": _azure_blob,
                           "tiered": open_tiered}[name](request, stack)  # fmt: skip
        yield store
