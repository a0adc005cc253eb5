"""Load: many concurrent pydantic-graph workflows on tiered storage for a bounded time.

The soak version runs 1,000 concurrent workflows for 60 s (`pytest -m soak`); the CI version
runs 50 for 3 s. Each workflow loops over runs of a three-node graph on Redis (hot) over
PostgreSQL (durable); every graph step is timed. Zero errors allowed; RSS and p99 reported.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
import uuid
from dataclasses import dataclass, field

import pytest
from pydantic_graph import BaseNode, End, GraphRunContext
from pydantic_graph.graph import Graph

from checkpointers.encrypted import EncryptedStore
from tests.reliability._support import key_ring


@dataclass
class Counter:
    hops: list[str] = field(default_factory=list)


@dataclass
class Third(BaseNode[Counter, None, int]):
    async def run(self, ctx: GraphRunContext[Counter, None]) -> End[int]:
        ctx.state.hops.append("third")
        return End(len(ctx.state.hops))


@dataclass
class Second(BaseNode[Counter, None, int]):
    async def run(self, ctx: GraphRunContext[Counter, None]) -> Third:
        ctx.state.hops.append("second")
        return Third()


@dataclass
class First(BaseNode[Counter, None, int]):
    async def run(self, ctx: GraphRunContext[Counter, None]) -> Second:
        ctx.state.hops.append("first")
        return Second()


graph = Graph(nodes=[First, Second, Third], name="load")


def _rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_load(redis_url: str, prefix: str, dsn: str, workflows: int,
                   seconds: float) -> dict[str, float]:  # fmt: skip
    from checkpointers.pydantic_graph import StatePersistence
    from checkpointers.stores.postgres import PostgresStore
    from checkpointers.stores.redis import RedisStore
    from checkpointers.tiered import TieredStore

    hot = RedisStore.from_url(redis_url, prefix=prefix, pool_size=64)
    durable = PostgresStore.from_url(dsn, pool_max=20)
    steps: list[float] = []
    runs: list[float] = []
    errors: list[BaseException] = []
    rss_start = _rss_mib()
    deadline = time.monotonic() + seconds
    async with TieredStore(durable, hot=hot, owns_stores=True) as tiered:
        store = EncryptedStore(tiered, key_ring())
        await store.setup()

        async def workflow(n: int) -> None:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                try:
                    persistence = StatePersistence[Counter, int](
                        store, run_id=f"load-{n}-{uuid.uuid4().hex[:8]}")  # fmt: skip
                    async with graph.iter(First(), state=Counter(),
                                          persistence=persistence) as run:  # fmt: skip
                        last = time.perf_counter()
                        async for _node in run:
                            now = time.perf_counter()
                            steps.append(now - last)
                            last = now
                    assert run.result is not None and run.result.output == 3
                except Exception as exc:
                    errors.append(exc)
                    return
                runs.append(time.perf_counter() - began)

        started = time.monotonic()
        await asyncio.gather(*(workflow(n) for n in range(workflows)))
        elapsed = time.monotonic() - started
    assert errors == [], errors[:3]
    return {
        "workflows": workflows,
        "seconds": round(elapsed, 1),
        "runs": len(runs),
        "steps": len(steps),
        "runs_per_s": round(len(runs) / elapsed, 1),
        "step_p50_ms": round(statistics.median(steps) * 1000, 2),
        "step_p99_ms": round(_p(steps, 0.99) * 1000, 2),
        "run_p99_ms": round(_p(runs, 0.99) * 1000, 2),
        "rss_start_mib": round(rss_start, 1),
        "rss_end_mib": round(_rss_mib(), 1),
        "rss_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def test_concurrent_workflows_on_tiered_storage_have_zero_errors(
    redis_server_url: str, redis_prefix: str, postgres_database: str
) -> None:
    """Fifty concurrent workflows for 3 s on Redis over PostgreSQL finish every run with
    zero errors (the CI-sized version of the 1,000-workflow soak)."""
    report = await run_load(redis_server_url, redis_prefix, postgres_database, 50, 3.0)
    print(f"load (CI): {report}")
    assert report["runs"] >= 50


@pytest.mark.soak
async def test_thousand_concurrent_workflows_soak(
    redis_server_url: str, redis_prefix: str, postgres_database: str
) -> None:
    """1,000 concurrent workflows for 60 s on Redis over PostgreSQL: zero errors, and RSS
    growth bounded (under 1 GiB above the start)."""
    report = await run_load(redis_server_url, redis_prefix, postgres_database, 1000, 60.0)
    print(f"load (soak): {report}")
    assert report["runs"] >= 1000
    assert report["rss_end_mib"] - report["rss_start_mib"] < 1024
