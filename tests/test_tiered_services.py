"""TieredStore on real services: Redis hot, PostgreSQL durable, Azurite archive.

Consistency check and repair, hit-ratio metrics on a resume-heavy workload, a Redis
killed and a PostgreSQL stopped under concurrent loops, archive/read/restore through the
encrypted layer, and retention and erasure that leave nothing in any tier. Outages use
throwaway servers (`redis_process`, `postgres_process`), never the shared ones.
"""

from __future__ import annotations

import asyncio
import operator
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Annotated, Any, TypedDict

import asyncpg
import pytest
import redis.asyncio as aioredis
from azure.storage.blob.aio import ContainerClient
from langgraph.graph import END, START, StateGraph

from checkpointers import EncryptedStore, StoreUnavailableError
from checkpointers.langgraph import CheckpointSaver
from checkpointers.observability import Metrics
from checkpointers.record import Query, Record, RecordId
from checkpointers.resilience import CircuitBreaker
from checkpointers.stores._azure_blob_layout import parse_name
from checkpointers.stores.azure_blob import AzureBlobStore
from checkpointers.stores.postgres import PostgresStore
from checkpointers.stores.redis import RedisStore
from checkpointers.testing import deterministic_key_ring
from checkpointers.tiered import TieredStore
from tests.backends import _postgres, _redis, open_tiered
from tests.harness.services import PostgresServer, RedisServer
from tests.reliability._support import three_step_graph
from tests.test_tiered import Ticker

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.azurite]


