"""The write-behind queue of `TieredStore`: writes acknowledged in the hot tier, not yet
in the durable one.

`WriteQueue` keeps them in order and flushes them, a batch at a time, with one durable
`put_many` per run of writes of one kind (upsert, or insert-if-absent). A background task
flushes at least every `flush_interval` seconds, and at once when `max_pending` writes
wait. A flush that fails keeps its batch queued and is retried with backoff; the failure
is kept in `failure` until a flush succeeds, for the store to raise on the next write.

`TieredStore` owns the rules (which writes may be queued, what the hot tier gets after a
flush); this module owns the queue, its order and its task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from checkpointers.errors import StoreUnavailableError
from checkpointers.observability import record_failover
from checkpointers.record import Query, Record, RecordId

__all__ = ["Backoff", "WriteQueue", "merge_pending", "pending_in_scope", "widen"]

#: Writes a batch to the durable tier: `put_many(records, if_absent=...)`.
Writer = Callable[[list[Record], bool], Awaitable[list[int | None]]]
#: Told what a flushed run left durable: the records, their versions (None: skipped).
Settler = Callable[[list[Record], list[int | None]], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """Delays between retries of a failed flush: `initial`, doubling up to `maximum`."""

    initial: float = 0.1
    maximum: float = 5.0

    def delay(self, attempt: int) -> float:
        """The delay before retry number `attempt` (1 for the first retry)."""
        return min(self.maximum, self.initial * 2.0 ** max(0, attempt - 1))


@dataclass(frozen=True)
class _Entry:
    record: Record
    if_absent: bool


def _runs(entries: Sequence[_Entry]) -> list[list[_Entry]]:
    """Consecutive entries of one kind (a durable `put_many` each)."""
    runs: list[list[_Entry]] = []
    for entry in entries:
        if runs and runs[-1][0].if_absent == entry.if_absent:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


class WriteQueue:
    """Acknowledged writes waiting for the durable tier, in order.

    Args:
        write: writes a run to the durable tier (`Store.put_many`).
        settle: called after each run is durable, with the tier's answers.
        flush_interval: seconds between flushes of the background task (at most).
        max_pending: writes that wake the task at once (and make writers flush).
        backoff: delays between retries of a failed flush.

    `sleep` is what the background task waits with (replaced by tests to drive it).
    """

    def __init__(
        self,
        write: Writer,
        settle: Settler,
        *,
        flush_interval: float,
        max_pending: int,
        backoff: Backoff | None = None,
    ) -> None:
        self._write = write
        self._settle = settle
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.backoff = backoff or Backoff()
        self.sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
        self._entries: list[_Entry] = []
        #: The newest queued record of each identity (what reads must see).
        self.latest: dict[RecordId, Record] = {}
        # Identities whose hot write is in flight, not yet queued: not repopulated.
        self._reserved: dict[RecordId, int] = {}
        #: The error of the last flush, until one succeeds.
        self.failure: StoreUnavailableError | None = None
        self.flushes = 0
        # One flush at a time, so that batches (and deletes, which take it too) land
        # in the order they were acknowledged. It guards the queue only, never I/O of
        # other operations.
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    # -- writers ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def reserve(self, record_ids: Sequence[RecordId]) -> Iterator[None]:
        """Mark identities whose hot write is in flight (see `is_pending`)."""
        for rid in record_ids:
            self._reserved[rid] = self._reserved.get(rid, 0) + 1
        try:
            yield
        finally:
            for rid in record_ids:
                left = self._reserved[rid] - 1
                if left:
                    self._reserved[rid] = left
                else:
                    del self._reserved[rid]

    def is_pending(self, record_id: RecordId) -> bool:
        """Whether a write of `record_id` is queued or on its way to the queue."""
        return record_id in self.latest or record_id in self._reserved

    def add(self, records: Sequence[Record], *, if_absent: bool) -> None:
        """Queue acknowledged writes (records carry the versions the caller was given)."""
        for record in records:
            self._entries.append(_Entry(record, if_absent))
            self.latest[record.id] = record
        self.start()
        if len(self._entries) >= self.max_pending:
            self._wake.set()

    # -- flushing ---------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write every queued record to the durable tier; returns how many were written.

        Raises:
            StoreUnavailableError: the durable tier failed; the unwritten records stay
                queued, in order.
        """
        async with self._lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> int:
        done = 0
        try:
            for run in _runs(list(self._entries)):
                records = [e.record for e in run]
                versions = await self._write(records, run[0].if_absent)
                del self._entries[: len(run)]
                for record in records:
                    if self.latest.get(record.id) is record:
                        del self.latest[record.id]
                done += len(run)
                await self._settle(records, versions)
        except StoreUnavailableError as exc:
            if self.failure is None:
                record_failover("durable", "queue", operation="flush",
                                error=type(exc).__name__)  # fmt: skip
            self.failure = exc
            raise
        if self.failure is not None and done:
            record_failover("queue", "durable", operation="flush")
        if done:
            self.failure = None
            self.flushes += 1
        return done

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold off flushes (a delete must not race a batch of what it deletes)."""
        async with self._lock:
            yield

    def discard(self, doomed: Callable[[RecordId], bool]) -> int:
        """Drop queued writes whose identity is `doomed` (hold `exclusive` around it)."""
        kept = [e for e in self._entries if not doomed(e.record.id)]
        dropped = len(self._entries) - len(kept)
        self._entries = kept
        self.latest = {rid: r for rid, r in self.latest.items() if not doomed(rid)}
        return dropped

    async def _run(self) -> None:
        """The background task: flush every interval, on a wake-up, and retry failures."""
        attempt = 0
        while True:
            delay = self.flush_interval if attempt == 0 else self.backoff.delay(attempt)
            await self._wait(delay)
            if not self._entries:
                attempt = 0
                continue
            try:
                await self.flush()
            except StoreUnavailableError:
                attempt += 1
            else:
                attempt = 0

    async def _wait(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self.sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        self._wake.clear()

    def start(self) -> None:
        """Start the background task unless it runs."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the background task (queued writes stay queued)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def merge_pending(
    query: Query, durable: Sequence[Record], pending: dict[RecordId, Record]
) -> list[Record]:
    """The answer to `query` over the durable records found (at least `limit` plus the
    number of pending identities) with the queued writes in front of them."""
    now = time.time()
    merged = {r.id: r for r in durable if r.id not in pending}
    merged.update((rid, r) for rid, r in pending.items() if query.matches(r, now))
    ordered = sorted(merged.values(), key=lambda r: (r.sort, r.id), reverse=query.descending)
    return ordered if query.limit is None else ordered[: query.limit]


def pending_in_scope(query: Query, pending: dict[RecordId, Record]) -> dict[RecordId, Record]:
    """Queued records a query on `query`'s tenant and thread could be about."""
    return {
        rid: r
        for rid, r in pending.items()
        if (query.tenant is None or rid.tenant == query.tenant)
        and (query.thread is None or rid.thread == query.thread)
    }


def widen(query: Query, extra: int) -> Query:
    """`query` with room for `extra` more results (some found may be superseded)."""
    return query if query.limit is None else replace(query, limit=query.limit + extra)
