"""`RedisStore`: records in plain Redis (no modules), on one server or a Redis Cluster.

Layout (``P`` is the key prefix, ``T`` = ``P{<tenant>,<thread>}`` the thread's key base):

* every key of one thread starts with ``T``, so its hash tag is exactly the escaped
  ``tenant,thread`` pair and all of them live in one cluster slot: a record is a hash,
  its indexes are sorted sets next to it (see `checkpointers.stores._redis_lua`), and
  every multi-key update is one Lua script on that slot.
* ``P{<tenant>}:threads`` (lex set of the tenant's threads) and ``P:tenants`` (lex set
  of tenants) serve the cross-thread operations; an expiry set beside each scores its
  members by how long they live. On one server the WRITE script lists the thread
  itself, in the same atomic step as the write, and only when the thread is new or
  its lifetime grew. On a cluster they live in other slots, so they are updated in a
  separate step, sent with the thread's script: a failure between the two leaves a
  thread listed without records (pruned later), never records that no listing reaches
  once the write is retried.

Tenant and thread are escaped so user ids can neither inject a hash tag nor collide
(see `checkpointers.stores._redis_keys`). No ``KEYS`` and no ``SCAN`` on any path but
`delete_tenant`, which scans for keys of the tenant's threads that no listing names.

Expiry: ``expires_at`` becomes PEXPIREAT on the record; the other keys of a thread live
as long as its longest-lived record, the listing sets as long as their longest-lived
member (expired members are dropped as the sets are written), and the tenant's own
records (its blind-index key, written without expiry) as long as the tenant: once
every record has expired no key of the prefix is left. Without expiry, no expiry work
is done. `sweep` and the reads prune index entries of records Redis already expired.

`put_many` is all-or-none on a single server (MULTI); on a cluster it is atomic per
thread only. The scripts derive key names inside the thread's slot from ``KEYS[1]``.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

from redis.asyncio.cluster import RedisCluster

from checkpointers.errors import ConfigurationError, ConflictError, StoreUnavailableError
from checkpointers.options import parse_bool, parse_positive_int, parse_seconds
from checkpointers.record import INDEX_KEY_KIND, Claim, Query, Record, RecordId
from checkpointers.stores._group_commit import GroupCommit
from checkpointers.stores._redis_client import Client, connect, endpoint
from checkpointers.stores._redis_errors import retrying
from checkpointers.stores._redis_eval import BATCH, Call, Scripts
from checkpointers.stores._redis_keys import (
    DEFAULT_PREFIX,
    expiry_key,
    parse_prefix,
    straggler_pattern,
    tenants_key,
    thread_tag,
    threads_key,
)
from checkpointers.stores._redis_rows import (
    decode_row,
    encode_query,
    encode_record,
    latest,
    new_op,
    num,
    text,
)
from checkpointers.stores.base import Store

__all__ = ["RedisStore", "parse_prefix"]

T = TypeVar("T")


def _own(record: Record) -> bool:
    """A record of the tenant itself (its blind-index key): it lives as the tenant does."""
    rid = record.id
    return rid.thread == "" and rid.kind == INDEX_KEY_KIND and record.expires_at is None


class RedisStore(Store):
    """Records in Redis, cluster-safe, with no module needed.

    Args:
        client: a `redis.asyncio.Redis` or `RedisCluster` with ``decode_responses`` off.
            Borrowed: never closed by the store (`from_url` makes one it owns).
        prefix: key prefix isolating this store's keys.
        refresh_ttl_on_read: `get` gives a record written with an expiry the same time
            to live again, counted from the read.
        attempts: tries of each operation on connection errors, with backoff. Writes
            and claims carry an operation id, so a retry never applies one twice.

    Raises:
        ConfigurationError: invalid prefix, or a client that decodes responses.
    """

    url_options: ClassVar = {
        "prefix": parse_prefix,
        "cluster": parse_bool,
        "pool_size": parse_positive_int,
        "refresh_ttl_on_read": parse_bool,
        "socket_timeout": parse_seconds,
        "attempts": parse_positive_int,
    }

    def __init__(
        self,
        client: Client,
        *,
        prefix: str = DEFAULT_PREFIX,
        refresh_ttl_on_read: bool = False,
        attempts: int = 3,
    ) -> None:
        try:
            self.prefix = parse_prefix(prefix)
        except ConfigurationError as exc:
            raise ConfigurationError(f"prefix: {exc}") from None
        if client.get_encoder().decode_responses:
            raise ConfigurationError("the redis client must not decode responses")
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._refresh = refresh_ttl_on_read
        self._attempts = max(1, attempts)
        self._scripts = Scripts(client)
        self._endpoint = endpoint(client)  # host:port, named when it cannot be reached
        self._tenants_key = tenants_key(self.prefix)
        self._tenants_expiry = expiry_key(self.prefix, None)
        # Batches arriving while two are in flight go out merged, in one pipeline.
        self._group = GroupCommit(self._put_many_now)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        cluster: bool = False,
        pool_size: int = 64,
        refresh_ttl_on_read: bool = False,
        socket_timeout: float = 5.0,
        attempts: int = 3,
        credential: Any = None,
        **options: Any,
    ) -> RedisStore:
        """A store owning a new client for ``redis://``, ``rediss://`` or ``unix://``.

        With `credential` (any azure-core `AsyncTokenCredential`; borrowed, never
        closed) connections authenticate with Microsoft Entra ID, as Azure Cache for
        Redis expects with access keys off: the URL's user is the identity's object
        (principal) id, ``rediss://<object-id>@<name>.redis.cache.windows.net:6380/0``,
        with no password; the password is an access token for
        ``https://redis.azure.com/.default``, reused until five minutes before it
        expires, and a pooled connection is re-authenticated (``AUTH``) when checked
        out after a renewal (see `checkpointers.stores._redis_entra`).

        On one server the client has no driver retries (the store retries, see
        `attempts`), a health check of idle connections and a pool of at most
        `pool_size` connections that callers wait for. With `cluster` it is a
        `RedisCluster` (its own retries re-route after failovers) with at most
        `pool_size` requests in flight.

        Raises:
            ConfigurationError: a malformed URL or option; with `credential`, a URL
                without user, with a password, or plain ``redis://`` to a remote host.
        """
        client = connect(
            url,
            cluster=cluster,
            pool_size=pool_size,
            socket_timeout=socket_timeout,
            credential=credential,
            options=options,
        )
        store = cls(
            client, prefix=prefix, refresh_ttl_on_read=refresh_ttl_on_read, attempts=attempts
        )
        store._owned_resources = True
        if cluster:
            store._scripts.gate = asyncio.Semaphore(pool_size)
        return store

    # -- plumbing -------------------------------------------------------------------

    def _tag(self, tenant: str, thread: str) -> str:
        return thread_tag(self.prefix, tenant, thread)

    def _threads_key(self, tenant: str) -> str:
        return threads_key(self.prefix, tenant)

    async def _io(self, what: str, fn: Callable[[], Awaitable[T]], *, write: bool = False) -> T:
        """Run `fn`, retrying connection errors with backoff; translate driver errors.

        Every operation may be retried: reads and deletes are idempotent, and writes and
        claims carry an operation id that makes a retry of an applied one return its
        first result (see `_redis_lua`).
        """
        if self._closed:
            raise StoreUnavailableError("redis store is closed")
        return await retrying(
            what, fn, attempts=self._attempts, write=write, endpoint=self._endpoint
        )

    async def _eval(
        self, what: str, calls: Sequence[Call], *, write: bool = False, atomic: bool = False
    ) -> list[Any]:
        """Run `calls` (see `Scripts.run`) inside the retry boundary `_io`."""

        async def run() -> list[Any]:
            return await self._scripts.run(calls, atomic)

        return await self._io(what, run, write=write)

    def _writes(
        self, tenant: str, thread: str, group: Sequence[Record], args: list[Any]
    ) -> list[Call]:
        """The calls writing one thread's records `group` (WRITE `args`) and listing it.

        On one server the listing rides in the WRITE script itself (one script, one
        atomic step); a cluster keeps the listing sets in other slots, so it gets the
        TOUCH and FOLLOW calls first.
        """
        tag = self._tag(tenant, thread)
        own = all(_own(r) for r in group)
        args = [*args, "f" if own else ""]
        if self._cluster:
            expires = "f" if own else num(latest([r.expires_at for r in group]))
            return [*self._touches(tenant, thread, expires), ("write", tag, args)]
        keys = (tag, self._tenants_key, self._tenants_expiry, self._threads_key(tenant),
                expiry_key(self.prefix, tenant), self._tag(tenant, ""))  # fmt: skip
        return [("write", keys, [*args, tenant, thread])]

    def _touches(self, tenant: str, thread: str, expires: str) -> list[Call]:
        """List the thread and its tenant until `expires` (`num`, or "f": follows the
        tenant), and keep the tenant's own records alive as long."""
        calls: list[Call] = [
            ("touch", (self._tenants_key, self._tenants_expiry), [tenant, expires]),
            ("touch", (self._threads_key(tenant), expiry_key(self.prefix, tenant)),
             [thread, expires]),
        ]  # fmt: skip
        if expires != "f":
            calls.append(("follow", self._tag(tenant, ""), [expires]))
        return calls

    async def _members(self, key: str) -> list[str]:
        """Every member of a lex set, in order."""
        out: list[str] = []
        while True:
            found = await self._zpage(key, out[-1] if out else None, 1000)
            out += found
            if len(found) < 1000:
                return out

    async def _pairs(self, tenant: str | None) -> list[tuple[str, str]]:
        tenants = [tenant] if tenant is not None else await self._members(self._tenants_key)
        pairs: list[tuple[str, str]] = []
        for name in tenants:
            pairs += [(name, th) for th in await self._members(self._threads_key(name))]
        return pairs

    # -- protocol -------------------------------------------------------------------

    async def setup(self) -> None:
        await self._io("script load", self._scripts.load)

    async def get(self, record_id: RecordId) -> Record | None:
        rid = record_id
        tag = self._tag(rid.tenant, rid.thread)
        args = [num(time.time()), "1", "1" if self._refresh else "", 1,
                rid.namespace, rid.kind, rid.key]  # fmt: skip
        (rows,) = await self._eval("get", [("get", tag, args)], write=self._refresh)
        if not rows[0]:
            return None
        record = decode_row(rid.tenant, rid.thread, rows[0])
        if self._refresh and record.expires_at is not None:
            touches = self._touches(rid.tenant, rid.thread, num(record.expires_at))
            await self._eval("refresh", touches)
        return record

    async def get_many(self, record_ids: Sequence[RecordId]) -> list[Record | None]:
        """One GET script per thread (its slot), all sent in one pipeline."""
        if not record_ids:
            return []
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position, rid in enumerate(record_ids):
            groups[(rid.tenant, rid.thread)].append(position)
        now = num(time.time())
        refresh = "1" if self._refresh else ""
        calls: list[Call] = []
        for (tenant, thread), positions in groups.items():
            args: list[Any] = [now, "1", refresh, len(positions)]
            for position in positions:
                rid = record_ids[position]
                args += [rid.namespace, rid.kind, rid.key]
            calls.append(("get", self._tag(tenant, thread), args))
        results = await self._eval("get_many", calls, write=self._refresh)
        out: list[Record | None] = [None] * len(record_ids)
        touches: list[Call] = []
        for ((tenant, thread), positions), rows in zip(groups.items(), results, strict=True):
            for position, row in zip(positions, rows, strict=True):
                if row:
                    out[position] = decode_row(tenant, thread, row)
            expiries = [
                r.expires_at for p in positions if (r := out[p]) is not None and r.expires_at
            ]
            if self._refresh and expiries:
                touches += self._touches(tenant, thread, num(max(expiries)))
        if touches:
            await self._eval("refresh", touches)
        return out

    async def put(self, record: Record, *, expected_version: int | None = None) -> int:
        rid = record.id
        mode, expected = ("put", "") if expected_version is None else ("cas", expected_version)
        args = [num(time.time()), mode, expected, 1, new_op(), *encode_record(record)]
        calls = self._writes(rid.tenant, rid.thread, [record], args)
        ok, version = (await self._eval("put", calls, write=True))[-1][:2]
        if not ok:
            raise ConflictError(
                f"{rid.describe()}: version is {version}, expected {expected_version}"
            )
        return int(version)

    async def put_many(
        self, records: Sequence[Record], *, if_absent: bool = False
    ) -> list[int | None]:
        """One WRITE script per thread, all in one atomic pipeline; each script answers
        the versions of its records. Batches from concurrent callers are merged (group
        commit)."""
        if not records:
            return []
        return await self._group.put_many(records, if_absent=if_absent)

    async def _put_many_now(self, records: Sequence[Record], if_absent: bool) -> list[int | None]:
        return await self._write_many("put_many", records, "absent" if if_absent else "put")

    async def replicate(self, records: Sequence[Record]) -> None:
        await self._write_many("replicate", records, "copy")

    async def _write_many(
        self, what: str, records: Sequence[Record], mode: str
    ) -> list[int | None]:
        if not records:
            return []
        now, op = num(time.time()), new_op()
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for position, record in enumerate(records):
            groups[(record.id.tenant, record.id.thread)].append(position)
        calls: list[Call] = []
        replies: list[int] = []  # index in `calls` of each group's WRITE
        for (tenant, thread), positions in groups.items():
            group = [records[p] for p in positions]
            args: list[Any] = [now, mode, "", len(group), op]
            for record in group:
                args += encode_record(record, exact=mode == "copy")
            calls += self._writes(tenant, thread, group, args)
            replies.append(len(calls) - 1)
        results = await self._eval(what, calls, write=True, atomic=True)
        out: list[int | None] = [None] * len(records)
        for positions, at in zip(groups.values(), replies, strict=True):
            for position, version in zip(positions, results[at][1:], strict=True):
                out[position] = None if version is None else int(version)
        return out

    async def find(self, query: Query) -> list[Record]:
        if query.limit == 0:
            return []
        if query.thread is not None:
            tenants = (
                [query.tenant]
                if query.tenant is not None
                else await self._members(self._tenants_key)
            )
            pairs = [(tenant, query.thread) for tenant in tenants]
        else:
            pairs = await self._pairs(query.tenant)
        args = encode_query(query)
        calls = [("find", self._tag(t, th), args) for t, th in pairs]
        results = await self._eval("find", calls)
        found = [
            decode_row(t, th, row)
            for (t, th), rows in zip(pairs, results, strict=True)
            for row in rows
        ]
        found.sort(key=lambda r: (r.sort, r.id), reverse=query.descending)
        return found if query.limit is None else found[: query.limit]

    async def claim(self, claim: Claim) -> Record | None:
        reclaim = "1" if claim.reclaim_expired else ""
        args = [num(claim.now()), claim.kind, claim.to_status, num(claim.lease_until),
                reclaim, new_op(), len(claim.statuses), *claim.statuses]  # fmt: skip
        tag = self._tag(claim.tenant, claim.thread)
        (row,) = await self._eval("claim", [("claim", tag, args)], write=True)
        return decode_row(claim.tenant, claim.thread, row) if row else None

    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for rid in record_ids:
            groups[(rid.tenant, rid.thread)] += [rid.namespace, rid.kind, rid.key]
        now = num(time.time())
        calls = [("delete", self._tag(t, th), [now, len(ids) // 3, *ids])
                 for (t, th), ids in groups.items()]  # fmt: skip
        return sum(await self._eval("delete", calls)) if calls else 0

    async def delete_thread(self, tenant: str, thread: str) -> int:
        (count,) = await self._eval(
            "delete_thread", [("delete_thread", self._tag(tenant, thread), [])]
        )
        await self._unlist(tenant, [thread])
        return int(count)

    async def delete_tenant(self, tenant: str) -> int:
        """Delete every record of `tenant`.

        After deleting the listed threads, this maintenance path SCANs for keys under
        ``P{<tenant>,`` (threads whose listing step failed) so an erasure is complete.
        """
        threads = await self._members(self._threads_key(tenant))
        calls: list[Call] = [("delete_thread", self._tag(tenant, th), []) for th in threads]
        count = sum(await self._eval("delete_tenant", calls)) if calls else 0

        async def unlist() -> None:
            await self._client.delete(self._threads_key(tenant))
            await self._client.delete(expiry_key(self.prefix, tenant))
            await self._client.zrem(self._tenants_key, tenant)
            await self._client.zrem(self._tenants_expiry, tenant)

        await self._io("delete_tenant", unlist)
        pattern = straggler_pattern(self.prefix, tenant)

        async def stragglers() -> set[bytes]:
            tags: set[bytes] = set()
            async for key in self._client.scan_iter(match=pattern, count=1000):
                tags.add(key[: key.index(b"}") + 1])
            return tags

        tags = await self._io("delete_tenant", stragglers)
        calls = [("delete_thread", text(tag), []) for tag in sorted(tags)]
        return count + (sum(await self._eval("delete_tenant", calls)) if calls else 0)

    async def threads(
        self, tenant: str | None, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        tenants = [tenant] if tenant is not None else await self._members(self._tenants_key)
        now = num(time.time())
        out: list[tuple[str, str]] = []
        for name in tenants:
            live: list[str] = []
            cursor = after
            while len(live) < limit:
                key = self._threads_key(name)
                page = await self._zpage(key, cursor, limit)
                if not page:
                    break
                cursor = page[-1]
                calls = [("prune", self._tag(name, th), [now, 1000]) for th in page]
                results = await self._eval("threads", calls)
                dead = [th for th, (_, left) in zip(page, results, strict=True) if not left]
                live += [th for th, (_, left) in zip(page, results, strict=True) if left and th]
                if dead:
                    await self._unlist(name, dead)
            out += [(name, th) for th in live[:limit]]
        return sorted(out, key=lambda p: (p[1], p[0]))[:limit]

    async def _zpage(self, key: str, after: str | None, count: int) -> list[str]:
        start = "-" if after is None else "(" + after

        async def page() -> list[bytes | str]:
            return list(await self._client.zrangebylex(key, start, "+", 0, count))

        return [text(m) for m in await self._io("listing", page)]

    async def scan(self, after: RecordId | None = None, *, limit: int = 500) -> list[Record]:
        out: list[Record] = []
        for tenant in await self._members(self._tenants_key):
            if after is not None and tenant < after.tenant:
                continue
            for thread in await self._members(self._threads_key(tenant)):
                if after is not None and (tenant, thread) < (after.tenant, after.thread):
                    continue
                tag = self._tag(tenant, thread)
                (ids,) = await self._eval("scan", [("list", tag, [])])
                rids = sorted(RecordId(tenant, thread, *text(i).split("\x00")) for i in ids)
                page = [r for r in rids if after is None or r > after][: limit - len(out)]
                if not page:
                    continue
                args: list[Any] = [num(time.time()), "", "", len(page)]
                for rid in page:
                    args += [rid.namespace, rid.kind, rid.key]
                (rows,) = await self._eval("scan", [("get", tag, args)])
                out += [decode_row(tenant, thread, row) for row in rows if row]
                if len(out) >= limit:
                    return out
        return out

    async def sweep(self, *, now: float | None = None, limit: int = 1000) -> int:
        """Delete up to `limit` records expired at `now`, and prune stale listings.

        Walks every listed thread (a maintenance path; Redis expires records by itself,
        this removes what a given `now` says is expired and cleans the indexes).
        """
        moment = num(time.time() if now is None else now)
        queue = deque(await self._pairs(None))
        count = 0
        dead: dict[str, list[str]] = defaultdict(list)
        while queue and count < limit:
            remaining = limit - count
            page = [queue.popleft() for _ in range(min(len(queue), BATCH, remaining))]
            budget = remaining // len(page)
            calls = [("prune", self._tag(t, th), [moment, budget]) for t, th in page]
            results = await self._eval("sweep", calls)
            for (tenant, thread), (deleted, left) in zip(page, results, strict=True):
                count += int(deleted)
                if int(deleted) == budget:
                    queue.append((tenant, thread))
                elif not left:
                    dead[tenant].append(thread)
        for tenant, threads in dead.items():
            await self._unlist(tenant, threads)
        return count

    async def _unlist(self, tenant: str, threads: Sequence[str]) -> None:
        """Drop threads without records from the tenant's listing, and the tenant if empty."""
        key, expiry = self._threads_key(tenant), expiry_key(self.prefix, tenant)

        async def run() -> None:
            if threads:
                await self._client.zrem(key, *threads)
                await self._client.zrem(expiry, *threads)
            if not await self._client.exists(key):
                await self._client.zrem(self._tenants_key, tenant)
                await self._client.zrem(self._tenants_expiry, tenant)

        await self._io("listing", run)

    async def ping(self) -> None:
        await self._io("ping", self._client.ping)

    async def _close(self) -> None:
        await self._group.aclose()
        if self._owned_resources:
            await self._client.aclose()

    def __repr__(self) -> str:
        kind = "cluster" if self._cluster else "server"
        return f"RedisStore(prefix={self.prefix!r}, {kind})"
