"""Scenario 4: resume latency after a crash, with real processes.

For one configuration (its database, prefix or file opened by `open_saver`):

1. a crasher process (`benchmarks._resume_child crash`) starts `threads + 1` runs of a
   3-node chain graph at once with durability="sync", parks them all inside n1 and kills
   itself with `os._exit(137)`: each thread's latest durable checkpoint is the one after
   n0, and n1 never finished;
2. for each thread, one after the other, the parent takes `time.monotonic()` and spawns a
   fresh `python -m benchmarks._resume_child resume` that imports, opens the configuration
   (`from_url` / `from_conn_string`), calls `graph.ainvoke(None, config)` and reports, on
   its stdout pipe, the monotonic time at which n1 (the first node to run) started. The
   first resumer is a warm-up (page cache of the interpreter and the .pyc files), not
   counted;
3. the parent checks through its own saver that every thread finished (c2 is written).

Reported, as p50/p99 over the threads:
- `spawn_to_first_node`: spawn to the first node's start (what an operator waits for);
- `startup`: spawn to the first line after the imports (interpreter + imports);
- `in_process`: from just before opening the saver to the first node (open + the
  `aget_tuple` inside `ainvoke` + scheduling n1), which is what the package controls;
- `open`: opening the saver alone; `aget_tuple`: the first `aget_tuple` of the resumer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._stats import summary_ms

ROOT = Path(__file__).resolve().parents[1]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


async def _spawn(mode: str, spec: dict[str, Any], timeout: float = 120.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._resume_child",
        mode,
        json.dumps(spec),
        cwd=str(ROOT),
        env=_child_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


async def resume_latency(
    name: str, url: Any, saver: Any, *, threads: int, payload_bytes: int
) -> dict[str, Any]:
    """Crash `threads + 1` runs in one process, then resume each from a fresh process."""
    spec = {"name": name, "url": url, "threads": threads + 1, "payload_bytes": payload_bytes}
    code, _out, err = await _spawn("crash", spec)
    if code != 137:
        raise RuntimeError(f"crasher exited with {code}: {err.strip()[-400:]}")
    samples: dict[str, list[float]] = {
        k: [] for k in ("spawn_to_first_node", "startup", "in_process", "open", "aget_tuple")
    }
    for i in [threads, *range(threads)]:  # resume-<threads> is the warm-up
        child = {**spec, "thread_id": f"resume-{i}"}
        t_spawn = time.monotonic()
        code, out, err = await _spawn("resume", child)
        lines = [line for line in out.splitlines() if line.startswith("RESUME ")]
        if code != 0 or not lines:
            raise RuntimeError(f"resumer exited with {code}: {err.strip()[-400:]}")
        r = json.loads(lines[-1][len("RESUME ") :])
        if r["first_node"] != "n1" or not r["finished"]:
            raise AssertionError(
                f"thread {i} resumed at {r['first_node']}, finished={r['finished']}"
            )
        if i == threads:
            continue
        samples["spawn_to_first_node"].append(r["t_first_node"] - t_spawn)
        samples["startup"].append(r["t_open"] - t_spawn)
        samples["in_process"].append(r["t_first_node"] - r["t_open"])
        samples["open"].append(r["t_opened"] - r["t_open"])
        if r["first_aget_tuple_s"] is not None:
            samples["aget_tuple"].append(r["first_aget_tuple_s"])
    for i in range(threads + 1):
        last = await saver.aget_tuple({"configurable": {"thread_id": f"resume-{i}"}})
        if last is None or "c2" not in last.checkpoint["channel_values"]:
            raise AssertionError(f"thread resume-{i} did not finish after its resume")
    return {"threads": threads, **{k: summary_ms(v) for k, v in samples.items()}}
