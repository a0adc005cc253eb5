"""The LangGraph checkpointers under test: ours on each store, and the peers.

`open_saver(name, env)` is an async context manager yielding a `Session` whose `saver`
is ready to use; on exit it closes the saver, measures what the backend holds
(`session.stored_bytes`, None where nothing durable can be measured) and removes the
database, keys or file it created. A configuration that cannot run here (our store
has not landed, a server is down) raises `Unavailable` before anything is opened.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks._env import Env, Unavailable, adapter_available, our_store_available

#: name -> (ours?, description). Order is the order of the tables.
LANGGRAPH_TARGETS: dict[str, tuple[bool, str]] = {
    "ours/memory": (True, "CheckpointSaver memory://"),
    "ours/sqlite": (True, "CheckpointSaver sqlite:///file"),
    "ours/postgres": (True, "CheckpointSaver postgresql://"),
    "ours/redis": (True, "CheckpointSaver redis://"),
    "ours/tiered": (True, "CheckpointSaver [redis://, postgresql://] (write-through)"),
    "InMemorySaver": (False, "langgraph InMemorySaver"),
    "AsyncSqliteSaver": (False, "langgraph-checkpoint-sqlite AsyncSqliteSaver"),
    "AsyncPostgresSaver": (False, "AsyncPostgresSaver.from_conn_string (documented setup)"),
    "AsyncPostgresSaver(pool)": (False, "AsyncPostgresSaver over AsyncConnectionPool(max 10)"),
    "AsyncPostgresSaver+AES": (
        False,
        "AsyncPostgresSaver(pool) + EncryptedSerializer(AES-256-GCM): nearest encrypted peer",
    ),
}


@dataclass
class Session:
    """An opened checkpointer and, after close, what its backend stores."""

    name: str
    saver: Any
    measure: Any = None  # async () -> bytes stored now, or None
    stored_bytes: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    #: where it lives, for `open_at` (another process, a proxy): our URL or URL list, the
    #: SQLite file path or the PostgreSQL URL of a peer.
    url: Any = None


def check_available(name: str, env: Env) -> None:
    """Raise `Unavailable` when `name` cannot run in this environment."""
    if name.startswith("ours/"):
        adapter_available("checkpointers.langgraph")
        kind = name.split("/", 1)[1]
        if kind in ("postgres", "tiered"):
            our_store_available("postgresql")
            env.need_postgres()
        if kind in ("redis", "tiered"):
            our_store_available("redis")
            env.need_redis()
        if kind == "tiered":
            our_store_available("tiered")
        if kind == "sqlite":
            our_store_available("sqlite")
    elif name.startswith("AsyncPostgresSaver"):
        env.need_postgres()


class _AesGcmCipher:
    """LangGraph `CipherProtocol` with AES-256-GCM from `cryptography` (a fair peer)."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        return "aesgcm", nonce + self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        if ciphername != "aesgcm":
            raise ValueError("unknown cipher")
        return self._aead.decrypt(ciphertext[:12], ciphertext[12:], None)


@asynccontextmanager
async def open_saver(name: str, env: Env, keys: Any = None) -> AsyncIterator[Session]:
    """Open configuration `name` (see `LANGGRAPH_TARGETS`); `keys` for ours (default:
    a deterministic test ring)."""
    check_available(name, env)
    async with AsyncExitStack() as cleanup:
        measure: Any = None
        if name.startswith("ours/"):
            from checkpointers.langgraph import CheckpointSaver
            from checkpointers.testing import deterministic_key_ring

            ring = keys if keys is not None else deterministic_key_ring("benchmarks")
            kind = name.split("/", 1)[1]
            url: Any
            if kind == "memory":
                url = "memory://"
            elif kind == "sqlite":
                path = env.sqlite_path("ours")
                url = f"sqlite:///{path}"

                async def measure() -> int:
                    return env.sqlite_bytes(path)
            elif kind == "postgres":
                url = await env.postgres_database()
                cleanup.push_async_callback(env.drop_postgres, url)

                async def measure() -> int:
                    return await env.postgres_bytes(url)
            elif kind == "redis":
                prefix = env.redis_prefix()
                cleanup.push_async_callback(env.drop_redis, prefix)
                url = env.redis_url_with(prefix=prefix)

                async def measure() -> int:
                    return await env.redis_bytes(prefix)
            else:  # tiered
                prefix = env.redis_prefix()
                cleanup.push_async_callback(env.drop_redis, prefix)
                pg = await env.postgres_database()
                cleanup.push_async_callback(env.drop_postgres, pg)
                url = [env.redis_url_with(prefix=prefix), pg]

                async def measure() -> int:
                    return await env.postgres_bytes(pg) + await env.redis_bytes(prefix)

            session = Session(name, None, measure, url=url)
            async with CheckpointSaver.from_url(url, keys=ring) as saver:
                session.saver = saver
                yield session
        else:
            session = Session(name, None)
            async with _open_peer(name, env, cleanup) as (saver, measure, where):
                session.saver = saver
                session.measure = measure
                session.url = where
                yield session
        if measure is not None:
            session.stored_bytes = await measure()


