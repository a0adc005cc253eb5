"""The crasher and the resumer of scenario 4, each a fresh `python` process.

    python -m benchmarks._resume_child crash  '<spec json>'
    python -m benchmarks._resume_child resume '<spec json>'

`crash` starts `threads` runs of the chain graph at once (durability="sync", so the
checkpoint after n0 is durable before n1 starts), parks every run inside n1 and, once all
are parked, kills itself with `os._exit` (no close, no flush: a crash). `resume` opens the
same configuration, resumes one thread with `ainvoke(None, config)` and prints one line
`RESUME {json}` with CLOCK_MONOTONIC timestamps (`time.monotonic()`, the same clock in
every process on Linux, so the parent can subtract its own spawn time): `t_top` (first
line of this module, after the interpreter started), `t_open` (imports done, including
the store modules that `from_url` would load lazily, see `_targets.preload`; before
`from_url`/`from_conn_string`), `t_opened`, `t_first_node` (the first node of the resumed
run starts) and `t_done`, plus the node that ran first (must be n1) and how long the
saver's `aget_tuple` took.
"""

from __future__ import annotations

import time

T_TOP = time.monotonic()

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any, TypedDict  # noqa: E402

from langgraph.graph import END, START, StateGraph  # noqa: E402

from benchmarks._stats import Probe, chat_text  # noqa: E402
from benchmarks._targets import open_at, preload  # noqa: E402

NODES = 3  # n0 (done before the crash), n1 (the crash, re-run on resume), n2
_first: dict[str, Any] = {}
_parked: list[int] = []


class ResumeState(TypedDict, total=False):
    task: int
    c0: str
    c1: str
    c2: str


def build_graph(mode: str, threads: int, payload_bytes: int) -> StateGraph:
    payloads = [chat_text(payload_bytes, seed) for seed in range(7)]
    builder = StateGraph(ResumeState)

    def make(i: int) -> Any:
        async def node(state: ResumeState) -> dict[str, Any]:
            if not _first:
                _first.update(name=f"n{i}", t=time.monotonic())
            if mode == "crash" and i == 1:
                _parked.append(state["task"])
                if len(_parked) == threads:
                    sys.stdout.flush()
                    os._exit(137)
                await asyncio.Event().wait()
            return {f"c{i}": payloads[(state["task"] + i) % len(payloads)]}

        return node

    previous = START
    for i in range(NODES):
        builder.add_node(f"n{i}", make(i))
        builder.add_edge(previous, f"n{i}")
        previous = f"n{i}"
    builder.add_edge(previous, END)
    return builder


async def crash(spec: dict[str, Any]) -> None:
    threads = spec["threads"]
    async with open_at(spec["name"], spec["url"]) as saver:
        graph = build_graph("crash", threads, spec["payload_bytes"]).compile(checkpointer=saver)
        await asyncio.gather(
            *(
                graph.ainvoke(
                    {"task": i},
                    {"configurable": {"thread_id": f"resume-{i}"}},
                    durability="sync",
                )
                for i in range(threads)
            )
        )
    raise SystemExit("the crasher finished its runs instead of crashing")


async def resume(spec: dict[str, Any]) -> dict[str, Any]:
    preload(spec["name"])
    graph_builder = build_graph("resume", 1, spec["payload_bytes"])
    config = {"configurable": {"thread_id": spec["thread_id"]}}
    t_open = time.monotonic()
    async with open_at(spec["name"], spec["url"]) as saver:
        t_opened = time.monotonic()
        probe = Probe()
        probe.attach(saver, "aget_tuple")
        graph = graph_builder.compile(checkpointer=saver)
        final = await graph.ainvoke(None, config)
        t_done = time.monotonic()
    return {
        "t_top": T_TOP,
        "t_open": t_open,
        "t_opened": t_opened,
        "t_first_node": _first.get("t"),
        "first_node": _first.get("name"),
        "t_done": t_done,
        "first_aget_tuple_s": (probe.samples["aget_tuple"] or [None])[0],
        "finished": "c2" in (final or {}),
    }


def main() -> None:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    if mode == "crash":
        asyncio.run(crash(spec))
    else:
        print("RESUME " + json.dumps(asyncio.run(resume(spec))), flush=True)


if __name__ == "__main__":
    main()
