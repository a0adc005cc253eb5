"""LangGraph users' names: `CheckpointSaver.from_conn_string` and `setup()` / `asetup()`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from checkpointers import ConfigurationError, KeyRing, MemoryStore, SqliteStore
from checkpointers.langgraph import CheckpointSaver

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "coming_from_langgraph.py"
OUTPUT = "['sync', 'echo: sync', 'async', 'echo: async']\n"


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_bare_path_is_a_sqlite_file_as_for_sqlite_saver(tmp_path: Path) -> None:
    """from_conn_string takes SqliteSaver's file path (and ':memory:') as well as store URLs."""
    path = tmp_path / "my checkpoints.sqlite"
    with CheckpointSaver.from_conn_string(str(path), keys=KeyRing.generate()) as saver:
        assert isinstance(saver._store.store, SqliteStore)
    assert path.exists()
    with CheckpointSaver.from_conn_string(":memory:", keys=KeyRing.generate()) as saver:
        assert isinstance(saver._store.store, MemoryStore)
    with CheckpointSaver.from_conn_string("memory://", keys=KeyRing.generate()) as saver:
        assert isinstance(saver._store.store, MemoryStore)


def test_setup_creates_the_schema_when_migration_on_first_use_is_off(tmp_path: Path) -> None:
    """setup() creates the store's schema, as PostgresSaver.setup() does (idempotent)."""
    path = tmp_path / "c.sqlite"
    with CheckpointSaver.from_conn_string(str(path), KeyRing.generate(), migrate=False) as saver:
        assert not _tables(path)
        saver.setup()
        saver.setup()
        assert _tables(path)


async def test_asetup_creates_the_schema(tmp_path: Path) -> None:
    """`await saver.asetup()` is AsyncPostgresSaver's `await setup()`."""
    path = tmp_path / "c.sqlite"
    async with CheckpointSaver.from_conn_string(
        str(path), KeyRing.generate(), migrate=False
    ) as saver:
        await saver.asetup()
        assert _tables(path)
        with pytest.raises(ConfigurationError, match="own event loop"):
            saver.setup()  # the sync twin on the store's loop: refused, never a deadlock


def test_example_runs_on_sqlite(tmp_path: Path) -> None:
    """examples/coming_from_langgraph.py runs on a SQLite path, sync then async."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "checkpoints.sqlite"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == OUTPUT
    assert (tmp_path / "checkpoints.sqlite").exists()


def test_example_runs_on_postgres_with_its_own_pool(tmp_path: Path, postgres_database: str) -> None:
    """The example runs on PostgreSQL: from_conn_string sync and async, then a borrowed pool."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), postgres_database],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == OUTPUT
