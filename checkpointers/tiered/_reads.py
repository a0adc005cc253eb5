"""Point reads of a `TieredStore` through its tiers (private).

`get_many` looks in the write-behind queue first, then the hot tier; the misses go to the
durable tier in one call (and what it holds is copied to the hot tier); what is still
missing goes to the archive, for threads the durable tier holds nothing of (archived
threads), which are then restored into the durable tier (`restore_on_read`). Each
record read is counted once in `TierStats`: a hot hit, a hot miss (a colder tier held
it) or an absent read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from checkpointers.record import Query, Record, RecordId
from checkpointers.tiered._archive import restore_thread
from checkpointers.tiered._hot import SKIPPED
from checkpointers.tiered._tiers import Tiers

__all__ = ["get_many"]


async def get_many(tiers: Tiers, record_ids: Sequence[RecordId]) -> list[Record | None]:
    """The records, queued writes first (write-behind), then through the tiers."""
    queue = tiers.queue
    if queue is None or not queue.latest or not record_ids:
        return await _read_tiers(tiers, record_ids)
    now = time.time()
    out: list[Record | None] = [None] * len(record_ids)
    rest: list[int] = []
    for i, rid in enumerate(record_ids):
        queued = queue.latest.get(rid)
        if queued is None:
            rest.append(i)
        elif queued.expires_at is None or queued.expires_at > now:
            out[i] = queued
    tiers.stats.hot_hits += len(record_ids) - len(rest)
    if rest:
        for i, record in zip(rest, await _read_tiers(tiers, [record_ids[i] for i in rest]),
                             strict=True):  # fmt: skip
            out[i] = record
    return out


async def _read_tiers(tiers: Tiers, record_ids: Sequence[RecordId]) -> list[Record | None]:
    if not record_ids:
        return []
    cached = await tiers.hot.run(lambda hot: hot.get_many(record_ids), "get")
    out: list[Record | None] = [None] * len(record_ids) if cached is SKIPPED else cached
    misses = [i for i, record in enumerate(out) if record is None]
    tiers.stats.hot_hits += len(record_ids) - len(misses)
    if not misses:
        return out
    found = await tiers.durable.get_many([record_ids[i] for i in misses])
    fresh: dict[RecordId, Record] = {}
    left: list[int] = []
    for i, record in zip(misses, found, strict=True):
        out[i] = record
        if record is None:
            left.append(i)
        else:
            fresh[record.id] = record
    tiers.stats.hot_misses += len(fresh)
    queue = tiers.queue
    # A write queued (or being queued) since the durable read is newer: not copied.
    repopulate = [r for r in fresh.values() if queue is None or not queue.is_pending(r.id)]
    await tiers.hot.put(repopulate, "repopulate")
    archive = tiers.archive
    if left and archive is not None:
        left = await _archived_only(tiers, record_ids, left, out)
    if left and archive is not None:
        archived = await archive.get_many([record_ids[i] for i in left])
        for i, record in zip(left, archived, strict=True):
            out[i] = record
        tiers.stats.archive_reads += sum(1 for r in archived if r is not None)
        tiers.stats.hot_misses += sum(1 for r in archived if r is not None)
        if tiers.restore_on_read:
            # The thread is back in use: bring all of it into the durable tier before a
            # write lands there beside only part of its history.
            for tenant, thread in {(r.id.tenant, r.id.thread) for r in archived if r}:
                await restore_thread(tiers, tenant, thread)
    tiers.stats.absent_reads += sum(1 for r in out if r is None)
    return out


async def _archived_only(
    tiers: Tiers,
    record_ids: Sequence[RecordId],
    left: list[int],
    out: Sequence[Record | None],
) -> list[int]:
    """The positions in `left` whose thread has no record in the durable tier."""
    live = {(r.id.tenant, r.id.thread) for r in out if r is not None}
    for rid in {(record_ids[i].tenant, record_ids[i].thread) for i in left} - live:
        if await tiers.durable.find(Query(tenant=rid[0], thread=rid[1], limit=1)):
            live.add(rid)
    return [i for i in left if (record_ids[i].tenant, record_ids[i].thread) not in live]
