"""The hot tier of a `TieredStore` behind its guard (private).

Every use of the hot tier goes through `HotTier.run`, which skips it (returns `SKIPPED`)
when it is absent, its circuit breaker is open, or it is banned, and counts a failover
when it fails. Records written or deleted while the hot tier was skipped go to its
`DirtySet` and are evicted from it before it is used again, so that it never serves a
stale copy.

`TieredStore` decides when the hot tier is written; `HotTier` owns how: the breaker, the
dirty set, and the TTL-capped copies.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal, TypeVar

from checkpointers.errors import StoreUnavailableError
from checkpointers.observability import record_failover
from checkpointers.record import Record, RecordId
from checkpointers.resilience import CircuitBreaker
from checkpointers.stores.base import Store
from checkpointers.tiered._stats import TierStats

__all__ = ["SKIPPED", "DirtySet", "HotTier"]

T = TypeVar("T")

_MAX_DIRTY = 10_000


class _Skipped(enum.Enum):
    SKIPPED = "skipped"


#: What `HotTier.run` returns when the hot tier was not used (absent, broken or failing).
SKIPPED: Final = _Skipped.SKIPPED


@dataclass
class DirtySet:
    """What was written or deleted while the hot tier was unreachable: evicted from it
    before it serves again. On overflow the hot tier waits out its TTL instead."""

    ids: set[RecordId] = field(default_factory=set)
    threads: set[tuple[str, str]] = field(default_factory=set)
    tenants: set[str] = field(default_factory=set)
    banned_until: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.ids or self.threads or self.tenants)

    async def evict(self, hot: Store) -> None:
        """Delete everything marked from the hot tier, then forget it."""
        ids, threads, tenants = list(self.ids), list(self.threads), list(self.tenants)
        if ids:
            await hot.delete(ids)
        for tenant, thread in threads:
            await hot.delete_thread(tenant, thread)
        for tenant in tenants:
            await hot.delete_tenant(tenant)
        self.ids.difference_update(ids)
        self.threads.difference_update(threads)
        self.tenants.difference_update(tenants)


class HotTier:
    """The hot tier, or its absence, behind a circuit breaker.

    Args:
        store: the hot store, or None (then every use is skipped).
        ttl: seconds a copy stays in the hot tier, at most.
        breaker: the circuit breaker of the hot tier.
        stats: the tiered store's counters (failovers are counted here).
    """

    def __init__(
        self, store: Store | None, *, ttl: float, breaker: CircuitBreaker, stats: TierStats
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.breaker = breaker
        self.stats = stats
        self.dirty = DirtySet()

    def usable(self) -> bool:
        """Whether the hot tier is there, its breaker allows a call and it is not banned."""
        return (
            self.store is not None
            and self.breaker.allow()
            and time.monotonic() >= self.dirty.banned_until
        )

    async def run(
        self, op: Callable[[Store], Awaitable[T]], what: str, *, force: bool = False
    ) -> T | Literal[_Skipped.SKIPPED]:
        """Run `op` on the hot tier; SKIPPED when it is absent, broken or just failed.

        `force` tries it even while the breaker is open (a delete that must reach it).
        """
        hot = self.store
        if hot is None or not (force or self.usable()):
            return SKIPPED
        try:
            if self.dirty:
                await self.dirty.evict(hot)
            result = await op(hot)
        except StoreUnavailableError as exc:
            if self.breaker.record_failure():
                self.stats.failovers += 1
                record_failover("hot", "durable", operation=what, error=type(exc).__name__)
            return SKIPPED
        if self.breaker.record_success():
            record_failover("durable", "hot", operation=what)
        return result

    def mark_dirty(self, ids: Sequence[RecordId] = (),
                   thread: tuple[str, str] | None = None,
                   tenant: str | None = None) -> None:  # fmt: skip
        """Remember what the hot tier must lose before it serves again."""
        if self.store is None:
            return
        dirty = self.dirty
        dirty.ids.update(ids)
        if thread is not None:
            dirty.threads.add(thread)
        if tenant is not None:
            dirty.tenants.add(tenant)
        if len(dirty.ids) + len(dirty.threads) > _MAX_DIRTY:
            dirty.ids.clear()
            dirty.threads.clear()
            dirty.banned_until = time.monotonic() + self.ttl

    def _copy(self, record: Record) -> Record:
        limit = time.time() + self.ttl
        expires = limit if record.expires_at is None else min(record.expires_at, limit)
        return replace(record, expires_at=expires)

    async def put(self, records: Sequence[Record], what: str) -> None:
        """Copy records to the hot tier, expiring within its TTL."""
        if self.store is None or not records:
            return
        copies = [self._copy(r) for r in records]
        if await self.run(lambda hot: hot.replicate(copies), what) is SKIPPED:
            self.mark_dirty([r.id for r in records])

    async def drop(self, record_ids: Sequence[RecordId], what: str) -> None:
        """Evict records from the hot tier (now, or before it serves again)."""
        if await self.run(lambda hot: hot.delete(record_ids), what) is SKIPPED:
            self.mark_dirty(record_ids)

    async def put_from(self, durable: Store, record_ids: Sequence[RecordId], what: str) -> None:
        """Copy what the durable tier now holds (with its row versions: an upsert bumped
        them, an insert-if-absent kept what was there) to the hot tier, read back in one
        `get_many`."""
        if self.store is None:
            return
        if not self.usable():
            self.mark_dirty(record_ids)
            return
        try:
            stored = await durable.get_many(list(dict.fromkeys(record_ids)))
        except StoreUnavailableError:
            # The write is durable; only reading it back failed: the hot tier must not
            # keep an older copy of what was just written.
            await self.drop(record_ids, what)
            return
        await self.put([r for r in stored if r is not None], what)
