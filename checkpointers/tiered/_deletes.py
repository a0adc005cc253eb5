"""Deletes of a `TieredStore` (private): they reach every tier, and the write queue.

A delete first drops the queued writes of what it deletes (holding off flushes while it
runs), then deletes from the durable tier, the hot tier and the archive. It reports
success only when no tier can serve what it deleted any more: when the hot tier cannot
be reached (even tried past an open breaker), what was deleted stays marked for this
process to evict, and `StoreUnavailableError` says that other processes may still read
it from the hot tier until the delete is retried with the hot tier back (or its copies
expire).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from checkpointers.errors import StoreUnavailableError
from checkpointers.record import RecordId
from checkpointers.stores.base import Store
from checkpointers.tiered._hot import SKIPPED
from checkpointers.tiered._tiers import Tiers

__all__ = ["delete", "delete_tenant", "delete_thread"]


async def _from_hot(tiers: Tiers, op: Callable[[Store], Awaitable[object]], what: str) -> bool:
    """Delete from the hot tier, trying it even past an open breaker; False when it
    could not be reached (the caller marks what it deleted and raises at the end)."""
    if tiers.hot.store is None:
        return True
    return await tiers.hot.run(op, what, force=True) is not SKIPPED


def _unreachable(what: str) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"{what}: deleted from the durable tier, but the hot tier could not be reached: "
        "other processes may still read it there; retry the delete when the hot tier is "
        "back",
        may_have_applied=True,
    )


async def delete(tiers: Tiers, record_ids: Sequence[RecordId]) -> int:
    """See `TieredStore.delete`."""
    ids = set(record_ids)
    async with tiers.dropping_queued(ids.__contains__):
        count = await tiers.durable.delete(record_ids)
        reached = await _from_hot(tiers, lambda hot: hot.delete(record_ids), "delete")
        if not reached:
            tiers.hot.mark_dirty(record_ids)
        if tiers.archive is not None:
            count = max(count, await tiers.archive.delete(record_ids))
        if not reached:
            raise _unreachable(f"delete of {len(record_ids)} records")
        return count


async def delete_thread(tiers: Tiers, tenant: str, thread: str) -> int:
    """See `TieredStore.delete_thread`."""
    async with tiers.dropping_queued(lambda rid: (rid.tenant, rid.thread) == (tenant, thread)):
        count = await tiers.durable.delete_thread(tenant, thread)
        reached = await _from_hot(tiers, lambda hot: hot.delete_thread(tenant, thread), "erase")
        if not reached:
            tiers.hot.mark_dirty(thread=(tenant, thread))
        if tiers.archive is not None:
            count += await tiers.archive.delete_thread(tenant, thread)
        if not reached:
            raise _unreachable(f"thread {thread!r} of tenant {tenant!r}")
        return count


async def delete_tenant(tiers: Tiers, tenant: str) -> int:
    """See `TieredStore.delete_tenant`."""
    async with tiers.dropping_queued(lambda rid: rid.tenant == tenant):
        count = await tiers.durable.delete_tenant(tenant)
        reached = await _from_hot(tiers, lambda hot: hot.delete_tenant(tenant), "erase")
        if not reached:
            tiers.hot.mark_dirty(tenant=tenant)
        if tiers.archive is not None:
            count += await tiers.archive.delete_tenant(tenant)
        if not reached:
            raise _unreachable(f"tenant {tenant!r}")
        return count
