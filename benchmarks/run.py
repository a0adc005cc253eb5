"""Run the benchmark scenarios for `checkpointers` and its peers, side by side.

    python -m benchmarks.run                    # scenarios 1-6 at the default sizes
    python -m benchmarks.run --repeat 3         # each scenario 3 times, interleaved
    python -m benchmarks.run --quick            # CI smoke sizes (under a minute)
    python -m benchmarks.run --scenarios 1,5 --targets ours/sqlite,AsyncSqliteSaver
    python -m benchmarks.run --out benchmarks/results

See benchmarks/README.md for what each scenario measures and how to read the tables.

Every scenario runs our package and the peers in the same process, one configuration
after the other, against the same PostgreSQL (CHECKPOINTERS_BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test; each configuration gets its own throwaway
database) and Redis (CHECKPOINTERS_BENCH_REDIS_URL, default redis://127.0.0.1:6379/0; each
configuration gets its own key prefix). A configuration that cannot run (a store of ours
that has not landed yet, a server that is down) is skipped with a printed note.

With `--repeat N` the scenarios run N times, interleaved (1, 2, ..., 6, then again), and
each ratio row shows the median of the N per-repetition ratios with their min and max.

Writes `<out>/results.json`, `<out>/results.md` (ratios ours/peer, then the absolute
numbers) and, when matplotlib is installed, `<out>/growth.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import langgraph_scenarios as lg
from benchmarks import pydantic_graph_scenarios as pg
from benchmarks import resume as rs
from benchmarks import store_latency as sl
from benchmarks._env import Env, Unavailable
from benchmarks._null_cipher import NullCipherKeyRing
from benchmarks._report import (
    Check,
    Ratio,
    check_table,
    detail_table,
    dig,
    errors_of,
    merge_checks,
    merge_ratios,
    plot_growth,
    ratio_table,
    tag_errors,
)
from benchmarks._stats import dumps
from benchmarks._targets import LANGGRAPH_TARGETS, open_saver

ALL_SCENARIOS = (1, 2, 3, 4, 5, 6)


@dataclass(frozen=True)
class Sizes:
    threads: int = 100
    nodes: int = 10
    concurrency: int = 20
    payload_bytes: int = 1024
    turns: int = 200
    message_bytes: int = 2048
    pg_nodes: int = 200
    pg_state_bytes: int = 1024
    pg_repeats: int = 3
    pg_runs: int = 1000
    pg_run_nodes: int = 5
    enc_threads: int = 40
    enc_repeats: int = 6
    resume_threads: int = 30
    lat_concurrency: tuple[int, ...] = (1, 20, 100)
    lat_ops: int = 400
    rt_calls: int = 20


QUICK = Sizes(
    threads=8,
    nodes=4,
    concurrency=4,
    turns=12,
    pg_nodes=20,
    pg_repeats=1,
    pg_runs=40,
    pg_run_nodes=3,
    enc_threads=6,
    enc_repeats=1,
    resume_threads=2,
    lat_ops=60,
    rt_calls=5,
)

S2_TARGETS = (
    "ours/sqlite",
    "ours/postgres",
    "ours/redis",
    "ours/tiered",
    "AsyncSqliteSaver",
    "AsyncPostgresSaver",
)
S3_CONCURRENT = (
    "ours/postgres",
    "ours/tiered",
    "ours/redis",
    "ours/sqlite",
    "FullStatePersistence",
    "FileStatePersistence",
)
S5_STORES = ("ours/memory", "ours/sqlite", "ours/postgres", "ours/redis")
S4_TARGETS = (
    "ours/sqlite",
    "ours/postgres",
    "ours/redis",
    "ours/tiered",
    "AsyncSqliteSaver",
    "AsyncPostgresSaver",
)
S6_TARGETS = (
    "ours/memory",
    "ours/sqlite",
    "ours/postgres",
    "ours/redis",
    "ours/tiered",
    "InMemorySaver",
    "AsyncSqliteSaver",
    "AsyncPostgresSaver",
    "AsyncPostgresSaver(pool)",
)


def say(text: str) -> None:
    print(text, flush=True)


async def attempt(label: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run one configuration: its result (with its "errors" count where it counts
    them), {"skipped": why} or {"error": what, "errors": 1}."""
    start = time.perf_counter()
    try:
        result = await fn()
    except Unavailable as exc:
        say(f"  - {label}: skipped ({exc})")
        return {"skipped": str(exc)}
    except Exception as exc:
        say(f"  - {label}: ERROR {type(exc).__name__}: {exc}")
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {str(exc)[:160]}", "errors": 1}
    errors = result.get("errors") or 0
    note = f", FAILED with {errors} errors (first: {result.get('first_errors')})" if errors else ""
    say(f"  - {label}: done in {time.perf_counter() - start:.1f}s{note}")
    return result