class Clock:
    """A clock the test moves by hand (the circuit breaker's)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tally:
    """A counter that wakes whoever waits for it to reach a value (no polling)."""

    def __init__(self) -> None:
        self.count = 0
        self._waiting: list[tuple[int, asyncio.Event]] = []

    def add(self) -> None:
        self.count += 1
        for target, event in self._waiting:
            if self.count >= target:
                event.set()

    async def reach(self, target: int, *, timeout: float = 120.0) -> None:
        if self.count >= target:
            return
        event = asyncio.Event()
        self._waiting.append((target, event))
        await asyncio.wait_for(event.wait(), timeout)


class Gate:
    """`parties` tasks arrive and wait; the test sees them all in, then opens it."""

    def __init__(self, parties: int) -> None:
        self.arrived = Tally()
        self.parties = parties
        self.opened = asyncio.Event()

    async def wait(self) -> None:
        self.arrived.add()
        await self.opened.wait()

    async def all_in(self) -> None:
        await self.arrived.reach(self.parties)


def _rec(thread: str, key: str, body: bytes, *, tenant: str = "acme", **fields: Any) -> Record:
    return Record(id=RecordId(tenant, thread, "", "doc", key), body=body, sort=key, **fields)


@pytest.fixture
async def tiered(request: pytest.FixtureRequest) -> AsyncIterator[TieredStore]:
    """Redis hot over PostgreSQL durable over an Azurite archive, cleaned up after."""
    async with AsyncExitStack() as stack:
        store = await open_tiered(request, stack)
        assert isinstance(store, TieredStore)
        yield store


def _tiers(tiered: TieredStore) -> tuple[RedisStore, PostgresStore, AzureBlobStore]:
    hot, durable, archive = tiered.hot, tiered.durable, tiered.archive
    assert isinstance(hot, RedisStore)
    assert isinstance(durable, PostgresStore)
    assert isinstance(archive, AzureBlobStore)
    return hot, durable, archive


# -- consistency check --------------------------------------------------------------------


async def test_compare_thread_finds_and_repairs_stale_hot_copies(tiered: TieredStore) -> None:
    """A hot copy older than the durable one, or of a deleted record, is reported by id
    and evicted by repair; afterwards the tiers agree and reads see the durable copy."""
    hot, durable, _ = _tiers(tiered)
    await tiered.put_many([_rec("t", f"k{i}", f"v{i}".encode()) for i in range(4)])
    clean = await tiered.compare_thread("acme", "t")
    assert clean.consistent and clean.truth == "durable"
    assert clean.tiers["durable"] == clean.tiers["hot"]
    assert clean.tiers["durable"].records == 4
    assert clean.tiers["durable"].latest_id == RecordId("acme", "t", "", "doc", "k3")
    await durable.put(_rec("t", "k1", b"newer"))  # behind the hot tier's back
    await hot.replicate([_rec("t", "ghost", b"deleted", version=1)])
    report = await tiered.compare_thread("acme", "t")
    assert not report.consistent
    assert {(d.record.key, d.tier, d.problem) for d in report.differences} == {
        ("k1", "hot", "stale"), ("ghost", "hot", "extra")}  # fmt: skip
    assert report.tiers["hot"].digest != report.tiers["durable"].digest
    repaired = await tiered.compare_thread("acme", "t", repair=True)
    assert repaired.repaired
    assert (await tiered.compare_thread("acme", "t")).consistent
    assert await hot.get(_rec("t", "ghost", b"").id) is None
    got = await tiered.get(_rec("t", "k1", b"").id)
    assert got is not None and got.body == b"newer"


async def test_compare_thread_rearchives_a_differing_archive_copy(tiered: TieredStore) -> None:
    """For a thread in both durable and archive (restored, then written to), the archive
    copy is compared with the durable one and archived again by repair; for a thread only
    in the archive, the archive is the truth for the hot tier."""
    hot, durable, archive = _tiers(tiered)
    await tiered.put_many([_rec("t", f"k{i}", f"v{i}".encode()) for i in range(3)])
    await tiered.archive_thread("acme", "t")
    hot_copy = _rec("t", "k0", b"stale hot copy", version=1)
    await hot.replicate([hot_copy])
    archived = await tiered.compare_thread("acme", "t")
    assert archived.truth == "archive"
    assert [(d.record.key, d.tier, d.problem) for d in archived.differences] == [
        ("k0", "hot", "stale")]  # fmt: skip
    await tiered.compare_thread("acme", "t", repair=True)
    got = await tiered.get(hot_copy.id)
    assert got is not None and got.body == b"v0"  # from the archive, not the stale copy
    await tiered.restore_thread("acme", "t")
    assert (await tiered.compare_thread("acme", "t")).consistent
    await tiered.put(_rec("t", "k1", b"changed after restore"))
    await tiered.put(_rec("t", "k9", b"new after restore"))
    report = await tiered.compare_thread("acme", "t")
    assert report.truth == "durable"
    assert {(d.record.key, d.tier, d.problem) for d in report.differences} == {
        ("k1", "archive", "stale"), ("k9", "archive", "missing")}  # fmt: skip
    assert (await tiered.compare_thread("acme", "t", repair=True)).repaired
    assert (await tiered.compare_thread("acme", "t")).consistent
    copy = await archive.get(_rec("t", "k1", b"").id)
    stored = await durable.get(_rec("t", "k1", b"").id)
    assert copy is not None and stored is not None
    assert (copy.body, copy.version) == (stored.body, stored.version)


def test_verify_tiers_command_exits_1_on_differences_and_repairs(
    redis_server_url: str, redis_prefix: str, postgres_database: str, azurite: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """`checkpointers verify --tiers` exits 0 when the tiers agree, 1 naming the record
    when a hot copy is stale, and `--repair` fixes it (then exit 0)."""
    from typer.testing import CliRunner

    from checkpointers import cli

    container = f"v{secrets.token_hex(8)}"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    urls = [f"{redis_server_url}?prefix={redis_prefix}", postgres_database,
            f"azblob://{container}?create_container=true"]  # fmt: skip

    async def seed() -> None:
        tiered, _ = TieredStore.from_urls(urls)
        async with tiered:
            await tiered.put_many([_rec("t", f"k{i}", b"v", tenant="default") for i in range(3)])

    async def make_stale() -> None:
        async with PostgresStore.from_url(postgres_database) as durable:
            await durable.put(_rec("t", "k2", b"newer", tenant="default"))

    async def drop_container() -> None:
        async with ContainerClient.from_connection_string(
            azurite.connection_string, container
        ) as client:
            await client.delete_container()

    def verify(*extra: str) -> Any:
        args = [arg for url in urls for arg in ("--url", url)]
        return CliRunner().invoke(cli.app, [*args, "verify", "--tiers", *extra])

    try:
        asyncio.run(seed())
        ok = verify()
        assert ok.exit_code == 0, ok.output
        assert "1 thread(s): 0 difference(s), ok" in ok.output
        asyncio.run(make_stale())
        stale = verify("--thread", "t")
        assert stale.exit_code == 1, stale.output
        assert "DIFF default/t hot stale doc/k2 (truth: durable)" in stale.output
        assert redis_prefix not in stale.output and "postgresql://" not in stale.output
        fixed = verify("--repair")
        assert fixed.exit_code == 0, fixed.output
        assert "repaired" in fixed.output
        assert verify().exit_code == 0
        assert CliRunner().invoke(cli.app, ["--url", urls[1], "verify", "--repair"]).exit_code == 2
    finally:
        asyncio.run(drop_container())


# -- metrics ------------------------------------------------------------------------------


async def test_resume_heavy_workload_has_hit_ratio_above_95_percent(
    tiered: TieredStore,
) -> None:
    """50 LangGraph threads each run a few steps, then load their latest checkpoint 20
    times: over 95% of point reads are served hot, and Prometheus exports the ratio."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    Metrics(registry).watch_tiers(tiered, "resume")
    graph = three_step_graph(
        CheckpointSaver(EncryptedStore(tiered, deterministic_key_ring())), note_size=100
    )
    configs = [{"configurable": {"thread_id": f"w{i}"}} for i in range(50)]
    await asyncio.gather(*(graph.ainvoke({"steps": []}, c) for c in configs))  # type: ignore[arg-type]
    # Resumes in fresh savers (new processes): nothing cached in the adapter.
    for _ in range(20):
        saver = CheckpointSaver(EncryptedStore(tiered, deterministic_key_ring()))
        found = await asyncio.gather(*(saver.aget_tuple(c) for c in configs))  # type: ignore[arg-type]
        assert all(t is not None and t.checkpoint["channel_values"]["steps"] == ["a", "b", "c"]
                   for t in found)  # fmt: skip
    stats = tiered.stats
    assert stats.hit_ratio is not None and stats.hit_ratio > 0.95, stats
    assert stats.hot_hits >= 50 * 20
    ratio = registry.get_sample_value("checkpointers_hot_hit_ratio", {"tiers": "resume"})
    assert ratio == pytest.approx(stats.hit_ratio)
    hits = registry.get_sample_value("checkpointers_hot_reads_total",
                                     {"tiers": "resume", "result": "hit"})  # fmt: skip
    assert hits == stats.hot_hits
    assert registry.get_sample_value("checkpointers_tier_failovers_total",
                                     {"tiers": "resume"}) == 0  # fmt: skip


