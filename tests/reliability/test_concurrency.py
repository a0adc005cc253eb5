"""Concurrency: two savers on one thread, many workers claiming snapshots across processes."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic_graph.exceptions import GraphNodeStatusError

from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import ConflictError
from checkpointers.stores.base import Store
from tests.reliability._support import key_ring, spawn_job

SAVER_BACKENDS = ("sqlite", "postgres")


async def _open_two(backend: str, request: pytest.FixtureRequest,
                    tmp_path: Path) -> list[Store]:  # fmt: skip
    """Two independent store instances (own connections) on the same storage."""
    if backend == "sqlite":
        from checkpointers.stores.sqlite import SqliteStore

        return [SqliteStore(tmp_path / "shared.db") for _ in range(2)]
    from checkpointers.stores.postgres import PostgresStore

    dsn = request.getfixturevalue("postgres_database")
    return [PostgresStore.from_url(dsn) for _ in range(2)]


def _checkpoint(saver: Any, cid: str, origin: str) -> tuple[dict[str, Any], dict[str, str]]:
    from langgraph.checkpoint.base import empty_checkpoint

    checkpoint = empty_checkpoint()
    checkpoint["id"] = cid
    versions = {ch: saver.get_next_version(None, None) for ch in ("x", "y")}
    checkpoint["channel_values"] = {"x": f"x from {origin}", "y": f"y from {origin}"}
    checkpoint["channel_versions"] = dict(versions)
    return checkpoint, versions


@pytest.mark.parametrize("backend", SAVER_BACKENDS)
async def test_two_savers_writing_one_thread_lose_nothing_and_never_mix(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two savers with their own connections put 40 checkpoints on one thread at once (all
    kept, each with its own values) and race on 10 shared checkpoint ids (one version wins
    whole: values and writes never mixed between the two)."""
    from checkpointers.langgraph import CheckpointSaver

    stores = await _open_two(backend, request, tmp_path)
    try:
        for store in stores:
            await store.setup()
        savers = [CheckpointSaver(EncryptedStore(s, key_ring())) for s in stores]
        thread = f"shared-{uuid.uuid4().hex[:8]}"
        base: Any = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        ids = {name: [str(uuid.uuid4()) for _ in range(20)] for name in ("A", "B")}

        async def put_many(saver: Any, name: str) -> list[Any]:
            out = []
            for cid in ids[name]:
                checkpoint, versions = _checkpoint(saver, cid, f"{name}:{cid}")
                out.append(await saver.aput(base, checkpoint, {"source": name}, versions))
            return out

        acked = await asyncio.gather(put_many(savers[0], "A"), put_many(savers[1], "B"))
        listed = [t async for t in savers[0].alist(base)]
        assert len(listed) == 40
        for name, configs in zip(("A", "B"), acked, strict=False):
            for config in configs:
                got = await savers[1].aget_tuple(config)
                cid = config["configurable"]["checkpoint_id"]
                assert got is not None
                assert got.checkpoint["channel_values"] == {
                    "x": f"x from {name}:{cid}", "y": f"y from {name}:{cid}"}  # fmt: skip

        for _ in range(10):
            cid = str(uuid.uuid4())
            made = [
                _checkpoint(saver, cid, origin) for saver, origin in zip(savers, "AB", strict=False)
            ]
            configs = await asyncio.gather(*(
                saver.aput(base, checkpoint, {"source": origin}, versions)
                for saver, (checkpoint, versions), origin in zip(savers, made, "AB", strict=False)
            ))  # fmt: skip
            await asyncio.gather(*(
                saver.aput_writes(config, [("x", f"write from {origin}"),
                                           ("y", f"write from {origin}")], task_id="task")
                for saver, config, origin in zip(savers, configs, ("A", "B"), strict=False)
            ))  # fmt: skip
            seen = [await saver.aget_tuple(configs[0]) for saver in savers]
            assert seen[0] is not None and seen[1] is not None
            values = seen[0].checkpoint["channel_values"]
            winner = values["x"].rsplit(" ", 1)[1]
            assert values == {"x": f"x from {winner}", "y": f"y from {winner}"}
            assert seen[1].checkpoint["channel_values"] == values
            writes = {(ch, v) for _, ch, v in seen[0].pending_writes}
            origins = {v.rsplit(" ", 1)[1] for _, v in writes}
            assert len(writes) == 2 and len(origins) == 1
    finally:
        for store in stores:
            await store.aclose()


async def test_record_run_race_lets_exactly_one_worker_start_a_snapshot(tmp_path: Path) -> None:
    """Two persistence objects starting the same created snapshot at once: one runs it, the
    other gets GraphNodeStatusError (or ConflictError), never both."""
    from checkpointers.pydantic_graph import StatePersistence
    from checkpointers.stores.sqlite import SqliteStore
    from tests.reliability._crash_worker import N1, PGState, pg_graph

    async with SqliteStore(tmp_path / "race.db") as raw:
        store = EncryptedStore(raw, key_ring())
        for _ in range(10):
            run_id = f"race-{uuid.uuid4().hex[:8]}"
            workers = [StatePersistence[PGState, str](store, run_id=run_id) for _ in range(2)]
            for worker in workers:
                worker.set_graph_types(pg_graph)
            await workers[0].snapshot_node(PGState(), N1())
            snapshot = (await workers[0].load_all())[0]

            async def start(worker: Any, snapshot_id: str = snapshot.id) -> str:
                try:
                    async with worker.record_run(snapshot_id):
                        await asyncio.sleep(0)
                except (GraphNodeStatusError, ConflictError):
                    return "refused"
                return "ran"

            outcomes = await asyncio.gather(*(start(w) for w in workers))
            assert sorted(outcomes) == ["ran", "refused"]


@pytest.mark.parametrize("workers", [4])
def test_workers_in_many_processes_claim_each_snapshot_once(
    postgres_database: str, tmp_path: Path, workers: int
) -> None:
    """Worker processes claiming one run's 60 created snapshots on PostgreSQL: every
    snapshot is claimed and run exactly once, none twice, none lost."""
    from checkpointers.pydantic_graph import StatePersistence
    from tests.reliability._crash_worker import N1, PGState, pg_graph

    run_id = f"claims-{uuid.uuid4().hex[:8]}"
    total = 60

    async def seed() -> list[str]:
        async with StatePersistence[PGState, str].from_url(
            postgres_database, run_id=run_id, keys=key_ring()
        ) as persistence:
            persistence.set_graph_types(pg_graph)
            for i in range(total):
                await persistence.snapshot_node(PGState(trail=[str(i)]), N1())
            return [s.id for s in await persistence.load_all()]

    async def statuses() -> list[str]:
        async with StatePersistence[PGState, str].from_url(
            postgres_database, run_id=run_id, keys=key_ring()
        ) as persistence:
            persistence.set_graph_types(pg_graph)
            return [getattr(s, "status", "end") for s in await persistence.load_all()]

    ids = asyncio.run(seed())
    log = tmp_path / "claims.log"
    procs = [
        spawn_job(
            {
                "adapter": "claim",
                "urls": [postgres_database],
                "thread": run_id,
                "log": str(log),
                "result": str(tmp_path / f"claim-{n}.json"),
            }
        )
        for n in range(workers)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * workers, log.read_text()
    claims = [line.split() for line in log.read_text().splitlines()]
    assert all(c[0] == "claimed" for c in claims), claims
    claimed_ids = [c[1] for c in claims]
    assert sorted(claimed_ids) == sorted(ids)  # each exactly once
    assert len({c[2] for c in claims}) >= 2  # the work really was shared
    assert asyncio.run(statuses()) == ["success"] * total
