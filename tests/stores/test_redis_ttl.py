"""RedisStore expiry: under LangGraph runs with a TTL every key of the prefix expires, without
one no key gets an expiry, and the Redis commands a checkpoint costs stay bounded; mixed
expiry in one thread, and listings of the old layout."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from checkpointers.langgraph import CheckpointSaver
from checkpointers.record import Query, Record, RecordId
from checkpointers.stores._redis_keys import expiry_key, tenants_key, threads_key
from checkpointers.stores.redis import RedisStore
from checkpointers.testing import deterministic_key_ring
from tests.harness.services import (
    RedisClusterServer,
    RedisServer,
    delete_redis_prefix,
    unique_redis_prefix,
)
from tests.reliability._support import three_step_graph

THREADS = 4

#: Commands per checkpoint (INFO commandstats, 10 new threads of a 3-node LangGraph run,
#: 5 checkpoints each, `alist` included), same machine: 93.8 without TTL and 125.3 with
#: one before the expiry rework; 24.4 and 50 after. With a TTL the count depends a
#: little on timing (listings grow once a second), hence the wider margin. A regression
#: of the layout or of the scripts fails.
MAX_COMMANDS_NO_TTL = 25.0
MAX_COMMANDS_TTL = 60.0

_EXPIRY_COMMANDS = ("pexpireat", "pexpire", "expire", "expireat", "persist", "time")


async def _runs(saver: CheckpointSaver, threads: int, tag: str = "t") -> int:
    """Run the three-step graph on `threads` threads; how many checkpoints were written."""
    graph = three_step_graph(saver, note_size=16)
    for i in range(threads):
        await graph.ainvoke({"steps": []}, {"configurable": {"thread_id": f"{tag}{i}"}})
    found = [c async for c in saver.alist({"configurable": {"thread_id": f"{tag}0"}})]
    return len(found) * threads


async def _run_graph(url: str, threads: int) -> int:
    """Run the three-step graph on `threads` threads through a saver on `url`."""
    async with CheckpointSaver.from_url(url, deterministic_key_ring()) as saver:
        return await _runs(saver, threads)


async def _located(clients: list[Redis], prefix: str) -> list[tuple[Redis, bytes]]:
    """Every key under `prefix`, with the client of the node holding it."""
    out: list[tuple[Redis, bytes]] = []
    for client in clients:
        out += [(client, k) async for k in client.scan_iter(match=prefix + "*", count=1000)]
    return out


async def _keys(clients: list[Redis], prefix: str) -> list[bytes]:
    return sorted(key for _, key in await _located(clients, prefix))


async def _until(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> None:
    """Poll `check` until it holds; fail at the deadline (Redis expires keys on its own)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def _expire_all(url: str, clients: list[Redis], prefix: str) -> None:
    started = time.time()
    await _run_graph(url, THREADS)
    located = await _located(clients, prefix)
    assert len(located) > 20
    pttls = {key: await client.pttl(key) for client, key in located}
    assert pttls and not [k for k, left in pttls.items() if left < 0], "a key without expiry"
    # Records expire 2 s after their write; every key lives at most as long as the last
    # (listings and the tenant's own records: rounded up to the next second).
    assert max(pttls.values()) <= 3000 + (time.time() - started) * 1000 + 50

    async def gone() -> bool:
        return await _keys(clients, prefix) == []

    await _until(gone, timeout=10.0, what="every key of the prefix to expire")


async def test_every_key_expires_after_a_langgraph_run_with_ttl(redis_server_url: str) -> None:
    """With ttl=2, every key of the prefix has an expiry and none is left once they pass."""
    prefix = unique_redis_prefix()
    client = Redis.from_url(redis_server_url)
    try:
        await _expire_all(f"{redis_server_url}?prefix={prefix}&ttl=2", [client], prefix)
    finally:
        await client.aclose()
        delete_redis_prefix(redis_server_url, prefix)


async def test_every_key_expires_on_a_cluster_with_ttl(redis_cluster: RedisClusterServer) -> None:
    """On a Redis Cluster too, with ttl=2 no key of the prefix is left once records expired."""
    prefix = f"cptest:{uuid.uuid4().hex[:12]}:"
    clients = [Redis.from_url(node.url) for node in redis_cluster.nodes]
    try:
        url = f"{redis_cluster.url}?cluster=true&prefix={prefix}&ttl=2"
        await _expire_all(url, clients, prefix)
    finally:
        for client in clients:
            async for key in client.scan_iter(match=prefix + "*"):
                await client.delete(key)
            await client.aclose()


