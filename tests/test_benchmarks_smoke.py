"""Smoke test of `benchmarks/`: every scenario runs at toy sizes on memory and SQLite (the
resume scenario with real crasher and resumer processes), so the benchmark code cannot
rot. It measures nothing; `python -m benchmarks.run` does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.sqlite.aio")
pytest.importorskip("pydantic_graph")

from benchmarks import pydantic_graph_scenarios as pg
from benchmarks import run as bench
from benchmarks._null_cipher import NullCipherKeyRing
from benchmarks._report import Ratio, merge_ratios, ratio_table
from benchmarks._targets import open_saver
from checkpointers import IntegrityError, RecordId
from checkpointers.testing import deterministic_key_ring

TOY = bench.Sizes(
    threads=3,
    nodes=2,
    concurrency=2,
    payload_bytes=1200,
    turns=4,
    message_bytes=1500,
    pg_nodes=4,
    pg_repeats=1,
    pg_runs=4,
    pg_run_nodes=2,
    enc_threads=2,
    enc_repeats=1,
    resume_threads=1,
    lat_concurrency=(1, 3),
    lat_ops=6,
    rt_calls=2,
)
LOCAL = {
    "ours/memory",
    "ours/sqlite",
    "InMemorySaver",
    "AsyncSqliteSaver",
    "FileStatePersistence",
    "FullStatePersistence",
}


async def test_every_scenario_runs_and_writes_ratio_tables(tmp_path: Path) -> None:
    """Every scenario runs on local configurations and writes JSON and Markdown; a
    configuration without its server is skipped, not failed."""
    report = await bench.run(
        [1, 2, 3, 4, 5, 6], TOY, tmp_path, LOCAL | {"ours/postgres"}, servers=False
    )

    scenarios = report["scenarios"]
    for number in ("1", "2", "4", "5", "6"):
        for name in LOCAL & set(scenarios[number]):
            assert "error" not in scenarios[number][name], (number, name)
    for part in ("single", "concurrent"):
        for name, result in scenarios["3"][part].items():
            assert "error" not in result, (part, name)
    assert scenarios["1"]["ours/postgres"] == {"skipped": "servers not used in this run"}
    assert scenarios["3"]["concurrent"]["ours/sqlite"]["errors"] == 0
    sqlite_rows = [
        r
        for r in report["ratios"]
        if (r["scenario"], r["ours"], r["peer"], r["metric"])
        == ("1", "ours/sqlite", "AsyncSqliteSaver", "wall time")
    ]
    assert sqlite_rows and sqlite_rows[0]["ratio"] > 0
    # Client CPU per checkpoint beside wall time, in the results, ratios and tables.
    for name in ("ours/sqlite", "AsyncSqliteSaver", "ours/memory", "InMemorySaver"):
        assert scenarios["1"][name]["errors"] == 0, name
        assert scenarios["1"][name]["cpu_us_per_checkpoint"] > 0, name
    cpu_rows = {
        (r["ours"], r["peer"]): r
        for r in report["ratios"]
        if (r["scenario"], r["metric"]) == ("1", "client CPU per checkpoint")
    }
    assert cpu_rows[("ours/sqlite", "AsyncSqliteSaver")]["ratio"] > 0
    assert cpu_rows[("ours/memory", "InMemorySaver")]["unit"] == "us"
    assert set(cpu_rows) >= {
        ("ours/postgres", "AsyncPostgresSaver"),
        ("ours/postgres", "AsyncPostgresSaver(pool)"),
    }
    for row in report["ratios"]:
        assert row["ours_errors"] == row["peer_errors"] == 0 and not row["failed"], row
    assert scenarios["2"]["ours/sqlite"]["stored_bytes"] > 0
    # Scenario 4: a crashed thread resumed in a fresh process, at n1, on both sides.
    for name in ("ours/sqlite", "AsyncSqliteSaver"):
        resumed = scenarios["4"][name]
        assert resumed["spawn_to_first_node"]["n"] == 1, name
        assert resumed["spawn_to_first_node"]["p50_ms"] > resumed["in_process"]["p50_ms"] > 0
    # Scenario 6: put and get at each concurrency on memory and SQLite.
    for name in ("ours/memory", "ours/sqlite", "InMemorySaver", "AsyncSqliteSaver"):
        levels = scenarios["6"][name]["levels"]
        assert set(levels) == {"1", "3"}, name
        assert levels["3"]["put"]["n"] == 6 and levels["3"]["get"]["per_s"] > 0, name
    assert scenarios["6"]["ours/postgres"] == {"skipped": "servers not used in this run"}
    assert json.loads((tmp_path / "results.json").read_text())["ratios"]
    text = (tmp_path / "results.md").read_text()
    assert "| ratio (ours/peer) |" in text
    assert "## Scenario 4: resume after a crash" in text
    assert "## Scenario 6: put/get latency" in text
    assert "| 1 | ours/sqlite | AsyncSqliteSaver | client CPU per checkpoint |" in text
    assert "| configuration | errors | wall s | checkpoints/s | client CPU us/checkpoint |" in text
    assert "| configuration | runs | wall s | runs/s | failed runs | raised |" in text
    assert "FAILED" not in text and "failed (" not in text


@asynccontextmanager
async def _failing_in_memory_saver(name: str, env: Any, keys: Any = None) -> AsyncIterator[Any]:
    """Scenario 1's `open_saver`, except that InMemorySaver's `aput` raises on thread-1."""
    async with open_saver(name, env, keys) as session:
        if name == "InMemorySaver":
            original = session.saver.aput

            async def aput(config: Any, *args: Any, **kwargs: Any) -> Any:
                if config["configurable"]["thread_id"] == "thread-1":
                    raise RuntimeError("injected by the smoke test")
                return await original(config, *args, **kwargs)

            session.saver.aput = aput
        yield session


class _FailingFilePersistence(pg.FileStatePersistence):
    """FileStatePersistence whose run-1 (of the concurrent runs) raises on its first
    snapshot."""

    async def snapshot_node(self, state: Any, next_node: Any) -> None:
        if self.json_file.name == "run-1.json":
            raise RuntimeError("injected by the smoke test")
        await super().snapshot_node(state, next_node)


async def test_a_configuration_with_errors_is_reported_as_failed_never_as_a_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer whose calls raise (injected, not timed) has its errors counted, and every
    ratio row it is part of says failed, with the count, instead of a ratio."""
    monkeypatch.setattr(bench, "open_saver", _failing_in_memory_saver)
    monkeypatch.setattr(pg, "FileStatePersistence", _FailingFilePersistence)
    targets = {"ours/memory", "InMemorySaver", "ours/sqlite", "FileStatePersistence"}

    report = await bench.run([1, 3], TOY, tmp_path, targets, servers=False)

    lost = report["scenarios"]["1"]["InMemorySaver"]
    assert lost["errors"] >= 1 and "injected by the smoke test" in lost["first_errors"][0]
    assert report["scenarios"]["1"]["ours/memory"]["errors"] == 0
    assert report["scenarios"]["3"]["concurrent"]["FileStatePersistence"]["errors"] == 1
    assert report["scenarios"]["3"]["concurrent"]["ours/sqlite"]["errors"] == 0
    rows = {(r["scenario"], r["ours"], r["peer"], r["metric"]): r for r in report["ratios"]}
    failed = [
        ("1", "ours/memory", "InMemorySaver", "wall time", lost["errors"]),
        ("1", "ours/memory", "InMemorySaver", "client CPU per checkpoint", lost["errors"]),
        ("3", "ours/sqlite", "FileStatePersistence", "concurrent runs wall time", 1),
    ]
    text = (tmp_path / "results.md").read_text()
    for scenario, ours, peer, metric, errors in failed:
        row = rows[(scenario, ours, peer, metric)]
        assert row["failed"] and row["ratio"] is None and row["ratio_runs"] == [], row
        assert (row["ours_errors"], row["peer_errors"]) == (0, errors), row
        assert row["status"] == f"FAILED ({peer}: {errors} error{'s' * (errors > 1)})", row
        line = next(
            x
            for x in text.splitlines()
            if x.startswith(f"| {scenario} | {ours} | {peer} | {metric} |")
        )
        cells = [c.strip() for c in line.split("|")]
        assert cells[7] == f"failed ({errors} error{'s' * (errors > 1)})", line  # ratio cell
        assert cells[6] == cells[7], line  # the peer's value cell
    # The single 200-node run of the same peer did not fail: that row is still a ratio.
    kept = rows[("3", "ours/sqlite", "FileStatePersistence", "overhead per node")]
    assert not kept["failed"] and kept["ratio"] is not None


