"""Runs as queues of leased step records, over the public `EncryptedStore` API.

A run is the records of one thread and kind in a store, one record per step (a
pydantic-graph snapshot, say). Each step's clear routing fields say where it stands:

- `sort`: a zero-padded sequence taken from the clock, above every step the run has, so
  steps keep their insertion order across processes;
- `status`: `created` -> `pending` (claimed) -> `running` -> `success` or `error`, or `end`
  for the step that closes the run;
- `lease_until`: while `pending` or `running`, the time until which the claim holds. A
  step whose lease ended may be claimed again; `RunRecords.requeue` puts the steps of a
  dead worker back to `created` at once.

Bodies are the caller's plaintext: every transition that rewrites one takes a function
from the old body to the new, so nothing here knows a framework. Every time is read from
one injected wall clock (epoch seconds), the clock the leases are written in.

`list_runs` summarizes every run of a kind from routing fields only (nothing decrypted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from checkpointers.encrypted import EncryptedStore, Entry
from checkpointers.errors import ConflictError, StoreUnavailableError
from checkpointers.record import Claim, Query, Record, RecordId

__all__ = ["END", "LeasedStep", "RunRecords", "RunSummary", "list_runs"]

#: Status of the step that closes a run (it is never claimed, run or leased).
END = "end"

_CREATED = "created"
_PENDING = "pending"
_RUNNING = "running"
_SUCCESS = "success"
_IN_FLIGHT = (_PENDING, _RUNNING)
_SORT_DIGITS = 20
_CAS_ATTEMPTS = 16
_MAX_HELD = 64

#: A new body from the old one.
Rewrite = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """Where a run stands, from routing fields only (nothing is decrypted).

    `status` is the first that applies: `finished` (an end snapshot exists), `stuck` (a
    pending/running snapshot whose lease expired: a dead worker), `active` (a live lease),
    `failed` (the last node raised), `queued` (a created snapshot waits), `interrupted`
    (the last node succeeded but its successor was never saved: `recover()` requeues it).
    A snapshot is one step record of the run; `snapshots` counts them.
    """

    run_id: str
    status: str
    snapshots: int
    updated_at: float


def _summarize(run_id: str, records: list[Record], now: float) -> RunSummary:
    statuses = [r.status for r in records]
    in_flight = [r for r in records if r.status in _IN_FLIGHT]
    last = max(records, key=lambda r: (r.sort, r.id)).status
    if END in statuses:
        status = "finished"
    elif any(r.lease_until is None or r.lease_until < now for r in in_flight):
        status = "stuck"
    elif in_flight:
        status = "active"
    elif last == "error":
        status = "failed"
    elif _CREATED in statuses:
        status = "queued"
    else:
        status = "interrupted"
    return RunSummary(run_id, status, len(records), max(r.updated_at for r in records))


async def list_runs(
    store: EncryptedStore,
    *,
    kind: str,
    namespace: str,
    now: float,
    statuses: Collection[str] | None = None,
    older_than: float | None = None,
    limit: int | None = None,
) -> list[RunSummary]:
    """The runs of `kind` in the store's tenant as of `now`, least recently updated first.

    Reads the routing fields of every record of the kind (no key needed). `statuses`,
    `older_than` (seconds without an update) and `limit` filter as in
    `checkpointers.pydantic_graph.StatePersistence.list_runs`.

    Raises:
        StoreUnavailableError: the store failed.
    """
    by_run: dict[str, list[Record]] = {}
    for record in await store.find_records(store.query(kind=kind, namespace=namespace)):
        by_run.setdefault(record.id.thread, []).append(record)
    runs = [
        run
        for run in (_summarize(run_id, records, now) for run_id, records in by_run.items())
        if (statuses is None or run.status in statuses)
        and (older_than is None or run.updated_at <= now - older_than)
    ]
    runs.sort(key=lambda run: (run.updated_at, run.run_id))
    return runs if limit is None else runs[:limit]


class LeasedStep:
    """A `running` step whose lease is renewed in the background until it is finished.

    Made by `RunRecords.start`; the renewal task lives on the loop that started the step.
    """

    def __init__(self, run: RunRecords, entry: Entry, *, renew: bool) -> None:
        self.entry = entry
        self._run = run
        self._stop = asyncio.Event()
        self._renewer = asyncio.create_task(self._renew()) if renew else None

    async def _renew(self) -> None:
        """Extend the lease every third of it, until stopped or the lease is lost."""
        while True:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._run.lease_seconds / 3)
            if self._stop.is_set():
                return
            try:
                self.entry = await self._run.store.update(
                    self.entry, lease_until=self._run.lease_until()
                )
            except ConflictError:
                return  # taken over by another worker: the final write will say so
            except StoreUnavailableError:
                continue  # transient: try again at the next tick, the lease has slack

    async def finish(self, status: str, rewrite: Rewrite) -> None:
        """Stop renewing, then write `status` (`success` or `error`) and drop the lease.

        Raises:
            ConflictError: another worker took the step over meanwhile.
            StoreUnavailableError: the store failed.
        """
        self._stop.set()
        if self._renewer is not None:
            await self._renewer
        entry = self.entry
        try:
            await self._run.store.update(
                entry, rewrite(entry.data), status=status, lease_until=None
            )
        except ConflictError as exc:
            raise ConflictError(
                f"{entry.id.describe()}: lost its lease while the node ran "
                "(another worker took it over; the node may run twice)"
            ) from exc

    def abandon(self) -> None:
        """Stop renewing and write nothing (the step stays `running` until its lease ends)."""
        if self._renewer is not None:
            self._renewer.cancel()


class RunRecords:
    """The step records of one run: ordered inserts, claims, leases, requeue.

    Args:
        store: the record API (borrowed).
        run_id: the run, the records' thread.
        kind: the records' kind.
        namespace: the records' namespace.
        lease_seconds: how long a claim holds without renewal.
        clock: the wall clock (epoch seconds) of leases and sort keys.

    The steps it inserted or claimed are kept as written (a bounded few), so `start` needs
    no read: compare-and-set catches any change since.
    """

    def __init__(
        self,
        store: EncryptedStore,
        *,
        run_id: str,
        kind: str,
        namespace: str,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.kind = kind
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._last_seq: int | None = None
        self._held: dict[str, Entry] = {}

    def record_id(self, key: str) -> RecordId:
        """The identity of the step `key`."""
        return self.store.record_id(self.run_id, self.namespace, self.kind, key)

    def query(self, **fields: Any) -> Query:
        """A query over this run's steps."""
        return self.store.query(
            kind=self.kind, thread=self.run_id, namespace=self.namespace, **fields
        )

    def lease_until(self) -> float:
        """The end of a lease taken now."""
        return self.clock() + self.lease_seconds

    async def _next_sort(self) -> str:
        """A sort key above every one this run has, time-ordered across processes."""
        if self._last_seq is None:
            latest = await self.store.find_records(self.query(limit=1, descending=True))
            stored = int(latest[0].sort) if latest and latest[0].sort.isdigit() else 0
            self._last_seq = max(self._last_seq or 0, stored)  # another call may have set it
        seq = max(int(self.clock() * 1_000_000_000), self._last_seq + 1)
        self._last_seq = seq
        return f"{seq:0{_SORT_DIGITS}d}"

    def _hold(self, entry: Entry) -> None:
        self._held[entry.id.key] = entry
        while len(self._held) > _MAX_HELD:
            del self._held[next(iter(self._held))]

    async def insert(self, key: str, data: bytes, *, end: bool = False) -> bool:
        """Add a `created` step (or the `end` step) after every other; False if `key` exists.

        Raises:
            RecordTooLargeError, StoreUnavailableError.
        """
        try:
            entry = await self.store.put(
                self.record_id(key),
                data,
                expected_version=0,
                sort=await self._next_sort(),
                status=END if end else _CREATED,
            )
        except ConflictError:
            return False
        if not end:
            self._hold(entry)
        return True

    async def claim(self) -> Entry | None:
        """Atomically take the oldest `created` step (or one whose lease ended) as `pending`.

        Raises:
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        entry = await self.store.claim(
            Claim(
                tenant=self.store.tenant,
                thread=self.run_id,
                kind=self.kind,
                statuses=(_CREATED,),
                to_status=_PENDING,
                lease_until=self.lease_until(),
                reclaim_expired=True,
                at=self.clock(),
            )
        )
        if entry is not None:
            self._hold(entry)
        return entry

    async def start(
        self,
        key: str,
        check: Callable[[str | None], None],
        rewrite: Rewrite,
        *,
        renew: bool,
    ) -> LeasedStep:
        """Move step `key` to `running` with compare-and-set, leased (and renewed if asked).

        `check` gets the step's status (None: no such step) and raises to refuse it; it
        must refuse None.

        Raises:
            ConflictError: too much contention.
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        rid = self.record_id(key)
        held = self._held.pop(key, None)
        for _ in range(_CAS_ATTEMPTS):
            entry = held if held is not None else await self.store.get(rid)
            held = None
            check(None if entry is None else entry.record.status)
            if entry is None:  # pragma: no cover - `check` refuses it
                raise LookupError(rid.describe())
            try:
                entry = await self.store.update(
                    entry, rewrite(entry.data), status=_RUNNING, lease_until=self.lease_until()
                )
            except ConflictError:
                continue  # changed meanwhile (claimed, renewed, started): look again
            return LeasedStep(self, entry, renew=renew)
        raise ConflictError(f"{rid.describe()}: too much contention to start the node")

    async def requeue(self, rewrite: Rewrite, *, only_expired: bool = False) -> int:
        """Put back to `created` the steps a dead worker left `pending` or `running`, and
        the last step if it succeeded with no successor; `only_expired`: expired leases only.

        Returns:
            How many steps were requeued.

        Raises:
            ConflictError: too much contention.
            IntegrityError, KeyUnavailableError, StoreUnavailableError.
        """
        now = self.clock()
        requeued = 0
        for entry in await self.store.find(self.query(statuses=_IN_FLIGHT)):
            lease = entry.record.lease_until
            if only_expired and (lease is None or lease >= now):
                continue
            if await self._requeue(entry, _IN_FLIGHT, rewrite):
                requeued += 1
        if not only_expired:
            last = await self.store.latest(self.query())
            if (
                last is not None
                and last.record.status == _SUCCESS
                and await self._requeue(last, (_SUCCESS,), rewrite)
            ):
                requeued += 1
        return requeued

    async def _requeue(self, entry: Entry, statuses: tuple[str, ...], rewrite: Rewrite) -> bool:
        current: Entry | None = entry
        for _ in range(_CAS_ATTEMPTS):
            if current is None or current.record.status not in statuses:
                return False
            try:
                await self.store.update(
                    current, rewrite(current.data), status=_CREATED, lease_until=None
                )
            except ConflictError:
                current = await self.store.get(entry.id)
                continue
            return True
        raise ConflictError(f"{entry.id.describe()}: too much contention to requeue")
