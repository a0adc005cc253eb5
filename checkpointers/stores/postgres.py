"""`PostgresStore`: durable, queryable records in PostgreSQL, on an asyncpg pool.

Every operation is one statement on a pooled connection (migrations aside): batches are
sent as parallel arrays and unnested server-side, compare-and-set is a conditional
`UPDATE`/`INSERT ... ON CONFLICT`, claims use `FOR UPDATE SKIP LOCKED`. There is no
instance-wide lock: the pool is the only limit on concurrency. Works behind pgbouncer in
transaction mode with `statement_cache_size=0`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg

from checkpointers.auth import POSTGRES_SCOPE, TokenCache
from checkpointers.errors import ConfigurationError, ConflictError, StoreUnavailableError
from checkpointers.options import (
    parse_identifier,
    parse_non_negative_int,
    parse_positive_int,
    parse_seconds,
)
from checkpointers.record import Claim, Query, Record, RecordId, malformed_row
from checkpointers.stores import _postgres_sql as sql
from checkpointers.stores._group_commit import GroupCommit
from checkpointers.stores.base import Store

__all__ = ["PostgresStore"]

T = TypeVar("T")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: The modes that never send a password (here: an access token) over plain TCP.
_SECURE_SSL_MODES = ("require", "verify-ca", "verify-full")

#: Everything the driver or the socket can raise; translated at the boundary.
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)


def _parse_sslmode(value: str) -> str:
    if value not in _SSL_MODES:
        raise ConfigurationError(f"expected one of {', '.join(_SSL_MODES)}")
    return value


def _loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8, ::1 and unix-socket directories."""
    if host == "localhost" or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_token_url(url: str, sslmode: str | None, ssl_option: Any) -> None:
    """Refuse a DSN that would send an access token in clear, or carries a password too.

    Raises:
        ConfigurationError: the URL has a password, or TLS is not required while a host
            is not on this machine. The message never echoes the URL.
    """
    try:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        netloc = parts.netloc.rpartition("@")
    except ValueError:
        raise ConfigurationError("malformed postgres URL") from None
    userinfo, _, hosts = netloc
    if ":" in userinfo or "password" in query:
        raise ConfigurationError("credential= and a password in the URL: give only one")
    mode = sslmode if sslmode is not None else query.get("sslmode")
    if ssl_option is not None and not isinstance(ssl_option, str):
        secure = bool(ssl_option)  # an SSLContext or True: TLS required
    else:
        secure = (ssl_option or mode) in _SECURE_SSL_MODES
    names = [
        h[1 : h.find("]")] if h.startswith("[") else h.rsplit(":", 1)[0] if ":" in h else h
        for h in hosts.split(",")
    ]
    if "host" in query:
        names = query["host"].split(",")
    local = bool(names) and all(name and _loopback(name) for name in names)
    if not secure and not local:
        raise ConfigurationError(
            "credential= sends an access token as the password: "
            "use sslmode=require, verify-ca or verify-full"
        )


def _connection_lost(exc: BaseException) -> bool:
    """The link broke (or timed out) while a command was in flight: outcome unknown."""
    if isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        # 08: connection exception; 57P01-57P03: server shutting down or restarting.
        return state.startswith("08") or state in ("57P01", "57P02", "57P03")
    return False


class Target(NamedTuple):
    """What an error may name about the server a store connects to: no password, no DSN."""

    host: str
    port: int
    database: str
    user: str

    @classmethod
    def of_url(cls, url: str) -> Target | None:
        """The first host, port, database and user of a DSN; None if it cannot tell."""
        try:
            parts = urlsplit(url)
            query = dict(parse_qsl(parts.query))
            host = query.get("host") or (parts.hostname or "")
            port = int(query.get("port") or parts.port or 5432)
        except ValueError:
            return None
        user = unquote(query.get("user") or parts.username or "")
        database = unquote(query.get("dbname") or parts.path.lstrip("/")) or user
        return cls(host.split(",")[0] or "localhost", port, database, user)


#: Causes named by SQLSTATE, in our words (asyncpg's message and DETAIL are never copied).
_CAUSES = {
    "3D000": 'database "{database}" does not exist',
    "28P01": 'password authentication failed for user "{user}"',
    "28000": 'the server refused the login of user "{user}" (pg_hba.conf, role)',
    "42501": "permission denied (the role lacks a privilege)",
    "3F000": "the schema does not exist",
    "53300": "the server has too many connections",
    "57P03": "the server is starting up or shutting down",
}


