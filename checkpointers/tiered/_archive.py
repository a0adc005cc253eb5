"""Moving threads between the warm tiers of a `TieredStore` and its archive (private).

* `archive_thread` copies a thread to the archive, reads it back and compares digests
  before deleting it from the durable and hot tiers;
* `restore_thread` copies it back into the durable tier (the archive keeps it), never
  going back in row version, and verifies what the durable tier then holds;
* `archive_idle` archives every thread whose newest record is older than a cutoff.

Archived copies expire no sooner than the archive retention.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace

from checkpointers.errors import ConfigurationError, IntegrityError, RecordNotFoundError
from checkpointers.observability import log_event
from checkpointers.record import Query, Record
from checkpointers.stores.base import Store
from checkpointers.tiered._compare import fingerprint
from checkpointers.tiered._hot import SKIPPED
from checkpointers.tiered._tiers import Tiers

__all__ = [
    "archive_copies",
    "archive_idle",
    "archive_thread",
    "require_archive",
    "restore_thread",
]


def _digest(records: Sequence[Record]) -> str:
    h = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.id):
        h.update(repr((record.id, record.sort, record.group, record.status)).encode())
        h.update(hashlib.sha256(record.body).digest())
    return h.hexdigest()


def require_archive(tiers: Tiers) -> Store:
    """The archive tier, or ConfigurationError when there is none."""
    if tiers.archive is None:
        raise ConfigurationError("no archive tier is configured")
    return tiers.archive


def archive_copies(records: Sequence[Record], retention: float | None) -> list[Record]:
    """Copies for the archive: expiring no sooner than the archive retention."""
    expiry = None if retention is None else time.time() + retention
    return [replace(r, expires_at=expiry if r.expires_at is None else
                    max(r.expires_at, expiry or 0.0)) for r in records]  # fmt: skip


async def archive_thread(tiers: Tiers, tenant: str, thread: str) -> int:
    """See `TieredStore.archive_thread`."""
    archive = require_archive(tiers)
    await tiers.flush_if(tiers.pending(tenant, thread))
    records = await tiers.durable.find(Query(tenant=tenant, thread=thread))
    if not records:
        raise RecordNotFoundError(f"thread {thread!r} of tenant {tenant!r} has no records")
    copies = archive_copies(records, tiers.archive_retention)
    await archive.replicate(copies)
    stored = await archive.find(Query(tenant=tenant, thread=thread))
    if _digest(stored) != _digest(copies):
        raise IntegrityError(f"archived copy of thread {thread!r} differs; nothing deleted")
    await tiers.durable.delete_thread(tenant, thread)
    if await tiers.hot.run(lambda hot: hot.delete_thread(tenant, thread), "archive") is SKIPPED:
        tiers.hot.mark_dirty(thread=(tenant, thread))
    log_event("checkpointers.archive", tenant=tenant, thread_id=thread, records=len(records))
    return len(records)


async def restore_thread(tiers: Tiers, tenant: str, thread: str) -> int:
    """See `TieredStore.restore_thread`."""
    archive = require_archive(tiers)
    await tiers.flush_if(tiers.pending(tenant, thread))
    records = await archive.find(Query(tenant=tenant, thread=thread))
    if not records:
        raise RecordNotFoundError(f"thread {thread!r} of tenant {tenant!r} is not archived")
    restored = [replace(r, expires_at=None) for r in records]
    await tiers.durable.replicate(restored)
    back = {r.id: r for r in await tiers.durable.find(Query(tenant=tenant, thread=thread))}
    for record in restored:
        got = back.get(record.id)
        if (
            got is None
            or got.version < record.version
            or (got.version == record.version and fingerprint(got) != fingerprint(record))
        ):
            raise IntegrityError(f"restored copy of thread {thread!r} differs from the archive")
    await tiers.hot.put_from(tiers.durable, [r.id for r in restored], "restore")
    log_event("checkpointers.restore", tenant=tenant, thread_id=thread, records=len(records))
    return len(records)


async def archive_idle(tiers: Tiers, tenant: str | None, idle_seconds: float) -> int:
    """See `TieredStore.archive_idle`."""
    cutoff = time.time() - idle_seconds
    moved = 0
    after: str | None = None
    while True:
        page = await tiers.durable.threads(tenant, after=after, limit=100)
        if not page:
            return moved
        for owner, thread in page:
            records = await tiers.durable.find(Query(tenant=owner, thread=thread))
            if records and max(r.updated_at for r in records) < cutoff:
                moved += await archive_thread(tiers, owner, thread)
        after = page[-1][1]
