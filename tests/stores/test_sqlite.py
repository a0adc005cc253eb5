"""SqliteStore specifics beyond the shared suite: the database files are private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from checkpointers import Record, RecordId, SqliteStore


async def test_database_wal_and_shm_files_are_0600(tmp_path: Path) -> None:
    """A new database and its -wal/-shm files are readable by their owner only, like the key file."""
    previous = os.umask(0o022)  # the usual umask, which would give 0644
    try:
        path = tmp_path / "checkpoints.db"
        async with SqliteStore.from_url(f"sqlite:///{path}") as store:
            rid = RecordId(tenant="t", thread="th", namespace="", kind="k", key="1")
            await store.put(Record(rid, b"body"))
            assert await store.get(rid) is not None
            files = sorted(p.name for p in tmp_path.iterdir())
            assert files == ["checkpoints.db", "checkpoints.db-shm", "checkpoints.db-wal"]
            for name in files:
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(previous)


async def test_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    """A database file that already exists keeps the mode its owner gave it."""
    path = tmp_path / "shared.db"
    path.touch()
    path.chmod(0o640)
    async with SqliteStore(path) as store:
        await store.setup()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


async def test_is_set_up_tells_a_fresh_file_from_a_migrated_one(tmp_path: Path) -> None:
    """A database file setup() never ran on is not set up; after setup() it is."""
    store = SqliteStore(tmp_path / "fresh.db")
    try:
        assert await store.is_set_up() is False
        await store.setup()
        assert await store.is_set_up() is True
    finally:
        await store.aclose()
