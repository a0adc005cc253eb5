"""The store owns the event loop its clients live on, on Redis and PostgreSQL.

Memory and SQLite do not care which loop calls them; Redis and PostgreSQL clients are
bound to the loop they were opened on, so these cases run on those two, through the
public API, from the three situations that broke before: a worker thread calling the
sync API while the loop thread waits for it, a borrowed store used only through the
sync API, and a store opened synchronously and closed from a foreign loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from langgraph.graph import START, StateGraph
from typing_extensions import TypedDict

from checkpointers import ConfigurationError, EncryptedStore
from checkpointers.langgraph import CheckpointSaver
from checkpointers.testing import deterministic_key_ring


class State(TypedDict, total=False):
    steps: list[str]


def two_step_graph() -> StateGraph[State]:
    """Two nodes, each appending its name."""

    def first(state: State) -> State:
        return {"steps": [*state.get("steps", []), "first"]}

    def second(state: State) -> State:
        return {"steps": [*state.get("steps", []), "second"]}

    builder = StateGraph(State)
    builder.add_node("first", first)
    builder.add_node("second", second)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    return builder


def config() -> Any:
    return {"configurable": {"thread_id": secrets.token_hex(6)}}


@pytest.fixture(params=["redis", "postgres"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A store URL on a real Redis or PostgreSQL server, private to this test."""
    if request.param == "redis":
        redis_url: str = request.getfixturevalue("redis_server_url")
        prefix: str = request.getfixturevalue("redis_prefix")
        yield f"{redis_url}?prefix={prefix}"
        return
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"t_{secrets.token_hex(6)}"
    yield f"{dsn}?schema={schema}"

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


async def test_worker_sync_call_while_the_loop_waits_raises_instead_of_hanging(url: str) -> None:
    """A sync call from a worker the home loop blocks on fails fast with a clear error."""
    keys = deterministic_key_ring()
    async with CheckpointSaver.from_url(url, keys=keys, sync_timeout=1.0) as saver:
        await saver.aget_tuple(config())  # the clients now live on this loop
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(saver.get_tuple, config())
            # Blocking the loop thread on the worker, on purpose: the deadlock case.
            with pytest.raises(ConfigurationError, match="blocked"):
                future.result(timeout=60)
        # The loop is free again: the same saver keeps working, sync and async.
        assert await asyncio.to_thread(saver.get_tuple, config()) is None
        assert await saver.aget_tuple(config()) is None


def test_borrowed_store_opened_with_with_serves_the_sync_api(url: str) -> None:
    """A saver over a store opened synchronously runs a graph through the sync API."""
    with EncryptedStore.from_url(url, keys=deterministic_key_ring()) as store:
        saver = CheckpointSaver(store)
        graph = two_step_graph().compile(checkpointer=saver)
        cfg = config()
        assert graph.invoke({"steps": []}, cfg)["steps"] == ["first", "second"]
        state = saver.get_tuple(cfg)
        assert state is not None
        assert state.checkpoint["channel_values"]["steps"] == ["first", "second"]
        saver.close()  # borrowed: leaves the store open
        assert saver.get_tuple(cfg) is not None


async def test_borrowed_store_opened_with_async_with_serves_worker_threads(url: str) -> None:
    """A store opened on this loop serves sync callers in worker threads on this loop."""
    async with EncryptedStore.from_url(url, keys=deterministic_key_ring()) as store:
        saver = CheckpointSaver(store)
        graph = two_step_graph().compile(checkpointer=saver)
        cfg = config()
        result = await asyncio.to_thread(graph.invoke, {"steps": []}, cfg)
        assert result["steps"] == ["first", "second"]
        latest = await saver.aget_tuple(cfg)
        assert latest is not None and latest.metadata["step"] == 2


def test_sync_saver_serves_a_foreign_loop_and_closes_from_it(url: str) -> None:
    """A saver opened with `with` serves ainvoke on another loop and aclose() from it."""
    saver = CheckpointSaver.from_url(url, keys=deterministic_key_ring()).__enter__()
    home = [t for t in threading.enumerate() if t.name == "checkpointers-store"]
    cfg = config()

    async def use_and_close() -> list[str]:
        graph = two_step_graph().compile(checkpointer=saver)
        result = await graph.ainvoke({"steps": []}, cfg)
        await saver.aclose()  # must not join the store's thread from inside this loop
        return list(result["steps"])

    assert asyncio.run(use_and_close()) == ["first", "second"]
    for thread in home:
        thread.join(timeout=10)
        assert not thread.is_alive()
    saver.close()  # idempotent after aclose
    with pytest.raises(ConfigurationError, match="closed"):
        saver.get_tuple(cfg)