def _describe(exc: BaseException, target: Target | None = None) -> str:
    """What went wrong, from the exception class and SQLSTATE and what `target` may name:
    never asyncpg's message, DETAIL or the DSN."""
    state = getattr(exc, "sqlstate", None) if isinstance(exc, asyncpg.PostgresError) else None
    kind = f"{type(exc).__name__}" + (f", SQLSTATE {state}" if state else "")
    if state in _CAUSES:
        names = target._asdict() if target is not None else {"database": "?", "user": "?"}
        return f"{_CAUSES[state].format(**names)} ({kind})"
    return f"{type(exc).__name__}" + (f" (SQLSTATE {state})" if state else "")


def _translate(
    exc: BaseException,
    operation: str,
    *,
    write: bool,
    sent: bool,
    target: Target | None = None,
) -> Exception:
    """The `StoreUnavailableError` for a driver or socket error raised by `operation`.

    A socket error before anything was sent is a failure to connect: it names the host
    and port of `target` (never the DSN).
    """
    unknown = write and sent and _connection_lost(exc)
    where = f"{target.host}:{target.port}" if target is not None else "the server"
    if not sent and isinstance(exc, socket.gaierror):
        cause = f"cannot resolve the host of {where} ({type(exc).__name__})"
    elif not sent and isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)):
        reason = "timed out" if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) else None
        cause = f"cannot connect to {where} ({reason or type(exc).__name__})"
    else:
        cause = _describe(exc, target)
    return StoreUnavailableError(f"postgres {operation} failed: {cause}", may_have_applied=unknown)


async def _no_session_reset(connection: Any) -> None:
    """Release hook of an owned pool: the store leaves no session state to reset.

    It never sets session variables, listens, or holds session advisory locks or
    cursors, so asyncpg's default reset query would only cost a round trip per call.
    asyncpg still rolls back a transaction left open before calling this.
    """


def _record(row: Any) -> Record:
    (tenant, thread, namespace, kind, key, sort, grp, status, tokens,
     expires_at, lease_until, version, updated_at, body) = row  # fmt: skip
    with malformed_row("postgres"):
        return Record(
            id=RecordId(tenant, thread, namespace, kind, key),
            body=bytes(body),
            sort=sort,
            group=grp,
            status=status,
            tokens=frozenset(tokens),
            expires_at=expires_at,
            lease_until=lease_until,
            version=int(version),
            updated_at=float(updated_at),
        )


def _key(rid: RecordId) -> tuple[str, str, str, str, str]:
    return (rid.tenant, rid.thread, rid.namespace, rid.kind, rid.key)


def _row(record: Record, now: float) -> tuple[Any, ...]:
    """Parameters $1-$13 of UPSERT / INSERT_IF_ABSENT / UPDATE_IF_VERSION."""
    return (
        *_key(record.id), record.sort, record.group, record.status, sorted(record.tokens),
        record.expires_at, record.lease_until, now, record.body,
    )  # fmt: skip


def _columns(records: Sequence[Record], now: float) -> tuple[Any, ...]:
    """Parameters $1-$13 of PUT_MANY: one array per column, plus the time."""
    return (
        [r.id.tenant for r in records],
        [r.id.thread for r in records],
        [r.id.namespace for r in records],
        [r.id.kind for r in records],
        [r.id.key for r in records],
        [r.sort for r in records],
        [r.group for r in records],
        [r.status for r in records],
        [" ".join(sorted(r.tokens)) for r in records],
        [r.expires_at for r in records],
        [r.lease_until for r in records],
        [r.body for r in records],
        now,
    )


def _coalesce(records: Sequence[Record], *, if_absent: bool) -> tuple[list[Record], list[int]]:
    """One record per identity (a statement cannot change a row twice), and how many
    writes each stands for: of an upsert's repeats the last record, counting them all;
    of an insert-if-absent's the first, counting one (the repeats find it present)."""
    chosen: dict[RecordId, Record] = {}
    counts: dict[RecordId, int] = {}
    for record in records:
        if if_absent and record.id in chosen:
            continue
        chosen[record.id] = record
        counts[record.id] = counts.get(record.id, 0) + 1
    return list(chosen.values()), [counts[rid] for rid in chosen]


def _spread(
    records: Sequence[Record], written: dict[tuple[str, ...], int], *, if_absent: bool
) -> list[int | None]:
    """Each input record's version, from the version each identity ended at: repeats of
    an upsert count down from it (the last is the one kept); repeats of an
    insert-if-absent found the record present (None)."""
    left: dict[RecordId, int] = {}
    for record in records:
        left[record.id] = left.get(record.id, 0) + 1
    out: list[int | None] = []
    seen: set[RecordId] = set()
    for record in records:
        rid = record.id
        left[rid] -= 1
        final = written.get(_key(rid))
        if final is None or (if_absent and rid in seen):
            out.append(None)
        else:
            out.append(final if if_absent else final - left[rid])
        seen.add(rid)
    return out


