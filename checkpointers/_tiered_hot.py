"""The hot-tier guard of `TieredStore` (private).

Every use of the hot tier goes through `on_hot`, which skips it (returns `SKIPPED`) when
it is absent, its circuit breaker is open, or it is banned, and counts a failover when it
fails. Records written or deleted while the hot tier was skipped go to its `DirtySet` and
are evicted from it before it is used again, so that it never serves a stale copy.

`TieredStore` decides when the hot tier is written; this module owns how: the breaker,
the dirty set, and the TTL-capped copies.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from checkpointers.errors import StoreUnavailableError
from checkpointers.observability import record_failover
from checkpointers.record import Record, RecordId
from checkpointers.stores.base import Store

if TYPE_CHECKING:
    from checkpointers.tiered import TieredStore

__all__ = [
    "SKIPPED",
    "DirtySet",
    "after_durable_write",
    "drop_from_hot",
    "mark_dirty",
    "on_hot",
    "to_hot",
]

T = TypeVar("T")

_MAX_DIRTY = 10_000


class _Skipped(enum.Enum):
    SKIPPED = "skipped"


#: What `on_hot` returns when the hot tier was not used (absent, broken or failing).
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


def _hot_usable(tiers: TieredStore) -> bool:
    return (
        tiers.hot is not None
        and tiers.breaker.allow()
        and time.monotonic() >= tiers._dirty.banned_until
    )


async def on_hot(
    tiers: TieredStore, op: Callable[[Store], Awaitable[T]], what: str
) -> T | Literal[_Skipped.SKIPPED]:
    """Run `op` on the hot tier; SKIPPED when it is absent, broken or just failed."""
    hot = tiers.hot
    if hot is None or not _hot_usable(tiers):
        return SKIPPED
    try:
        if tiers._dirty:
            await tiers._dirty.evict(hot)
        result = await op(hot)
    except StoreUnavailableError as exc:
        if tiers.breaker.record_failure():
            tiers.stats.failovers += 1
            record_failover("hot", "durable", operation=what, error=type(exc).__name__)
        return SKIPPED
    if tiers.breaker.record_success():
        record_failover("durable", "hot", operation=what)
    return result


def mark_dirty(tiers: TieredStore, ids: Sequence[RecordId] = (),
               thread: tuple[str, str] | None = None,
               tenant: str | None = None) -> None:  # fmt: skip
    """Remember what the hot tier must lose before it serves again."""
    if tiers.hot is None:
        return
    dirty = tiers._dirty
    dirty.ids.update(ids)
    if thread is not None:
        dirty.threads.add(thread)
    if tenant is not None:
        dirty.tenants.add(tenant)
    if len(dirty.ids) + len(dirty.threads) > _MAX_DIRTY:
        dirty.ids.clear()
        dirty.threads.clear()
        dirty.banned_until = time.monotonic() + tiers.hot_ttl


def _hot_copy(record: Record, hot_ttl: float) -> Record:
    limit = time.time() + hot_ttl
    expires = limit if record.expires_at is None else min(record.expires_at, limit)
    return replace(record, expires_at=expires)


async def to_hot(tiers: TieredStore, records: Sequence[Record], what: str) -> None:
    """Copy records to the hot tier, expiring within its TTL."""
    if tiers.hot is None or not records:
        return
    copies = [_hot_copy(r, tiers.hot_ttl) for r in records]
    if await on_hot(tiers, lambda hot: hot.replicate(copies), what) is SKIPPED:
        mark_dirty(tiers, [r.id for r in records])


async def drop_from_hot(tiers: TieredStore, record_ids: Sequence[RecordId], what: str) -> None:
    """Evict records from the hot tier (now, or before it serves again)."""
    if await on_hot(tiers, lambda hot: hot.delete(record_ids), what) is SKIPPED:
        mark_dirty(tiers, record_ids)


async def after_durable_write(
    tiers: TieredStore, record_ids: Sequence[RecordId], what: str
) -> None:
    """Copy what the durable tier now holds (with its row versions: an upsert bumped
    them, an insert-if-absent kept what was there) to the hot tier, read back in one
    `get_many`."""
    if tiers.hot is None:
        return
    if not _hot_usable(tiers):
        mark_dirty(tiers, record_ids)
        return
    try:
        stored = await tiers.durable.get_many(list(dict.fromkeys(record_ids)))
    except StoreUnavailableError:
        # The write is durable; only reading it back failed: the hot tier must not
        # keep an older copy of what was just written.
        await drop_from_hot(tiers, record_ids, what)
        return
    await to_hot(tiers, [r for r in stored if r is not None], what)
