"""Batch writes of a `TieredStore` (private): write-through, and write-behind's rules.

* Write-through: the durable tier first, then exactly the records it wrote, with the
  versions it answered, to the hot tier; an insert-if-absent (every LangGraph checkpoint
  and regular write) goes to both tiers at once.
* Write-behind: the hot tier, then the `WriteQueue`; when the hot tier is skipped, the
  queue is flushed and the write goes through.
* After a flush: the hot tier gets the durable versions of what was written, and loses
  what the durable tier skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace

from checkpointers.record import Record, RecordId
from checkpointers.tiered._hot import SKIPPED
from checkpointers.tiered._tiers import Tiers

__all__ = ["flushed", "put_behind", "put_through"]


async def put_through(tiers: Tiers, records: Sequence[Record], if_absent: bool) -> list[int | None]:
    """Write to the durable tier and copy what it wrote to the hot tier: after it, or
    for an insert-if-absent at the same time (see `_insert_both`)."""
    if if_absent and tiers.hot.usable():
        return await _insert_both(tiers, records)
    versions = await tiers.durable.put_many(records, if_absent=if_absent)
    if tiers.hot.store is not None:
        now = time.time()
        written = [r.stored_as(v, now)
                   for r, v in zip(records, versions, strict=True)
                   if v is not None]  # fmt: skip
        await tiers.hot.put(written, "put_many")
    return versions


async def _insert_both(tiers: Tiers, records: Sequence[Record]) -> list[int | None]:
    """An insert-if-absent written to both tiers concurrently: the wall cost is the
    slower tier's, not the sum. What the durable tier inserts gets row version 1, so the
    first record of each identity goes to the hot tier as version 1 at once; identities
    the durable tier answered otherwise (held already, or an expired row replaced under
    a later version), or all of them if it failed, are then evicted from the hot tier,
    which never keeps what the durable tier does not (a later read copies it again)."""
    now = time.time()
    first: dict[RecordId, Record] = {}
    for record in records:
        first.setdefault(record.id, record.stored_as(1, now))
    hot_write = asyncio.ensure_future(tiers.hot.put(list(first.values()), "put_many"))
    try:
        versions = await tiers.durable.put_many(records, if_absent=True)
    except BaseException:
        await asyncio.shield(hot_write)
        await tiers.hot.drop(list(first), "put_many")
        raise
    await hot_write
    answered: dict[RecordId, int | None] = {}
    for record, version in zip(records, versions, strict=True):
        answered.setdefault(record.id, version)
    other = [rid for rid, version in answered.items() if version != 1]
    if other:
        await tiers.hot.drop(other, "put_many")
    return versions


async def put_behind(tiers: Tiers, records: Sequence[Record], if_absent: bool) -> list[int | None]:
    """Write to the hot tier and queue; through to the durable tier if the hot is skipped."""
    queue = tiers.queue
    assert queue is not None
    if queue.failure is not None or len(queue) >= queue.max_pending:
        await queue.flush()  # raises while the durable tier stays down
    limit = time.time() + tiers.pending_ttl
    copies = [replace(r, expires_at=limit if r.expires_at is None else
                      min(r.expires_at, limit)) for r in records]  # fmt: skip
    ids = [r.id for r in records]
    with queue.reserve(ids):
        versions = await tiers.hot.run(
            lambda hot: hot.put_many(copies, if_absent=if_absent), "put_many"
        )
        if versions is SKIPPED:
            # The hot write may have applied: evict it when the tier is back. Queued
            # writes go first, so that this one lands after them.
            tiers.hot.mark_dirty(ids)
            await queue.flush()
            return await put_through(tiers, records, if_absent)
        now = time.time()
        queue.add([r.stored_as(v, now)
                   for r, v in zip(records, versions, strict=True) if v is not None],
                  if_absent=if_absent)  # fmt: skip
    return versions


async def flushed(tiers: Tiers, records: list[Record], versions: list[int | None]) -> None:
    """After a flush: the hot tier gets the durable versions of what was written, and
    loses what the durable tier skipped; records queued again since are left alone."""
    queue = tiers.queue
    assert queue is not None
    now = time.time()
    written = [r.stored_as(v, now)
               for r, v in zip(records, versions, strict=True)
               if v is not None and not queue.is_pending(r.id)]  # fmt: skip
    skipped = [r.id for r, v in zip(records, versions, strict=True)
               if v is None and not queue.is_pending(r.id)]  # fmt: skip
    await tiers.hot.put(written, "flush")
    if skipped:
        await tiers.hot.drop(skipped, "flush")
