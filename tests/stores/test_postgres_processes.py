"""PostgresStore across separate processes: concurrent migrations, compare-and-set, claims.

Each worker (`tests/stores/_postgres_worker.py`) is its own Python process with its own
asyncpg pool; the workers open their pools, report ready, and are released together, so
that they race on the database and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from checkpointers.record import Record, RecordId
from checkpointers.stores import _postgres_sql as sql
from checkpointers.stores.postgres import PostgresStore
from tests.stores._postgres_worker import CAS_ID

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0


def _spawn(mode: str, dsn: str, schema: str, n: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.stores._postgres_worker", mode, dsn, schema, str(n)],
        cwd=ROOT, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def _run_together(args: list[tuple[str, str, str, int]]) -> list[dict[str, Any]]:
    """Start one worker per argument tuple, release them all at once, return their reports.

    Waits (with a deadline) for every worker's `ready` line before releasing any of them.
    """
    procs = [_spawn(*a) for a in args]
    try:
        waiting = {p.stdout: p for p in procs if p.stdout is not None}
        deadline = time.monotonic() + DEADLINE
        with selectors.DefaultSelector() as selector:
            for stream in waiting:
                selector.register(stream, selectors.EVENT_READ)
            while waiting:
                left = deadline - time.monotonic()
                assert left > 0, "workers did not get ready in time"
                for key, _ in selector.select(timeout=left):
                    proc = waiting.pop(key.fileobj)  # type: ignore[call-overload]
                    selector.unregister(key.fileobj)
                    line = proc.stdout.readline() if proc.stdout else ""
                    assert line.strip() == "ready", f"worker failed early: {line}{_stderr(proc)}"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _stderr(proc: subprocess.Popen[str]) -> str:
    proc.kill()
    _, err = proc.communicate()
    return err


async def _fetch(dsn: str, query: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def test_sixteen_processes_running_setup_at_once_apply_each_migration_once(
    postgres_database: str,
) -> None:
    """16 processes calling setup() together on an empty database all succeed, and the
    migrations table holds each migration exactly once."""
    assert (
        await _fetch(
            postgres_database,
            "SELECT 1 FROM pg_namespace WHERE nspname = 'app'",
        )
        == []
    )
    reports = await asyncio.to_thread(_run_together, [("setup", postgres_database, "app", 0)] * 16)
    assert len(reports) == 16
    # Released together (in practice all 16 begin within ~20 ms, before the first setup
    # ends ~60-90 ms later); at least half of them must have raced, even on a busy machine.
    first_end = min(r["ended"] for r in reports)
    assert sum(1 for r in reports if r["started"] < first_end) >= 8
    rows = await _fetch(
        postgres_database, 'SELECT version, name FROM "app".checkpointers_migrations'
    )
    assert sorted((r["version"], r["name"]) for r in rows) == [(v, n) for v, n, _ in sql.MIGRATIONS]
    # And the schema works: a 17th store (no migration left to apply) writes and reads.
    async with PostgresStore.from_url(postgres_database, schema="app") as store:
        await store.put(Record(id=CAS_ID, body=b"1"))
        assert await store.get(CAS_ID) is not None
    again = await _fetch(postgres_database, 'SELECT count(*) FROM "app".checkpointers_migrations')
    assert again[0][0] == len(sql.MIGRATIONS)


async def test_two_processes_compare_and_set_one_record_1000_times_lose_no_update(
    postgres_database: str,
) -> None:
    """Two processes CAS-ing one counter 500 times each: every attempt wins or conflicts,
    the winners' versions are exactly 2..wins+1, and the counter equals the wins."""
    async with PostgresStore.from_url(postgres_database, schema="app") as store:
        assert await store.put(Record(id=CAS_ID, body=b"0")) == 1
    reports = await asyncio.to_thread(_run_together, [("cas", postgres_database, "app", 500)] * 2)
    won = [v for r in reports for v in r["won"]]
    conflicts = sum(r["conflicts"] for r in reports)
    assert len(won) + conflicts == 1000
    assert sorted(won) == list(range(2, len(won) + 2))  # no version handed out twice
    assert conflicts > 0 and all(r["won"] for r in reports)  # they did race
    async with PostgresStore.from_url(postgres_database, schema="app") as store:
        final = await store.get(CAS_ID)
    assert final is not None
    assert final.version == len(won) + 1
    assert int(final.body) == len(won)


async def test_100_tasks_in_four_processes_claim_1000_items_each_exactly_once(
    postgres_database: str,
) -> None:
    """100 claiming tasks (25 in each of 4 processes) take each of 1,000 items exactly once."""
    async with PostgresStore.from_url(postgres_database, schema="app") as store:
        await store.put_many(
            [Record(id=RecordId("acme", "run", "", "doc", f"s{i:04}"), body=b"",
                    sort=f"{i:04}", status="created") for i in range(1000)]
        )  # fmt: skip
    reports = await asyncio.to_thread(_run_together, [("claim", postgres_database, "app", 25)] * 4)
    claimed = [key for r in reports for key in r["claimed"]]
    assert [k for k, n in Counter(claimed).items() if n > 1] == []
    assert sorted(claimed) == [f"s{i:04}" for i in range(1000)]
    assert sum(1 for r in reports if r["claimed"]) >= 2  # more than one process took items
    statuses = await _fetch(
        postgres_database,
        "SELECT status, count(*) FROM \"app\".checkpointers_records WHERE thread = 'run'"
        " GROUP BY status",
    )
    assert [(r["status"], r["count"]) for r in statuses] == [("pending", 1000)]
