"""Group commit: batches of writes that arrive while one is in flight go out as one.

A store's `put_many` is one statement (or one script call) whatever its size, and most of
its client cost is per call (checking out a connection, encoding, a round trip), not per
record. Under concurrency many small batches arrive at once: the first goes out at once,
the ones arriving while it is in flight wait and then go out together, merged into one
call, and each caller gets back exactly its own results.

Merging keeps each caller's semantics: `put_many` of a merged batch gives every record
the version it would have had if the batches had been sent one after the other in
arrival order (the stores apply repeats of an identity in turn, within one batch). All
of a merged call succeeds or fails together: a failure is raised to every caller in it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from checkpointers.record import Record

__all__ = ["GroupCommit"]

Send = Callable[[Sequence[Record], bool], Awaitable[list[int | None]]]


@dataclass
class _Lane:
    """Writes of one kind (upsert or insert-if-absent): what waits, what is in flight."""

    waiting: deque[tuple[Sequence[Record], asyncio.Future[list[int | None]]]] = field(
        default_factory=deque
    )
    in_flight: int = 0


class GroupCommit:
    """Merges `put_many` batches that arrive while `max_in_flight` calls are running.

    Args:
        send: the store's own batch write, `send(records, if_absent) -> versions`.
        max_in_flight: calls of one kind allowed to run at once before new batches wait
            to be merged (a store's pool allows some concurrency; beyond it, merging is
            cheaper than queueing for a connection).
        max_records: at most this many records in one merged call.
    """

    def __init__(self, send: Send, *, max_in_flight: int = 2, max_records: int = 2000) -> None:
        self._send = send
        self._max_in_flight = max_in_flight
        self._max_records = max_records
        self._lanes = {False: _Lane(), True: _Lane()}
        self._tasks: set[asyncio.Task[None]] = set()

    async def put_many(self, records: Sequence[Record], *, if_absent: bool) -> list[int | None]:
        """Write `records` (atomically, as `Store.put_many`), merged with others waiting."""
        lane = self._lanes[if_absent]
        if lane.in_flight < self._max_in_flight and not lane.waiting:
            # Nothing to merge with: send now, on the caller's own task (no hop).
            lane.in_flight += 1
            try:
                return await self._send(records, if_absent)
            finally:
                lane.in_flight -= 1
                self._drain_later(if_absent)
        future: asyncio.Future[list[int | None]] = asyncio.get_running_loop().create_future()
        lane.waiting.append((records, future))
        # A caller cancelled while waiting cancels the future: the drain then skips it
        # (nothing was sent for it). Once sent, the merged call runs to its end for the
        # others; the cancelled caller's writes may then have been applied.
        return await future

    def _drain_later(self, if_absent: bool) -> None:
        lane = self._lanes[if_absent]
        if lane.waiting and lane.in_flight < self._max_in_flight:
            lane.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._drain(if_absent))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, lane: _Lane) -> list[tuple[Sequence[Record], asyncio.Future[list[int | None]]]]:
        """The waiting batches of the next merged call (callers that left are dropped)."""
        taken: list[tuple[Sequence[Record], asyncio.Future[list[int | None]]]] = []
        size = 0
        while lane.waiting:
            records, future = lane.waiting[0]
            if taken and size + len(records) > self._max_records:
                break
            lane.waiting.popleft()
            if not future.done():
                taken.append((records, future))
                size += len(records)
        return taken

    async def _drain(self, if_absent: bool) -> None:
        lane = self._lanes[if_absent]
        try:
            while taken := self._take(lane):
                merged = [record for records, _ in taken for record in records]
                try:
                    versions = await self._send(merged, if_absent)
                except asyncio.CancelledError:
                    for _, future in taken:
                        future.cancel()
                    raise
                except Exception as exc:
                    for _, future in taken:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for records, future in taken:
                    end = start + len(records)
                    if not future.done():
                        future.set_result(versions[start:end])
                    start = end
        finally:
            lane.in_flight -= 1

    async def aclose(self) -> None:
        """Wait for merged calls in flight (their callers are waiting for them)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