# -- outages ------------------------------------------------------------------------------


async def test_redis_killed_during_100_loops_loses_nothing_and_is_used_again(
    redis_process: RedisServer, postgres_database: str
) -> None:
    """Killing the hot Redis under 100 concurrent write/read loops: no error reaches a
    loop, every acknowledged record is durable and reads back; once Redis is restarted
    and the breaker's reset time has passed, reads are served from Redis again."""
    loops, rounds = 100, 12
    clock = Clock()
    hot = RedisStore.from_url(redis_process.url, socket_timeout=2.0)
    durable = PostgresStore.from_url(postgres_database, pool_max=20)
    breaker = CircuitBreaker(failure_threshold=1, reset_after=30.0, clock=clock)
    tiered = TieredStore(durable, hot=hot, breaker=breaker, owns_stores=True)
    acked: dict[RecordId, tuple[bytes, int]] = {}
    writes = Tally()
    killed, restarted = Gate(loops), Gate(loops)

    async def loop(n: int) -> None:
        for i in range(rounds):
            if i == 6:
                await killed.wait()  # some rounds run while Redis is dead, for sure
            if i == 9:
                await restarted.wait()
            record = _rec(f"loop{n}", f"k{i:02}", f"loop {n} round {i}".encode() * 8)
            version = await tiered.put(record)
            acked[record.id] = (record.body, version)
            writes.add()
            got = await tiered.get(record.id)
            assert got is not None and got.body == record.body
            if i:
                previous = _rec(f"loop{n}", f"k{i - 1:02}", b"")
                again = await tiered.get(previous.id)
                assert again is not None and again.body == acked[previous.id][0]

    async with tiered:
        work = asyncio.gather(*(loop(n) for n in range(loops)))
        await writes.reach(loops * 3)  # loops are mid-flight: kill Redis under them
        await asyncio.to_thread(redis_process.kill)
        killed.opened.set()
        await restarted.all_in()
        assert tiered.stats.failovers >= 1
        assert breaker.is_open
        await asyncio.to_thread(redis_process.start)
        clock.now += 31  # the breaker's reset time passes: the next call is a trial
        hits = tiered.stats.hot_hits
        restarted.opened.set()
        await work  # an exception in any loop fails the test here
        assert tiered.stats.hot_hits > hits + loops  # reads are served by Redis again
        assert not breaker.is_open
        last = _rec("loop7", f"k{rounds - 1:02}", b"")
        cached = await hot.get(last.id)
        assert cached is not None and cached.body == acked[last.id][0]
    assert len(acked) == loops * rounds
    async with PostgresStore.from_url(postgres_database) as fresh:
        stored = await fresh.get_many(list(acked))
    for rid, record in zip(acked, stored, strict=True):
        assert record is not None, rid
        assert (record.body, record.version) == acked[rid]


