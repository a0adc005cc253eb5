"""Smoke test of `benchmarks/`: every scenario runs at toy sizes on memory and SQLite, so
the benchmark code cannot rot. It measures nothing; `python -m benchmarks.run` does."""

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
    """Scenarios 1, 2, 3 and 5 run on local configurations and write JSON and Markdown; a
    configuration without its server is skipped, not failed."""
    report = await bench.run([1, 2, 3, 5], TOY, tmp_path, LOCAL | {"ours/postgres"}, servers=False)

    scenarios = report["scenarios"]
    for number in ("1", "2", "5"):
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
    assert json.loads((tmp_path / "results.json").read_text())["ratios"]
    assert "| ratio (ours/peer) |" in (tmp_path / "results.md").read_text()


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
