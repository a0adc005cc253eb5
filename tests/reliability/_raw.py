"""Raw access to each backend's storage, behind the store's back (for tampering tests)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest

from checkpointers.record import RecordId
from checkpointers.stores.base import Store
from tests.reliability._support import with_query

BACKENDS = ("sqlite", "postgres", "redis", "blob")


class Raw(Protocol):
    """Read and overwrite the stored body of a record directly in the backend."""

    async def read(self, rid: RecordId) -> bytes: ...

    async def write(self, rid: RecordId, body: bytes) -> None: ...


class SqliteRaw:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    async def read(self, rid: RecordId) -> bytes:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT body FROM records WHERE tenant=? AND thread=? AND namespace=? "
                "AND kind=? AND key=?",
                (rid.tenant, rid.thread, rid.namespace, rid.kind, rid.key),
            ).fetchone()
        assert row is not None
        return bytes(row[0])

    async def write(self, rid: RecordId, body: bytes) -> None:
        conn = self._conn()
        try:
            conn.execute(
                "UPDATE records SET body=? WHERE tenant=? AND thread=? AND namespace=? "
                "AND kind=? AND key=?",
                (body, rid.tenant, rid.thread, rid.namespace, rid.kind, rid.key),
            )
        finally:
            conn.close()

    async def dump(self) -> bytes:
        """Every byte of the database file and its WAL / shared-memory files."""
        out = b""
        for suffix in ("", "-wal", "-shm", "-journal"):
            file = Path(f"{self.path}{suffix}")
            if file.exists():
                out += file.read_bytes()
        return out


class PostgresRaw:
    def __init__(self, dsn: str, schema: str = "public") -> None:
        self.dsn = dsn
        self.table = f'"{schema}".checkpointers_records'
        self._connection: Any = None

    async def _conn(self) -> Any:
        import asyncpg

        if self._connection is None:
            self._connection = await asyncpg.connect(self.dsn)
        return self._connection

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def read(self, rid: RecordId) -> bytes:
        conn = await self._conn()
        body = await conn.fetchval(
            f"SELECT body FROM {self.table} WHERE tenant=$1 AND thread=$2 AND "
            "namespace=$3 AND kind=$4 AND key=$5",
            rid.tenant, rid.thread, rid.namespace, rid.kind, rid.key,
        )  # fmt: skip
        assert body is not None
        return bytes(body)

    async def write(self, rid: RecordId, body: bytes) -> None:
        conn = await self._conn()
        await conn.execute(
            f"UPDATE {self.table} SET body=$6 WHERE tenant=$1 AND thread=$2 AND "
            "namespace=$3 AND kind=$4 AND key=$5",
            rid.tenant, rid.thread, rid.namespace, rid.kind, rid.key, body,
        )  # fmt: skip


def _lp(text: str) -> str:
    return f"{len(text.encode())}:{text}"


def _esc(text: str) -> str:
    return text.translate(str.maketrans({"%": "%25", "{": "%7B", "}": "%7D", ",": "%2C"}))


class RedisRaw:
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix

    def key(self, rid: RecordId) -> str:
        base = f"{self.prefix}{{{_esc(rid.tenant)},{_esc(rid.thread)}}}"
        return f"{base}:r:{_lp(rid.namespace)}{_lp(rid.kind)}{rid.key}"

    async def read(self, rid: RecordId) -> bytes:
        import redis.asyncio

        async with redis.asyncio.Redis.from_url(self.url) as client:
            body = await client.hget(self.key(rid), "b")
        assert body is not None, self.key(rid)
        return bytes(body)

    async def write(self, rid: RecordId, body: bytes) -> None:
        import redis.asyncio

        async with redis.asyncio.Redis.from_url(self.url) as client:
            assert await client.exists(self.key(rid))
            await client.hset(self.key(rid), "b", body)


class BlobRaw:
    def __init__(self, container: Any, prefix: str) -> None:
        self.container = container
        self.prefix = prefix
        self._kept: dict[RecordId, tuple[dict[str, str], dict[str, str] | None]] = {}

    def _blob(self, rid: RecordId) -> Any:
        from checkpointers.stores._azure_blob_layout import blob_name

        return self.container.get_blob_client(blob_name(self.prefix, rid))

    async def read(self, rid: RecordId) -> bytes:
        stream = await self._blob(rid).download_blob()
        return bytes(await stream.readall())

    async def write(self, rid: RecordId, body: bytes) -> None:
        blob = self._blob(rid)
        if rid not in self._kept:  # routing fields stay as the store wrote them
            props = await blob.get_blob_properties()
            tags = await blob.get_blob_tags()
            self._kept[rid] = (dict(props.metadata), dict(tags) or None)
        metadata, tags = self._kept[rid]
        await blob.upload_blob(body, overwrite=True, metadata=metadata, tags=tags)


@asynccontextmanager
async def open_backend(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Raw]]:
    """A set-up store of `kind` on a clean fixture, and raw access to its storage."""
    if kind == "sqlite":
        from checkpointers.stores.sqlite import SqliteStore

        path = tmp_path / "tamper.db"
        async with SqliteStore(path) as store:
            yield store, SqliteRaw(path)
    elif kind == "postgres":
        from checkpointers.stores.postgres import PostgresStore

        dsn = request.getfixturevalue("postgres_database")
        raw = PostgresRaw(dsn)
        try:
            async with PostgresStore.from_url(dsn) as store:
                yield store, raw
        finally:
            await raw.aclose()
    elif kind == "redis":
        from checkpointers.stores.redis import RedisStore

        url = request.getfixturevalue("redis_server_url")
        prefix = request.getfixturevalue("redis_prefix")
        async with RedisStore.from_url(url, prefix=prefix) as store:
            yield store, RedisRaw(url, prefix)
    elif kind == "blob":
        import uuid

        from azure.storage.blob.aio import ContainerClient

        from checkpointers.stores.azure_blob import AzureBlobStore

        azurite = request.getfixturevalue("azurite")
        client = ContainerClient.from_connection_string(
            azurite.connection_string, f"cp-{uuid.uuid4().hex[:20]}", retry_total=1
        )
        async with client:
            await client.create_container()
            try:
                async with AzureBlobStore(client, prefix="cp/") as store:
                    yield store, BlobRaw(client, "cp/")
            finally:
                if azurite.running:
                    await client.delete_container()
    else:  # pragma: no cover
        raise ValueError(kind)


def tiered_urls(request: pytest.FixtureRequest) -> list[str]:
    """Redis (hot) over a fresh PostgreSQL database (durable)."""
    redis_url = request.getfixturevalue("redis_server_url")
    prefix = request.getfixturevalue("redis_prefix")
    return [with_query(redis_url, prefix=prefix), request.getfixturevalue("postgres_database")]