class PostgresStore(Store):
    """Records in PostgreSQL, one table per schema (a schema per tenant is supported).

    Args:
        pool: an initialized `asyncpg.Pool`. Borrowed: `aclose()` never closes it.
        schema: the schema holding the tables (created by `setup()` if missing).
        actor: the name written to the audit log (default: the session's
            application_name, else the database user).

    Raises:
        ConfigurationError: `schema` or `actor` is not a valid identifier.
    """

    url_options: ClassVar = {
        "schema": parse_identifier,
        "pool_min": parse_non_negative_int,
        "pool_max": parse_positive_int,
        "statement_cache_size": parse_non_negative_int,
        "command_timeout": parse_seconds,
        "sslmode": _parse_sslmode,
        "actor": parse_identifier,
    }

    def __init__(self, pool: Any, *, schema: str = "public", actor: str | None = None) -> None:
        self.schema = parse_identifier(schema)
        self.actor = None if actor is None else parse_identifier(actor)
        self._sql = sql.statements(self.schema)
        self._pool: Any = pool
        self._connect: dict[str, Any] | None = None
        self._tokens: TokenCache | None = None
        self._target: Target | None = None  # what errors may name (from_url's server)
        # Guards only the one-time creation of an owned pool (a single resource).
        self._pool_lock = asyncio.Lock()
        self._migrated = False
        # Batches arriving while two are in flight go out merged, as one statement.
        self._group = GroupCommit(self._put_many_now)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        schema: str = "public",
        actor: str | None = None,
        pool_min: int = 1,
        pool_max: int = 10,
        statement_cache_size: int = 100,
        command_timeout: float | None = None,
        sslmode: str | None = None,
        credential: Any = None,
        **pool_options: Any,
    ) -> PostgresStore:
        """A store owning a pool for `postgresql://user@host:port/db` (created on first use).

        With `credential` (any azure-core `AsyncTokenCredential`, e.g. a
        `ManagedIdentityCredential`; borrowed, never closed), the password of every new
        connection is a Microsoft Entra access token for Azure Database for PostgreSQL
        (scope ``https://ossrdbms-aad.database.windows.net/.default``), fetched when the
        connection is opened and reused for later connections until five minutes
        before it expires. The URL's user is the identity's PostgreSQL role and the URL
        carries no password; TLS must be required (``sslmode=require`` or stronger)
        unless the server is on this machine. An open connection outlives its token:
        PostgreSQL checks the password only at login.

        Extra keyword arguments go to `asyncpg.create_pool` (`init`, `server_settings`...).

        Raises:
            ConfigurationError: invalid schema, actor or pool sizes; with `credential`,
                a password in the URL or TLS not required for a remote host.
        """
        if pool_min > pool_max:
            raise ConfigurationError("option 'pool_min' is larger than 'pool_max'")
        tokens: TokenCache | None = None
        if credential is not None:
            if "password" in pool_options:
                raise ConfigurationError("credential= and password=: give only one")
            _check_token_url(url, sslmode, pool_options.get("ssl"))
            tokens = TokenCache(credential, POSTGRES_SCOPE, store="postgres")
            pool_options["password"] = tokens.token
        store = cls(None, schema=schema, actor=actor)
        store._tokens = tokens
        store._connect = {
            "dsn": url,
            "min_size": pool_min,
            "max_size": pool_max,
            "statement_cache_size": statement_cache_size,
            "command_timeout": command_timeout,
            "reset": _no_session_reset,
            **({"ssl": sslmode} if sslmode is not None else {}),
            **pool_options,
        }
        store._owned_resources = True
        store._target = Target.of_url(url)
        return store

    # -- the boundary ----------------------------------------------------------------

    async def _get_pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                assert self._connect is not None
                pool = asyncpg.create_pool(**self._connect)
                try:
                    await pool
                except BaseException:
                    pool.terminate()
                    raise
                self._pool = pool
        return self._pool

    async def _run(self, operation: str, fn: Callable[[Any], Awaitable[T]], *, write: bool) -> T:
        """Run `fn` on a pooled connection, translating driver errors.

        A read, or a write that never reached the server, is retried once: a dead pooled
        connection is replaced by a new one on the second acquire.
        """
        if self._closed:
            raise StoreUnavailableError("postgres store is closed")
        for attempt in (1, 2):
            sent = done = False
            try:
                pool = await self._get_pool()
                async with pool.acquire() as conn:
                    sent = True
                    try:
                        result = await fn(conn)
                    except asyncio.CancelledError:
                        # The command may be half sent or half read: never reuse it.
                        conn.terminate()
                        raise
                    done = True
                return result
            except _DRIVER_ERRORS as exc:
                if done:
                    # Only handing the connection back failed; the pool drops it.
                    return result
                # Retry what never reached the server (acquiring, connecting) and a read
                # whose connection broke or was found closed.
                broken = _connection_lost(exc) or isinstance(exc, asyncpg.InterfaceError)
                retry = not sent or (broken and not write)
                if attempt == 2 or not retry:
                    raise _translate(
                        exc, operation, write=write, sent=sent, target=self._target
                    ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- protocol -------------------------------------------------------------------

    async def setup(self) -> None:
        """Create the schema and tables, applying each pending migration once.

        Each migration runs in its own transaction under an advisory lock keyed on the
        schema, so many processes may call this at once. Idempotent.

        Raises:
            StoreUnavailableError: the server failed or refused the DDL.
        """
        if self._migrated:
            return
        latest = sql.MIGRATIONS[-1][0]

        async def current(conn: Any) -> int:
            try:
                return int(await conn.fetchval(self._sql.current_version))
            except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                return 0

        if await self._run("setup", current, write=False) < latest:
            for migration in self._sql.migrations:

                def apply(conn: Any, migration: sql.Migration = migration) -> Awaitable[None]:
                    return self._apply(conn, *migration)

                await self._run("setup", apply, write=True)
        self._migrated = True

    async def _apply(self, conn: Any, version: int, name: str, statements: Sequence[str]) -> None:
        async with conn.transaction():
            await conn.execute(sql.ADVISORY_LOCK, sql.migration_lock_key(self.schema))
            # Skip CREATE SCHEMA when it exists: it needs CREATE on the database.
            if await conn.fetchval(sql.SCHEMA_EXISTS, self.schema) is None:
                await conn.execute(self._sql.create_schema)
            await conn.execute(self._sql.create_migrations)
            if await conn.fetchval(self._sql.migration_applied, version) is not None:
                return
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(self._sql.record_migration, version, name)

    async def get(self, record_id: RecordId) -> Record | None:
        params = (*_key(record_id), time.time())
        row = await self._run("get", lambda c: c.fetchrow(self._sql.get, *params), write=False)
        return None if row is None else _record(row)

    async def get_many(self, record_ids: Sequence[RecordId]) -> list[Record | None]:
        """Every record in one statement (the identities travel as arrays)."""
        if not record_ids:
            return []
        first = record_ids[0]
        prefix = (first.tenant, first.thread, first.namespace, first.kind)
        if all((r.tenant, r.thread, r.namespace, r.kind) == prefix for r in record_ids):
            params: tuple[Any, ...] = (*prefix, [r.key for r in record_ids], time.time())
            rows = await self._run(
                "get_many", lambda c: c.fetch(self._sql.get_keys, *params), write=False
            )
            by_key = {row[4]: _record(row) for row in rows}
            return [by_key.get(r.key) for r in record_ids]
        keys = [_key(rid) for rid in record_ids]
        params = (*([k[i] for k in keys] for i in range(5)), time.time())
        rows = await self._run(
            "get_many", lambda c: c.fetch(self._sql.get_many, *params), write=False
        )
        out: list[Record | None] = [None] * len(record_ids)
        for row in rows:
            out[int(row[0]) - 1] = _record(row[1:])
        return out

    async def put(self, record: Record, *, expected_version: int | None = None) -> int:
        params: tuple[Any, ...] = _row(record, time.time())
        if expected_version is None:
            statement = self._sql.upsert
        elif expected_version == 0:
            statement = self._sql.insert_if_absent
        else:
            statement, params = self._sql.update_if_version, (*params, expected_version)
        version = await self._run("put", lambda c: c.fetchval(statement, *params), write=True)
        if version is None:
            raise ConflictError(f"{record.id.describe()}: stored version is not {expected_version}")
        return int(version)

    async def put_many(
        self, records: Sequence[Record], *, if_absent: bool = False
    ) -> list[int | None]:
        """One statement; the new versions come back with it (``RETURNING``), mapped to
        the input order by identity. Batches from concurrent callers are merged (group
        commit: see `checkpointers.stores._group_commit`)."""
        if not records:
            return []
        return await self._group.put_many(records, if_absent=if_absent)

    async def _put_many_now(self, records: Sequence[Record], if_absent: bool) -> list[int | None]:
        batch, counts = _coalesce(records, if_absent=if_absent)
        statement = self._sql.put_many_if_absent if if_absent else self._sql.put_many
        params = (*_columns(batch, time.time()), counts)
        rows = await self._run("put_many", lambda c: c.fetch(statement, *params), write=True)
        written = {tuple(row[:5]): int(row[5]) for row in rows}
        return _spread(records, written, if_absent=if_absent)

    async def replicate(self, records: Sequence[Record]) -> None:
        """Write records as given (versions and times included), in one statement, unless
        the stored row has a higher version. Of several copies of one identity in the
        batch, the highest version (the last among equals) is written."""
        if not records:
            return
        highest: dict[RecordId, Record] = {}
        for record in records:
            kept = highest.get(record.id)
            if kept is None or kept.version <= record.version:
                highest[record.id] = record
        batch = list(highest.values())
        params = (
            *_columns(batch, 0.0)[:-1],
            [r.version for r in batch],
            [r.updated_at for r in batch],
        )
        await self._run("replicate", lambda c: c.execute(self._sql.replicate, *params), write=True)

    async def find(self, query: Query) -> list[Record]:
        text, params = sql.compose_find(self._sql, query, time.time())
        rows = await self._run("find", lambda c: c.fetch(text, *params), write=False)
        return [_record(row) for row in rows]

    async def claim(self, claim: Claim) -> Record | None:
        params = (
            claim.tenant, claim.thread, claim.kind, claim.now(), list(claim.statuses),
            claim.reclaim_expired, claim.to_status, claim.lease_until,
        )  # fmt: skip
        row = await self._run("claim", lambda c: c.fetchrow(self._sql.claim, *params), write=True)
        return None if row is None else _record(row)

    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        if not record_ids:
            return 0
        keys = [_key(rid) for rid in record_ids]
        params = (*([k[i] for k in keys] for i in range(5)), time.time())
        count = await self._run(
            "delete", lambda c: c.fetchval(self._sql.delete_many, *params), write=True
        )
        return int(count)

    async def delete_thread(self, tenant: str, thread: str) -> int:
        """Delete every record of a thread; writes one audit row (the count, no data)."""
        params = (tenant, thread, self.actor)
        count = await self._run(
            "delete_thread", lambda c: c.fetchval(self._sql.delete_thread, *params), write=True
        )
        return int(count)

    async def delete_tenant(self, tenant: str) -> int:
        """Delete every record of a tenant; writes one audit row (the count, no data)."""
        params = (tenant, self.actor)
        count = await self._run(
            "delete_tenant", lambda c: c.fetchval(self._sql.delete_tenant, *params), write=True
        )
        return int(count)

    async def threads(
        self, tenant: str | None, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        params = (tenant, after, time.time(), limit)
        rows = await self._run(
            "threads", lambda c: c.fetch(self._sql.threads, *params), write=False
        )
        return [(row[0], row[1]) for row in rows]

    async def scan(self, after: RecordId | None = None, *, limit: int = 500) -> list[Record]:
        params: tuple[Any, ...]
        if after is None:
            text, params = self._sql.scan_first, (limit,)
        else:
            text, params = self._sql.scan_after, (*_key(after), limit)
        rows = await self._run("scan", lambda c: c.fetch(text, *params), write=False)
        return [_record(row) for row in rows]

    async def sweep(self, *, now: float | None = None, limit: int = 1000) -> int:
        """Delete up to `limit` expired records; one audit row per tenant swept.

        Rows are taken with `FOR UPDATE SKIP LOCKED`: concurrent sweepers never wait on
        or double-count each other. Call again until it returns less than `limit`.
        """
        params = (time.time() if now is None else now, limit, self.actor)
        rows = await self._run("sweep", lambda c: c.fetch(self._sql.sweep, *params), write=True)
        return sum(int(row[0]) for row in rows)

    async def ping(self) -> None:
        await self._run("ping", lambda c: c.fetchval(sql.PING), write=False)

    async def is_set_up(self) -> bool:
        statement = self._sql.is_set_up
        return bool(await self._run("is_set_up", lambda c: c.fetchval(statement), write=False))

    async def _close(self) -> None:
        await self._group.aclose()
        if self._connect is None or self._pool is None:
            return  # borrowed, or never opened
        pool, self._pool = self._pool, None
        try:
            await pool.close()
        except BaseException:
            pool.terminate()
            raise

    def __repr__(self) -> str:
        owned = "owned" if self._connect is not None else "borrowed"
        return f"PostgresStore(schema={self.schema!r}, pool={owned})"