def selected(names: tuple[str, ...] | list[str], only: set[str] | None) -> list[str]:
    return [n for n in names if only is None or n in only]


# -- scenario 1 ----------------------------------------------------------------------------


async def scenario_1(env: Env, sizes: Sizes, only: set[str] | None) -> dict[str, Any]:
    say(
        f"Scenario 1: {sizes.threads} threads x {sizes.nodes} nodes, concurrency "
        f"{sizes.concurrency}, {sizes.payload_bytes} B of new state per node"
    )
    results: dict[str, Any] = {}
    for name in selected(list(LANGGRAPH_TARGETS), only):

        async def go(name: str = name) -> dict[str, Any]:
            async with open_saver(name, env) as session:
                result = await lg.throughput(
                    session.saver,
                    threads=sizes.threads,
                    nodes=sizes.nodes,
                    concurrency=sizes.concurrency,
                    payload_bytes=sizes.payload_bytes,
                )
            result["stored_bytes"] = session.stored_bytes
            return result

        results[name] = await attempt(name, go)
    return results


def ratios_1(r: dict[str, Any]) -> tuple[list[Ratio], list[Check]]:
    # Wall goals from issues 11 and 20; CPU goal from issue 20 (ours/postgres <= 0.6 x
    # the peer's client CPU per checkpoint, with either of its setups).
    pairs = [
        ("ours/postgres", "AsyncPostgresSaver", 0.4, 0.6),
        ("ours/postgres", "AsyncPostgresSaver(pool)", 0.4, 0.6),
        ("ours/postgres", "AsyncPostgresSaver+AES", None, None),
        ("ours/tiered", "AsyncPostgresSaver", 0.5, None),
        ("ours/tiered", "AsyncPostgresSaver(pool)", 0.5, None),
        ("ours/redis", "InMemorySaver", 2.0, None),
        ("ours/sqlite", "AsyncSqliteSaver", 0.7, None),
        ("ours/memory", "InMemorySaver", 1.3, None),
    ]
    ratios = []
    for o, p, wall_goal, cpu_goal in pairs:
        ratios.append(
            Ratio("1", o, p, "wall time", dig(r, o, "wall_s"), dig(r, p, "wall_s"), wall_goal, "s")
        )
        ratios.append(
            Ratio(
                "1",
                o,
                p,
                "client CPU per checkpoint",
                dig(r, o, "cpu_us_per_checkpoint"),
                dig(r, p, "cpu_us_per_checkpoint"),
                cpu_goal,
                "us",
            )
        )
    for o, p in (("ours/postgres", "AsyncPostgresSaver"), ("ours/sqlite", "AsyncSqliteSaver")):
        for metric in ("aput", "aput_writes"):
            ratios.append(
                Ratio(
                    "1",
                    o,
                    p,
                    f"{metric} p50 under load",
                    dig(r, o, f"{metric}_under_load", "p50_ms"),
                    dig(r, p, f"{metric}_under_load", "p50_ms"),
                    None,
                    "ms",
                )
            )
    for o, p in (("ours/postgres", "AsyncPostgresSaver"), ("ours/sqlite", "AsyncSqliteSaver")):
        ratios.append(
            Ratio(
                "1",
                o,
                p,
                "stored bytes",
                dig(r, o, "stored_bytes"),
                dig(r, p, "stored_bytes"),
                None,
                "B",
            )
        )
    checks = [
        Check(
            "1",
            "ours/redis",
            "get_tuple p50 (idle)",
            dig(r, "ours/redis", "aget_tuple_idle", "p50_ms"),
            1.0,
            "ms",
        ),
        Check(
            "1",
            "ours/tiered",
            "get_tuple p50 (idle, hot hit)",
            dig(r, "ours/tiered", "aget_tuple_idle", "p50_ms"),
            1.0,
            "ms",
        ),
        Check(
            "1",
            "ours/postgres",
            "get_tuple p50 (idle)",
            dig(r, "ours/postgres", "aget_tuple_idle", "p50_ms"),
            3.0,
            "ms",
        ),
    ]
    return tag_errors(ratios, lambda name: errors_of(r, name)), _tag_checks(checks, r)


