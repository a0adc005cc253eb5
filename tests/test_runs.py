"""`checkpointers.runs`: ordered steps, claims, leases and requeue over the record API,
with no framework, on every store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from checkpointers import ConflictError, EncryptedStore, Store
from checkpointers.runs import RunRecords, list_runs
from checkpointers.testing import deterministic_key_ring

KIND = "test.step"


class FakeClock:
    """A wall clock that moves only when the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def encrypted(any_store: Store) -> AsyncIterator[EncryptedStore]:
    """The record API over every store, with deterministic test keys."""
    async with EncryptedStore(any_store, deterministic_key_ring()) as store:
        yield store


def run_of(store: EncryptedStore, clock: FakeClock, run_id: str = "run-1") -> RunRecords:
    return RunRecords(
        store, run_id=run_id, kind=KIND, namespace="", lease_seconds=10.0, clock=clock
    )


def refuse_missing(status: str | None) -> None:
    if status is None:
        raise LookupError("no such step")


async def test_steps_keep_insertion_order_across_objects(encrypted: EncryptedStore) -> None:
    """Sort keys come from the clock and stay above every stored step, even when a second
    object of the run has a clock that lags behind."""
    ahead, behind = FakeClock(2_000_000_000.0), FakeClock(1_000_000_000.0)
    assert await run_of(encrypted, ahead).insert("a", b"1")
    assert await run_of(encrypted, behind).insert("b", b"2")
    assert not await run_of(encrypted, behind).insert("a", b"again")  # insert-if-absent
    steps = await encrypted.find(run_of(encrypted, ahead).query())
    assert [(s.id.key, s.data) for s in steps] == [("a", b"1"), ("b", b"2")]
    assert steps[0].record.sort == f"{2_000_000_000 * 10**9:020d}"


async def test_start_claim_finish_and_lost_lease(encrypted: EncryptedStore) -> None:
    """A claimed step starts leased by the clock, finishes without a lease, and a worker
    that lost its step to another gets ConflictError."""
    clock = FakeClock(4_000_000_000.0)  # leases far in the future for the store
    run = run_of(encrypted, clock)
    with pytest.raises(LookupError):
        await run.start("nope", refuse_missing, bytes, renew=False)
    await run.insert("a", b"body")
    claimed = await run.claim()
    assert claimed is not None and claimed.record.status == "pending"
    assert claimed.record.lease_until == clock.now + 10
    step = await run.start("a", refuse_missing, lambda data: data + b"+run", renew=False)
    assert (step.entry.record.status, step.entry.data) == ("running", b"body+run")
    await step.finish("success", lambda data: data + b"+ok")
    (done,) = await encrypted.find(run.query())
    assert (done.record.status, done.record.lease_until, done.data) == (
        "success",
        None,
        b"body+run+ok",
    )

    await run.insert("b", b"body")
    lost = await run.start("b", refuse_missing, bytes, renew=True)
    await run_of(encrypted, clock).requeue(bytes)  # another process requeues it
    with pytest.raises(ConflictError, match="lost its lease"):
        await lost.finish("success", bytes)


async def test_requeue_and_list_runs_follow_the_clock(encrypted: EncryptedStore) -> None:
    """Expired leases are judged by the injected clock, in requeue and in list_runs."""
    clock = FakeClock(4_000_000_000.0)
    run = run_of(encrypted, clock)
    await run.insert("a", b"body")
    assert await run.claim() is not None

    async def statuses(**filters: float) -> list[str]:
        found = await list_runs(encrypted, kind=KIND, namespace="", now=clock.now, **filters)
        return [summary.status for summary in found]

    assert await statuses() == ["active"]
    assert await run.requeue(bytes, only_expired=True) == 0
    clock.now += 11
    assert await statuses() == ["stuck"]
    assert await run.requeue(lambda data: data + b"+requeued", only_expired=True) == 1
    (step,) = await encrypted.find(run.query())
    assert (step.record.status, step.record.lease_until) == ("created", None)
    assert step.data == b"body+requeued"
    assert await statuses() == ["queued"]
    await run.insert("end", b"", end=True)
    assert await statuses() == ["finished"]
    assert await statuses(older_than=10**10) == []
