"""`SqliteStore`: the embedded default, one file in WAL mode, no server.

SQLite allows one writer at a time: every write runs on one dedicated thread with its
own connection (that thread is the only lock), reads run on another connection so they
never wait behind writes. Several processes may share the file (busy timeout).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

from checkpointers.errors import ConfigurationError, ConflictError, StoreUnavailableError
from checkpointers.options import parse_seconds
from checkpointers.record import Claim, Query, Record, RecordId, malformed_row
from checkpointers.stores import _sqlite_sql as sql
from checkpointers.stores._group_commit import GroupCommit
from checkpointers.stores.base import Store

__all__ = ["SqliteStore"]

T = TypeVar("T")
Row = tuple[Any, ...]


def _record(row: Row) -> Record:
    (tenant, thread, namespace, kind, key, sort, grp, status, tokens,
     expires_at, lease_until, version, updated_at, body) = row  # fmt: skip
    with malformed_row("sqlite"):
        return Record(
            id=RecordId(tenant, thread, namespace, kind, key),
            body=body,
            sort=sort,
            group=grp,
            status=status,
            tokens=frozenset(tokens.split()),
            expires_at=expires_at,
            lease_until=lease_until,
            version=version,
            updated_at=updated_at,
        )


def _row(record: Record, now: float) -> tuple[Any, ...]:
    rid = record.id
    tokens = f" {' '.join(sorted(record.tokens))} " if record.tokens else ""
    return (
        rid.tenant, rid.thread, rid.namespace, rid.kind, rid.key,
        record.sort, record.group, record.status, tokens,
        record.expires_at, record.lease_until, now, record.body,
    )  # fmt: skip


def _key(rid: RecordId) -> tuple[str, str, str, str, str]:
    return (rid.tenant, rid.thread, rid.namespace, rid.kind, rid.key)


def _create_private(path: str) -> None:
    """Create the database file with mode 0600 if it is missing (like the key file).

    SQLite gives its -wal, -shm and -journal files the mode of the database file, so they
    are 0600 too. An existing file keeps the mode its owner gave it.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    _create_private(path)
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    for pragma in sql.PRAGMAS:
        conn.execute(pragma)
    return conn


