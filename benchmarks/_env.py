"""The servers and files a benchmark run uses, and how stored bytes are measured.

One `Env` per run: every PostgreSQL configuration gets its own throwaway database
(`bench_<run>_<n>`), every Redis configuration its own key prefix, every SQLite
configuration its own file in a temporary directory. `aclose()` drops and deletes all of
them. Stored bytes come from the servers and files themselves, never from estimates:
`pg_total_relation_size` of every user table (heap, TOAST and indexes), the SQLite file
plus its WAL after a truncating checkpoint, `MEMORY USAGE` of every Redis key under the
configuration's prefix.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import secrets
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Store modules of our package that a configuration may need, by URL scheme.
OUR_STORE_MODULES = {
    "sqlite": "checkpointers.stores.sqlite",
    "postgresql": "checkpointers.stores.postgres",
    "redis": "checkpointers.stores.redis",
    "tiered": "checkpointers.tiered",
}

_USER_TABLES = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
"""


class Unavailable(Exception):
    """A configuration cannot run here (store not landed, server down): skip it."""


def our_store_available(kind: str) -> None:
    """Raise `Unavailable` unless our store module for `kind` exists and imports."""
    module = OUR_STORE_MODULES[kind]
    if importlib.util.find_spec(module) is None:
        raise Unavailable(f"{module} has not landed yet")
    try:
        importlib.import_module(module)
    except Exception as exc:  # a module being written may not import yet
        raise Unavailable(f"{module} does not import: {type(exc).__name__}: {exc}") from None


def adapter_available(module: str) -> None:
    """Raise `Unavailable` unless the adapter module imports."""
    if importlib.util.find_spec(module) is None:
        raise Unavailable(f"{module} has not landed yet")
    try:
        importlib.import_module(module)
    except Exception as exc:
        raise Unavailable(f"{module} does not import: {type(exc).__name__}: {exc}") from None


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


@dataclass
class Env:
    """Servers and scratch space of one benchmark run."""

    postgres_url: str = DEFAULT_POSTGRES_URL
    redis_url: str = DEFAULT_REDIS_URL
    run: str = field(default_factory=lambda: secrets.token_hex(4))
    postgres_error: str | None = None
    redis_error: str | None = None
    _tmp: Path | None = None
    _databases: list[str] = field(default_factory=list)
    _prefixes: list[str] = field(default_factory=list)
    _counter: int = 0

    @classmethod
    async def open(
        cls, postgres_url: str | None = None, redis_url: str | None = None, *, servers: bool = True
    ) -> Env:
        """Scratch space, and the servers unless `servers=False` (then their configurations
        are skipped)."""
        env = cls(
            postgres_url=postgres_url
            or os.environ.get("CHECKPOINTERS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
            redis_url=redis_url
            or os.environ.get("CHECKPOINTERS_BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        )
        env._tmp = Path(tempfile.mkdtemp(prefix=f"cp-bench-{env.run}-"))
        if servers:
            await env._probe()
        else:
            env.postgres_error = env.redis_error = "servers not used in this run"
        return env

    async def _probe(self) -> None:
        try:
            import asyncpg

            conn = await asyncpg.connect(self.postgres_url, timeout=3)
            await conn.close()
        except Exception as exc:
            self.postgres_error = f"PostgreSQL unreachable ({type(exc).__name__})"
        try:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.redis_url, socket_timeout=3)
            try:
                await client.ping()
            finally:
                await client.aclose()
        except Exception as exc:
            self.redis_error = f"Redis unreachable ({type(exc).__name__})"

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    # -- resources ----------------------------------------------------------------

    def sqlite_path(self, tag: str) -> Path:
        assert self._tmp is not None
        return self._tmp / f"{tag}-{self._next()}.db"

    def need_postgres(self) -> None:
        if self.postgres_error:
            raise Unavailable(self.postgres_error)

    def need_redis(self) -> None:
        if self.redis_error:
            raise Unavailable(self.redis_error)

    async def postgres_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        self.need_postgres()
        import asyncpg

        name = f"bench_{self.run}_{self._next()}"
        conn = await asyncpg.connect(self.postgres_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self._databases.append(name)
        return _with_database(self.postgres_url, name)

    def redis_prefix(self) -> str:
        self.need_redis()
        prefix = f"bench{self.run}n{self._next()}"
        self._prefixes.append(prefix)
        return prefix

    def redis_url_with(self, **query: str) -> str:
        parts = urlsplit(self.redis_url)
        extra = "&".join(f"{k}={v}" for k, v in query.items())
        joined = f"{parts.query}&{extra}" if parts.query else extra
        return urlunsplit((parts.scheme, parts.netloc, parts.path, joined, ""))

    # -- measurements -------------------------------------------------------------

    async def postgres_bytes(self, url: str) -> int:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval(_USER_TABLES))
        finally:
            await conn.close()

    async def redis_bytes(self, prefix: str) -> int:
        """Sum of `MEMORY USAGE` over the keys of `prefix` (hash-tagged or not)."""
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis_url)
        total = 0
        try:
            for pattern in (f"{prefix}*", f"{{{prefix}*"):
                async for key in client.scan_iter(match=pattern, count=1000):
                    total += int(await client.memory_usage(key, samples=0) or 0)
        finally:
            await client.aclose()
        return total

    @staticmethod
    def sqlite_bytes(path: Path) -> int:
        """File plus WAL after a truncating checkpoint (call when every writer is closed)."""
        if path.exists():
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    # -- cleanup ------------------------------------------------------------------

    async def drop_postgres(self, url: str) -> None:
        import asyncpg

        name = urlsplit(url).path.lstrip("/")
        if name not in self._databases:
            return
        conn = await asyncpg.connect(self.postgres_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self._databases.remove(name)

    async def drop_redis(self, prefix: str) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis_url)
        try:
            for pattern in (f"{prefix}*", f"{{{prefix}*"):
                batch: list[Any] = []
                async for key in client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        await client.unlink(*batch)
                        batch.clear()
                if batch:
                    await client.unlink(*batch)
        finally:
            await client.aclose()
        if prefix in self._prefixes:
            self._prefixes.remove(prefix)

    async def aclose(self) -> None:
        for name in list(self._databases):
            with contextlib.suppress(Exception):
                await self.drop_postgres(_with_database(self.postgres_url, name))
        for prefix in list(self._prefixes):
            with contextlib.suppress(Exception):
                await self.drop_redis(prefix)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
