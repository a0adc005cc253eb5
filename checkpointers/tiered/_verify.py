"""`TieredStore.compare_thread`: check a thread across the tiers, and repair (private).

Reads each tier's records of the thread, builds the `ThreadReport` with the rules of
`checkpointers.tiered._compare` (which tier is the truth, what counts as a difference)
and, when asked, repairs the warmer tiers: differing hot copies are evicted, and a
differing archive copy is replaced by the durable tier's, verified on read-back.
"""

from __future__ import annotations

from collections.abc import Sequence

from checkpointers.errors import IntegrityError
from checkpointers.observability import log_event
from checkpointers.record import Query, Record, RecordId
from checkpointers.tiered._archive import archive_copies, require_archive
from checkpointers.tiered._compare import (
    MISSING,
    Difference,
    ThreadReport,
    TierDigest,
    differences,
    fingerprint,
    summary,
)
from checkpointers.tiered._hot import SKIPPED
from checkpointers.tiered._tiers import Tiers

__all__ = ["compare_thread"]


async def compare_thread(tiers: Tiers, tenant: str, thread: str, repair: bool) -> ThreadReport:
    """See `TieredStore.compare_thread`."""
    query = Query(tenant=tenant, thread=thread)
    await tiers.flush_if(tiers.pending(tenant, thread))
    durable = await tiers.durable.find(query)
    archived = None if tiers.archive is None else await tiers.archive.find(query)
    truth_name = "durable" if durable or not archived else "archive"
    truth = durable if truth_name == "durable" or archived is None else archived
    digests: dict[str, TierDigest] = {"durable": summary(durable)}
    found: list[Difference] = []
    unreachable: list[str] = []
    if tiers.hot.store is not None:
        hot = await tiers.hot.run(lambda tier: tier.find(query), "compare")
        if hot is SKIPPED:
            unreachable.append("hot")
        else:
            digests["hot"] = summary(hot)
            found += differences(truth, hot, "hot", complete=False)
    if archived is not None:
        digests["archive"] = summary(archived)
        if durable and archived:
            found += differences(durable, archived, "archive", complete=True)
    repaired = False
    if repair and found:
        stale_hot = [d.record for d in found if d.tier == "hot"]
        if stale_hot:
            await tiers.hot.drop(stale_hot, "repair")
        stale_archive = [d.record for d in found if d.tier == "archive"]
        if stale_archive:
            await _rearchive(
                tiers, thread, durable,
                [d.record for d in found if d.tier == "archive" and d.problem != MISSING],
            )  # fmt: skip
        repaired = True
    log_event("checkpointers.verify", tenant=tenant, thread_id=thread,
              differences=len(found), repaired=repaired)  # fmt: skip
    return ThreadReport(
        tenant=tenant,
        thread=thread,
        truth=truth_name,
        tiers=digests,
        differences=tuple(found),
        unreachable=tuple(unreachable),
        repaired=repaired,
    )


async def _rearchive(
    tiers: Tiers, thread: str, records: Sequence[Record], doomed: Sequence[RecordId]
) -> None:
    """Make the archive's copy of a thread that of the durable tier, verified."""
    archive = require_archive(tiers)
    if doomed:
        await archive.delete(doomed)
    copies = archive_copies(records, tiers.archive_retention)
    await archive.replicate(copies)
    stored = await archive.get_many([r.id for r in copies])
    for copy, got in zip(copies, stored, strict=True):
        if got is None or fingerprint(got) != fingerprint(copy):
            raise IntegrityError(f"archived copy of thread {thread!r} differs after repair")
