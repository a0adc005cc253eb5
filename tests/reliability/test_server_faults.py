"""Server faults during many concurrent threads: the documented behaviour, nothing lost.

* Redis (the hot tier) killed and started again under 20 LangGraph threads: the circuit
  breaker skips it, no exception reaches a graph, every acknowledged checkpoint is durable.
* PostgreSQL connections of the store terminated (only this store's own backends, found by
  a unique application_name in this test's own database) during 20 writers: each operation
  succeeds or raises StoreUnavailableError, later ones succeed, nothing acknowledged lost.
* Azurite stopped during 20 writers: clear StoreUnavailableError within a bound, and after
  it comes back (persistent data) every acknowledged write is there.
* The Key Vault fake answering 429, 500 or not at all: KeyUnavailableError within a bound.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any, TypedDict

import pytest

from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import KeyUnavailableError, StoreUnavailableError
from checkpointers.record import RecordId
from checkpointers.resilience import CircuitBreaker
from checkpointers.tiered import TieredStore
from tests.harness.keyvault_fake import KeyVaultFake
from tests.harness.services import RedisServer
from tests.reliability._support import key_ring

THREADS = 20


async def apoll(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll `condition` on the event loop until true; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.005)  # paces the poll; the condition synchronises


# -- Redis restarted under a tiered store ---------------------------------------------------


class Steps(TypedDict, total=False):
    steps: list[str]


async def test_redis_killed_and_restarted_under_tiered_langgraph_threads(
    redis_process: RedisServer, postgres_database: str
) -> None:
    """Twenty LangGraph threads keep running while the hot Redis tier is killed and started
    again: no exception reaches a graph, each ends in the right state, and every checkpoint
    the saver acknowledged reads back from the durable tier."""
    from langgraph.graph import END, START, StateGraph

    from checkpointers.langgraph import CheckpointSaver
    from checkpointers.stores.postgres import PostgresStore
    from checkpointers.stores.redis import RedisStore

    acked: list[dict[str, Any]] = []

    class AckSaver(CheckpointSaver):
        async def aput(self, *args: Any, **kwargs: Any) -> Any:
            config = await super().aput(*args, **kwargs)
            acked.append(config)
            return config

    arrived = {"down": 0, "up": 0}
    gates = {"down": asyncio.Event(), "up": asyncio.Event()}
    names = [f"s{i}" for i in range(8)]

    def node(name: str) -> Any:
        async def run(state: Steps) -> Steps:
            for phase, at in (("down", "s3"), ("up", "s6")):
                if name == at:
                    arrived[phase] += 1
                    await gates[phase].wait()
            return {"steps": [*state.get("steps", []), name]}

        return run

    builder = StateGraph(Steps)
    for name in names:
        builder.add_node(name, node(name))
    builder.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        builder.add_edge(a, b)
    builder.add_edge(names[-1], END)

    hot = RedisStore.from_url(redis_process.url, socket_timeout=1.0)
    durable = PostgresStore.from_url(postgres_database, pool_max=20)
    breaker = CircuitBreaker(failure_threshold=3, reset_after=0.2)
    tiered = TieredStore(durable, hot=hot, breaker=breaker)
    try:
        async with tiered:
            saver = AckSaver(EncryptedStore(tiered, key_ring()))
            graph = builder.compile(checkpointer=saver)
            runs = [
                asyncio.create_task(
                    graph.ainvoke(
                        {"steps": []}, {"configurable": {"thread_id": f"r{i}"}}, durability="sync"
                    )
                )
                for i in range(THREADS)
            ]
            await apoll(lambda: arrived["down"] == THREADS, timeout=60, what="threads at s3")
            await asyncio.to_thread(redis_process.kill)
            gates["down"].set()
            await apoll(lambda: arrived["up"] == THREADS, timeout=60, what="threads at s6")
            failovers = tiered.stats.failovers
            await asyncio.to_thread(redis_process.start)
            gates["up"].set()
            results = await asyncio.gather(*runs)  # an exception here fails the test
            assert all(r["steps"] == names for r in results)
            assert failovers >= 1
        async with PostgresStore.from_url(postgres_database) as fresh:
            reader = CheckpointSaver(EncryptedStore(fresh, key_ring()))
            for config in acked:
                got = await reader.aget_tuple(config)
                assert got is not None
                assert got.config["configurable"]["checkpoint_id"] == \
                    config["configurable"]["checkpoint_id"]  # fmt: skip
            assert len(acked) >= THREADS * len(names)
    finally:
        await hot.aclose()
        await durable.aclose()


# -- PostgreSQL connections terminated ------------------------------------------------------


async def _writers(store: EncryptedStore, per_writer: int,
                   outcomes: dict[str, int], acked: dict[RecordId, bytes]) -> None:  # fmt: skip
    """THREADS writers, each writing `per_writer` records, retrying a failed write until it
    is acknowledged; every outcome must be success or StoreUnavailableError."""

    async def writer(w: int) -> None:
        for i in range(per_writer):
            rid = store.record_id(f"w{w}", "", "doc", f"k{i}")
            data = f"writer {w} record {i}".encode() * 4
            for _attempt in range(20):
                try:
                    await store.put(rid, data)
                except StoreUnavailableError:
                    outcomes["unavailable"] += 1
                    continue
                outcomes["ok"] += 1
                acked[rid] = data
                break
            else:
                raise AssertionError(f"writer {w} never got record {i} acknowledged")
            if i % 3 == 0:
                try:
                    got = await store.get(rid)
                    assert got is not None and got.data == data
                except StoreUnavailableError:
                    outcomes["unavailable"] += 1

    await asyncio.gather(*(writer(w) for w in range(THREADS)))


async def test_postgres_backends_terminated_during_twenty_writers(postgres_database: str) -> None:
    """Terminating this store's own PostgreSQL backends three times while 20 writers run
    gives only successes or StoreUnavailableError; afterwards every acknowledged record
    reads back and new operations succeed."""
    import asyncpg

    from checkpointers.stores.postgres import PostgresStore

    app = f"cp-fault-{uuid.uuid4().hex[:12]}"
    outcomes = {"ok": 0, "unavailable": 0}
    acked: dict[RecordId, bytes] = {}
    terminated: list[int] = []
    raw = PostgresStore.from_url(postgres_database, pool_max=8,
                                 server_settings={"application_name": app})  # fmt: skip
    admin = await asyncpg.connect(postgres_database)
    try:
        async with raw:
            store = EncryptedStore(raw, key_ring())
            work = asyncio.create_task(_writers(store, 30, outcomes, acked))
            for threshold in (60, 200, 400):
                await apoll(lambda t=threshold: len(acked) >= t or work.done(), timeout=60,
                            what=f"{threshold} acknowledged writes")  # fmt: skip
                # Only this store's backends: its unique application_name, in this test's
                # own database. Never any other session's.
                rows = await admin.fetch(
                    "SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity "
                    "WHERE application_name = $1 AND datname = current_database() "
                    "AND pid <> pg_backend_pid()",
                    app,
                )
                terminated += [r["pid"] for r in rows]
            await work
            for rid, data in acked.items():
                for _attempt in range(3):
                    try:
                        got = await store.get(rid)
                        break
                    except StoreUnavailableError:
                        continue
                assert got is not None and got.data == data
            await store.put(store.record_id("after", "", "doc", "k"), b"fine")
    finally:
        await admin.close()
    assert terminated, "no backend of the store was terminated"
    assert len(acked) == THREADS * 30
    print(f"postgres: {len(terminated)} backends terminated, outcomes {outcomes}")


# -- Azurite stopped ------------------------------------------------------------------------


async def test_azurite_stopped_gives_store_unavailable_within_a_bound(
    request: pytest.FixtureRequest,
) -> None:
    """With Azurite stopped under 20 writers, every blob operation raises
    StoreUnavailableError in under 10 s; once it is back, every acknowledged write is there."""
    from azure.storage.blob.aio import ContainerClient

    from checkpointers.stores.azure_blob import AzureBlobStore
    from tests.harness._common import HarnessUnavailable
    from tests.harness.azurite import Azurite
    from tests.harness.plugin import unavailable

    request.getfixturevalue("azurite")  # skip (or fail in CI) when Azurite cannot run
    server = Azurite(persistent=True)
    try:
        server.start()
    except HarnessUnavailable as exc:
        server.close()
        unavailable(str(exc))
    try:
        client = ContainerClient.from_connection_string(
            server.connection_string, f"cp-{uuid.uuid4().hex[:16]}", retry_total=0,
            connection_timeout=2, read_timeout=5,
        )  # fmt: skip
        async with client:
            await client.create_container()
            async with AzureBlobStore(client, prefix="cp/") as blob:
                store = EncryptedStore(blob, key_ring())
                acked: dict[RecordId, bytes] = {}
                rids = [store.record_id(f"w{w}", "", "doc", f"k{i}")
                        for w in range(THREADS) for i in range(3)]  # fmt: skip
                await asyncio.gather(*(store.put(rid, rid.thread.encode() * 9) for rid in rids))
                acked.update({rid: rid.thread.encode() * 9 for rid in rids})
                await asyncio.to_thread(server.stop)
                started = time.monotonic()
                outcomes = await asyncio.gather(
                    *(store.get(rid) for rid in rids[:THREADS]),
                    *(store.put(store.record_id(f"w{w}", "", "doc", "late"), b"x")
                      for w in range(THREADS)),
                    return_exceptions=True,
                )  # fmt: skip
                elapsed = time.monotonic() - started
                assert all(isinstance(o, StoreUnavailableError) for o in outcomes), outcomes
                assert elapsed < 10.0
                await asyncio.to_thread(server.start)
                for rid, data in acked.items():
                    got = await store.get(rid)
                    assert got is not None and got.data == data
    finally:
        server.close()


# -- Key Vault faults -----------------------------------------------------------------------

KV_OPTIONS = {"retry_total": 1, "retry_backoff_factor": 0.01, "retry_backoff_max": 0.05,
              "connection_timeout": 1, "read_timeout": 1}  # fmt: skip
KV_BOUND = 8.0


@pytest.mark.parametrize("fault", ["throttle", "error", "hang"])
async def test_key_vault_faults_give_key_unavailable_within_a_bound(
    keyvault: KeyVaultFake, fault: str
) -> None:
    """With the vault answering 429, 500 or nothing, 20 concurrent first reads raise
    KeyUnavailableError in under 8 s (timeouts configured); once it recovers, every
    acknowledged record decrypts."""
    from azure.keyvault.keys.aio import KeyClient

    from checkpointers.crypto.azure_keyvault import key_ring_from_key_vault
    from checkpointers.stores.memory import MemoryStore

    name = f"kek-{uuid.uuid4().hex[:12]}"
    async with KeyClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as kc:
        await kc.create_rsa_key(name, size=2048)
    options = {**keyvault.client_kwargs, **KV_OPTIONS}
    base = MemoryStore()
    rids: list[RecordId] = []
    async with await key_ring_from_key_vault(keyvault.url, name, keyvault.credential,
                                             **options) as ring:  # fmt: skip
        writer = EncryptedStore(base, ring)
        for i in range(THREADS):
            rid = writer.record_id(f"t{i}", "", "doc", "k")
            await writer.put(rid, f"record {i}".encode())
            rids.append(rid)
    if fault == "throttle":
        keyvault.inject("throttle", None, retry_after=0)
    elif fault == "error":
        keyvault.inject("error", None, status=500)
    else:
        keyvault.inject("hang", None)
    try:
        async with await key_ring_from_key_vault(
            keyvault.url, name, keyvault.credential, versions=[ring.current_key_id.rsplit("/", 1)[1]],
            **options,
        ) as fresh:  # fmt: skip
            reader = EncryptedStore(base, fresh)
            started = time.monotonic()
            outcomes = await asyncio.gather(*(reader.get(rid) for rid in rids),
                                            return_exceptions=True)  # fmt: skip
            elapsed = time.monotonic() - started
            assert all(isinstance(o, KeyUnavailableError) for o in outcomes), outcomes
            assert elapsed < KV_BOUND, elapsed
            assert all(name in str(o) for o in outcomes)
            keyvault.clear_faults()
            for i, rid in enumerate(rids):
                got = await reader.get(rid)
                assert got is not None and got.data == f"record {i}".encode()
    finally:
        keyvault.clear_faults()


# -- Redis hung (SIGSTOP) under concurrent LangGraph runs ----------------------------------


async def test_hung_redis_costs_about_a_second_once(
    redis_process: RedisServer, postgres_database: str
) -> None:
    """Redis SIGSTOPped during 30 concurrent LangGraph runs on tiers opened by URL: no
    exception reaches a graph, no checkpoint write waits much more than the hot tier's
    one-second timeout, and every run ends in the right state."""
    from langgraph.graph import END, START, StateGraph

    from checkpointers.langgraph import CheckpointSaver

    runs, names = 30, [f"s{i}" for i in range(6)]
    waits: list[float] = []
    arrived, gate = [0], asyncio.Event()

    class TimedSaver(CheckpointSaver):
        async def aput(self, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await super().aput(*args, **kwargs)
            finally:
                waits.append(time.perf_counter() - started)

    def node(name: str) -> Any:
        async def run(state: Steps) -> Steps:
            if name == "s2":
                arrived[0] += 1
                await gate.wait()
            return {"steps": [*state.get("steps", []), name]}

        return run

    builder = StateGraph(Steps)
    for name in names:
        builder.add_node(name, node(name))
    builder.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        builder.add_edge(a, b)
    builder.add_edge(names[-1], END)

    urls = [redis_process.url, postgres_database]
    async with TimedSaver.from_url(urls, keys=key_ring()) as saver:
        graph = builder.compile(checkpointer=saver)
        configs = [{"configurable": {"thread_id": f"h{i}"}} for i in range(runs)]
        tasks = [
            asyncio.create_task(graph.ainvoke({"steps": []}, c, durability="sync"))
            for c in configs
        ]
        try:
            await apoll(lambda: arrived[0] == runs, timeout=60, what="runs at s2")
            redis_process.pause()
            waits.clear()
            gate.set()
            results = await asyncio.gather(*tasks)  # an exception here fails the test
        finally:
            redis_process.resume()
    assert all(r["steps"] == names for r in results)
    assert len(waits) >= runs * 3
    # One second of socket timeout, then the breaker is open; a half-open probe may cost
    # one more second later. The bound leaves room for a loaded CI machine.
    assert max(waits) < 3.0, sorted(waits)[-5:]
