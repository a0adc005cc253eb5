"""Child process of the kill -9 tests: runs or resumes one graph, logging node side effects.

Usage (from the repository root, with PYTHONPATH including it)::

    python tests/reliability/_crash_worker.py run '<job json>'    # one job, then exit
    python tests/reliability/_crash_worker.py serve                # a fork server

A job is ``{"adapter": "langgraph"|"pydantic_graph", "mode": "run"|"resume",
"urls": [...], "thread": "...", "log": "/path", "result": "/path", "hold": "n2"|null}``.

Every node appends ``start <node> <pid>`` to the log file before doing anything and
``end <node> <pid>`` when its work is done (O_APPEND writes, so a SIGKILL never loses a
line that was written). With ``hold`` set, that node waits (polling for a file that never
appears, bounded) so the parent can kill it inside the node. The final state goes to the
result file as JSON.

The fork server (``serve``) imports everything once, then for each job line on stdin
forks a new process, prints ``pid <n>``, waits for it and prints ``exit <status>``. Each
forked child starts with no open connection and no state other than the imported
modules: resuming in it is resuming in a new process, without paying the import time.
Keys come from ``CHECKPOINTERS_KEY``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import operator
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from pydantic_graph import BaseNode, End, GraphRunContext
from pydantic_graph.graph import Graph
from pydantic_graph.persistence import EndSnapshot

NODES = ("n0", "n1", "n2", "n3", "n4", "n5")
SEED = "seed"
HOLD_LIMIT = 60.0


def _log(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)


def _digest(previous: str, node: str) -> str:
    return hashlib.sha256(f"{previous}/{node}".encode()).hexdigest()[:16]


def _hold(job: dict[str, Any], node: str) -> None:
    """Stay inside the node until killed (bounded, so a lost parent never leaves us)."""
    if job.get("hold") != node:
        return
    deadline = time.monotonic() + HOLD_LIMIT
    marker = job["log"] + ".never"
    while time.monotonic() < deadline and not os.path.exists(marker):
        time.sleep(0.005)


# -- LangGraph --------------------------------------------------------------------------


class LGState(TypedDict, total=False):
    trail: Annotated[list[str], operator.add]
    digest: str


def _langgraph(job: dict[str, Any]) -> dict[str, Any]:
    from langgraph.graph import END, START, StateGraph

    from checkpointers.langgraph import CheckpointSaver

    def make(name: str) -> Any:
        def run(state: LGState) -> LGState:
            _log(job["log"], f"start {name} {os.getpid()}")
            _hold(job, name)
            digest = _digest(state.get("digest", SEED), name)
            _log(job["log"], f"end {name} {os.getpid()}")
            return {"trail": [name], "digest": digest}

        return run

    builder = StateGraph(LGState)
    for name in NODES:
        builder.add_node(name, make(name))
    builder.add_edge(START, NODES[0])
    for first, second in itertools.pairwise(NODES):
        builder.add_edge(first, second)
    builder.add_edge(NODES[-1], END)
    config = {"configurable": {"thread_id": job["thread"]}}
    urls = job["urls"]
    with CheckpointSaver.from_url(urls if len(urls) > 1 else urls[0]) as saver:
        graph = builder.compile(checkpointer=saver)
        start = {"trail": [], "digest": SEED} if job["mode"] == "run" else None
        out = graph.invoke(start, config, durability="sync")
    return {"trail": list(out["trail"]), "digest": out["digest"]}


# -- pydantic-graph ---------------------------------------------------------------------


@dataclass
class PGState:
    trail: list[str] = field(default_factory=list)
    digest: str = SEED


_JOB: dict[str, Any] = {}


def _step(state: PGState, name: str) -> None:
    _log(_JOB["log"], f"start {name} {os.getpid()}")
    _hold(_JOB, name)
    state.digest = _digest(state.digest, name)
    state.trail.append(name)
    _log(_JOB["log"], f"end {name} {os.getpid()}")


@dataclass
class N5(BaseNode[PGState, None, str]):
    async def run(self, ctx: GraphRunContext[PGState, None]) -> End[str]:
        _step(ctx.state, "n5")
        return End(ctx.state.digest)


@dataclass
class N4(BaseNode[PGState, None, str]):
    async def run(self, ctx: GraphRunContext[PGState, None]) -> N5:
        _step(ctx.state, "n4")
        return N5()


@dataclass
class N3(BaseNode[PGState, None, str]):
    async def run(self, ctx: GraphRunContext[PGState, None]) -> N4:
        _step(ctx.state, "n3")
        return N4()


@dataclass
class N2(BaseNode[PGState, None, str]):
    async def run(self, ctx: GraphRunContext[PGState, None]) -> N3:
        _step(ctx.state, "n2")
        return N3()


@dataclass
class N1(BaseNode[PGState, None, str]):
    async def run(self, ctx: GraphRunContext[PGState, None]) -> N2:
        _step(ctx.state, "n1")
        return N2()


@dataclass
class N0(BaseNode[PGState, None, str]):
    async def run(self, ctx: GraphRunContext[PGState, None]) -> N1:
        _step(ctx.state, "n0")
        return N1()


pg_graph: Graph[PGState, None, str] = Graph(nodes=[N0, N1, N2, N3, N4, N5], name="reliability")


def _pydantic_graph(job: dict[str, Any]) -> dict[str, Any]:
    from checkpointers.pydantic_graph import StatePersistence

    _JOB.clear()
    _JOB.update(job)

    async def main() -> dict[str, Any]:
        urls = job["urls"]
        async with StatePersistence[PGState, str].from_url(
            urls if len(urls) > 1 else urls[0], run_id=job["thread"]
        ) as persistence:
            if job["mode"] == "run":
                result = await pg_graph.run(N0(), state=PGState(), persistence=persistence)
                state, output = result.state, result.output
            else:
                # A run killed after its end snapshot was saved is finished: nothing to
                # resume (iter_from_persistence would raise GraphRuntimeError).
                persistence.set_graph_types(pg_graph)
                done = [s for s in await persistence.load_all() if isinstance(s, EndSnapshot)]
                if done:
                    end = done[-1]
                    return {"trail": list(end.state.trail), "digest": end.state.digest,
                            "output": end.result.data}  # fmt: skip
                await persistence.recover()
                async with pg_graph.iter_from_persistence(persistence) as run:
                    async for _node in run:
                        pass
                assert run.result is not None
                state, output = run.result.state, run.result.output
        return {"trail": list(state.trail), "digest": state.digest, "output": output}

    return asyncio.run(main())


def _claim_loop(job: dict[str, Any]) -> dict[str, Any]:
    """Claim and run snapshots of one run until none is left; log each claim."""
    from checkpointers.pydantic_graph import StatePersistence

    async def main() -> dict[str, Any]:
        claimed = 0
        async with StatePersistence[PGState, str].from_url(
            job["urls"][0], run_id=job["thread"]
        ) as persistence:
            persistence.set_graph_types(pg_graph)
            while (snapshot := await persistence.load_next()) is not None:
                async with persistence.record_run(snapshot.id):
                    _log(job["log"], f"claimed {snapshot.id} {os.getpid()}")
                claimed += 1
        return {"claimed": claimed}

    return asyncio.run(main())


def run_job(job: dict[str, Any]) -> None:
    runners = {"langgraph": _langgraph, "pydantic_graph": _pydantic_graph, "claim": _claim_loop}
    runner = runners[job["adapter"]]
    result = runner(job)
    tmp = job["result"] + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, job["result"])


def _preload() -> None:
    import langgraph.graph  # noqa: F401
    import pydantic_graph.graph  # noqa: F401

    import checkpointers.langgraph
    import checkpointers.pydantic_graph
    import checkpointers.stores.postgres
    import checkpointers.stores.redis
    import checkpointers.tiered  # noqa: F401


def serve() -> None:
    """Fork server: one job per stdin line; prints `pid N` then `exit S` per job."""
    _preload()
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the new process
            code = 0
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                run_job(job)
            except BaseException as exc:  # report, then exit non-zero
                _log(job["log"], f"error {type(exc).__name__}: {exc}")
                code = 1
            finally:
                os._exit(code)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        job = json.loads(sys.argv[2])
        try:
            run_job(job)
        except BaseException as exc:
            _log(job["log"], f"error {type(exc).__name__}: {exc}")
            raise