async def test_postgres_stopped_mid_run_refuses_writes_and_loses_nothing(
    postgres_process: PostgresServer, redis_server_url: str, redis_prefix: str
) -> None:
    """Stopping the durable PostgreSQL under 20 write loops: writes raise
    StoreUnavailableError and are not cached hot, acknowledged records still read from
    Redis; after it starts again writes succeed and every acknowledged record is durable."""
    loops = 20
    durable = PostgresStore.from_url(postgres_process.dsn, pool_max=10)
    hot = RedisStore.from_url(redis_server_url, prefix=redis_prefix)
    tiered = TieredStore(durable, hot=hot, owns_stores=True)
    acked: dict[RecordId, bytes] = {}
    refused: dict[RecordId, bool] = {}
    writes, failures = Tally(), Tally()
    outage_reads = Tally()
    stop = asyncio.Event()
    down = asyncio.Event()

    async def loop(n: int) -> None:
        i = 0
        while not stop.is_set():
            record = _rec(f"pg{n}", f"k{i:05}", f"loop {n} write {i}".encode())
            i += 1
            try:
                await tiered.put(record)
            except StoreUnavailableError as exc:
                refused[record.id] = exc.may_have_applied
                failures.add()
                if down.is_set():
                    assert await hot.get(record.id) is None  # never cached unacknowledged
                    last = max((r for r in acked if r.thread == f"pg{n}"), default=None)
                    if last is not None:
                        got = await tiered.get(last)  # served hot while durable is down
                        assert got is not None and got.body == acked[last]
                        outage_reads.add()
                continue
            acked[record.id] = record.body
            writes.add()

    async with tiered:
        work = asyncio.gather(*(loop(n) for n in range(loops)))
        await writes.reach(200)
        down.set()
        await asyncio.to_thread(postgres_process.stop)
        await failures.reach(loops * 5)
        await outage_reads.reach(loops)
        during = writes.count
        await asyncio.to_thread(postgres_process.start)
        down.clear()
        await writes.reach(during + 200)
        stop.set()
        await work
    assert failures.count >= loops * 5
    assert not set(refused) & set(acked)
    async with PostgresStore.from_url(postgres_process.dsn) as fresh:
        stored = await fresh.get_many(list(acked))
        for rid, record in zip(acked, stored, strict=True):
            assert record is not None and record.body == acked[rid], rid
        # A write refused with may_have_applied=False left nothing behind.
        never = [rid for rid, maybe in refused.items() if not maybe]
        assert never and all(r is None for r in await fresh.get_many(never))