@asynccontextmanager
async def _open_peer(name: str, env: Env, cleanup: AsyncExitStack) -> AsyncIterator[Any]:
    if name == "InMemorySaver":
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver(), None, None
    elif name == "AsyncSqliteSaver":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = env.sqlite_path("peer")

        async def measure_sqlite() -> int:
            return env.sqlite_bytes(path)

        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            await saver.setup()
            yield saver, measure_sqlite, str(path)
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        url = await env.postgres_database()
        cleanup.push_async_callback(env.drop_postgres, url)

        async def measure_pg() -> int:
            return await env.postgres_bytes(url)

        if name == "AsyncPostgresSaver":
            async with AsyncPostgresSaver.from_conn_string(url) as saver:
                await saver.setup()
                yield saver, measure_pg, url
            return
        serde = None
        if name == "AsyncPostgresSaver+AES":
            from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

            serde = EncryptedSerializer(_AesGcmCipher(os.urandom(32)))
        async with AsyncConnectionPool(
            url,
            min_size=1,
            max_size=10,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        ) as pool:
            saver = AsyncPostgresSaver(pool, serde=serde)
            await saver.setup()
            yield saver, measure_pg, url


def benchmark_key_ring() -> Any:
    """The key of `deterministic_key_ring("benchmarks")`, built from the public API only:
    `checkpointers.testing` imports pytest, which a resumer process must not pay for."""
    import hashlib

    from checkpointers import KeyRing, LocalKey

    seed = b"checkpointers-test-key:benchmarks"
    return KeyRing([LocalKey(hashlib.sha256(seed).digest())])


def preload(name: str) -> None:
    """Import what opening configuration `name` needs (ours: the adapter and the store
    modules its URL schemes load lazily), so that a timer started after this call times
    the opening, not the imports."""
    import importlib

    from benchmarks._env import OUR_STORE_MODULES

    modules: list[str]
    if name.startswith("ours/"):
        kind = name.split("/", 1)[1]
        kinds = {"tiered": ("redis", "postgresql", "tiered"), "postgres": ("postgresql",)}
        modules = ["checkpointers.langgraph"]
        modules += [OUR_STORE_MODULES[k] for k in kinds.get(kind, (kind,)) if k != "memory"]
    elif name == "AsyncSqliteSaver":
        modules = ["langgraph.checkpoint.sqlite.aio"]
    else:
        modules = ["langgraph.checkpoint.postgres.aio", "psycopg_pool", "psycopg.rows"]
    for module in modules:
        importlib.import_module(module)


@asynccontextmanager
async def open_at(name: str, url: Any) -> AsyncIterator[Any]:
    """Open configuration `name` on what `open_saver` created at `session.url`, creating
    nothing (a resumer process, a counting proxy): only the savers that can be reached
    from another process (not memory)."""
    if name.startswith("ours/"):
        from checkpointers.langgraph import CheckpointSaver

        async with CheckpointSaver.from_url(url, keys=benchmark_key_ring()) as saver:
            yield saver
    elif name == "AsyncSqliteSaver":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(url) as saver:
            yield saver
    elif name == "AsyncPostgresSaver":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(url) as saver:
            yield saver
    elif name == "AsyncPostgresSaver(pool)":
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        async with AsyncConnectionPool(
            url,
            min_size=1,
            max_size=10,
            open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        ) as pool:
            yield AsyncPostgresSaver(pool)
    else:
        raise Unavailable(f"{name} cannot be reopened from another process")


__all__ = [
    "LANGGRAPH_TARGETS",
    "Session",
    "Unavailable",
    "check_available",
    "open_at",
    "open_saver",
    "preload",
]
