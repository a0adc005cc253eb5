"""Plaintext leak scan: a canary in state, metadata, errors and writes never reaches storage,
logs, metrics or exception texts.

A LangGraph run and a pydantic-graph run carry a random canary in their state (node names
kept in state too), metadata, a node's error message and their writes. They run on SQLite
and on tiers (Redis hot, PostgreSQL durable, Azure Blob archive; one thread of each is
archived). Then every byte an attacker with read access could see is scanned: the SQLite
file with its WAL, `pg_dump` of the database, every Redis key (name, DUMP, members), every
blob (name, content, metadata, tags), the captured logs at DEBUG, the Prometheus output and
the texts of the checkpointers exceptions raised on the way.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import CheckpointersError
from checkpointers.observability import InstrumentedStore, Metrics
from checkpointers.stores.base import Store
from checkpointers.stores.sqlite import SqliteStore
from checkpointers.tiered import TieredStore
from tests.reliability._raw import SqliteRaw
from tests.reliability._support import key_ring

CANARY = f"CANARY{uuid.uuid4().hex}"


def _variants(canary: str) -> list[bytes]:
    raw = canary.encode()
    return [raw, raw.hex().encode(), raw.hex().upper().encode(), canary.encode("utf-16-le")]


def _leaks(where: str, data: bytes | str) -> list[str]:
    blob = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return [where for v in _variants(CANARY) if v in blob]


# -- the runs -----------------------------------------------------------------------------


class LGState(TypedDict, total=False):
    messages: Annotated[list[str], operator.add]
    visited: Annotated[list[str], operator.add]
    secret: str


class _Unserializable:
    """Carries the canary in its repr; no serializer accepts it (it holds a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Unserializable({CANARY})"


async def _langgraph_runs(store: EncryptedStore, threads: list[str],
                          errors: list[BaseException]) -> None:  # fmt: skip
    from langgraph.graph import END, START, StateGraph

    from checkpointers.langgraph import CheckpointSaver

    def first(state: LGState) -> LGState:
        return {"messages": [f"hello {CANARY}"], "visited": [f"first:{CANARY}"]}

    def second(state: LGState) -> LGState:
        if state.get("secret") == "fail":
            raise ValueError(f"node failed while holding {CANARY}")
        return {"messages": [f"bye {CANARY}"], "visited": [f"second:{CANARY}"],
                "secret": f"s-{CANARY}"}  # fmt: skip

    builder = StateGraph(LGState)
    builder.add_node("first", first)
    builder.add_node("second", second)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", END)
    saver = CheckpointSaver(store)
    graph = builder.compile(checkpointer=saver)
    for thread in threads:
        config: Any = {"configurable": {"thread_id": thread, "user_note": CANARY},
                       "metadata": {"note": f"meta {CANARY}"}}  # fmt: skip
        await graph.ainvoke({"messages": [CANARY], "secret": "ok"}, config, durability="sync")
        failing: Any = {"configurable": {"thread_id": f"{thread}-err"},
                        "metadata": {"note": CANARY}}  # fmt: skip
        with pytest.raises(ValueError, match="node failed"):  # the user's own exception
            await graph.ainvoke({"messages": [CANARY], "secret": "fail"}, failing,
                                durability="sync")  # fmt: skip
        found = [c async for c in saver.alist(None, filter={"note": f"meta {CANARY}"})]
        assert found
        state = await graph.aget_state(config)
        assert CANARY in state.values["secret"]
    # Errors the package raises with canary-bearing input.
    latest = await saver.aget_tuple({"configurable": {"thread_id": threads[0]}})
    assert latest is not None
    for bad in (_Unserializable(), {"k": _Unserializable()}):
        try:
            await saver.aput_writes(latest.config, [("messages", bad)], task_id="t-bad")
        except CheckpointersError as exc:
            errors.append(exc)


@dataclass
class PGState:
    secret: str = ""
    visited: list[str] = field(default_factory=list)
    blob: Any = None


async def _pydantic_graph_runs(store: EncryptedStore, runs: list[str],
                               errors: list[BaseException]) -> None:  # fmt: skip
    from pydantic_graph import BaseNode, End, GraphRunContext
    from pydantic_graph.graph import Graph

    from checkpointers.pydantic_graph import StatePersistence

    @dataclass
    class Second(BaseNode[PGState, None, str]):
        async def run(self, ctx: GraphRunContext[PGState, None]) -> End[str]:
            if ctx.state.secret == "fail":
                raise RuntimeError(f"pydantic node failed with {CANARY}")
            ctx.state.visited.append(f"Second:{CANARY}")
            return End(f"result {CANARY}")

    @dataclass
    class First(BaseNode[PGState, None, str]):
        note: str = CANARY

        async def run(self, ctx: GraphRunContext[PGState, None]) -> Second:
            ctx.state.visited.append(f"First:{CANARY}")
            return Second()

    graph = Graph(nodes=[First, Second])
    for run_id in runs:
        persistence = StatePersistence[PGState, str](store, run_id=run_id)
        result = await graph.run(First(), state=PGState(secret=f"s {CANARY}"),
                                 persistence=persistence)  # fmt: skip
        assert CANARY in result.output
        failing = StatePersistence[PGState, str](store, run_id=f"{run_id}-err")
        with pytest.raises(RuntimeError, match="pydantic node failed"):
            await graph.run(First(), state=PGState(secret="fail"), persistence=failing)
        loaded = await failing.load_all()
        assert loaded
    bad = StatePersistence[PGState, str](store, run_id="bad-run")
    try:
        await graph.run(First(), state=PGState(blob=_Unserializable()), persistence=bad)
    except CheckpointersError as exc:
        errors.append(exc)


# -- scanners -----------------------------------------------------------------------------


async def _scan_redis(url: str, prefix: str) -> tuple[int, list[str]]:
    import redis.asyncio

    found: list[str] = []
    keys = 0
    async with redis.asyncio.Redis.from_url(url) as client:
        async for key in client.scan_iter(match=prefix.replace("*", "\\*") + "*", count=500):
            keys += 1
            found += _leaks("redis key name", key)
            found += _leaks(f"redis DUMP {key!r}", await client.dump(key) or b"")
            kind = (await client.type(key)).decode()
            if kind == "hash":
                for name, value in (await client.hgetall(key)).items():
                    found += _leaks(f"redis hash {key!r}", name + b"=" + value)
            elif kind == "zset":
                for member in await client.zrange(key, 0, -1):
                    found += _leaks(f"redis zset {key!r}", member)
            elif kind == "set":
                for member in await client.smembers(key):
                    found += _leaks(f"redis set {key!r}", member)
            elif kind == "string":
                found += _leaks(f"redis string {key!r}", await client.get(key) or b"")
    return keys, found


async def _scan_postgres(dsn: str) -> tuple[int, list[str]]:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is not None:
        dump = await asyncio.to_thread(lambda: subprocess.run(
            [pg_dump, "--dbname", dsn], capture_output=True, check=True, timeout=120).stdout)  # fmt: skip
        return len(dump), _leaks("pg_dump", dump)
    import asyncpg  # no pg_dump: every table, bytea as hex, every text column

    conn = await asyncpg.connect(dsn)
    try:
        text = ""
        for table in await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables WHERE "
            "schemaname NOT IN ('pg_catalog', 'information_schema')"
        ):
            rows = await conn.fetch(f'SELECT * FROM "{table[0]}"."{table[1]}"')
            text += "".join(repr([v.hex() if isinstance(v, bytes) else v for v in r.values()])
                            for r in rows)  # fmt: skip
    finally:
        await conn.close()
    return len(text), _leaks("postgres tables", text)