async def test_without_ttl_no_key_gets_an_expiry(redis_server_url: str) -> None:
    """Without ttl, no key the store writes carries an expiry."""
    prefix = unique_redis_prefix()
    client = Redis.from_url(redis_server_url)
    try:
        await _run_graph(f"{redis_server_url}?prefix={prefix}", THREADS)
        keys = await _keys([client], prefix)
        assert len(keys) > 20
        assert [k for k in keys if await client.pttl(k) != -1] == []
    finally:
        await client.aclose()
        delete_redis_prefix(redis_server_url, prefix)


async def _commands(client: Redis) -> dict[str, int]:
    info: dict[str, Any] = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


@pytest.mark.parametrize(("ttl", "bound"), [(None, MAX_COMMANDS_NO_TTL), (60, MAX_COMMANDS_TTL)])
async def test_commands_per_checkpoint_stay_bounded(
    redis_process: RedisServer, ttl: int | None, bound: float
) -> None:
    """INFO commandstats around LangGraph runs: commands per checkpoint stay under the
    measured bound, and without ttl no expiry command runs at all."""
    url = f"{redis_process.url}?prefix=cmd:" + ("" if ttl is None else f"&ttl={ttl}")
    client = Redis.from_url(redis_process.url)
    try:
        async with CheckpointSaver.from_url(url, deterministic_key_ring()) as saver:
            await _runs(saver, 1, tag="warm")  # scripts loaded, tenant and its key created
            before = await _commands(client)
            checkpoints = await _runs(saver, 10)
            after = await _commands(client)
    finally:
        await client.aclose()
    delta = {k: n - before.get(k, 0) for k, n in after.items() if k not in ("info", "hello")}
    delta = {k: n for k, n in delta.items() if n}
    per_checkpoint = sum(delta.values()) / checkpoints
    assert per_checkpoint <= bound, (per_checkpoint, delta)
    if ttl is None:
        assert not {k: n for k, n in delta.items() if k in _EXPIRY_COMMANDS}, delta


def _rec(thread: str, key: str, **fields: Any) -> Record:
    return Record(RecordId("acme", thread, "", "doc", key), b"body", **fields)


async def test_a_record_without_expiry_keeps_its_thread_keys_alive(
    redis_server_url: str, redis_prefix: str
) -> None:
    """A thread first written with expiry, then with a record without: once the first
    expired, the second is still found through its indexes, and the listings keep it."""
    client = Redis.from_url(redis_server_url)
    try:
        async with RedisStore.from_url(redis_server_url, prefix=redis_prefix) as store:
            soon = _rec("t", "a", sort="1", group="g", expires_at=time.time() + 0.3)
            await store.put(soon)
            keep = _rec("t", "b", sort="2", group="g", status="s")
            await store.put(keep)

            async def expired() -> bool:
                return await store.get(soon.id) is None and not await client.exists(
                    store._tag("acme", "t") + ":r:0:3:doca"
                )

            await _until(expired, timeout=10.0, what="the first record to expire")
            await asyncio.sleep(0.4)  # past the first record's lifetime, whatever got it
            found = await store.find(Query(tenant="acme", thread="t", group="g"))
            assert [r.id for r in found] == [keep.id]
            assert await store.find(Query(tenant="acme", thread="t", kind="doc")) == found
            assert await store.threads("acme") == [("acme", "t")]
            assert [k for k in await _keys([client], redis_prefix)
                    if await client.pttl(k) != -1] == []  # fmt: skip
    finally:
        await client.aclose()


async def test_listings_written_before_their_expiry_sets_keep_their_members(
    redis_server_url: str, redis_prefix: str
) -> None:
    """Listings of the old layout (lex sets alone, without expiry) keep their members when
    records with expiry are written next to them."""
    client = Redis.from_url(redis_server_url)
    try:
        async with RedisStore.from_url(redis_server_url, prefix=redis_prefix) as store:
            await store.put(_rec("old", "a"))
            # The old layout: no expiry sets beside the listings.
            await client.delete(expiry_key(redis_prefix, None), expiry_key(redis_prefix, "acme"))
            await store.put(_rec("new", "b", expires_at=time.time() + 0.3))
            await asyncio.sleep(0.6)
            await store.put(_rec("newer", "c", expires_at=time.time() + 60))
            assert await store.threads("acme") == [("acme", "newer"), ("acme", "old")]
            assert await client.pttl(tenants_key(redis_prefix)) == -1
            assert await client.pttl(threads_key(redis_prefix, "acme")) == -1
    finally:
        await client.aclose()