def _tag_checks(checks: list[Check], results: dict[str, Any]) -> list[Check]:
    for c in checks:
        c.errors = errors_of(results, c.target)
    return checks


# -- scenario 2 ----------------------------------------------------------------------------


async def scenario_2(env: Env, sizes: Sizes, only: set[str] | None) -> dict[str, Any]:
    say(f"Scenario 2: one thread, {sizes.turns} turns, +{sizes.message_bytes} B message each")
    results: dict[str, Any] = {}
    for name in selected(S2_TARGETS, only):

        async def go(name: str = name) -> dict[str, Any]:
            async with open_saver(name, env) as session:
                result = await lg.growth(
                    session.saver,
                    session.measure,
                    turns=sizes.turns,
                    message_bytes=sizes.message_bytes,
                )
            result["stored_bytes"] = session.stored_bytes
            return result

        results[name] = await attempt(name, go)
    return results


def ratios_2(r: dict[str, Any]) -> tuple[list[Ratio], list[Check]]:
    ratios = []
    for o, p, g in (
        ("ours/postgres", "AsyncPostgresSaver", 0.1),
        ("ours/sqlite", "AsyncSqliteSaver", None),
        ("ours/tiered", "AsyncPostgresSaver", None),
    ):
        ratios.append(
            Ratio(
                "2",
                o,
                p,
                "stored bytes",
                dig(r, o, "stored_bytes"),
                dig(r, p, "stored_bytes"),
                g,
                "B",
            )
        )
        ratios.append(
            Ratio(
                "2",
                o,
                p,
                "stored bytes above the empty schema",
                dig(r, o, "stored_bytes_net"),
                dig(r, p, "stored_bytes_net"),
                None,
                "B",
            )
        )
        ratios.append(
            Ratio(
                "2",
                o,
                p,
                "turn latency p50",
                dig(r, o, "turn_latency", "p50_ms"),
                dig(r, p, "turn_latency", "p50_ms"),
                None,
                "ms",
            )
        )
        ratios.append(
            Ratio(
                "2",
                o,
                p,
                "last-10% turn latency",
                dig(r, o, "last_tenth_ms"),
                dig(r, p, "last_tenth_ms"),
                None,
                "ms",
            )
        )
    checks = [
        Check(
            "2",
            name,
            "bytes/turn 2nd half / 1st half (1 = linear)",
            dig(r, name, "second_half_over_first_half"),
            1.3,
        )
        for name in ("ours/postgres", "ours/sqlite", "ours/redis", "ours/tiered")
    ]
    return tag_errors(ratios, lambda name: errors_of(r, name)), _tag_checks(checks, r)


# -- scenario 3 ----------------------------------------------------------------------------


async def scenario_3(env: Env, sizes: Sizes, only: set[str] | None) -> dict[str, Any]:
    say(f"Scenario 3a: pydantic-graph run of {sizes.pg_nodes} nodes, median of {sizes.pg_repeats}")
    baseline = await pg.baseline_seconds(sizes.pg_nodes, sizes.pg_state_bytes)
    single: dict[str, Any] = {}
    for name in selected(list(pg.PYDANTIC_GRAPH_TARGETS), only):
        single[name] = await attempt(
            name,
            lambda name=name: pg.single_run(
                name,
                env,
                nodes=sizes.pg_nodes,
                state_bytes=sizes.pg_state_bytes,
                baseline=baseline,
                repeats=sizes.pg_repeats,
            ),
        )
    say(f"Scenario 3b: {sizes.pg_runs} concurrent runs of {sizes.pg_run_nodes} nodes")
    concurrent: dict[str, Any] = {}
    for name in selected(S3_CONCURRENT, only):
        concurrent[name] = await attempt(
            name,
            lambda name=name: pg.concurrent_runs(
                name,
                env,
                runs=sizes.pg_runs,
                nodes=sizes.pg_run_nodes,
                state_bytes=sizes.pg_state_bytes,
            ),
        )
    return {"single": single, "concurrent": concurrent, "baseline_s": baseline}


