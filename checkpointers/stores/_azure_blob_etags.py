"""Record changes of `AzureBlobStore` guarded by ETags: optimistic concurrency (private).

Each change reads the blob (its ETag and routing fields), decides, then writes or deletes
with ``If-Match`` (or ``If-None-Match: *`` to create). When another writer got there
first the condition fails (`Lost`): an upsert or a delete reads again, a versioned write
raises `ConflictError`, and after `_MAX_ATTEMPTS` contended rounds every change gives up
with `ConflictError`.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace

from checkpointers.errors import ConflictError
from checkpointers.record import Claim, Record, RecordId
from checkpointers.stores._azure_blob_errors import Lost
from checkpointers.stores._azure_blob_io import BlobPrimitives, is_live, sort_order
from checkpointers.stores._azure_blob_layout import (
    blob_metadata,
    blob_name,
    entry_from,
    name_prefix,
)

__all__ = ["claim_oldest", "delete_expired", "delete_record", "replicate_record", "write_record"]

_MAX_ATTEMPTS = 50
# After this many lost races the listing is stale: list again rather than keep trying.
_CLAIM_TRIES_PER_LISTING = 4


async def write_record(
    blobs: BlobPrimitives,
    record: Record,
    expected_version: int | None,
    *,
    if_absent: bool = False,
) -> int | None:
    """Read-modify-write of one blob; None when `if_absent` found a live record."""
    name = blob_name(blobs.prefix, record.id)
    blob_metadata(record, 1, 0.0)  # refuse oversized routing fields before any I/O
    for _ in range(_MAX_ATTEMPTS):
        head = await blobs._head(name)
        now = time.time()
        stored = live = 0
        etag = None
        if head is not None:
            etag, metadata = head
            entry = entry_from(blobs.prefix, name, etag, metadata)
            if entry is not None:
                stored = entry.record.version
                live = stored if is_live(entry.record, now) else 0
        if if_absent and live:
            return None
        if expected_version is not None and expected_version != live:
            raise ConflictError(
                f"{record.id.describe()}: version is {live}, expected {expected_version}"
            )
        try:
            await blobs._upload(name, record, stored + 1, now, etag)
        except Lost:
            if expected_version is not None:
                raise ConflictError(
                    f"{record.id.describe()}: changed concurrently "
                    f"(expected version {expected_version})"
                ) from None
            continue
        return stored + 1
    raise ConflictError(f"{record.id.describe()}: gave up after {_MAX_ATTEMPTS} racing writes")


async def replicate_record(blobs: BlobPrimitives, record: Record) -> None:
    """Write a copy as given (version and update time kept) unless the stored blob has a
    higher version: read its ETag and version, then write with ``If-Match`` (or
    ``If-None-Match: *``), reading again after a lost race."""
    name = blob_name(blobs.prefix, record.id)
    for _ in range(_MAX_ATTEMPTS):
        head = await blobs._head(name)
        etag = None
        if head is not None:
            etag, metadata = head
            entry = entry_from(blobs.prefix, name, etag, metadata)
            if entry is not None and entry.record.version > record.version:
                return
        try:
            await blobs._upload(name, record, record.version, record.updated_at, etag)
        except Lost:
            continue
        return
    raise ConflictError(f"{record.id.describe()}: gave up after {_MAX_ATTEMPTS} racing copies")


async def delete_record(blobs: BlobPrimitives, rid: RecordId) -> int:
    """Delete one record if its blob is unchanged since read; 1 if it was live, else 0."""
    name = blob_name(blobs.prefix, rid)
    for _ in range(_MAX_ATTEMPTS):
        head = await blobs._head(name)
        if head is None:
            return 0
        etag, metadata = head
        entry = entry_from(blobs.prefix, name, etag, metadata)
        live = entry is not None and is_live(entry.record, time.time())
        try:
            return int(await blobs._delete_blob(name, etag) and live)
        except Lost:
            continue
    raise ConflictError(f"{rid.describe()}: changed concurrently during delete")


async def delete_expired(blobs: BlobPrimitives, name: str, moment: float) -> bool:
    """Delete a blob if its record is expired at `moment` and unchanged since read."""
    head = await blobs._head(name)
    if head is None:
        return False
    etag, metadata = head
    entry = entry_from(blobs.prefix, name, etag, metadata)
    if entry is None or is_live(entry.record, moment):
        return False
    try:
        return await blobs._delete_blob(name, etag)
    except Lost:
        return False


async def claim_oldest(blobs: BlobPrimitives, claim: Claim) -> Record | None:
    """Claim the oldest claimable record; after lost races, one among the next few."""
    prefix = name_prefix(blobs.prefix, claim.tenant, claim.thread)
    losses = 0
    for _ in range(_MAX_ATTEMPTS):
        now = claim.now()
        candidates = sorted(
            (e for e in await blobs._list(prefix) if claim.claimable(e.record, now)),
            key=lambda e: sort_order(e.record),
        )
        if not candidates:
            return None
        tries = 0
        while candidates and tries < _CLAIM_TRIES_PER_LISTING:
            tries += 1
            # The first try is the oldest record. A lost race proves contention: then
            # pick among a window that doubles with each loss, so that many claimers
            # spread over the queue instead of all racing for the same next record.
            window = min(len(candidates), 1 << min(losses, 16))
            candidate = candidates.pop(random.randrange(window))  # noqa: S311
            now = time.time()
            version = candidate.record.version + 1
            claimed = replace(
                candidate.record,
                status=claim.to_status,
                lease_until=claim.lease_until,
                version=version,
                updated_at=now,
            )
            etag = await blobs._set_metadata(candidate.name, claimed, now, candidate.etag)
            if etag is None:
                losses += 1  # changed or deleted since the listing: someone else took it
                continue
            return await _claimed(blobs, candidate.name, claimed, etag)
    raise ConflictError(
        f"claim on thread {claim.thread!r}: gave up after {_MAX_ATTEMPTS} contended rounds"
    )


async def _claimed(blobs: BlobPrimitives, name: str, claimed: Record, etag: str) -> Record:
    """After a won claim: refresh the index tags, then fetch the body."""
    if blobs._index_tags:
        await blobs._set_tags(name, claimed, etag)
    got = await blobs._download(name, etag)
    if got is not None:
        return replace(claimed, body=got[2])
    # Rewritten or deleted right after the claim: return what is there now, if anything.
    latest = await blobs._download(name)
    if latest is not None:
        entry = entry_from(blobs.prefix, name, *latest)
        if entry is not None:
            return entry.record
    return claimed