# -- archive, retention, erasure ----------------------------------------------------------


async def test_archive_then_read_decrypts_identical_records_and_restores(
    tiered: TieredStore,
) -> None:
    """An archived thread reads back identical through EncryptedStore (from the archive,
    read-only: restore_on_read off), and restore brings the same records back into the
    durable tier."""
    hot, durable, archive = _tiers(tiered)
    tiered.restore_on_read = False
    enc = EncryptedStore(tiered, deterministic_key_ring(), tenant="acme")
    rids = [enc.record_id("t", "", "checkpoint", f"{i:04}") for i in range(5)]
    plain = {rid: f"checkpoint {rid.key} {secrets.token_hex(8)}".encode() * 50 for rid in rids}
    for rid in rids:
        await enc.put(rid, plain[rid], sort=rid.key)
    await enc.put(enc.record_id("u", "", "checkpoint", "0000"), b"other thread")
    before = await durable.find(Query(tenant="acme", thread="t"))
    assert await tiered.archive_thread("acme", "t") == 5
    assert await durable.find(Query(tenant="acme", thread="t")) == []
    assert await hot.find(Query(tenant="acme", thread="t")) == []
    copies = await archive.find(Query(tenant="acme", thread="t"))
    assert [(r.id, r.body, r.version, r.sort) for r in copies] == [
        (r.id, r.body, r.version, r.sort) for r in before]  # fmt: skip
    reads = tiered.stats.archive_reads
    for rid in rids:
        entry = await enc.get(rid)
        assert entry is not None and entry.data == plain[rid]
    assert tiered.stats.archive_reads == reads + 5
    entries = await enc.find(enc.query(thread="t", kind="checkpoint"))
    assert [e.data for e in entries] == [plain[rid] for rid in rids]
    latest = await enc.latest(enc.query(thread="t", kind="checkpoint"))
    assert latest is not None and latest.data == plain[rids[-1]]
    assert await tiered.restore_thread("acme", "t") == 5
    restored = await durable.find(Query(tenant="acme", thread="t"))
    assert [(r.id, r.body, r.version) for r in restored] == [
        (r.id, r.body, r.version) for r in before]  # fmt: skip
    reads = tiered.stats.archive_reads
    assert [(await enc.get(rid)) is not None for rid in rids] == [True] * 5
    assert tiered.stats.archive_reads == reads  # served by the warm tiers again
    assert (await tiered.compare_thread("acme", "t")).consistent


