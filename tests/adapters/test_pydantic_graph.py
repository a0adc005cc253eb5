"""pydantic-graph `StatePersistence` on every store: upstream semantics, claims, leases, resume."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic_graph import BaseNode, End, GraphRunContext
from pydantic_graph.exceptions import GraphNodeStatusError, GraphRuntimeError
from pydantic_graph.graph import Graph
from pydantic_graph.persistence import EndSnapshot, NodeSnapshot, Snapshot
from pydantic_graph.persistence.in_mem import FullStatePersistence

from checkpointers import (
    ConfigurationError,
    EncryptedStore,
    Entry,
    IntegrityError,
    KeyUnavailableError,
    SerializationError,
)
from checkpointers.pydantic_graph import StatePersistence
from checkpointers.record import INDEX_KEY_KIND
from checkpointers.stores import SqliteStore, Store
from checkpointers.testing import deterministic_key_ring

ROOT = Path(__file__).resolve().parents[2]
CANARY = "canary-7f3e9b1c-never-in-clear"


# -- a small graph --------------------------------------------------------------------


@dataclass
class Counter:
    """Graph state: a running total, and a string that must never reach storage in clear."""

    total: int = 0
    secret: str = ""
    seen: list[int] = field(default_factory=list)


class Crash(BaseException):
    """Stands for the process dying mid-node (not an `Exception`: nothing records it)."""


@dataclass
class Tracker:
    """Graph deps: which nodes ran, and where to crash or fail."""

    ran: list[str] = field(default_factory=list)
    crash_on: int | None = None
    fail_on: int | None = None
    slow_on: int | None = None


@dataclass
class Add(BaseNode[Counter, Tracker, int]):
    """Adds `n` to the total, then goes on to `n + 1` until 4."""

    n: int

    async def run(self, ctx: GraphRunContext[Counter, Tracker]) -> Add | Finish:
        ctx.deps.ran.append(f"Add({self.n})")
        if ctx.deps.crash_on == self.n:
            raise Crash
        if ctx.deps.slow_on == self.n:
            await asyncio.sleep(0.2)
        if ctx.deps.fail_on == self.n:
            raise ValueError(f"node failed {ctx.state.secret}")
        ctx.state.total += self.n
        ctx.state.seen.append(self.n)
        return Add(self.n + 1) if self.n < 4 else Finish()


@dataclass
class Finish(BaseNode[Counter, Tracker, int]):
    """Ends the run with the total."""

    async def run(self, ctx: GraphRunContext[Counter, Tracker]) -> End[int]:
        ctx.deps.ran.append("Finish")
        return End(ctx.state.total)


GRAPH: Graph[Counter, Tracker, int] = Graph(nodes=[Add, Finish])
EXPECTED_RAN = ["Add(1)", "Add(2)", "Add(3)", "Add(4)", "Finish"]


@dataclass
class Opaque:
    """A state pydantic cannot serialize."""

    thing: Any = None


@dataclass
class Touch(BaseNode[Opaque, None, None]):
    """A node of the unserializable-state graph."""

    async def run(self, ctx: GraphRunContext[Opaque]) -> End[None]:
        return End(None)


OPAQUE_GRAPH: Graph[Opaque, None, None] = Graph(nodes=[Touch])


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
async def raw_store(any_store: Store) -> Store:
    """Every store the adapter must work on, on real services (tests/backends.py)."""
    return any_store


@pytest.fixture
async def encrypted(raw_store: Store) -> AsyncIterator[EncryptedStore]:
    """The record API over the store, with deterministic test keys."""
    async with EncryptedStore(raw_store, deterministic_key_ring()) as store:
        yield store


def persistence_for(
    store: EncryptedStore, run_id: str = "run-1", **options: Any
) -> StatePersistence[Counter, int]:
    persistence: StatePersistence[Counter, int] = StatePersistence(store, run_id=run_id, **options)
    persistence.set_graph_types(GRAPH)
    return persistence


def shape(history: list[Snapshot[Counter, int]]) -> list[tuple[Any, ...]]:
    """What must match upstream: kind, status, state, node (or result)."""
    out: list[tuple[Any, ...]] = []
    for snap in history:
        if isinstance(snap, NodeSnapshot):
            out.append(("node", snap.status, snap.state, snap.node))
        else:
            out.append(("end", None, snap.state, snap.result.data))
    return out


async def upstream_history() -> list[Snapshot[Counter, int]]:
    reference: FullStatePersistence[Counter, int] = FullStatePersistence()
    await GRAPH.run(Add(1), state=Counter(secret=CANARY), deps=Tracker(), persistence=reference)
    return await reference.load_all()


async def run_to_end(persistence: StatePersistence[Counter, int], deps: Tracker) -> int:
    async with GRAPH.iter_from_persistence(persistence, deps=deps) as run:
        async for _ in run:
            pass
    assert run.result is not None
    return run.result.output


# -- end to end -----------------------------------------------------------------------


async def test_graph_run_matches_full_state_persistence(encrypted: EncryptedStore) -> None:
    """A real run saves the same snapshots (kinds, statuses, states) as FullStatePersistence."""
    persistence = persistence_for(encrypted)
    deps = Tracker()
    result = await GRAPH.run(
        Add(1), state=Counter(secret=CANARY), deps=deps, persistence=persistence
    )
    assert result.output == 10
    assert deps.ran == EXPECTED_RAN
    history = await persistence.load_all()
    assert shape(history) == shape(await upstream_history())
    for snap in history:
        if isinstance(snap, NodeSnapshot):
            assert snap.start_ts is not None and snap.start_ts.tzinfo is not None
            assert isinstance(snap.duration, float)
            assert snap.node.get_snapshot_id() == snap.id
        else:
            assert isinstance(snap, EndSnapshot)
            assert snap.result.get_snapshot_id() == snap.id


async def test_iter_from_persistence_one_node_per_worker(encrypted: EncryptedStore) -> None:
    """initialize, then one node per fresh instance via iter_from_persistence, as in a queue."""
    await GRAPH.initialize(Add(1), persistence_for(encrypted), state=Counter(secret=CANARY))
    deps = Tracker()
    for _ in range(10):
        worker = persistence_for(encrypted)
        async with GRAPH.iter_from_persistence(worker, deps=deps) as run:
            if isinstance(await run.next(), End):
                break
    assert deps.ran == EXPECTED_RAN
    history = await persistence_for(encrypted).load_all()
    assert shape(history) == shape(await upstream_history())


async def test_load_all_keeps_insertion_order_and_history_is_frozen(
    encrypted: EncryptedStore,
) -> None:
    """Snapshots come back in insertion order with the state as it was when saved."""
    persistence = persistence_for(encrypted)
    state = Counter()
    for n in range(1, 6):
        state.total = n
        await persistence.snapshot_node(state, Add(n))
    state.total = 99
    history = await persistence.load_all()
    assert [s.state.total for s in history] == [1, 2, 3, 4, 5]
    assert [s.node for s in history] == [Add(n) for n in range(1, 6)]


async def test_snapshot_node_if_new_inserts_once(encrypted: EncryptedStore) -> None:
    """Concurrent snapshot_node_if_new calls with one id store one snapshot, the first."""
    workers = [persistence_for(encrypted) for _ in range(10)]
    await asyncio.gather(
        *(
            w.snapshot_node_if_new("Add:fixed", Counter(total=i), Add(i))
            for i, w in enumerate(workers)
        )
    )
    history = await workers[0].load_all()
    assert [s.id for s in history] == ["Add:fixed"]
    await workers[0].snapshot_node_if_new("Add:fixed", Counter(total=123), Add(9))
    again = await workers[0].load_all()
    assert again[0].state == history[0].state


# -- record_run -----------------------------------------------------------------------


async def test_record_run_unknown_id_raises_upstream_lookup_error(
    encrypted: EncryptedStore,
) -> None:
    """An unknown id raises LookupError with upstream's exact message."""
    persistence = persistence_for(encrypted)
    with pytest.raises(LookupError) as info:
        async with persistence.record_run("Add:nope"):
            pass
    assert str(info.value) == "No snapshot found with id='Add:nope'"


