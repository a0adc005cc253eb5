"""TieredStore: the shared suite, write-through, failover, stale-copy eviction, archive."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from checkpointers import (
    EncryptedStore,
    MemoryStore,
    RecordNotFoundError,
    SqliteStore,
    Store,
    StoreUnavailableError,
)
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.resilience import CircuitBreaker
from checkpointers.testing import StoreContract, deterministic_key_ring
from checkpointers.tiered import Backoff, TieredStore


class SwitchableStore(MemoryStore):
    """A memory store whose every call fails while `down` is set (a tier outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name in {"get", "put", "put_many", "replicate", "find", "claim", "delete",
                    "delete_thread", "delete_tenant", "sweep", "ping", "setup"}:  # fmt: skip
            inner: Callable[..., Any] = attr

            async def guarded(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                if self.down:
                    raise StoreUnavailableError("tier is down")
                return await inner(*args, **kwargs)

            return guarded
        return attr


class TestTieredStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        tiered = TieredStore(SqliteStore(tmp_path / "d.db"), hot=MemoryStore(),
                             archive=MemoryStore(), owns_stores=True)  # fmt: skip
        async with tiered:
            yield tiered


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tiers() -> tuple[SwitchableStore, MemoryStore, MemoryStore, Clock, TieredStore]:
    hot, durable, archive, clock = SwitchableStore(), MemoryStore(), MemoryStore(), Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=10, clock=clock)
    return hot, durable, archive, clock, TieredStore(durable, hot=hot, archive=archive,
                                                     breaker=breaker)  # fmt: skip


def _rec(key: str, body: bytes = b"x", thread: str = "t") -> Record:
    return Record(id=RecordId("acme", thread, "", "doc", key), body=body, sort=key)


async def test_write_through_and_read_from_hot(tiers: Any) -> None:
    """A write lands in both tiers with the durable version; reads are served hot."""
    hot, _durable, _, _, tiered = tiers
    assert await tiered.put(_rec("a")) == 1
    assert await tiered.put(_rec("a", b"y")) == 2
    cached = await hot.get(_rec("a").id)
    assert cached is not None
    assert (cached.body, cached.version) == (b"y", 2)
    assert cached.expires_at is not None
    got = await tiered.get(_rec("a").id)
    assert got is not None
    assert got.version == 2
    assert tiered.stats.hot_hits == 1


async def test_durable_read_repopulates_hot(tiers: Any) -> None:
    """A record only in the durable tier is read from there and copied hot."""
    hot, durable, _, _, tiered = tiers
    await durable.put(_rec("a"))
    assert (await tiered.get(_rec("a").id)) is not None
    assert tiered.stats.hot_misses == 1
    assert await hot.get(_rec("a").id) is not None


async def test_hot_outage_fails_over_and_never_serves_stale(
    tiers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With the hot tier down the run continues; when it returns, stale copies are evicted."""
    hot, _durable, _, clock, tiered = tiers
    await tiered.put(_rec("a", b"v1"))
    hot.down = True
    with caplog.at_level(logging.WARNING, logger="checkpointers"):
        assert await tiered.put(_rec("a", b"v2")) == 2
    assert tiered.stats.failovers == 1
    assert any(getattr(r, "event", "") == "checkpointers.failover" for r in caplog.records)
    got = await tiered.get(_rec("a").id)
    assert got is not None
    assert got.body == b"v2"
    calls = hot.calls
    assert (await tiered.get(_rec("a").id)) is not None
    assert hot.calls == calls  # breaker open: hot tier not even tried
    hot.down = False
    clock.now = 11
    got = await tiered.get(_rec("a").id)
    assert got is not None
    assert got.body == b"v2"  # the stale v1 copy was evicted before use
    cached = await hot.get(_rec("a").id)
    assert cached is not None
    assert cached.body == b"v2"


async def test_durable_outage_refuses_writes(tiers: Any) -> None:
    """When the durable tier is down a write raises and is not acknowledged hot."""
    hot, durable, _, _, tiered = tiers

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("durable down", may_have_applied=False)

    durable.put = broken  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        await tiered.put(_rec("a"))
    assert await hot.get(_rec("a").id) is None


async def test_archive_verifies_then_moves_and_restores(tiers: Any) -> None:
    """archive_thread copies, verifies and deletes warm copies; reads fall back to it."""
    hot, durable, archive, _, tiered = tiers
    await tiered.put_many([_rec(f"k{i}") for i in range(5)] + [_rec("o", thread="other")])
    assert await tiered.archive_thread("acme", "t") == 5
    assert await durable.find(Query(tenant="acme", thread="t")) == []
    assert await hot.find(Query(tenant="acme", thread="t")) == []
    archived = await archive.find(Query(tenant="acme", thread="t"))
    assert len(archived) == 5
    assert all(r.expires_at is not None for r in archived)
    got = await tiered.get(_rec("k1").id)
    assert got is not None
    assert tiered.stats.archive_reads == 1
    assert len(await tiered.find(Query(tenant="acme", thread="t"))) == 5
    assert await tiered.restore_thread("acme", "t") == 5
    assert len(await durable.find(Query(tenant="acme", thread="t"))) == 5
    with pytest.raises(RecordNotFoundError):
        await tiered.archive_thread("acme", "missing")


async def test_reading_an_archived_thread_restores_it_before_new_writes(tiers: Any) -> None:
    """A read that finds a thread only in the archive restores it, so a later write lands
    beside its whole history and every archived record stays readable."""
    _, durable, _, _, tiered = tiers
    await tiered.put_many([_rec(f"k{i}") for i in range(3)])
    await tiered.archive_thread("acme", "t")
    latest = await tiered.latest(Query(tenant="acme", thread="t"))
    assert latest is not None
    assert latest.id.key == "k2"
    assert len(await durable.find(Query(tenant="acme", thread="t"))) == 3
    await tiered.put(_rec("k3"))
    keys = [r.id.key for r in await tiered.find(Query(tenant="acme", thread="t"))]
    assert keys == ["k0", "k1", "k2", "k3"]
    assert (await tiered.get(_rec("k0").id)) is not None


async def test_point_read_of_an_archived_thread_restores_it(tiers: Any) -> None:
    """get() of a record found only in the archive restores its whole thread."""
    _, durable, _, _, tiered = tiers
    await tiered.put_many([_rec(f"k{i}") for i in range(3)])
    await tiered.archive_thread("acme", "t")
    assert (await tiered.get(_rec("k1").id)) is not None
    assert len(await durable.find(Query(tenant="acme", thread="t"))) == 3


async def test_without_restore_on_read_archive_reads_leave_durable_alone() -> None:
    """restore_on_read=False serves archived records without copying them back."""
    durable, archive = MemoryStore(), MemoryStore()
    tiered = TieredStore(durable, archive=archive, restore_on_read=False)
    await tiered.put_many([_rec("k0"), _rec("k1")])
    await tiered.archive_thread("acme", "t")
    assert len(await tiered.find(Query(tenant="acme", thread="t"))) == 2
    assert (await tiered.get(_rec("k0").id)) is not None
    assert await durable.find(Query(tenant="acme", thread="t")) == []


async def test_erase_reaches_every_tier(tiers: Any) -> None:
    """delete_thread removes a thread from hot, durable and archive."""
    hot, durable, archive, _, tiered = tiers
    await tiered.put_many([_rec("a"), _rec("b")])
    await archive.replicate([_rec("old")])
    assert await tiered.delete_thread("acme", "t") == 3
    for tier in (hot, durable, archive):
        assert await tier.find(Query(tenant="acme", thread="t")) == []


async def test_delete_with_the_hot_tier_unreachable_is_not_reported_as_done(
    tiers: Any,
) -> None:
    """A delete or erase that cannot reach the hot tier raises (the durable copy is gone,
    another process could still read the hot one); retried with it back, it succeeds and
    a second store over the same tiers reads nothing."""
    hot, durable, archive, _, tiered = tiers
    await tiered.put_many([_rec("a"), _rec("b"), _rec("c", thread="u")])
    hot.down = True
    for attempt in (
        lambda: tiered.delete([_rec("a").id]),
        lambda: tiered.delete_thread("acme", "t"),
        lambda: tiered.delete_tenant("acme"),
    ):
        with pytest.raises(StoreUnavailableError, match="hot tier could not be reached") as info:
            await attempt()
        assert info.value.may_have_applied
    assert await durable.find(Query(tenant="acme")) == []
    other = TieredStore(durable, hot=hot, archive=archive)  # another process, same tiers
    hot.down = False
    assert await other.get(_rec("b").id) is not None  # the hot copy is still there
    # Retried with the hot tier back (this store's breaker is still open: tried anyway).
    assert tiered.breaker.is_open
    await tiered.delete_tenant("acme")
    for rid in (_rec("a").id, _rec("b").id, _rec("c", thread="u").id):
        assert await other.get(rid) is None
        assert await hot.get(rid) is None


async def test_delete_tries_the_hot_tier_past_an_open_breaker(tiers: Any) -> None:
    """A delete reaches a hot tier that is back even while the breaker is still open."""
    hot, _durable, _, _, tiered = tiers
    await tiered.put(_rec("a"))
    hot.down = True
    await tiered.put(_rec("b"))  # fails over: the breaker opens
    hot.down = False
    assert tiered.breaker.is_open
    assert await tiered.delete([_rec("a").id]) == 1
    assert await hot.get(_rec("a").id) is None


async def test_tiers_from_urls_through_encrypted_store(tmp_path: Path) -> None:
    """A list of URLs builds tiers; the encrypted API works over them end to end."""
    url = f"sqlite:///{tmp_path}/d.db"
    async with EncryptedStore.from_url(["memory://", url], keys=deterministic_key_ring()) as enc:
        assert isinstance(enc.store, TieredStore)
        rid = enc.record_id("t", "", "doc", "a")
        await enc.put(rid, b"hello")
        entry = await enc.get(rid)
        assert entry is not None
        assert entry.data == b"hello"


async def test_archive_logs_events_with_info_enabled(
    tiers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Archive and restore log structured events (INFO on) without failing the move."""
    _, _, _, _, tiered = tiers
    await tiered.put(_rec("a"))
    with caplog.at_level(logging.INFO, logger="checkpointers"):
        await tiered.archive_thread("acme", "t")
        await tiered.restore_thread("acme", "t")
    events = [getattr(r, "event", "") for r in caplog.records]
    assert "checkpointers.archive" in events
    assert "checkpointers.restore" in events


def test_credential_without_an_azure_tier_is_refused(tmp_path: Path) -> None:
    """credential= with no tier that takes one (memory, SQLite) is an error."""
    from checkpointers import ConfigurationError

    with pytest.raises(ConfigurationError, match="credential"):
        TieredStore.from_urls(["memory://", f"sqlite:///{tmp_path}/d.db"], credential=object())


async def test_absent_record_of_a_live_thread_skips_the_archive(tiers: Any) -> None:
    """A record absent from a thread the durable tier holds is not looked up in the
    archive and counts as absent, not as a miss; an archived thread's record is."""
    _, _, archive, _, tiered = tiers
    await tiered.put(_rec("a"))
    await archive.replicate([_rec("only-archived")])
    assert await tiered.get(_rec("only-archived").id) is None
    assert (tiered.stats.archive_reads, tiered.stats.absent_reads) == (0, 1)
    await tiered.put(_rec("b", thread="gone"))
    await tiered.archive_thread("acme", "gone")
    assert await tiered.get(_rec("b", thread="gone").id) is not None
    assert (tiered.stats.archive_reads, tiered.stats.hot_misses) == (1, 1)
    assert await tiered.get(_rec("a").id) is not None
    assert tiered.stats.hit_ratio == 0.5


# -- put_many versions through the tiers -------------------------------------------------


class CountingStore(MemoryStore):
    """A memory store that counts reads (to prove a write does not read back)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get_many(self, record_ids: Any) -> list[Record | None]:
        self.reads += 1
        return await super().get_many(record_ids)


async def test_put_many_copies_written_records_hot_without_reading_back() -> None:
    """put_many copies exactly what the durable tier wrote, with its versions, and no
    read; a record if_absent skipped is not copied (the durable copy differs)."""
    durable, hot = CountingStore(), MemoryStore()
    tiered = TieredStore(durable, hot=hot)
    await durable.put(_rec("kept", b"durable"))
    versions = await tiered.put_many([_rec("a"), _rec("kept", b"new"), _rec("a", b"a2")],
                                     if_absent=True)  # fmt: skip
    assert versions == [1, None, None]
    assert await tiered.put_many([_rec("b"), _rec("b", b"b2")]) == [1, 2]
    assert durable.reads == 0
    cached = await hot.get_many([_rec("a").id, _rec("kept").id, _rec("b").id])
    assert [None if r is None else (r.body, r.version) for r in cached] == [
        (b"x", 1), None, (b"b2", 2)]  # fmt: skip
    got = await tiered.get(_rec("kept").id)
    assert got is not None and got.body == b"durable"


# -- write-behind ---------------------------------------------------------------------------


class Ticker:
    """The write-behind task's sleep, driven by the test: each `tick` ends one wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._tick = asyncio.Event()
        self._slept = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self._slept.set()
        await self._tick.wait()
        self._tick.clear()

    def tick(self) -> None:
        self._tick.set()

    async def sleeping(self, count: int) -> None:
        """Wait until the task has started its `count`-th wait."""
        while len(self.delays) < count:
            self._slept.clear()
            await asyncio.wait_for(self._slept.wait(), 10)


class GatedDurable(MemoryStore):
    """A durable tier whose put_many waits until the hot tier got its copy, and can fail."""

    def __init__(self, hot_wrote: asyncio.Event) -> None:
        super().__init__()
        self.hot_wrote = hot_wrote
        self.fail = False

    async def put_many(self, records: Any, *, if_absent: bool = False) -> list[int | None]:
        await asyncio.wait_for(self.hot_wrote.wait(), timeout=10)
        if self.fail:
            raise StoreUnavailableError("durable tier is down", may_have_applied=False)
        return await super().put_many(records, if_absent=if_absent)


class SignallingHot(MemoryStore):
    def __init__(self, wrote: asyncio.Event) -> None:
        super().__init__()
        self.wrote = wrote

    async def replicate(self, records: Any) -> None:
        await super().replicate(records)
        self.wrote.set()


async def test_insert_if_absent_writes_both_tiers_at_once_and_evicts_on_failure() -> None:
    """An insert-if-absent reaches the hot tier while the durable write is in flight (it
    waits for it here: done one after the other, this would time out); when the durable
    write fails, the hot copy is evicted and the error raised."""
    wrote = asyncio.Event()
    hot, durable = SignallingHot(wrote), GatedDurable(wrote)
    tiered = TieredStore(durable, hot=hot)
    assert await tiered.put_many([_rec("a"), _rec("b")], if_absent=True) == [1, 1]
    cached = await hot.get_many([_rec("a").id, _rec("b").id])
    assert [None if r is None else r.version for r in cached] == [1, 1]
    durable.fail = True
    with pytest.raises(StoreUnavailableError):
        await tiered.put_many([_rec("c")], if_absent=True)
    assert await hot.get(_rec("c").id) is None
    assert await tiered.get(_rec("c").id) is None


class RecordingStore(SwitchableStore):
    """A switchable memory store that signals each batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.wrote = asyncio.Event()

    async def put_many(self, records: Any, *, if_absent: bool = False) -> list[int | None]:
        versions = await MemoryStore.put_many(self, records, if_absent=if_absent)
        self.batches.append(len(records))
        self.wrote.set()
        return versions


async def _written(durable: RecordingStore) -> None:
    await asyncio.wait_for(durable.wrote.wait(), 10)
    durable.wrote.clear()


def _behind(**options: Any) -> tuple[SwitchableStore, RecordingStore, Ticker, TieredStore]:
    hot, durable, ticker = SwitchableStore(), RecordingStore(), Ticker()
    options.setdefault("flush_interval", 2.0)
    tiered = TieredStore(durable, hot=hot, write_behind=True,
                         flush_backoff=Backoff(initial=0.5, maximum=4.0), **options)  # fmt: skip
    assert tiered._queue is not None
    tiered._queue.sleep = ticker.sleep
    return hot, durable, ticker, tiered


async def test_write_behind_acknowledges_hot_and_flushes_on_interval() -> None:
    """A write is acknowledged once hot and read back from there; the task flushes it
    to the durable tier after flush_interval, in one batch, with the durable versions."""
    hot, durable, ticker, tiered = _behind()
    assert await tiered.put_many([_rec("a"), _rec("b")]) == [1, 1]
    assert await tiered.put(_rec("a", b"a2")) == 2
    assert await durable.get(_rec("a").id) is None
    got = await tiered.get(_rec("a").id)
    assert got is not None and (got.body, got.version) == (b"a2", 2)
    assert [r.id.key for r in await tiered.find(Query(tenant="acme", thread="t"))] == ["a", "b"]
    ticker.tick()
    await _written(durable)
    assert ticker.delays[0] == 2.0
    assert durable.batches == [3]
    assert await tiered.flush() == 0  # waits for the task's flush, nothing left
    stored, cached = await durable.get(_rec("a").id), await hot.get(_rec("a").id)
    assert stored is not None and (stored.body, stored.version) == (b"a2", 2)
    assert cached is not None and (cached.body, cached.version) == (b"a2", 2)
    await tiered.aclose()


async def test_write_behind_flushes_when_max_pending_is_reached() -> None:
    """Reaching max_pending wakes the task at once (no interval elapses)."""
    _, durable, _, tiered = _behind(max_pending=3)
    await tiered.put(_rec("a"))
    await tiered.put(_rec("b"))
    assert durable.batches == []
    await tiered.put(_rec("c"))
    await _written(durable)  # the test never ticks: no interval ended
    assert durable.batches == [3]
    await tiered.aclose()


async def test_write_behind_flushes_on_close() -> None:
    """aclose() flushes what is queued before closing."""
    _, durable, _, tiered = _behind()
    async with tiered:
        await tiered.put_many([_rec(f"k{i}") for i in range(5)])
        assert durable.batches == []
    assert durable.batches == [5]
    assert len(await durable.find(Query(tenant="acme"))) == 5


async def test_write_behind_durable_outage_keeps_the_queue_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failed flush keeps the batch queued, logs a failover, makes writes and close
    raise, is retried with backoff, and loses nothing once the durable tier is back."""
    _, durable, ticker, tiered = _behind()
    await tiered.put_many([_rec("a"), _rec("b")])
    await ticker.sleeping(1)
    durable.down = True
    with (
        caplog.at_level(logging.WARNING, logger="checkpointers"),
        pytest.raises(StoreUnavailableError),
    ):
        await tiered.flush()
    assert any(getattr(r, "event", "") == "checkpointers.failover" and
               getattr(r, "target", "") == "queue" for r in caplog.records)  # fmt: skip
    assert tiered._queue is not None and len(tiered._queue) == 2
    with pytest.raises(StoreUnavailableError):
        await tiered.put(_rec("c"))
    with pytest.raises(StoreUnavailableError):
        await tiered.aclose()
    got = await tiered.get(_rec("a").id)  # still readable from the queue
    assert got is not None and got.body == b"x"
    await ticker.sleeping(2)  # the failed close left the task running
    ticker.tick()  # its flush fails too: it backs off
    await ticker.sleeping(3)
    assert ticker.delays == [2.0, 2.0, 0.5]
    durable.down = False
    ticker.tick()
    await _written(durable)
    assert await tiered.flush() == 0
    assert await tiered.put(_rec("c")) == 1
    await tiered.aclose()
    assert sorted(r.id.key for r in await durable.find(Query(tenant="acme"))) == ["a", "b", "c"]


async def test_write_behind_crash_loses_only_pending_writes() -> None:
    """A store dropped without aclose() (a crash) loses the writes not yet flushed, and
    nothing flushed; the hot copies of the lost writes expire soon."""
    hot, durable, _, tiered = _behind()
    await tiered.put_many([_rec("a"), _rec("b")])
    await tiered.flush()
    await tiered.put_many([_rec("c"), _rec("d")])
    assert tiered._queue is not None
    await tiered._queue.stop()  # the process dies: its task and queue with it
    del tiered
    survivor = TieredStore(durable, hot=MemoryStore())
    found = await survivor.get_many([_rec(k).id for k in "abcd"])
    assert [None if r is None else r.id.key for r in found] == ["a", "b", None, None]
    lost = await hot.get(_rec("c").id)
    assert lost is not None and lost.expires_at is not None
    assert lost.expires_at <= time.time() + 60


async def test_write_behind_compare_and_set_and_claim_go_to_durable() -> None:
    """A write with expected_version and a claim flush their record's queued writes,
    then are decided by the durable tier."""
    _, durable, _, tiered = _behind()
    await tiered.put(_rec("a"))
    assert await tiered.put(_rec("a", b"cas"), expected_version=1) == 2
    stored = await durable.get(_rec("a").id)
    assert stored is not None and (stored.body, stored.version) == (b"cas", 2)
    from checkpointers import ConflictError

    with pytest.raises(ConflictError):
        await tiered.put(_rec("a", b"stale"), expected_version=1)
    task = Record(id=RecordId("acme", "run", "", "snap", "s1"), body=b"s", status="created")
    await tiered.put(task)
    claimed = await tiered.claim(Claim("acme", "run", "snap", ("created",), "pending"))
    assert claimed is not None and claimed.id == task.id
    await tiered.aclose()


async def test_write_behind_reads_and_queries_merge_queued_writes() -> None:
    """find/latest see queued writes over the durable ones (replaced, new, filtered)."""
    _, _, _, tiered = _behind()
    await tiered.put_many([_rec("a", b"old"), _rec("b"), _rec("c")])
    await tiered.flush()
    await tiered.put_many([_rec("a", b"new"), _rec("d")])
    await tiered.put(Record(id=_rec("b").id, body=b"b", sort="b", status="done"))
    q = Query(tenant="acme", thread="t")
    assert [(r.id.key, r.body) for r in await tiered.find(q)] == [
        ("a", b"new"), ("b", b"b"), ("c", b"x"), ("d", b"x")]  # fmt: skip
    assert [r.id.key for r in await tiered.find(replace(q, statuses=("",)))] == ["a", "c", "d"]
    assert [r.id.key for r in await tiered.find(replace(q, limit=2, descending=True))] == [
        "d", "c"]  # fmt: skip
    latest = await tiered.latest(q)
    assert latest is not None and latest.id.key == "d"
    await tiered.aclose()


async def test_write_behind_insert_if_absent_is_decided_by_durable() -> None:
    """An insert-if-absent of a record only the durable tier held is dropped at flush
    and its hot copy evicted, so reads see the durable record."""
    hot, durable, _, tiered = _behind()
    await durable.put(_rec("a", b"durable"))
    assert await tiered.put_many([_rec("a", b"queued")], if_absent=True) == [1]
    await tiered.flush()
    assert await hot.get(_rec("a").id) is None
    got = await tiered.get(_rec("a").id)
    assert got is not None and got.body == b"durable"
    await tiered.aclose()


async def test_write_behind_deletes_drop_queued_writes() -> None:
    """A delete removes queued writes of what it deletes: a flush never brings them back."""
    _, durable, _, tiered = _behind()
    await tiered.put_many([_rec("a"), _rec("b"), _rec("o", thread="other")])
    await tiered.delete([_rec("a").id])
    await tiered.delete_thread("acme", "other")
    assert await tiered.get(_rec("a").id) is None
    await tiered.aclose()
    assert [r.id.key for r in await durable.find(Query(tenant="acme"))] == ["b"]


async def test_write_behind_hot_outage_writes_through() -> None:
    """With the hot tier down, a write-behind store writes to the durable tier at once
    (after its queue), so an acknowledged write is never only in memory."""
    hot, durable, _, tiered = _behind()
    await tiered.put(_rec("a"))
    hot.down = True
    assert await tiered.put(_rec("b")) == 1
    assert durable.batches == [1, 1]
    assert await durable.get(_rec("b").id) is not None
    await tiered.aclose()


def test_write_behind_needs_a_hot_tier() -> None:
    """write_behind without a hot tier, or with a zero interval, is a configuration error."""
    from checkpointers import ConfigurationError

    with pytest.raises(ConfigurationError):
        TieredStore(MemoryStore(), write_behind=True)
    with pytest.raises(ConfigurationError):
        TieredStore(MemoryStore(), hot=MemoryStore(), write_behind=True, flush_interval=0)


async def test_credential_reaches_postgres_and_redis_tiers() -> None:
    """credential= goes to the Redis and PostgreSQL tiers too, not only the archive."""
    from checkpointers.stores.postgres import PostgresStore
    from checkpointers.stores.redis import RedisStore
    from tests.harness.keyvault_fake import AsyncStaticTokenCredential

    credential = AsyncStaticTokenCredential()
    tiered, _ = TieredStore.from_urls(
        [
            "rediss://oid@cache.example.net:6380/0",
            "postgresql://app@db.example.net/db?sslmode=require",
        ],
        credential=credential,
    )
    try:
        assert isinstance(tiered.hot, RedisStore) and isinstance(tiered.durable, PostgresStore)
        pool = tiered.hot._client.connection_pool
        assert pool.provider is not None and pool.provider.tokens._credential is credential
        assert tiered.durable._tokens is not None
        assert tiered.durable._tokens._credential is credential
    finally:
        await tiered.aclose()
    assert credential.calls == []
