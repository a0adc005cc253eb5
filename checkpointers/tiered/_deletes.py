"""Deletes of a `TieredStore` (private): they reach every tier, and the write queue.

A delete first drops the queued writes of what it deletes (holding off flushes while it
runs), then deletes from the durable tier, the hot tier (or marks it dirty when it is
skipped) and the archive.
"""

from __future__ import annotations

from collections.abc import Sequence

from checkpointers.record import RecordId
from checkpointers.tiered._hot import SKIPPED
from checkpointers.tiered._tiers import Tiers

__all__ = ["delete", "delete_tenant", "delete_thread"]


async def delete(tiers: Tiers, record_ids: Sequence[RecordId]) -> int:
    """See `TieredStore.delete`."""
    ids = set(record_ids)
    async with tiers.dropping_queued(ids.__contains__):
        count = await tiers.durable.delete(record_ids)
        if await tiers.hot.run(lambda hot: hot.delete(record_ids), "delete") is SKIPPED:
            tiers.hot.mark_dirty(record_ids)
        if tiers.archive is not None:
            count = max(count, await tiers.archive.delete(record_ids))
        return count


async def delete_thread(tiers: Tiers, tenant: str, thread: str) -> int:
    """See `TieredStore.delete_thread`."""
    async with tiers.dropping_queued(lambda rid: (rid.tenant, rid.thread) == (tenant, thread)):
        count = await tiers.durable.delete_thread(tenant, thread)
        hot_done = await tiers.hot.run(lambda hot: hot.delete_thread(tenant, thread), "erase")
        if hot_done is SKIPPED:
            tiers.hot.mark_dirty(thread=(tenant, thread))
        if tiers.archive is not None:
            count += await tiers.archive.delete_thread(tenant, thread)
        return count


async def delete_tenant(tiers: Tiers, tenant: str) -> int:
    """See `TieredStore.delete_tenant`."""
    async with tiers.dropping_queued(lambda rid: rid.tenant == tenant):
        count = await tiers.durable.delete_tenant(tenant)
        if await tiers.hot.run(lambda hot: hot.delete_tenant(tenant), "erase") is SKIPPED:
            tiers.hot.mark_dirty(tenant=tenant)
        if tiers.archive is not None:
            count += await tiers.archive.delete_tenant(tenant)
        return count