async def test_record_run_state_machine_and_errors(encrypted: EncryptedStore) -> None:
    """created -> running -> success; a second run raises GraphNodeStatusError as upstream."""
    persistence = persistence_for(encrypted)
    node = Add(1)
    await persistence.snapshot_node(Counter(), node)
    sid = node.get_snapshot_id()
    async with persistence.record_run(sid):
        (running,) = await persistence.load_all()
        assert isinstance(running, NodeSnapshot)
        assert running.status == "running"
        assert running.start_ts is not None and running.start_ts.tzinfo is not None
        with pytest.raises(GraphNodeStatusError) as nested:
            async with persistence.record_run(sid):
                pass
        assert str(nested.value) == (
            "Incorrect snapshot status 'running', must be 'created' or 'pending'."
        )
    (done,) = await persistence.load_all()
    assert isinstance(done, NodeSnapshot)
    assert done.status == "success"
    assert isinstance(done.duration, float) and done.duration >= 0
    with pytest.raises(GraphNodeStatusError) as info:
        async with persistence.record_run(sid):
            pass
    assert str(info.value) == "Incorrect snapshot status 'success', must be 'created' or 'pending'."


async def test_record_run_records_error_and_reraises(encrypted: EncryptedStore) -> None:
    """An exception in the body sets status error with a duration, and propagates."""
    persistence = persistence_for(encrypted)
    node = Add(1)
    await persistence.snapshot_node(Counter(), node)
    sid = node.get_snapshot_id()
    with pytest.raises(ValueError, match="boom"):
        async with persistence.record_run(sid):
            raise ValueError("boom")
    (snap,) = await persistence.load_all()
    assert isinstance(snap, NodeSnapshot)
    assert snap.status == "error"
    assert isinstance(snap.duration, float)
    with pytest.raises(GraphNodeStatusError, match="'error'"):
        async with persistence.record_run(sid):
            pass


