"""The shared store suite on memory, SQLite and the full tier stack (the other backends
run it in their own modules)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from checkpointers.stores import MemoryStore, SqliteStore, Store
from checkpointers.testing import StoreContract
from tests.backends import open_tiered


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:
        async with MemoryStore() as store:
            yield store


class TestSqliteStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        async with SqliteStore(tmp_path / "records.db") as store:
            yield store


class TestTieredStoreOnRealServices(StoreContract):
    """Redis hot over PostgreSQL durable over an Azurite archive."""

    @pytest.fixture
    async def store(self, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
        async with AsyncExitStack() as stack:
            yield await open_tiered(request, stack)