class SqliteStore(Store):
    """Records in one SQLite file.

    Args:
        path: the database file (created with mode 0600 if missing; a missing directory is
            refused).
        busy_timeout: seconds to wait for another process's write lock.
    """

    url_options: ClassVar = {"busy_timeout": parse_seconds}

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            raise ConfigurationError("sqlite needs a file path; use memory:// for no file")
        parent = Path(self.path).parent
        if not parent.is_dir():
            raise ConfigurationError(
                f"the directory of sqlite file {Path(self.path).name!r} does not exist"
            )
        self._busy_timeout = busy_timeout
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="checkpointers-sqlite-w")
        self._reader_thread = ThreadPoolExecutor(1, thread_name_prefix="checkpointers-sqlite-r")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._migrated = False
        self._owned_resources = True
        # One writer connection: batches arriving while one is written go out merged,
        # in one transaction and one executor hop.
        self._group = GroupCommit(self._put_many_now, max_in_flight=1)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteStore:
        """`sqlite:///relative/file.db` or `sqlite:////absolute/file.db`."""
        parts = urlsplit(url)
        if parts.netloc:
            raise ConfigurationError("sqlite URLs have no host: sqlite:///path/file.db")
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        return cls(path, **options)

    # -- threads ------------------------------------------------------------------------

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreUnavailableError("sqlite store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except sqlite3.Error as exc:
            # A failed write transaction was rolled back, so nothing was applied.
            code = getattr(exc, "sqlite_errorname", type(exc).__name__)
            raise StoreUnavailableError(
                f"sqlite file {Path(self.path).name!r} failed: {code}"
            ) from exc

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = _connect(self.path, self._busy_timeout)
        return self._writer

    def _reader_conn(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = _connect(self.path, self._busy_timeout)
        return self._reader

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def transaction() -> T:
            conn = self._writer_conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run(self._writer_thread, transaction)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._reader_thread, lambda: fn(self._reader_conn()))

    # -- protocol -----------------------------------------------------------------------

    async def setup(self) -> None:
        if self._migrated:
            return

        def migrate(conn: sqlite3.Connection) -> None:
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            for version, _name, statements in sql.MIGRATIONS:
                if version > current:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {int(version)}")

        await self._write(migrate)
        self._migrated = True

    async def get(self, record_id: RecordId) -> Record | None:
        now = time.time()
        row = await self._read(lambda c: c.execute(sql.GET, (*_key(record_id), now)).fetchone())
        return None if row is None else _record(row)

    async def get_many(self, record_ids: Sequence[RecordId]) -> list[Record | None]:
        """Every record in one call on the reader thread (one short read each)."""
        if not record_ids:
            return []
        now = time.time()

        def read(conn: sqlite3.Connection) -> list[Row | None]:
            return [conn.execute(sql.GET, (*_key(rid), now)).fetchone() for rid in record_ids]

        rows = await self._read(read)
        return [None if row is None else _record(row) for row in rows]

    async def put(self, record: Record, *, expected_version: int | None = None) -> int:
        def write(conn: sqlite3.Connection) -> int:
            now = time.time()
            found = conn.execute(sql.GET_VERSION, _key(record.id)).fetchone()
            stored = 0 if found is None else found[0]
            live = found is not None and (found[1] is None or found[1] > now)
            if expected_version is not None and expected_version != (stored if live else 0):
                raise ConflictError(
                    f"{record.id.describe()}: version is {stored if live else 0}, "
                    f"expected {expected_version}"
                )
            (version,) = conn.execute(sql.UPSERT, _row(record, now)).fetchone()
            return int(version)

        return await self._write(write)

    async def put_many(
        self, records: Sequence[Record], *, if_absent: bool = False
    ) -> list[int | None]:
        """Every record in one transaction, in order; versions from ``RETURNING``. Batches
        from concurrent callers are merged (group commit)."""
        if not records:
            return []
        return await self._group.put_many(records, if_absent=if_absent)

    async def _put_many_now(self, records: Sequence[Record], if_absent: bool) -> list[int | None]:
        statement = sql.INSERT_IF_ABSENT if if_absent else sql.UPSERT

        def write(conn: sqlite3.Connection) -> list[int | None]:
            now = time.time()
            versions: list[int | None] = []
            for record in records:
                # Fetched here: the cursor must not leave this thread (see `replicate`).
                row = conn.execute(statement, _row(record, now)).fetchone()
                versions.append(None if row is None else int(row[0]))
            return versions

        return await self._write(write)

    async def replicate(self, records: Sequence[Record]) -> None:
        if not records:
            return
        rows = [(*_row(r, r.updated_at)[:11], r.version, r.updated_at, r.body) for r in records]

        def write(conn: sqlite3.Connection) -> None:
            # The cursor must not leave this thread: freed on another one, it would reset
            # the cached statement while the next write uses it (SQLITE_MISUSE).
            conn.executemany(sql.REPLICATE, rows)

        await self._write(write)

    async def find(self, query: Query) -> list[Record]:
        text = sql.LIST_SELECT
        params: list[Any] = [time.time()]
        for name, value in (
            ("tenant", query.tenant),
            ("kind", query.kind),
            ("thread", query.thread),
            ("namespace", query.namespace),
            ("group", query.group),
            ("before", query.before),
            ("after", query.after),
        ):
            if value is not None:
                text += sql.LIST_FILTERS[name]
                params.append(value)
        if query.statuses is not None:
            text += sql.LIST_FILTERS["statuses"]
            params.append(json.dumps(list(query.statuses)))
        for token in query.tokens:
            text += sql.LIST_FILTERS["token"]
            params.append(f" {token} ")
        text += sql.ORDER_DESC if query.descending else sql.ORDER_ASC
        if query.limit is not None:
            text += sql.LIMIT
            params.append(query.limit)
        rows = await self._read(lambda c: c.execute(text, params).fetchall())
        return [_record(row) for row in rows]

    async def claim(self, claim: Claim) -> Record | None:
        def write(conn: sqlite3.Connection) -> Record | None:
            now = claim.now()
            found = conn.execute(
                sql.SELECT_FOR_CLAIM,
                (
                    claim.tenant, claim.thread, claim.kind, now,
                    json.dumps(list(claim.statuses)), claim.reclaim_expired, now,
                ),
            ).fetchone()  # fmt: skip
            if found is None:
                return None
            row = conn.execute(
                sql.CLAIM, (claim.to_status, claim.lease_until, now, *found)
            ).fetchone()
            return _record(row)

        return await self._write(write)

    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        def write(conn: sqlite3.Connection) -> int:
            now = time.time()
            count = 0
            for rid in record_ids:
                row = conn.execute(sql.DELETE_ONE, _key(rid)).fetchone()
                if row is not None and (row[0] is None or row[0] > now):
                    count += 1
            return count

        return await self._write(write)

    async def delete_thread(self, tenant: str, thread: str) -> int:
        return await self._write(lambda c: c.execute(sql.DELETE_THREAD, (tenant, thread)).rowcount)

    async def delete_tenant(self, tenant: str) -> int:
        return await self._write(lambda c: c.execute(sql.DELETE_TENANT, (tenant,)).rowcount)

    async def threads(
        self, tenant: str | None, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        params = (tenant, tenant, after, after, time.time(), limit)
        rows = await self._read(lambda c: c.execute(sql.THREADS, params).fetchall())
        return [(t, th) for t, th in rows]

    async def scan(self, after: RecordId | None = None, *, limit: int = 500) -> list[Record]:
        if after is None:
            rows = await self._read(lambda c: c.execute(sql.SCAN_FIRST, (limit,)).fetchall())
        else:
            params = (*_key(after), limit)
            rows = await self._read(lambda c: c.execute(sql.SCAN_AFTER, params).fetchall())
        return [_record(row) for row in rows]

    async def sweep(self, *, now: float | None = None, limit: int = 1000) -> int:
        moment = time.time() if now is None else now
        return await self._write(lambda c: c.execute(sql.SWEEP, (moment, limit)).rowcount)

    async def ping(self) -> None:
        await self._read(lambda c: c.execute(sql.PING).fetchone())

    async def is_set_up(self) -> bool:
        (version,) = await self._read(lambda c: c.execute("PRAGMA user_version").fetchone())
        return int(version) > 0

    async def _close(self) -> None:
        await self._group.aclose()
        loop = asyncio.get_running_loop()
        for executor, attr in ((self._writer_thread, "_writer"), (self._reader_thread, "_reader")):

            def close(attr: str = attr) -> None:
                conn = getattr(self, attr)
                if conn is not None:
                    conn.close()
                    setattr(self, attr, None)

            try:
                await loop.run_in_executor(executor, close)
            finally:
                executor.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"SqliteStore(file={Path(self.path).name!r})"
