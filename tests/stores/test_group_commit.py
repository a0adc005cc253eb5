"""Group commit: batches arriving while others are in flight go out merged, one call."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from checkpointers import MemoryStore, Record, RecordId, StoreUnavailableError
from checkpointers.stores._group_commit import GroupCommit
from checkpointers.stores.postgres import PostgresStore


def record(key: str, body: bytes = b"x") -> Record:
    return Record(id=RecordId("acme", "t1", "", "doc", key), body=body)


class Gate:
    """A `send` over a memory store that holds each call until released, and logs it."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def send(self, records: Sequence[Record], if_absent: bool) -> list[int | None]:
        self.calls.append([r.id.key for r in records])
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return await self.store.put_many(records, if_absent=if_absent)


async def settle() -> None:
    """Let every ready task run until all wait on the gate."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_batches_arriving_in_flight_are_merged_and_answered_separately() -> None:
    """While one call is in flight, later batches wait and go out as one merged call."""
    gate = Gate()
    group = GroupCommit(gate.send, max_in_flight=1)
    first = asyncio.ensure_future(group.put_many([record("a")], if_absent=False))
    await settle()
    later = [
        asyncio.ensure_future(group.put_many([record("a"), record(f"k{i}")], if_absent=False))
        for i in range(3)
    ]
    await settle()
    gate.release.set()
    assert await first == [1]
    assert await asyncio.gather(*later) == [[2, 1], [3, 1], [4, 1]]
    assert gate.calls == [["a"], ["a", "k0", "a", "k1", "a", "k2"]]


async def test_a_caller_cancelled_while_waiting_sends_nothing() -> None:
    """A waiting caller that is cancelled is dropped from the merged call."""
    gate = Gate()
    group = GroupCommit(gate.send, max_in_flight=1)
    first = asyncio.ensure_future(group.put_many([record("a")], if_absent=False))
    await settle()
    gone = asyncio.ensure_future(group.put_many([record("gone")], if_absent=False))
    kept = asyncio.ensure_future(group.put_many([record("kept")], if_absent=False))
    await settle()
    gone.cancel()
    gate.release.set()
    await first
    assert await kept == [1]
    assert gone.cancelled()
    assert await gate.store.get(record("gone").id) is None
    assert gate.calls == [["a"], ["kept"]]


async def test_a_failed_merged_call_fails_every_caller_in_it() -> None:
    """When the merged call fails, each of its callers gets the error; nothing is lost."""
    gate = Gate()
    group = GroupCommit(gate.send, max_in_flight=1)
    first = asyncio.ensure_future(group.put_many([record("a")], if_absent=False))
    await settle()
    merged = [
        asyncio.ensure_future(group.put_many([record(f"m{i}")], if_absent=False))
        for i in range(2)
    ]
    await settle()
    gate.fail = StoreUnavailableError("down", may_have_applied=True)
    gate.release.set()
    for future in [first, *merged]:
        with pytest.raises(StoreUnavailableError):
            await future
    await group.aclose()


async def test_merged_calls_respect_max_records() -> None:
    """A merged call holds at most `max_records` records (a larger batch goes alone)."""
    gate = Gate()
    group = GroupCommit(gate.send, max_in_flight=1, max_records=2)
    first = asyncio.ensure_future(group.put_many([record("a")], if_absent=False))
    await settle()
    waiting = [
        asyncio.ensure_future(group.put_many(batch, if_absent=False))
        for batch in ([record("b")], [record("c")], [record("d"), record("e"), record("f")])
    ]
    await settle()
    gate.release.set()
    await asyncio.gather(first, *waiting)
    assert gate.calls == [["a"], ["b", "c"], ["d", "e", "f"]]


@pytest.fixture
async def counted_postgres(postgres_dsn: str) -> AsyncIterator[tuple[PostgresStore, list[str]]]:
    """A PostgreSQL store whose connections log every statement they run."""
    statements: list[str] = []
    schema = f"t_{secrets.token_hex(6)}"

    async def init(conn: Any) -> None:
        conn.add_query_logger(lambda q: statements.append(q.query))

    async with PostgresStore.from_url(postgres_dsn, schema=schema, init=init) as store:
        await store.setup()
        yield store, statements
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_postgres_merges_concurrent_batches_into_fewer_statements(
    counted_postgres: tuple[PostgresStore, list[str]],
) -> None:
    """40 concurrent one-record batches on PostgreSQL take far fewer than 40 statements."""
    store, statements = counted_postgres
    statements.clear()
    results = await asyncio.gather(*(store.put_many([record(f"k{i}")]) for i in range(40)))
    assert results == [[1]] * 40
    inserts = [q for q in statements if q.lstrip().upper().startswith("INSERT")]
    assert 1 <= len(inserts) <= 10
    found = await store.get_many([record(f"k{i}").id for i in range(40)])
    assert all(r is not None and r.version == 1 for r in found)