def ratios_3(r: dict[str, Any]) -> tuple[list[Ratio], list[Check]]:
    single, concurrent = r["single"], r["concurrent"]
    ratios = []
    for ours in ("ours/sqlite", "ours/memory", "ours/postgres", "ours/redis", "ours/tiered"):
        for peer in ("FileStatePersistence", "FullStatePersistence"):
            # Issue 20: <= 0.05 x FileStatePersistence per node on SQLite (issue 11: 0.2).
            goal = 0.05 if (ours, peer) == ("ours/sqlite", "FileStatePersistence") else None
            ratios.append(
                Ratio(
                    "3",
                    ours,
                    peer,
                    "overhead per node",
                    dig(single, ours, "overhead_per_node_ms"),
                    dig(single, peer, "overhead_per_node_ms"),
                    goal,
                    "ms",
                )
            )
    tag_errors(ratios, lambda name: errors_of(single, name))
    for ours in ("ours/postgres", "ours/tiered", "ours/redis", "ours/sqlite"):
        for peer in ("FileStatePersistence", "FullStatePersistence"):
            # Issue 20: <= 0.5 x the best peer that completes every run (a peer with
            # errors is FAILED, so the goal is judged against the one that completed).
            goal = None if ours == "ours/tiered" else 0.5
            ratios.append(
                Ratio(
                    "3",
                    ours,
                    peer,
                    "concurrent runs wall time",
                    dig(concurrent, ours, "wall_s"),
                    dig(concurrent, peer, "wall_s"),
                    goal,
                    "s",
                )
            )
    tag_errors(
        ratios,
        lambda name: errors_of(concurrent, name),
        where=lambda row: row.metric == "concurrent runs wall time",
    )
    checks = [
        # The value is the count itself, so a failing target is also FAILED here.
        Check(
            "3",
            name,
            "failed runs (raised or incomplete history), concurrent runs",
            errors_of(concurrent, name) if name in concurrent else None,
            0,
            errors=errors_of(concurrent, name),
        )
        for name in ("ours/postgres", "ours/tiered", "ours/redis", "ours/sqlite")
    ]
    return ratios, checks


# -- scenario 4 ----------------------------------------------------------------------------


async def scenario_4(env: Env, sizes: Sizes, only: set[str] | None) -> dict[str, Any]:
    say(
        f"Scenario 4: resume after a crash, {sizes.resume_threads} threads, one fresh "
        "python process per resume"
    )
    results: dict[str, Any] = {}
    for name in selected(S4_TARGETS, only):

        async def go(name: str = name) -> dict[str, Any]:
            async with open_saver(name, env) as session:
                return await rs.resume_latency(
                    name,
                    session.url,
                    session.saver,
                    threads=sizes.resume_threads,
                    payload_bytes=sizes.payload_bytes,
                )

        results[name] = await attempt(name, go)
    return results


S4_PAIRS = (
    ("ours/postgres", "AsyncPostgresSaver", "cold"),
    ("ours/sqlite", "AsyncSqliteSaver", "cold"),
    ("ours/redis", "AsyncPostgresSaver", "hot"),
    ("ours/tiered", "AsyncPostgresSaver", "hot"),
)


def ratios_4(r: dict[str, Any]) -> tuple[list[Ratio], list[Check]]:
    ratios = []
    for o, p, temp in S4_PAIRS:
        for key, label, q in (
            ("spawn_to_first_node", "spawn to first node p50", "p50_ms"),
            ("spawn_to_first_node", "spawn to first node p99", "p99_ms"),
            ("startup", "interpreter + imports p50", "p50_ms"),
            ("in_process", "in-process (open + get + first node) p50", "p50_ms"),
            ("in_process", "in-process p99", "p99_ms"),
        ):
            ratios.append(
                Ratio(
                    "4",
                    f"{o} ({temp})",
                    p,
                    label,
                    dig(r, o, key, q),
                    dig(r, p, key, q),
                    None,
                    "ms",
                    ours_errors=errors_of(r, o),
                    peer_errors=errors_of(r, p),
                )
            )
    return ratios, []


# -- scenario 6 ----------------------------------------------------------------------------


async def scenario_6(env: Env, sizes: Sizes, only: set[str] | None) -> dict[str, Any]:
    levels = ", ".join(map(str, sizes.lat_concurrency))
    say(
        f"Scenario 6: put/get of a {sizes.payload_bytes} B checkpoint at concurrency {levels}, "
        f"~{sizes.lat_ops} calls per phase; round trips over {sizes.rt_calls} calls"
    )
    results: dict[str, Any] = {}
    for name in selected(S6_TARGETS, only):

        async def go(name: str = name) -> dict[str, Any]:
            async with open_saver(name, env) as session:
                result = await sl.latency(
                    session.saver,
                    concurrencies=sizes.lat_concurrency,
                    ops=sizes.lat_ops,
                    payload_bytes=sizes.payload_bytes,
                )
                trips = await sl.round_trips(
                    name, env, session.url, calls=sizes.rt_calls, payload_bytes=sizes.payload_bytes
                )
            return {"levels": result, "round_trips": trips}

        results[name] = await attempt(name, go)
    return results


