"""`MemoryStore`: records in a dict, for tests and ephemeral runs.

It is also the reference implementation of the store protocol: the other stores must
behave as this one does in the shared suite.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from checkpointers.errors import ConflictError
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.stores.base import Store

__all__ = ["MemoryStore"]


def _order(record: Record) -> tuple[str, RecordId]:
    return (record.sort, record.id)


class MemoryStore(Store):
    """A store in process memory. Every method runs without awaiting, hence atomically.

    Records are also indexed by `(tenant, thread)`, so that a query or claim naming a
    thread looks at that thread's records only.
    """

    def __init__(self) -> None:
        self._records: dict[RecordId, Record] = {}
        self._threads: dict[tuple[str, str], dict[RecordId, Record]] = {}

    def _set(self, record: Record) -> None:
        self._records[record.id] = record
        rid = record.id
        self._threads.setdefault((rid.tenant, rid.thread), {})[rid] = record

    def _pop(self, record_id: RecordId) -> Record | None:
        record = self._records.pop(record_id, None)
        if record is not None:
            pair = (record_id.tenant, record_id.thread)
            members = self._threads[pair]
            del members[record_id]
            if not members:
                del self._threads[pair]
        return record

    def _candidates(self, tenant: str | None, thread: str | None) -> Iterable[Record]:
        """The records a query on `tenant` and `thread` can select (a superset)."""
        if thread is None:
            return self._records.values()
        if tenant is not None:
            return self._threads.get((tenant, thread), {}).values()
        return [
            r for (_, th), members in self._threads.items() if th == thread
            for r in members.values()
        ]  # fmt: skip

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryStore:
        if options:
            raise TypeError(f"memory:// takes no options, got {sorted(options)}")
        return cls()

    def _live(self, record_id: RecordId, now: float) -> Record | None:
        record = self._records.get(record_id)
        if record is not None and record.expires_at is not None and record.expires_at <= now:
            return None
        return record

    async def get(self, record_id: RecordId) -> Record | None:
        return self._live(record_id, time.time())

    async def get_many(self, record_ids: Sequence[RecordId]) -> list[Record | None]:
        now = time.time()
        return [self._live(rid, now) for rid in record_ids]

    async def put(self, record: Record, *, expected_version: int | None = None) -> int:
        now = time.time()
        current = self._live(record.id, now)
        current_version = 0 if current is None else current.version
        if expected_version is not None and expected_version != current_version:
            raise ConflictError(
                f"{record.id.describe()}: version is {current_version}, expected {expected_version}"
            )
        stored_version = self._records[record.id].version if record.id in self._records else 0
        version = max(current_version, stored_version) + 1
        self._set(record.stored_as(version, now))
        return version

    async def put_many(
        self, records: Sequence[Record], *, if_absent: bool = False
    ) -> list[int | None]:
        now = time.time()
        versions: list[int | None] = []
        for record in records:
            current = self._live(record.id, now)
            if if_absent and current is not None:
                versions.append(None)
                continue
            stored = self._records.get(record.id)
            version = (stored.version if stored is not None else 0) + 1
            self._set(record.stored_as(version, now))
            versions.append(version)
        return versions

    async def replicate(self, records: Sequence[Record]) -> None:
        for record in records:
            stored = self._records.get(record.id)
            if stored is None or stored.version <= record.version:
                self._set(record)

    async def find(self, query: Query) -> list[Record]:
        now = time.time()
        found = [r for r in self._candidates(query.tenant, query.thread) if query.matches(r, now)]
        if query.limit == 1 and found:  # latest(): no need to sort them all
            return [(max if query.descending else min)(found, key=_order)]
        found.sort(key=_order, reverse=query.descending)
        return found if query.limit is None else found[: query.limit]

    async def claim(self, claim: Claim) -> Record | None:
        now = claim.now()
        candidates = sorted(
            (r for r in self._candidates(claim.tenant, claim.thread) if claim.claimable(r, now)),
            key=_order,
        )
        if not candidates:
            return None
        chosen = candidates[0]
        claimed = replace(
            chosen,
            status=claim.to_status,
            lease_until=claim.lease_until,
            version=chosen.version + 1,
            updated_at=now,
        )
        self._set(claimed)
        return claimed

    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        now = time.time()
        count = 0
        for rid in record_ids:
            record = self._pop(rid)
            if record is not None and (record.expires_at is None or record.expires_at > now):
                count += 1
        return count

    def _delete_where(self, keep: Any) -> int:
        doomed = [rid for rid in self._records if not keep(rid)]
        for rid in doomed:
            self._pop(rid)
        return len(doomed)

    async def delete_thread(self, tenant: str, thread: str) -> int:
        doomed = list(self._threads.get((tenant, thread), {}))
        for rid in doomed:
            self._pop(rid)
        return len(doomed)

    async def delete_tenant(self, tenant: str) -> int:
        return self._delete_where(lambda rid: rid.tenant != tenant)

    async def threads(
        self, tenant: str | None, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        now = time.time()
        pairs = {
            pair
            for pair, members in self._threads.items()
            if (tenant is None or pair[0] == tenant)
            and pair[1]
            and (after is None or pair[1] > after)
            and any(r.expires_at is None or r.expires_at > now for r in members.values())
        }
        return sorted(pairs, key=lambda p: (p[1], p[0]))[:limit]

    async def scan(self, after: RecordId | None = None, *, limit: int = 500) -> list[Record]:
        ids = sorted(rid for rid in self._records if after is None or rid > after)[:limit]
        return [self._records[rid] for rid in ids]

    async def sweep(self, *, now: float | None = None, limit: int = 1000) -> int:
        moment = time.time() if now is None else now
        doomed = [
            rid
            for rid, r in self._records.items()
            if r.expires_at is not None and r.expires_at <= moment
        ][:limit]
        for rid in doomed:
            self._pop(rid)
        return len(doomed)

    async def ping(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"MemoryStore(records={len(self._records)})"