async def test_record_run_of_end_snapshot_is_refused(encrypted: EncryptedStore) -> None:
    """An end snapshot's id cannot be recorded as a node run."""
    persistence = persistence_for(encrypted)
    end: End[int] = End(1)
    await persistence.snapshot_end(Counter(), end)
    with pytest.raises(GraphRuntimeError):
        async with persistence.record_run(end.get_snapshot_id()):
            pass


async def test_record_run_compare_and_set_lets_one_worker_run(
    encrypted: EncryptedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers that both read `created` race on the row version: one runs, one fails."""
    node = Add(1)
    await persistence_for(encrypted).snapshot_node(Counter(), node)
    both_read = asyncio.Event()  # a barrier of two (asyncio.Barrier needs 3.11)
    reads = 0
    original_get = encrypted.get

    async def get_then_meet(record_id: Any) -> Entry | None:
        nonlocal reads
        entry = await original_get(record_id)
        reads += 1
        if reads == 2:
            both_read.set()
        if reads <= 2:
            await both_read.wait()  # both workers have read `created` before either writes
        return entry

    monkeypatch.setattr(encrypted, "get", get_then_meet)

    async def attempt(worker: StatePersistence[Counter, int]) -> str:
        try:
            async with worker.record_run(node.get_snapshot_id()):
                return "ran"
        except GraphNodeStatusError as exc:
            return exc.actual_status

    results = await asyncio.gather(*(attempt(persistence_for(encrypted)) for _ in range(2)))
    assert results.count("ran") == 1
    assert {"running", "success"} & set(results)  # the loser saw the winner's write
    assert reads >= 3  # the loser's write conflicted and it read again


async def test_record_run_starts_from_the_snapshot_it_holds(
    encrypted: EncryptedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot this object saved starts without being read back; if another worker
    changed it meanwhile, compare-and-set catches the stale copy."""
    reads = 0
    original_get = encrypted.get

    async def counting_get(record_id: Any) -> Entry | None:
        nonlocal reads
        # The tenant's blind-index key is read once before the first write (the key
        # check); only snapshot reads count here.
        reads += record_id.kind != INDEX_KEY_KIND
        return await original_get(record_id)

    monkeypatch.setattr(encrypted, "get", counting_get)
    mine, other = persistence_for(encrypted), persistence_for(encrypted)
    first, second = Add(1), Add(2)
    await mine.snapshot_node(Counter(), first)
    await mine.snapshot_node(Counter(), second)
    async with mine.record_run(first.get_snapshot_id()):
        pass
    assert reads == 0
    async with other.record_run(second.get_snapshot_id()):
        pass
    with pytest.raises(GraphNodeStatusError) as caught:
        async with mine.record_run(second.get_snapshot_id()):
            pass
    assert caught.value.actual_status == "success"
    statuses = [s.status for s in await mine.load_all() if isinstance(s, NodeSnapshot)]
    assert statuses == ["success", "success"]


async def test_lease_is_renewed_while_the_node_runs(
    encrypted: EncryptedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long node keeps extending its lease, then finishes with no lease left."""
    persistence = persistence_for(encrypted, lease_seconds=0.03)
    node = Add(1)
    await persistence.snapshot_node(Counter(), node)
    renewed = asyncio.Event()
    original_update = encrypted.update

    async def update(entry: Entry, data: bytes | None = None, **kw: Any) -> Entry:
        result = await original_update(entry, data, **kw)
        if data is None and result.record.status == "running":
            renewed.set()
        return result

    monkeypatch.setattr(encrypted, "update", update)
    async with persistence.record_run(node.get_snapshot_id()):
        await asyncio.wait_for(renewed.wait(), timeout=10)
    records = await encrypted.find_records(encrypted.query(thread="run-1"))
    assert [(r.status, r.lease_until) for r in records] == [("success", None)]


# -- load_next, claims, leases ----------------------------------------------------------


async def test_load_next_returns_an_independent_copy_with_its_id(
    encrypted: EncryptedStore,
) -> None:
    """load_next marks pending and returns a copy whose node carries the snapshot id."""
    persistence = persistence_for(encrypted)
    node = Add(1)
    await persistence.snapshot_node(Counter(total=5), node)
    snap = await persistence.load_next()
    assert snap is not None
    assert snap.id == node.get_snapshot_id() == snap.node.get_snapshot_id()
    assert snap.status == "pending"
    snap.state.total = 1000
    (stored,) = await persistence.load_all()
    assert stored.state.total == 5
    assert isinstance(stored, NodeSnapshot) and stored.status == "pending"
    assert await persistence.load_next() is None


async def test_concurrent_load_next_claims_each_snapshot_once(encrypted: EncryptedStore) -> None:
    """Many tasks calling load_next at once get every created snapshot exactly once."""
    writer = persistence_for(encrypted)
    for n in range(30):
        await writer.snapshot_node(Counter(total=n), Add(n))
    workers = [persistence_for(encrypted) for _ in range(10)]
    claimed = await asyncio.gather(*(workers[i % 10].load_next() for i in range(60)))
    ids = [s.id for s in claimed if s is not None]
    assert len(ids) == 30 == len(set(ids))
    assert sorted(s.state.total for s in claimed if s is not None) == list(range(30))


async def test_expired_lease_is_reclaimed_by_load_next(encrypted: EncryptedStore) -> None:
    """A pending or running snapshot whose lease ended is claimed again; a live one is not."""
    past = time.time() - 10_000
    dead = persistence_for(encrypted, _clock=lambda: past)
    live = persistence_for(encrypted)
    node = Add(1)
    await dead.snapshot_node(Counter(), node)
    sid = node.get_snapshot_id()

    first = await dead.load_next()
    assert first is not None and first.id == sid
    again = await live.load_next()  # the pending lease has expired
    assert again is not None and again.id == sid
    assert await dead.load_next() is None  # the live worker's lease holds

    other = Add(2)
    await dead.snapshot_node(Counter(), other)
    taken = await dead.load_next()
    assert taken is not None
    with pytest.raises(Crash):
        async with dead.record_run(taken.id):
            raise Crash  # dies while running, with an expired lease
    reclaimed = await live.load_next()
    assert reclaimed is not None and reclaimed.id == other.get_snapshot_id()
    assert reclaimed.status == "pending"
    async with live.record_run(reclaimed.id):
        pass


async def test_finished_snapshots_are_never_reclaimed(encrypted: EncryptedStore) -> None:
    """success, error and end snapshots carry no lease, so load_next leaves them alone."""
    past = time.time() - 10_000
    persistence = persistence_for(encrypted, _clock=lambda: past)
    await GRAPH.run(Add(1), state=Counter(), deps=Tracker(), persistence=persistence)
    assert await persistence.load_next() is None
    records = await encrypted.find_records(encrypted.query(thread="run-1"))
    assert all(r.lease_until is None for r in records)


class FakeClock:
    """A clock that moves only when the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_leases_recover_and_list_runs_read_the_injected_clock(
    encrypted: EncryptedStore,
) -> None:
    """Sort keys, start times, durations, leases, recover and list_runs follow the injected
    clocks, so a lease ends when the clock says so (no sleep)."""
    clock, timer = FakeClock(float(int(time.time()))), FakeClock(100.0)
    persistence = persistence_for(encrypted, lease_seconds=60, _clock=clock, _timer=timer)
    first, second = Add(1), Add(2)
    await persistence.snapshot_node(Counter(), first)
    await persistence.snapshot_node(Counter(), second)
    sorts = [r.sort for r in await encrypted.find_records(encrypted.query(thread="run-1"))]
    base = int(clock.now) * 1_000_000_000
    assert sorts == [f"{base:020d}", f"{base + 1:020d}"]  # the clock stood still

    async with persistence.record_run(first.get_snapshot_id()):
        timer.now += 2.5
    claimed = await persistence.load_next()
    assert claimed is not None and claimed.id == second.get_snapshot_id()
    done, _ = await persistence.load_all()
    assert isinstance(done, NodeSnapshot)
    assert done.start_ts == datetime.fromtimestamp(clock.now, tz=timezone.utc)
    assert done.duration == 2.5
    records = await encrypted.find_records(encrypted.query(thread="run-1", statuses=["pending"]))
    assert [r.lease_until for r in records] == [clock.now + 60]

    async def statuses(**filters: Any) -> list[str]:
        runs = await StatePersistence.list_runs(encrypted, _clock=clock, **filters)
        return [run.status for run in runs]

    assert await statuses() == ["active"]
    assert await persistence.recover(only_expired=True) == 0
    clock.now += 61  # the lease is over, by this clock only
    assert await statuses() == ["stuck"]
    assert await statuses(older_than=30) == ["stuck"]
    assert await statuses(older_than=600) == []
    assert await persistence.recover(only_expired=True) == 1
    after = [s.status for s in await persistence.load_all() if isinstance(s, NodeSnapshot)]
    assert after == ["success", "created"]
    assert await statuses() == ["queued"]


@pytest.mark.parametrize("any_store", ["redis", "postgres"], indirect=True)
async def test_a_graph_on_another_loop_runs_crashes_and_resumes(
    encrypted: EncryptedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A persistence whose store lives on this loop serves a graph driven by `asyncio.run`
    in a worker thread (while this loop keeps running): run, crash, recover, resume, with
    the lease renewed from that loop."""
    persistence = persistence_for(encrypted, lease_seconds=0.06)
    await persistence.load_all()  # the store's clients now live on this loop
    home = asyncio.get_running_loop()
    renewals = 0
    original_update = encrypted.update

    async def update(entry: Entry, data: bytes | None = None, **kw: Any) -> Entry:
        nonlocal renewals
        renewals += data is None
        return await original_update(entry, data, **kw)

    async def on_another_loop() -> tuple[int, list[str]]:
        assert asyncio.get_running_loop() is not home
        with pytest.raises(Crash):
            await GRAPH.run(
                Add(1),
                state=Counter(secret=CANARY),
                deps=Tracker(crash_on=3),
                persistence=persistence,
            )
        assert await persistence.recover() == 1
        deps = Tracker(slow_on=4)
        return await run_to_end(persistence, deps), deps.ran

    monkeypatch.setattr(encrypted, "update", update)
    total, ran = await asyncio.to_thread(asyncio.run, on_another_loop())
    assert (total, ran) == (10, ["Add(3)", "Add(4)", "Finish"])
    assert renewals >= 1
    history = await persistence.load_all()
    assert shape(history) == shape(await upstream_history())


# -- crash and resume -----------------------------------------------------------------


async def test_crash_then_recover_resumes_without_rerunning_completed_nodes(
    encrypted: EncryptedStore,
) -> None:
    """A run dying mid-node resumes after recover() from that node, with the saved state."""
    deps = Tracker(crash_on=3)
    with pytest.raises(Crash):
        await GRAPH.run(
            Add(1), state=Counter(secret=CANARY), deps=deps, persistence=persistence_for(encrypted)
        )
    assert deps.ran == ["Add(1)", "Add(2)", "Add(3)"]

    fresh = persistence_for(encrypted)
    with pytest.raises(GraphRuntimeError, match="Unable to restore snapshot"):
        async with GRAPH.iter_from_persistence(fresh, deps=Tracker()):
            pass  # the crashed node is still leased: nothing to claim yet

    resumed = StatePersistence[Counter, int](encrypted, run_id="run-1")
    assert await resumed.recover() == 1
    after = Tracker()
    assert await run_to_end(resumed, after) == 10
    assert after.ran == ["Add(3)", "Add(4)", "Finish"]
    history = await resumed.load_all()
    assert shape(history) == shape(await upstream_history())
    assert await resumed.recover() == 0


async def test_recover_requeues_a_success_whose_successor_was_lost(
    encrypted: EncryptedStore,
) -> None:
    """A death between a node's success and its next snapshot re-runs that node on recover."""
    persistence = persistence_for(encrypted)
    await GRAPH.initialize(Add(3), persistence, state=Counter(total=3))
    snap = await persistence.load_next()
    assert snap is not None
    async with persistence.record_run(snap.id):
        pass  # the process dies before snapshot_node(next) is written
    assert await persistence.recover() == 1
    deps = Tracker()
    assert await run_to_end(persistence_for(encrypted), deps) == 10
    assert deps.ran == ["Add(3)", "Add(4)", "Finish"]


async def test_recover_only_expired_leaves_live_leases(encrypted: EncryptedStore) -> None:
    """recover(only_expired=True) requeues expired leases and keeps live ones."""
    past = time.time() - 10_000
    dead = persistence_for(encrypted, _clock=lambda: past)
    live = persistence_for(encrypted)
    for n in (1, 2):
        await live.snapshot_node(Counter(), Add(n))
    assert await live.load_next() is not None  # Add(1), leased for minutes
    assert await dead.load_next() is not None  # Add(2), lease already over
    assert await live.recover(only_expired=True) == 1
    statuses = [s.status for s in await live.load_all() if isinstance(s, NodeSnapshot)]
    assert statuses == ["pending", "created"]


async def test_run_isolation(encrypted: EncryptedStore) -> None:
    """Two runs in one store never see, claim or recover each other's snapshots."""
    run_a = persistence_for(encrypted, run_id="run-a")
    run_b = persistence_for(encrypted, run_id="run-b")
    await GRAPH.initialize(Add(1), run_a, state=Counter(total=1))
    assert await run_b.load_all() == []
    assert await run_b.load_next() is None
    snap = await run_a.load_next()
    assert snap is not None
    assert await run_b.recover() == 0
    with pytest.raises(LookupError):
        async with run_b.record_run(snap.id):
            pass
    await GRAPH.initialize(Add(2), run_b, state=Counter(total=2))
    assert [s.state.total for s in await run_b.load_all()] == [2]
    assert [s.state.total for s in await run_a.load_all()] == [1]


async def test_list_runs_finds_finished_stuck_and_interrupted_runs(
    encrypted: EncryptedStore,
) -> None:
    """list_runs classifies runs from routing fields and filters by status and age."""
    past = time.time() - 10_000
    await GRAPH.run(
        Add(1),
        state=Counter(),
        deps=Tracker(),
        persistence=persistence_for(encrypted, run_id="done"),
    )
    with pytest.raises(Crash):
        await GRAPH.run(
            Add(1),
            state=Counter(),
            deps=Tracker(crash_on=2),
            persistence=persistence_for(encrypted, run_id="dead", _clock=lambda: past),
        )
    with pytest.raises(Crash):
        await GRAPH.run(
            Add(1),
            state=Counter(),
            deps=Tracker(crash_on=2),
            persistence=persistence_for(encrypted, run_id="alive"),
        )
    await GRAPH.initialize(Add(1), persistence_for(encrypted, run_id="waiting"), state=Counter())
    runs = {run.run_id: run.status for run in await StatePersistence.list_runs(encrypted)}
    assert runs == {"done": "finished", "dead": "stuck", "alive": "active", "waiting": "queued"}
    stuck = await StatePersistence.list_runs(encrypted, statuses={"stuck"})
    assert [run.run_id for run in stuck] == ["dead"]
    assert await StatePersistence.list_runs(encrypted, older_than=3600) == []
    assert len(await StatePersistence.list_runs(encrypted, limit=2)) == 2


# -- encryption, serialization, configuration -------------------------------------------


async def test_tampered_snapshot_raises_integrity_error(
    encrypted: EncryptedStore, raw_store: Store
) -> None:
    """A snapshot body altered in storage fails closed on every read path."""
    persistence = persistence_for(encrypted)
    await persistence.snapshot_node(Counter(secret=CANARY), Add(1))
    (record,) = await raw_store.find(encrypted.query(thread="run-1"))
    body = bytearray(record.body)
    body[-1] ^= 0x01
    await raw_store.put(replace(record, body=bytes(body)))
    with pytest.raises(IntegrityError):
        await persistence.load_all()
    with pytest.raises(IntegrityError):
        await persistence.load_next()


async def test_wrong_key_cannot_read_snapshots(raw_store: Store) -> None:
    """Snapshots written under one key cannot be read with another."""
    async with EncryptedStore(raw_store, deterministic_key_ring("a")) as store_a:
        await persistence_for(store_a).snapshot_node(Counter(), Add(1))
    async with EncryptedStore(raw_store, deterministic_key_ring("b")) as store_b:
        with pytest.raises((KeyUnavailableError, IntegrityError)):
            await persistence_for(store_b).load_all()


async def test_no_plaintext_in_sqlite_file(tmp_path: Path) -> None:
    """State, results and error text never reach the SQLite file in clear."""
    path = tmp_path / "canary.db"
    async with StatePersistence[Counter, int].from_url(
        f"sqlite:///{path}", run_id="run-1", keys=deterministic_key_ring()
    ) as persistence:
        await GRAPH.run(
            Add(1), state=Counter(secret=CANARY), deps=Tracker(), persistence=persistence
        )
    async with StatePersistence[Counter, int].from_url(
        f"sqlite:///{path}", run_id="run-2", keys=deterministic_key_ring()
    ) as persistence:
        with pytest.raises(ValueError, match=CANARY):
            await GRAPH.run(
                Add(1),
                state=Counter(secret=CANARY),
                deps=Tracker(fail_on=2),
                persistence=persistence,
            )
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("canary.db"))
    assert b"run-1" in raw  # the routing id is there, in clear
    assert CANARY.encode() not in raw
    assert b"node failed" not in raw


async def test_unserializable_state_raises_serialization_error(
    encrypted: EncryptedStore,
) -> None:
    """State pydantic cannot serialize raises checkpointers.SerializationError."""
    persistence: StatePersistence[Opaque, None] = StatePersistence(encrypted, run_id="opaque")
    persistence.set_graph_types(OPAQUE_GRAPH)
    with pytest.raises(SerializationError):
        await persistence.snapshot_node(Opaque(thing=object()), Touch())
    assert await persistence.load_all() == []


async def test_types_must_be_set_before_loading(encrypted: EncryptedStore) -> None:
    """Loading before set_graph_types raises a ConfigurationError naming the fix."""
    persistence: StatePersistence[Counter, int] = StatePersistence(encrypted, run_id="r")
    assert persistence.should_set_types()
    with pytest.raises(ConfigurationError, match="set_graph_types"):
        await persistence.load_all()
    persistence.set_graph_types(GRAPH)
    assert not persistence.should_set_types()


async def test_invalid_options_are_refused(encrypted: EncryptedStore) -> None:
    """An empty run id or a non-positive lease is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        StatePersistence(encrypted, run_id="")
    with pytest.raises(ConfigurationError):
        StatePersistence(encrypted, run_id="r", lease_seconds=0)
    with pytest.raises(ConfigurationError):
        StatePersistence.from_url("memory://", run_id="r", lease_seconds=-1)


async def test_from_url_owns_the_store_and_the_constructor_borrows(tmp_path: Path) -> None:
    """from_url closes the store it opened; a borrowed store stays open."""
    async with StatePersistence[Counter, int].from_url(
        f"sqlite:///{tmp_path / 'own.db'}", run_id="r", keys=deterministic_key_ring()
    ) as owned:
        owned.set_graph_types(GRAPH)
        await GRAPH.run(Add(4), state=Counter(), deps=Tracker(), persistence=owned)
    assert owned.store.store._closed
    async with (
        SqliteStore(tmp_path / "borrowed.db") as raw,
        EncryptedStore(raw, deterministic_key_ring()) as store,
    ):
        async with persistence_for(store) as borrowed:
            await borrowed.snapshot_node(Counter(), Add(1))
        assert not raw._closed
        assert len(await persistence_for(store).load_all()) == 1


async def test_from_url_without_keys_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key in the environment and none given: ConfigurationError, never plaintext."""
    monkeypatch.delenv("CHECKPOINTERS_KEY", raising=False)
    monkeypatch.delenv("CHECKPOINTERS_KEY_FILE", raising=False)
    with pytest.raises(ConfigurationError, match="no encryption key"):
        StatePersistence.from_url("memory://", run_id="r")


def test_import_does_not_warn() -> None:
    """Importing the adapter emits no deprecation warning on late pydantic-graph 1.x."""
    subprocess.run(
        [sys.executable, "-W", "error", "-c", "import checkpointers.pydantic_graph"],
        cwd=ROOT,
        check=True,
    )


# -- the example: a real process killed mid-node, resumed in another ----------------------


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment without any key variable, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINTERS_KEY")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_example_resumes_after_sigkill(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """The example's child is killed mid-node and a new process finishes from that node."""
    script = ROOT / "examples" / "pydantic_graph_resume.py"
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = done.stdout
    assert "created demo.key" in out
    assert (tmp_path / "demo.key").stat().st_mode & 0o077 == 0
    before, _, after = out.partition("resuming")
    assert "ran Fetch" in before and "ran Transform" in before
    assert "ran Fetch" not in after and "ran Transform" not in after
    assert "ran Load" in before and "ran Load" in after  # the node that was killed re-runs
    assert "ran Report" in after
    assert "result: " in after
    again = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "using demo.key" in again.stdout
