"""Smoke test of `benchmarks/`: every scenario runs at toy sizes on memory and SQLite (the
resume scenario with real crasher and resumer processes), so the benchmark code cannot
rot. It measures nothing; `python -m benchmarks.run` does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("langgraph.checkpoint.sqlite.aio")
pytest.importorskip("pydantic_graph")

from benchmarks import run as bench
from benchmarks._null_cipher import NullCipherKeyRing
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
