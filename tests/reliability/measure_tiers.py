"""Measure the tiers (not collected by pytest): `python -m tests.reliability.measure_tiers`.

Redis hot over PostgreSQL durable, on the servers the test harness finds (or starts):

* point-read p50/p99 served hot, and served by the durable tier (hot tier empty);
* resume latency, LangGraph `aget_tuple` of a thread's latest checkpoint in a fresh saver,
  cold (hot tier flushed) and hot;
* 1,000 concurrent workflows (LangGraph, 3 nodes each) through the tiers: throughput,
  p99 of a run, errors.

Prints one JSON object. Everything it creates (a database, a key prefix) is dropped.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from checkpointers.encrypted import EncryptedStore
from checkpointers.record import Record, RecordId
from checkpointers.stores.postgres import PostgresStore
from checkpointers.stores.redis import RedisStore
from checkpointers.tiered import TieredStore
from tests.harness.services import (
    delete_redis_prefix,
    postgres_service,
    redis_service,
    throwaway_database,
    unique_redis_prefix,
)
from tests.reliability._support import key_ring, three_step_graph


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
        "n": len(ordered),
    }


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def measure(redis_url: str, prefix: str, dsn: str) -> dict[str, Any]:
    from checkpointers.langgraph import CheckpointSaver

    hot = RedisStore.from_url(redis_url, prefix=prefix, pool_size=128)
    durable = PostgresStore.from_url(dsn, pool_max=40)
    out: dict[str, Any] = {}
    async with TieredStore(durable, hot=hot, owns_stores=True) as tiered:
        records = [
            Record(RecordId("acme", f"t{i}", "", "doc", "k"), body=b"x" * 2048, sort="k")
            for i in range(2000)
        ]
        for start in range(0, len(records), 200):
            await tiered.put_many(records[start : start + 200])
        ids = [r.id for r in records]
        out["read_hot"] = _ms([await _timed(lambda r=rid: tiered.get(r)) for rid in ids])
        await hot.delete(ids)
        out["read_durable"] = _ms([await _timed(lambda r=rid: durable.get(r)) for rid in ids])

        graph = three_step_graph(CheckpointSaver(EncryptedStore(tiered, key_ring())), note_size=200)
        threads = [{"configurable": {"thread_id": f"r{i}"}} for i in range(200)]
        await asyncio.gather(*(graph.ainvoke({"steps": []}, c) for c in threads))

        async def resume(config: dict[str, Any]) -> None:
            saver = CheckpointSaver(EncryptedStore(tiered, key_ring()))
            assert await saver.aget_tuple(config) is not None  # type: ignore[arg-type]

        await tiered.delete_tenant("no-such-tenant")  # warm the pools
        await asyncio.to_thread(delete_redis_prefix, redis_url, prefix)
        out["resume_cold"] = _ms([await _timed(lambda c=c: resume(c)) for c in threads])
        out["resume_hot"] = _ms([await _timed(lambda c=c: resume(c)) for c in threads])

        runs = [{"configurable": {"thread_id": f"w{i}"}} for i in range(1000)]
        errors = 0
        latencies: list[float] = []

        async def workflow(config: dict[str, Any]) -> None:
            nonlocal errors
            start = time.perf_counter()
            try:
                result = await graph.ainvoke({"steps": []}, config)
                assert result["steps"] == ["a", "b", "c"]
            except Exception:
                errors += 1
                return
            latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(workflow(c) for c in runs))
        elapsed = time.perf_counter() - start
        out["workflows_1000"] = {
            "seconds": round(elapsed, 2),
            "workflows_per_s": round(len(runs) / elapsed, 1),
            "checkpoints_per_s": round(len(runs) * 5 / elapsed, 1),
            **_ms(latencies),
            "errors": errors,
        }
        out["stats"] = {
            "hot_hits": tiered.stats.hot_hits,
            "hot_misses": tiered.stats.hot_misses,
            "absent_reads": tiered.stats.absent_reads,
            "hit_ratio": tiered.stats.hit_ratio,
        }
    return out


def main() -> None:
    with redis_service() as redis_url, postgres_service() as server:
        prefix = unique_redis_prefix()
        try:
            with throwaway_database(server) as dsn:
                result = asyncio.run(measure(redis_url, prefix, dsn))
        finally:
            delete_redis_prefix(redis_url, prefix)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
