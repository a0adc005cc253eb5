"""The consistency report of `TieredStore.compare_thread` (private).

Which tier is the truth:

* the durable tier, whenever it holds the thread: the hot tier is a cache of it and the
  archive a copy of it (a thread restored from the archive, or archived and written to
  again);
* the archive, when the durable tier has nothing of the thread (it was archived): reads
  of the thread fall through to the archive, so a hot copy must agree with it.

What counts as a difference, by record:

* ``stale``: a warmer copy differs from the truth (version, routing fields or body);
* ``extra``: a warmer copy of a record the truth does not have (deleted, or erased while
  the hot tier was unreachable);
* ``missing``: the archive lacks a record of a thread it holds (the hot tier is a cache:
  records missing there are normal, not differences).

Copies are compared on what readers see: row version, sort, group, status, tokens,
lease and a SHA-256 of the body. Expiry and update time are not compared: each tier sets
its own (the hot TTL, the archive retention).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from checkpointers.record import Record, RecordId

__all__ = ["Difference", "ThreadReport", "TierDigest", "differences", "fingerprint", "summary"]

#: The problems `Difference.problem` names.
STALE, EXTRA, MISSING = "stale", "extra", "missing"


def fingerprint(record: Record) -> tuple[object, ...]:
    """What must agree between two copies of one record."""
    return (
        record.version,
        record.sort,
        record.group,
        record.status,
        tuple(sorted(record.tokens)),
        record.lease_until,
        hashlib.sha256(record.body).hexdigest(),
    )


@dataclass(frozen=True, slots=True)
class TierDigest:
    """One tier's view of a thread.

    Attributes:
        records: how many live records of the thread the tier holds.
        digest: SHA-256 over the identities and fingerprints of those records.
        latest_sort: the greatest `sort` among them ("" when none).
        latest_id: the identity of the record with that sort (None when none).
    """

    records: int
    digest: str
    latest_sort: str
    latest_id: RecordId | None


def summary(records: Sequence[Record]) -> TierDigest:
    """The `TierDigest` of a tier's records of one thread."""
    h = hashlib.sha256()
    for record in sorted(records, key=lambda r: r.id):
        h.update(repr((record.id, fingerprint(record))).encode())
    latest = max(records, key=lambda r: (r.sort, r.id), default=None)
    return TierDigest(
        records=len(records),
        digest=h.hexdigest(),
        latest_sort="" if latest is None else latest.sort,
        latest_id=None if latest is None else latest.id,
    )


@dataclass(frozen=True, slots=True)
class Difference:
    """One record on which a tier disagrees with the truth."""

    record: RecordId
    tier: str
    problem: str


@dataclass(frozen=True, slots=True)
class ThreadReport:
    """What `TieredStore.compare_thread` found for one thread.

    Attributes:
        tenant, thread: the thread compared.
        truth: the tier taken as the truth ("durable" or "archive"; "durable" when no
            tier holds the thread).
        tiers: each configured tier's `TierDigest`; a hot tier that could not be read
            (down, or skipped by its breaker) is absent and named in `unreachable`.
        differences: by record, in identity order.
        repaired: `repair=True` was asked and the differences were fixed.
    """

    tenant: str
    thread: str
    truth: str
    tiers: Mapping[str, TierDigest]
    differences: tuple[Difference, ...] = ()
    unreachable: tuple[str, ...] = ()
    repaired: bool = False

    @property
    def consistent(self) -> bool:
        """True when no tier disagrees with the truth and every tier could be read."""
        return not self.differences and not self.unreachable


def differences(
    truth: Sequence[Record], copy: Sequence[Record], tier: str, *, complete: bool
) -> list[Difference]:
    """How `copy` (a tier's records) disagrees with `truth`; with `complete`, a record
    the copy lacks is `missing` (the archive), else it is fine (a cache)."""
    want = {r.id: fingerprint(r) for r in truth}
    have = {r.id: fingerprint(r) for r in copy}
    found: list[Difference] = []
    for rid in sorted(want.keys() | have.keys()):
        if rid not in have:
            if complete:
                found.append(Difference(rid, tier, MISSING))
        elif rid not in want:
            found.append(Difference(rid, tier, EXTRA))
        elif have[rid] != want[rid]:
            found.append(Difference(rid, tier, STALE))
    return found
