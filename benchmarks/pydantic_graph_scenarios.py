"""pydantic-graph scenario 3: per-node persistence overhead and many concurrent runs.

The graph is one node class that loops until the state's counter reaches the target
(so a 200-node run takes 200 snapshots plus the end). Overhead per node is the run's
wall time minus the same run with pydantic-graph's in-memory `SimpleStatePersistence`
(what `graph.run` uses when given no persistence), divided by the node count.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic_graph import BaseNode, End, GraphRunContext
from pydantic_graph.graph import Graph
from pydantic_graph.persistence import EndSnapshot
from pydantic_graph.persistence.file import FileStatePersistence
from pydantic_graph.persistence.in_mem import FullStatePersistence, SimpleStatePersistence

from benchmarks._env import Env, Unavailable, adapter_available, our_store_available
from benchmarks._stats import chat_text

PYDANTIC_GRAPH_TARGETS: dict[str, tuple[bool, str]] = {
    "ours/memory": (True, "StatePersistence memory://"),
    "ours/sqlite": (True, "StatePersistence sqlite:///file"),
    "ours/postgres": (True, "StatePersistence postgresql://"),
    "ours/redis": (True, "StatePersistence redis://"),
    "ours/tiered": (True, "StatePersistence [redis://, postgresql://]"),
    "FileStatePersistence": (False, "pydantic-graph FileStatePersistence (JSON file)"),
    "FullStatePersistence": (False, "pydantic-graph FullStatePersistence (memory)"),
}


@dataclass
class LoopState:
    count: int = 0
    target: int = 0
    notes: str = ""


@dataclass
class Step(BaseNode[LoopState, None, int]):
    async def run(self, ctx: GraphRunContext[LoopState, None]) -> Step | End[int]:
        ctx.state.count += 1
        if ctx.state.count >= ctx.state.target:
            return End(ctx.state.count)
        return Step()


GRAPH: Graph[LoopState, None, int] = Graph(nodes=[Step], state_type=LoopState)


def new_state(nodes: int, state_bytes: int) -> LoopState:
    return LoopState(count=0, target=nodes, notes=chat_text(state_bytes, nodes))


def check_available(name: str, env: Env) -> None:
    if not name.startswith("ours/"):
        return
    adapter_available("checkpointers.pydantic_graph")
    kind = name.split("/", 1)[1]
    if kind in ("postgres", "tiered"):
        our_store_available("postgresql")
        env.need_postgres()
    if kind in ("redis", "tiered"):
        our_store_available("redis")
        env.need_redis()
    if kind == "tiered":
        our_store_available("tiered")


@asynccontextmanager
async def store_url(name: str, env: Env) -> AsyncIterator[tuple[Any, Callable[[], Any] | None]]:
    """The URL (or tier list) for our configuration `name`, and how to measure its bytes."""
    kind = name.split("/", 1)[1]
    async with AsyncExitStack() as cleanup:
        if kind == "memory":
            yield "memory://", None
        elif kind == "sqlite":
            path = env.sqlite_path("pg-ours")

            async def sqlite_bytes() -> int:
                return env.sqlite_bytes(path)

            yield f"sqlite:///{path}", sqlite_bytes
        elif kind == "postgres":
            url = await env.postgres_database()
            cleanup.push_async_callback(env.drop_postgres, url)

            async def pg_bytes() -> int:
                return await env.postgres_bytes(url)

            yield url, pg_bytes
        elif kind == "redis":
            prefix = env.redis_prefix()
            cleanup.push_async_callback(env.drop_redis, prefix)

            async def redis_bytes() -> int:
                return await env.redis_bytes(prefix)

            yield env.redis_url_with(prefix=prefix), redis_bytes
        else:
            prefix = env.redis_prefix()
            cleanup.push_async_callback(env.drop_redis, prefix)
            pg = await env.postgres_database()
            cleanup.push_async_callback(env.drop_postgres, pg)

            async def tiered_bytes() -> int:
                return await env.postgres_bytes(pg) + await env.redis_bytes(prefix)

            yield [env.redis_url_with(prefix=prefix), pg], tiered_bytes


async def baseline_seconds(nodes: int, state_bytes: int, repeats: int = 5) -> float:
    """Median wall time of the run with `SimpleStatePersistence` (no durable history)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        await GRAPH.run(
            Step(), state=new_state(nodes, state_bytes), persistence=SimpleStatePersistence()
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def _timed_run(persistence: Any, nodes: int, state_bytes: int) -> float:
    start = time.perf_counter()
    result = await GRAPH.run(Step(), state=new_state(nodes, state_bytes), persistence=persistence)
    elapsed = time.perf_counter() - start
    if result.output != nodes:
        raise AssertionError(f"run ended with {result.output}, expected {nodes}")
    return elapsed


async def single_run(
    name: str, env: Env, *, nodes: int, state_bytes: int, baseline: float, repeats: int = 3
) -> dict[str, Any]:
    """Per-node overhead of configuration `name` on a `nodes`-node run (median of runs)."""
    check_available(name, env)
    times: list[float] = []
    stored: int | None = None
    if name.startswith("ours/"):
        from checkpointers.pydantic_graph import StatePersistence
        from checkpointers.testing import deterministic_key_ring

        ring = deterministic_key_ring("benchmarks")
        async with store_url(name, env) as (url, measure):
            for r in range(repeats):
                async with StatePersistence.from_url(url, run_id=f"run-{r}", keys=ring) as p:
                    times.append(await _timed_run(p, nodes, state_bytes))
                    if r == 0 and len(await p.load_all()) != nodes + 1:
                        raise AssertionError("history does not hold every snapshot")
            if measure is not None:
                stored = await measure() // repeats
    elif name == "FileStatePersistence":
        for _ in range(repeats):
            path = env.sqlite_path("file").with_suffix(".json")
            times.append(await _timed_run(FileStatePersistence(path), nodes, state_bytes))
            stored = path.stat().st_size
    elif name == "FullStatePersistence":
        for _ in range(repeats):
            times.append(await _timed_run(FullStatePersistence(), nodes, state_bytes))
    else:
        raise Unavailable(f"unknown configuration {name}")
    wall = statistics.median(times)
    return {
        "wall_s": wall,
        "baseline_s": baseline,
        "overhead_per_node_ms": max(0.0, wall - baseline) / nodes * 1e3,
        "stored_bytes": stored,
    }


async def concurrent_runs(
    name: str, env: Env, *, runs: int, nodes: int, state_bytes: int
) -> dict[str, Any]:
    """`runs` runs of `nodes` nodes at once over one store; counts errors and checks
    every run's history ends with its End snapshot."""
    check_available(name, env)
    errors: list[str] = []
    raised: set[int] = set()

    async def run_all(make: Callable[[int], Any]) -> float:
        async def one(i: int) -> None:
            try:
                await _timed_run(make(i), nodes, state_bytes)
            except Exception as exc:
                raised.add(i)
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(runs)))
        return time.perf_counter() - start

    async def verify(make: Callable[[int], Any]) -> set[int]:
        """The runs whose history is not complete and successful (or cannot be read)."""
        bad: set[int] = set()
        for i in range(runs):
            try:
                history = await make(i).load_all()
            except Exception as exc:
                errors.append(f"load_all: {type(exc).__name__}: {exc}"[:200])
                bad.add(i)
                continue
            complete = len(history) == nodes + 1 and isinstance(history[-1], EndSnapshot)
            succeeded = all(getattr(s, "status", "success") == "success" for s in history[:-1])
            if not (complete and succeeded):
                bad.add(i)
        return bad

    if name.startswith("ours/"):
        from checkpointers import EncryptedStore
        from checkpointers.pydantic_graph import StatePersistence
        from checkpointers.testing import deterministic_key_ring

        ring = deterministic_key_ring("benchmarks")
        async with (
            store_url(name, env) as (url, _measure),
            EncryptedStore.from_url(url, keys=ring) as store,
        ):

            def make(i: int) -> Any:
                p: Any = StatePersistence(store, run_id=f"run-{i}")
                p.set_graph_types(GRAPH)
                return p

            wall = await run_all(make)
            bad = await verify(make)
    elif name == "FullStatePersistence":
        held = [FullStatePersistence() for _ in range(runs)]
        for p in held:
            p.set_graph_types(GRAPH)
        wall = await run_all(lambda i: held[i])
        bad = await verify(lambda i: held[i])
    elif name == "FileStatePersistence":
        base = env.sqlite_path("files").with_suffix("")
        base.mkdir()

        def make_file(i: int) -> Any:
            p: Any = FileStatePersistence(base / f"run-{i}.json")
            p.set_graph_types(GRAPH)
            return p

        wall = await run_all(make_file)
        bad = await verify(make_file)
    else:
        raise Unavailable(f"unknown configuration {name}")
    return {
        "runs": runs,
        "nodes_per_run": nodes,
        "wall_s": wall,
        "runs_per_s": runs / wall,
        # A run fails when it raised or left an incomplete history; each counts once.
        "errors": len(raised | bad),
        "runs_raised": len(raised),
        "incomplete_histories": len(bad),
        "first_errors": errors[:3],
    }