S6_PAIRS = (
    ("ours/postgres", "AsyncPostgresSaver", True),
    ("ours/postgres", "AsyncPostgresSaver(pool)", False),
    ("ours/redis", "AsyncPostgresSaver", True),
    ("ours/tiered", "AsyncPostgresSaver", False),
    ("ours/sqlite", "AsyncSqliteSaver", False),
    ("ours/memory", "InMemorySaver", False),
)


def ratios_6(r: dict[str, Any]) -> tuple[list[Ratio], list[Check]]:
    ratios = []
    levels: list[str] = []
    for value in r.values():
        if isinstance(value, dict) and "levels" in value:
            levels = list(value["levels"])
            break
    for o, p, full in S6_PAIRS:
        for c in levels:
            metrics = [("put", "p50_ms"), ("get", "p50_ms")]
            if full:
                metrics += [("put", "p99_ms"), ("get", "p99_ms"), ("put", "wall_s")]
                metrics += [("get", "wall_s")]
            for op, q in metrics:
                label = (
                    f"c={c} {op} {q[:3]}"
                    if q != "wall_s"
                    else f"c={c} {op} phase wall (1/throughput)"
                )
                ratios.append(
                    Ratio(
                        "6",
                        o,
                        p,
                        label,
                        dig(r, o, "levels", c, op, q),
                        dig(r, p, "levels", c, op, q),
                        None,
                        "s" if q == "wall_s" else "ms",
                    )
                )
    first = levels[0] if levels else "1"
    checks = [
        Check(
            "6",
            "ours/redis",
            f"c={first} get p50",
            dig(r, "ours/redis", "levels", first, "get", "p50_ms"),
            1.0,
            "ms",
        ),
        Check(
            "6",
            "ours/tiered",
            f"c={first} get p50 (hot hit)",
            dig(r, "ours/tiered", "levels", first, "get", "p50_ms"),
            1.0,
            "ms",
        ),
        Check(
            "6",
            "ours/postgres",
            f"c={first} get p50",
            dig(r, "ours/postgres", "levels", first, "get", "p50_ms"),
            3.0,
            "ms",
        ),
    ]
    for name in ("ours/redis", "ours/postgres"):
        for op in ("put", "get"):
            checks.append(
                Check(
                    "6",
                    name,
                    f"round trips per {op} (aim: 1)",
                    dig(r, name, "round_trips", op, "round_trips"),
                    1.0,
                )
            )
    return tag_errors(ratios, lambda name: errors_of(r, name)), _tag_checks(checks, r)


# -- scenario 5 ----------------------------------------------------------------------------


async def scenario_5(env: Env, sizes: Sizes, only: set[str] | None) -> dict[str, Any]:
    say(
        f"Scenario 5: encryption vs null cipher, scenario 1 at {sizes.enc_threads} threads, "
        f"interleaved, median of {sizes.enc_repeats}"
    )
    from checkpointers.testing import deterministic_key_ring

    results: dict[str, Any] = {}
    for name in selected(S5_STORES, only):

        async def go(name: str = name) -> dict[str, Any]:
            walls: dict[str, list[float]] = {"encrypted": [], "null": []}
            cpus: dict[str, list[float]] = {"encrypted": [], "null": []}
            errors = {"encrypted": 0, "null": 0}
            for repeat in range(sizes.enc_repeats):
                # ABBA order, so that drift (caches, autovacuum) does not favour one side.
                order = ("encrypted", "null") if repeat % 2 == 0 else ("null", "encrypted")
                for mode in order:
                    keys = (
                        deterministic_key_ring("benchmarks")
                        if mode == "encrypted"
                        else NullCipherKeyRing(i_know_this_stores_plaintext=True)
                    )
                    async with open_saver(name, env, keys=keys) as session:
                        result = await lg.throughput(
                            session.saver,
                            threads=sizes.enc_threads,
                            nodes=sizes.nodes,
                            concurrency=sizes.concurrency,
                            payload_bytes=sizes.payload_bytes,
                            probe=False,
                        )
                    walls[mode].append(result["wall_s"])
                    cpus[mode].append(result["cpu_s"])
                    errors[mode] += result["errors"]
            return {
                "errors": errors["encrypted"] + errors["null"],
                "encrypted_errors": errors["encrypted"],
                "null_errors": errors["null"],
                "encrypted_wall_s": statistics.median(walls["encrypted"]),
                "null_wall_s": statistics.median(walls["null"]),
                "encrypted_cpu_s": statistics.median(cpus["encrypted"]),
                "null_cpu_s": statistics.median(cpus["null"]),
                "wall_runs": walls,
                "cpu_runs": cpus,
            }

        results[name] = await attempt(name, go)
    return results