def test_repetitions_with_an_error_fail_the_merged_row() -> None:
    """With --repeat, one repetition with errors fails the row: no median ratio, the
    errors of every repetition kept."""
    clean = Ratio("3", "ours/redis", "FileStatePersistence", "wall", 1.0, 2.0, 0.5, "s")
    broken = Ratio("3", "ours/redis", "FileStatePersistence", "wall", 1.0, 2.0, 0.5, "s")
    broken.ours_errors = 8

    (row,) = merge_ratios([[clean], [broken], [clean]])

    assert row.failed and row.ratio is None
    assert row.as_dict()["ours_errors_runs"] == [0, 8, 0]
    assert row.status == "FAILED (ours/redis: 8 errors)"
    assert "| failed (8 errors) | 2.00 s | failed (8 errors) | - |" in ratio_table([row])[2]


async def test_repeat_reports_the_median_ratio_with_min_and_max(tmp_path: Path) -> None:
    """--repeat N runs the scenario N times and keeps every per-repetition ratio."""
    report = await bench.run(
        [6], TOY, tmp_path, {"ours/memory", "InMemorySaver"}, servers=False, repeat=2
    )

    row = next(
        r
        for r in report["ratios"]
        if (r["ours"], r["peer"], r["metric"]) == ("ours/memory", "InMemorySaver", "c=1 put p50")
    )
    assert len(row["ratio_runs"]) == 2
    assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    assert len(report["repeats"]) == 2
    assert "min..max (runs)" in (tmp_path / "results.md").read_text()


async def test_null_cipher_needs_acknowledgement_and_real_rings_refuse_its_output() -> None:
    """The benchmark-only null cipher must be asked for by name; a real ring fails closed
    on what it wrote."""
    with pytest.raises(RuntimeError):
        NullCipherKeyRing()
    null = NullCipherKeyRing(i_know_this_stores_plaintext=True)
    aad = RecordId("t", "thread", "", "checkpoint", "c1").aad()
    blob = await null.encrypt(b"x" * 5000, aad)
    assert await null.decrypt(blob, aad) == b"x" * 5000
    with pytest.raises(IntegrityError):
        await deterministic_key_ring().decrypt(blob, aad)