async def _scan_blobs(container: Any) -> tuple[int, list[str]]:
    found: list[str] = []
    count = 0
    async for item in container.list_blobs(include=["metadata", "tags"]):
        count += 1
        found += _leaks("blob name", item.name)
        found += _leaks(f"blob metadata {item.name}", repr(item.metadata))
        found += _leaks(f"blob tags {item.name}", repr(item.tags))
        stream = await container.get_blob_client(item.name).download_blob()
        found += _leaks(f"blob content {item.name}", await stream.readall())
    return count, found


async def test_no_plaintext_reaches_any_tier_log_metric_or_error(
    request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After LangGraph and pydantic-graph runs carrying a canary on SQLite and on
    Redis/PostgreSQL/Blob tiers, the canary occurs zero times in raw storage, logs at DEBUG,
    Prometheus output and the texts of exceptions the package raised."""
    from azure.storage.blob.aio import ContainerClient
    from prometheus_client import CollectorRegistry, generate_latest

    from checkpointers.stores.azure_blob import AzureBlobStore
    from checkpointers.stores.postgres import PostgresStore
    from checkpointers.stores.redis import RedisStore

    caplog.set_level(logging.DEBUG)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    errors: list[BaseException] = []
    redis_url = request.getfixturevalue("redis_server_url")
    prefix = request.getfixturevalue("redis_prefix")
    dsn = request.getfixturevalue("postgres_database")
    azurite = request.getfixturevalue("azurite")
    container = ContainerClient.from_connection_string(
        azurite.connection_string, f"cp-{uuid.uuid4().hex[:20]}", retry_total=1
    )
    db = tmp_path / "leak.db"
    scanned: dict[str, int] = {}
    found: list[str] = []
    async with container:
        await container.create_container()
        try:
            async with SqliteStore(db) as sqlite_store:
                ring = key_ring()
                metrics.watch_key_ring(ring, "leak")
                store = EncryptedStore(
                    InstrumentedStore(sqlite_store, name="sqlite", metrics=metrics, tracer=None),
                    ring,
                )
                await _langgraph_runs(store, ["lg-a"], errors)
                await _pydantic_graph_runs(store, ["pg-a"], errors)
            tiers: list[Store] = [
                RedisStore.from_url(redis_url, prefix=prefix),
                PostgresStore.from_url(dsn),
            ]
            tiered = TieredStore(
                InstrumentedStore(tiers[1], name="durable", metrics=metrics, tracer=None),
                hot=InstrumentedStore(tiers[0], name="hot", metrics=metrics, tracer=None),
                archive=AzureBlobStore(container, prefix="cp/"),
            )
            try:
                async with tiered:
                    store = EncryptedStore(tiered, ring)
                    await _langgraph_runs(store, ["lg-b", "lg-c"], errors)
                    await _pydantic_graph_runs(store, ["pg-b", "pg-c"], errors)
                    await tiered.archive_thread(store.tenant, "lg-c")
                    await tiered.archive_thread(store.tenant, "pg-c")
                    # A tampered record: its IntegrityError text is scanned too.
                    rid = (await store.find_records(store.query(thread="lg-b")))[0].id
                    await SqliteRaw(db).dump()
                    from tests.reliability._raw import PostgresRaw

                    raw = PostgresRaw(dsn)
                    try:
                        body = await raw.read(rid)
                        await raw.write(rid, body[:-1] + bytes([body[-1] ^ 1]))
                    finally:
                        await raw.aclose()
                    tiered.hot = None  # read the tampered durable copy
                    try:
                        await store.get(rid)
                    except CheckpointersError as exc:
                        errors.append(exc)
            finally:
                for tier in tiers:
                    await tier.aclose()

            scanned["sqlite bytes"] = len(await SqliteRaw(db).dump())
            found += _leaks("sqlite file", await SqliteRaw(db).dump())
            scanned["pg_dump bytes"], more = await _scan_postgres(dsn)
            found += more
            scanned["redis keys"], more = await _scan_redis(redis_url, prefix)
            found += more
            scanned["blobs"], more = await _scan_blobs(container)
            found += more
        finally:
            if azurite.running:
                await container.delete_container()

    for record in caplog.records:
        found += _leaks(f"log {record.name}", record.getMessage() + repr(record.__dict__))
    scanned["log records"] = len(caplog.records)
    exposition = generate_latest(registry) + generate_latest()
    found += _leaks("prometheus", exposition)
    scanned["metrics bytes"] = len(exposition)
    for exc in errors:
        found += _leaks(f"exception {type(exc).__name__}", f"{exc}\n{exc!r}")
    scanned["exceptions"] = len(errors)
    assert len(errors) >= 3, errors
    assert all(n > 0 for n in scanned.values()), scanned
    print(f"leak scan: {scanned}; canary occurrences: {len(found)}")
    assert found == [], found


async def test_the_scanners_find_a_planted_canary(tmp_path: Path) -> None:
    """The scan is sensitive: a canary written unencrypted into SQLite is found, in plain
    and in hex form (as pg_dump prints bytea)."""
    from checkpointers.record import Record, RecordId

    db = tmp_path / "planted.db"
    async with SqliteStore(db) as store:
        await store.put(Record(id=RecordId("t", "th", "", "doc", "k"), body=CANARY.encode()))
    assert _leaks("sqlite", await SqliteRaw(db).dump())
    assert _leaks("hex", CANARY.encode().hex())