async def test_retention_and_erasure_leave_no_record_in_any_tier(
    tiered: TieredStore, redis_server_url: str, postgres_dsn: str, azurite: Any
) -> None:
    """After erasing a thread (live and archived) and a tenant, and sweeping expired
    threads, no Redis key, Postgres row or blob of them is left; the rest is intact."""
    hot, durable, archive = _tiers(tiered)
    now = time.time()

    def thread(name: str, tenant: str = "acme", **fields: Any) -> list[Record]:
        return [_rec(name, f"k{i}", b"x" * 300, tenant=tenant, **fields) for i in range(3)]

    await tiered.put_many(thread("keep") + thread("gone") + thread("old") + thread("x", "other")
                          + thread("expiring", expires_at=now + 60))  # fmt: skip
    await tiered.archive_thread("acme", "old")
    tiered.archive_retention = 60.0
    await tiered.put_many(thread("ancient"))
    await tiered.archive_thread("acme", "ancient")
    await hot.replicate(thread("old", version=1))  # a hot copy left behind, to be erased
    await tiered.delete_thread("acme", "gone")
    await tiered.delete_thread("acme", "old")
    await tiered.delete_tenant("other")
    while await tiered.sweep(now=now + 3600) > 0:
        pass
    erased = {("acme", "gone"), ("acme", "old"), ("acme", "expiring"), ("acme", "ancient"),
              ("other", "x")}  # fmt: skip

    client = aioredis.from_url(redis_server_url)
    try:
        keys = [k.decode() async for k in client.scan_iter(match=hot.prefix + "*", count=1000)]
        listed = [m.decode() for m in await client.zrange(f"{hot.prefix}{{acme}}:threads", 0, -1)]
        tenants = [m.decode() for m in await client.zrange(f"{hot.prefix}tenants", 0, -1)]
    finally:
        await client.aclose()
    for tenant, name in erased:
        assert not [k for k in keys if f"{{{tenant},{name}}}" in k], (tenant, name)
    assert not [k for k in keys if "{other" in k]
    assert "other" not in tenants
    assert set(listed) == {"keep"}
    assert [k for k in keys if "{acme,keep}" in k]

    conn = await asyncpg.connect(postgres_dsn)
    try:
        rows = await conn.fetch(
            f'SELECT DISTINCT tenant, thread FROM "{durable.schema}".checkpointers_records'
        )
        audit = await conn.fetch(
            f'SELECT operation, tenant, thread FROM "{durable.schema}".checkpointers_audit'
        )
    finally:
        await conn.close()
    assert {(r["tenant"], r["thread"]) for r in rows} == {("acme", "keep")}
    logged = {(r["operation"], r["tenant"], r["thread"]) for r in audit}
    assert {("delete_thread", "acme", "gone"), ("delete_tenant", "other", None),
            ("sweep", "acme", None)} <= logged  # fmt: skip

    async with ContainerClient.from_connection_string(
        azurite.connection_string, archive.container_name
    ) as container:
        names = [b.name async for b in container.list_blobs()]
    blob_threads = {(rid.tenant, rid.thread) for n in names if (rid := parse_name("cp/", n))}
    assert len(blob_threads) == len(names)  # every blob is one of ours, none unparsed
    assert not blob_threads & erased
    assert await tiered.find(Query(tenant="acme", thread="keep")) != []


# -- write-behind --------------------------------------------------------------------------


async def test_write_behind_flushes_batches_and_a_crash_loses_only_pending_writes(
    request: pytest.FixtureRequest,
) -> None:
    """Write-behind over Redis and PostgreSQL: 12 concurrent loops' writes read back at
    once, reach PostgreSQL in max_pending batches with the versions they were given; a
    store dropped without close loses only its queued writes, whose hot copies expire
    soon, and nothing it had flushed."""
    ticker = Ticker()
    async with AsyncExitStack() as stack:
        hot, durable = await _redis(request, stack), await _postgres(request, stack)
        assert isinstance(durable, PostgresStore)
        tiered = TieredStore(durable, hot=hot, write_behind=True, max_pending=50)
        assert tiered._queue is not None
        tiered._queue.sleep = ticker.sleep  # no interval ever ends: only max_pending flushes
        acked: dict[RecordId, tuple[bytes, int]] = {}

        async def loop(n: int) -> None:
            for i in range(10):
                record = _rec(f"wb{n}", f"k{i:02}", f"loop {n} write {i}".encode())
                acked[record.id] = (record.body, await tiered.put(record))
                again = replace(record, body=record.body + b"!")
                if i % 3 == 0:
                    acked[record.id] = (again.body, await tiered.put(again))

        await asyncio.gather(*(loop(n) for n in range(12)))
        got = await tiered.get_many(list(acked))
        assert [None if r is None else (r.body, r.version) for r in got] == list(acked.values())
        assert tiered._queue.flushes >= 2
        await tiered.flush()
        stored = await durable.get_many(list(acked))
        assert [None if r is None else (r.body, r.version) for r in stored] == list(acked.values())
        lost = [_rec("wb-lost", f"k{i}", b"never durable") for i in range(10)]
        await tiered.put_many(lost)
        await tiered._queue.stop()  # the process dies with its queue: never closed
        assert await durable.get_many([r.id for r in lost]) == [None] * 10
        stored = await durable.get_many(list(acked))
        assert all(r is not None for r in stored)
        cached = await hot.get(lost[0].id)
        assert cached is not None and cached.expires_at is not None
        assert cached.expires_at <= time.time() + 60


