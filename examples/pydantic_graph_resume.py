"""Resume a pydantic-graph run after its process is killed in the middle of a node.

A four-node pipeline (Fetch -> Transform -> Load -> Report) runs in a child process that
is killed with SIGKILL while `Load` runs. A second, new process calls `recover()` and
`iter_from_persistence`: it runs `Load` again from the state saved before it, then
`Report`; `Fetch` and `Transform` do not run again. No LLM, no network.

    python examples/pydantic_graph_resume.py                          # SQLite in the cwd
    python examples/pydantic_graph_resume.py --url postgresql://localhost/db  # any durable URL

Keys come from CHECKPOINTERS_KEY or CHECKPOINTERS_KEY_FILE; when neither is set, the
example creates `demo.key` (mode 0600) in the current directory and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pydantic_graph import BaseNode, End, GraphRunContext
from pydantic_graph.graph import Graph
from pydantic_graph.persistence import NodeSnapshot

from checkpointers.crypto import create_key_file
from checkpointers.pydantic_graph import StatePersistence

DEFAULT_URL = "sqlite:///pydantic_graph_resume.db"
KEY_FILE = "demo.key"


@dataclass
class Pipeline:
    """The run's state: what each step produced."""

    rows: list[int] = field(default_factory=list)
    doubled: list[int] = field(default_factory=list)
    loaded: int = 0


@dataclass
class Deps:
    """Where to die (only in the first process)."""

    crash_in: str | None = None


def say(text: str) -> None:
    print(f"  [pid {os.getpid()}] {text}", flush=True)


def die_if_asked(ctx: GraphRunContext[Pipeline, Deps], node: str) -> None:
    if ctx.deps.crash_in == node:
        say(f"killed with SIGKILL in the middle of {node}")
        if hasattr(signal, "SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)  # where there is no SIGKILL


@dataclass
class Fetch(BaseNode[Pipeline, Deps, int]):
    async def run(self, ctx: GraphRunContext[Pipeline, Deps]) -> Transform:
        ctx.state.rows = [1, 2, 3, 4]
        say(f"ran Fetch: rows={ctx.state.rows}")
        return Transform()


@dataclass
class Transform(BaseNode[Pipeline, Deps, int]):
    async def run(self, ctx: GraphRunContext[Pipeline, Deps]) -> Load:
        ctx.state.doubled = [2 * r for r in ctx.state.rows]
        say(f"ran Transform: doubled={ctx.state.doubled}")
        return Load()


@dataclass
class Load(BaseNode[Pipeline, Deps, int]):
    async def run(self, ctx: GraphRunContext[Pipeline, Deps]) -> Report:
        say(f"ran Load with state {ctx.state}")
        die_if_asked(ctx, "Load")
        ctx.state.loaded = sum(ctx.state.doubled)
        return Report()


@dataclass
class Report(BaseNode[Pipeline, Deps, int]):
    async def run(self, ctx: GraphRunContext[Pipeline, Deps]) -> End[int]:
        say(f"ran Report: loaded={ctx.state.loaded}")
        return End(ctx.state.loaded)


graph: Graph[Pipeline, Deps, int] = Graph(nodes=[Fetch, Transform, Load, Report], name="pipeline")


async def first_attempt(url: str, run_id: str) -> None:
    async with StatePersistence[Pipeline, int].from_url(url, run_id=run_id) as persistence:
        await graph.run(
            Fetch(), state=Pipeline(), deps=Deps(crash_in="Load"), persistence=persistence
        )


async def resume(url: str, run_id: str) -> None:
    async with StatePersistence[Pipeline, int].from_url(url, run_id=run_id) as persistence:
        requeued = await persistence.recover()
        say(f"recover() requeued {requeued} snapshot(s) left running by the dead process")
        async with graph.iter_from_persistence(persistence, deps=Deps()) as run:
            async for _node in run:
                pass
        assert run.result is not None
        say(f"result: {run.result.output}")
        say("history:")
        for snap in await persistence.load_all():
            status = snap.status if isinstance(snap, NodeSnapshot) else "end"
            say(f"  {snap.id.split(':')[0]:<10} {status}")


def ensure_keys() -> None:
    if os.environ.get("CHECKPOINTERS_KEY") or os.environ.get("CHECKPOINTERS_KEY_FILE"):
        print("keys: from CHECKPOINTERS_KEY / CHECKPOINTERS_KEY_FILE")
        return
    key_file = Path(KEY_FILE).resolve()
    if key_file.exists():
        print(f"keys: using {KEY_FILE} (CHECKPOINTERS_KEY and CHECKPOINTERS_KEY_FILE unset)")
    else:
        create_key_file(key_file)
        print(
            f"keys: created {KEY_FILE} (mode 0600) because CHECKPOINTERS_KEY and "
            "CHECKPOINTERS_KEY_FILE are unset; keep it, or the data cannot be read"
        )
    os.environ["CHECKPOINTERS_KEY_FILE"] = str(key_file)  # the children inherit it


def child(phase: str, url: str, run_id: str) -> int:
    sys.stdout.flush()
    command = [sys.executable, __file__, "--phase", phase, "--url", url, "--run-id", run_id]
    return subprocess.run(command, check=False).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"store URL (default {DEFAULT_URL})")
    parser.add_argument("--run-id", default=None)
    parser.add_argument("--phase", choices=["first", "resume"], default=None)
    args = parser.parse_args()
    if args.phase == "first":
        asyncio.run(first_attempt(args.url, args.run_id))
        return 0
    if args.phase == "resume":
        asyncio.run(resume(args.url, args.run_id))
        return 0

    ensure_keys()
    run_id = args.run_id or f"demo-{uuid.uuid4().hex[:8]}"
    print(f"run {run_id}: first attempt in a child process")
    code = child("first", args.url, run_id)
    print(f"the child process died (exit status {code}) while Load was running")
    print(f"resuming run {run_id} in a new process")
    code = child("resume", args.url, run_id)
    if code != 0:
        print(f"the resumed run failed (exit status {code})")
        return 1
    print("done: Fetch and Transform ran once; Load ran again from its saved state")
    return 0


if __name__ == "__main__":
    sys.exit(main())