def ratios_5(r: dict[str, Any]) -> tuple[list[Ratio], list[Check]]:
    ratios = []
    for name in S5_STORES:
        for metric, key in (("wall time", "wall_s"), ("client CPU time", "cpu_s")):
            ratios.append(
                Ratio(
                    "5",
                    f"{name} encrypted",
                    f"{name} null cipher",
                    metric,
                    dig(r, name, f"encrypted_{key}"),
                    dig(r, name, f"null_{key}"),
                    1.10,
                    "s",
                    ours_errors=errors_of(r, name, "encrypted_errors"),
                    peer_errors=errors_of(r, name, "null_errors"),
                )
            )
    return ratios, []


# -- main ---------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }
    for dist in (
        "checkpointers",
        "langgraph",
        "langgraph-checkpoint",
        "langgraph-checkpoint-postgres",
        "langgraph-checkpoint-sqlite",
        "pydantic-graph",
        "asyncpg",
        "psycopg",
        "redis",
        "aiosqlite",
        "cryptography",
        "zstandard",
    ):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        from checkpointers import __version__

        out["checkpointers (tree)"] = __version__
    except ImportError:
        pass
    return out


async def server_versions(env: Env) -> dict[str, str]:
    out: dict[str, str] = {}
    if not env.postgres_error:
        import asyncpg

        conn = await asyncpg.connect(env.postgres_url)
        try:
            out["postgresql"] = str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()
    if not env.redis_error:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(env.redis_url)
        try:
            out["redis"] = str((await client.info("server")).get("redis_version"))
        finally:
            await client.aclose()
    return out


RUNNERS = {
    1: (scenario_1, ratios_1),
    2: (scenario_2, ratios_2),
    3: (scenario_3, ratios_3),
    4: (scenario_4, ratios_4),
    5: (scenario_5, ratios_5),
    6: (scenario_6, ratios_6),
}


async def run(
    scenarios: list[int],
    sizes: Sizes,
    out: Path | None,
    only: set[str] | None = None,
    *,
    servers: bool = True,
    repeat: int = 1,
) -> dict[str, Any]:
    """Run `scenarios` (`repeat` times, interleaved) and write the reports to `out` (if
    given); returns the results.

    `only` limits the configurations by name; `servers=False` skips every PostgreSQL and
    Redis configuration without connecting (the smoke test)."""
    env = await Env.open(servers=servers)
    report: dict[str, Any] = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sizes": sizes.__dict__,
        "repeat": repeat,
        "versions": versions(),
        "scenarios": {},
        "repeats": [],
        "ratios": [],
        "checks": [],
    }
    per_ratios: dict[int, list[list[Ratio]]] = {n: [] for n in scenarios}
    per_checks: dict[int, list[list[Check]]] = {n: [] for n in scenarios}
    try:
        report["versions"].update(await server_versions(env))
        for note in (env.postgres_error, env.redis_error):
            if note:
                say(f"note: {note}: its configurations are skipped")
        for rep in range(repeat):
            this: dict[str, Any] = {}
            if repeat > 1:
                say(f"[repetition {rep + 1}/{repeat}]")
            for number in scenarios:
                scenario, make_ratios = RUNNERS[number]
                start = time.perf_counter()
                results = await scenario(env, sizes, only)
                this[str(number)] = results
                ratios, checks = make_ratios(results)
                per_ratios[number].append(ratios)
                per_checks[number].append(checks)
                say(f"  scenario {number} took {time.perf_counter() - start:.1f}s")
            report["repeats"].append(this)
            # The detail tables show the last repetition; every one is in the JSON.
            report["scenarios"] = this
    finally:
        await env.aclose()
    objects = [
        (n, merge_ratios(per_ratios[n]), merge_checks(per_checks[n]))
        for n in scenarios
        if per_ratios[n]
    ]
    for _, ratios, checks in objects:
        report["ratios"] += [x.as_dict() for x in ratios]
        report["checks"] += [x.as_dict() for x in checks]
    if repeat == 1:
        del report["repeats"]
    if out is not None:
        write(report, objects, out)
    return report