async def test_write_behind_postgres_outage_keeps_the_queue_and_loses_nothing(
    postgres_process: PostgresServer, redis_server_url: str, redis_prefix: str
) -> None:
    """PostgreSQL stopped with writes queued: the flush fails and keeps them, writes and
    close raise StoreUnavailableError, reads still see every write; once it is back the
    queue flushes and every acknowledged write is durable."""
    ticker = Ticker()
    durable = PostgresStore.from_url(postgres_process.dsn, pool_max=4)
    hot = RedisStore.from_url(redis_server_url, prefix=redis_prefix)
    tiered = TieredStore(durable, hot=hot, write_behind=True, owns_stores=True)
    assert tiered._queue is not None
    tiered._queue.sleep = ticker.sleep
    flushed = [_rec("out", f"f{i:02}", b"flushed") for i in range(20)]
    queued = [_rec("out", f"q{i:02}", b"queued") for i in range(20)]
    await tiered.setup()
    await tiered.put_many(flushed)
    assert await tiered.flush() == 20
    await tiered.put_many(queued)
    await asyncio.to_thread(postgres_process.stop)
    with pytest.raises(StoreUnavailableError):
        await tiered.flush()
    assert len(tiered._queue) == 20
    with pytest.raises(StoreUnavailableError):
        await tiered.put(_rec("out", "refused", b"refused"))
    with pytest.raises(StoreUnavailableError):
        await tiered.aclose()
    got = await tiered.get_many([r.id for r in flushed + queued])
    assert [None if r is None else r.body for r in got] == [r.body for r in flushed + queued]
    await asyncio.to_thread(postgres_process.start)
    for _ in range(10):  # the first calls may meet pooled connections the restart broke
        try:
            assert await tiered.flush() == 20
            break
        except StoreUnavailableError:
            continue
    assert len(tiered._queue) == 0
    assert await tiered.put(_rec("out", "after", b"after")) == 1
    await tiered.aclose()
    async with PostgresStore.from_url(postgres_process.dsn) as fresh:
        every = flushed + queued + [_rec("out", "after", b"after")]
        stored = await fresh.get_many([r.id for r in every])
        assert [None if r is None else r.body for r in stored] == [r.body for r in every]
        assert await fresh.get(_rec("out", "refused", b"").id) is None


class _Chat(TypedDict):
    messages: Annotated[list[str], operator.add]
    topic: str


def _reply(state: _Chat) -> dict[str, list[str]]:
    return {"messages": [f"re: {state['messages'][-1]}"]}


async def test_resuming_an_archived_langgraph_thread_keeps_its_history(
    tiered: TieredStore,
) -> None:
    """A LangGraph thread archived, then resumed and continued, keeps every checkpoint
    and channel value (the first read restores it into the durable tier)."""
    builder = StateGraph(_Chat)
    builder.add_node("reply", _reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    config: Any = {"configurable": {"thread_id": "chat"}}
    enc = EncryptedStore(tiered, deterministic_key_ring(), tenant="acme")
    async with CheckpointSaver(enc) as saver:
        graph = builder.compile(checkpointer=saver)
        await graph.ainvoke({"messages": ["one"], "topic": "billing"}, config)
        before = [s.config async for s in graph.aget_state_history(config)]
    await tiered.archive_thread("acme", "chat")
    enc = EncryptedStore(tiered, deterministic_key_ring(), tenant="acme")
    async with CheckpointSaver(enc) as saver:
        graph = builder.compile(checkpointer=saver)
        state = await graph.ainvoke({"messages": ["two"]}, config)
        assert state["messages"] == ["one", "re: one", "two", "re: two"]
        assert state["topic"] == "billing"
        after = [s.config async for s in graph.aget_state_history(config)]
        assert after[-len(before) :] == before
        assert len(after) > len(before)