def write(report: dict[str, Any], objects: list[Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(dumps(report) + "\n")
    lines = [f"# Benchmark results ({report['started']})", ""]
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    lines.append("")
    lines.append("Sizes: " + ", ".join(f"{k}={v}" for k, v in report["sizes"].items()))
    repeat = report.get("repeat", 1)
    if repeat > 1:
        lines += [
            "",
            f"Repetitions: {repeat}, interleaved. Ratios are the median of the per-repetition "
            "ratios (min..max beside them), values the median of each side; the absolute "
            "tables below are the last repetition (every one is in results.json).",
        ]
    lines += ["", "## Ratios (ours / peer; below 1 means ours is smaller or faster)", ""]
    all_ratios = [r for _, ratios, _ in objects for r in ratios]
    all_checks = [c for _, _, checks in objects for c in checks]
    lines += ratio_table(all_ratios)
    if all_checks:
        lines += ["", "## Absolute goals", "", *check_table(all_checks)]
    scenarios = report["scenarios"]
    if "1" in scenarios:
        lines += ["", "## Scenario 1: throughput (absolute)", ""]
        lines += detail_table(
            scenarios["1"],
            [
                ("errors", lambda v: v["errors"], ""),
                ("wall s", lambda v: v["wall_s"], ""),
                ("checkpoints/s", lambda v: v["checkpoints_per_s"], ""),
                ("client CPU us/checkpoint", lambda v: v["cpu_us_per_checkpoint"], ""),
                ("client CPU s", lambda v: v["cpu_s"], ""),
                ("put p50/p99 ms", lambda v: _pair(v["aput_under_load"]), ""),
                ("put_writes p50/p99 ms", lambda v: _pair(v["aput_writes_under_load"]), ""),
                ("get_tuple p50/p99 ms (load)", lambda v: _pair(v["aget_tuple_under_load"]), ""),
                ("get_tuple p50/p99 ms (idle)", lambda v: _pair(v["aget_tuple_idle"]), ""),
                ("stored", lambda v: v["stored_bytes"], "B"),
            ],
        )
    if "2" in scenarios:
        lines += ["", "## Scenario 2: conversation growth (absolute)", ""]
        lines += detail_table(
            scenarios["2"],
            [
                ("stored", lambda v: v["stored_bytes"], "B"),
                ("above empty schema", lambda v: v["stored_bytes_net"], "B"),
                ("turn p50/p99 ms", lambda v: _pair(v["turn_latency"]), ""),
                ("first 10% ms", lambda v: v["first_tenth_ms"], ""),
                ("last 10% ms", lambda v: v["last_tenth_ms"], ""),
                ("bytes/turn 2nd/1st half", lambda v: v["second_half_over_first_half"], ""),
            ],
        )
        picture = plot_growth(scenarios["2"], out / "growth.png")
        lines += [
            "",
            f"![growth]({Path(picture).name})"
            if picture
            else "(growth plot skipped: matplotlib is not installed)",
        ]
    if "3" in scenarios:
        lines += ["", "## Scenario 3: pydantic-graph (absolute)", ""]
        lines.append(f"Baseline (SimpleStatePersistence) run: {scenarios['3']['baseline_s']:.3f}s")
        lines.append("")
        lines += detail_table(
            scenarios["3"]["single"],
            [
                ("run wall s", lambda v: v["wall_s"], ""),
                ("overhead ms/node", lambda v: v["overhead_per_node_ms"], ""),
                ("stored", lambda v: v["stored_bytes"], "B"),
            ],
        )
        lines.append("")
        lines += detail_table(
            scenarios["3"]["concurrent"],
            [
                ("runs", lambda v: v["runs"], ""),
                ("wall s", lambda v: v["wall_s"], ""),
                ("runs/s", lambda v: v["runs_per_s"], ""),
                ("failed runs", lambda v: v["errors"], ""),
                ("raised", lambda v: v["runs_raised"], ""),
                ("incomplete", lambda v: v["incomplete_histories"], ""),
            ],
        )
    if "4" in scenarios:
        lines += ["", "## Scenario 4: resume after a crash, fresh process (absolute)", ""]
        lines += detail_table(
            scenarios["4"],
            [
                ("threads", lambda v: v["threads"], ""),
                ("spawn to first node p50/p99 ms", lambda v: _pair(v["spawn_to_first_node"]), ""),
                ("interpreter + imports p50/p99 ms", lambda v: _pair(v["startup"]), ""),
                ("in-process p50/p99 ms", lambda v: _pair(v["in_process"]), ""),
                ("open p50/p99 ms", lambda v: _pair(v["open"]), ""),
                ("first aget_tuple p50/p99 ms", lambda v: _pair(v["aget_tuple"]), ""),
            ],
        )
    if "6" in scenarios:
        lines += ["", "## Scenario 6: put/get latency and throughput (absolute)", ""]
        levels = next((list(v["levels"]) for v in scenarios["6"].values() if "levels" in v), [])
        for c in levels:
            lines += ["", f"Concurrency {c}:", ""]
            lines += detail_table(
                scenarios["6"],
                [
                    ("put p50/p99 ms", lambda v, c=c: _pair(v["levels"][c]["put"]), ""),
                    ("put/s", lambda v, c=c: v["levels"][c]["put"]["per_s"], ""),
                    ("get p50/p99 ms", lambda v, c=c: _pair(v["levels"][c]["get"]), ""),
                    ("get/s", lambda v, c=c: v["levels"][c]["get"]["per_s"], ""),
                ],
            )
        lines += [
            "",
            "Round trips per call (client->server flights counted by a TCP proxy) and what "
            "the server counted (Redis INFO commandstats calls, server-wide; PostgreSQL "
            "statements seen on the wire, Query + Execute messages):",
            "",
        ]
        lines += detail_table(
            scenarios["6"],
            [
                ("put round trips", lambda v: v["round_trips"]["put"]["round_trips"], ""),
                ("get round trips", lambda v: v["round_trips"]["get"]["round_trips"], ""),
                (
                    "put redis cmds",
                    lambda v: v["round_trips"]["put"].get("redis commands"),
                    "",
                ),
                (
                    "get redis cmds",
                    lambda v: v["round_trips"]["get"].get("redis commands"),
                    "",
                ),
                (
                    "put pg statements",
                    lambda v: v["round_trips"]["put"].get("postgres statements (wire)"),
                    "",
                ),
                (
                    "get pg statements",
                    lambda v: v["round_trips"]["get"].get("postgres statements (wire)"),
                    "",
                ),
            ],
        )
    if "5" in scenarios:
        lines += ["", "## Scenario 5: encryption cost (absolute)", ""]
        lines += detail_table(
            scenarios["5"],
            [
                ("encrypted wall s", lambda v: v["encrypted_wall_s"], ""),
                ("null cipher wall s", lambda v: v["null_wall_s"], ""),
                ("encrypted CPU s", lambda v: v["encrypted_cpu_s"], ""),
                ("null cipher CPU s", lambda v: v["null_cpu_s"], ""),
            ],
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    say(f"wrote {out / 'results.md'} and {out / 'results.json'}")


def _pair(summary: dict[str, Any]) -> str:
    p50, p99 = summary.get("p50_ms"), summary.get("p99_ms")
    if p50 is None:
        return "-"
    return f"{p50:.2f} / {p99:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="CI smoke sizes")
    parser.add_argument(
        "--scenarios",
        default=",".join(map(str, ALL_SCENARIOS)),
        help="comma-separated scenario numbers (default 1,2,3,4,5,6)",
    )
    parser.add_argument(
        "--targets", default=None, help="comma-separated configuration names to run (default: all)"
    )
    parser.add_argument("--out", default="benchmarks/results", help="output directory")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the scenarios N times, interleaved; report median ratio and min/max",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat takes a number >= 1")
    try:
        scenarios = [int(s) for s in args.scenarios.split(",") if s.strip()]
    except ValueError:
        parser.error("--scenarios takes numbers such as 1,2,5")
    unknown = [s for s in scenarios if s not in RUNNERS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {sorted(RUNNERS)}")
    only = None if args.targets is None else {t.strip() for t in args.targets.split(",")}
    sizes = QUICK if args.quick else Sizes()
    start = time.perf_counter()
    report = asyncio.run(run(scenarios, sizes, Path(args.out), only, repeat=args.repeat))
    say("")
    for line in ratio_table([Ratio(**_ratio_args(r)) for r in report["ratios"]]):
        say(line)
    say(f"\ntotal {time.perf_counter() - start:.0f}s")
    return 0


def _ratio_args(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "scenario": row["scenario"],
        "ours": row["ours"],
        "peer": row["peer"],
        "metric": row["metric"],
        "ours_value": row["ours_value"],
        "peer_value": row["peer_value"],
        "goal": row["goal_max_ratio"],
        "unit": row["unit"],
        "runs": row.get("ratio_runs") or [],
        "ours_errors": row.get("ours_errors", 0),
        "peer_errors": row.get("peer_errors", 0),
    }


if __name__ == "__main__":
    sys.exit(main())
