"""Kill -9 in the middle of a run, resume in a new process: nothing lost, one node re-run.

A child process runs a six-node graph (both adapters, every durable store kind) whose
nodes log `start`/`end` to a side-effect file. The parent waits until the log shows a
randomly chosen node started, then sends SIGKILL: either while that node is held inside
its body, or at once with the graph running freely (the kill then lands in the node, in
the checkpoint write after it, or in the next node). A new process resumes the run.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability._crash_worker import NODES, SEED, _digest
from tests.reliability._support import ForkServer, poll, read_log, spawn_job

ADAPTERS = ("langgraph", "pydantic_graph")
CI_TRIALS = 3
SOAK_TRIALS = 20


def expected_state() -> dict[str, Any]:
    digest = SEED
    for node in NODES:
        digest = _digest(digest, node)
    return {"trail": list(NODES), "digest": digest}


@dataclass
class Trial:
    """What one crash-and-resume trial saw."""

    crashed: list[str]
    resumed: list[str]
    held: bool
    status: int


def _job(adapter: str, mode: str, urls: list[str], thread: str, tmp: Path,
         hold: str | None) -> dict[str, Any]:  # fmt: skip
    return {"adapter": adapter, "mode": mode, "urls": urls, "thread": thread,
            "log": str(tmp / f"{thread}.log"), "result": str(tmp / f"{thread}.{mode}.json"),
            "hold": hold}  # fmt: skip


def _result(job: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(Path(job["result"]).read_text())


def _started(log: Path, node: str) -> bool:
    events = read_log(log)
    if any(e == "error" for e, _, _ in events):
        raise AssertionError(f"child failed: {events}")
    return any(e == "start" and n == node for e, n, _ in events)


def run_trial(server: ForkServer, adapter: str, urls: list[str], tmp: Path,
              rng: random.Random, *, held: bool, cold_resume: bool = False) -> Trial:  # fmt: skip
    """Run, kill at a random point around a random node, resume; check the invariants."""
    thread = f"crash-{uuid.uuid4().hex[:10]}"
    target = NODES[rng.randrange(len(NODES))]
    first = _job(adapter, "run", urls, thread, tmp, target if held else None)
    log = Path(first["log"])
    pid = server.start(first)
    poll(lambda: _started(log, target), timeout=60.0, what=f"{adapter} to start {target}")
    if not held:
        time.sleep(rng.uniform(0.0, 0.004))  # jitter: where the kill lands is random
    with contextlib.suppress(ProcessLookupError):  # it finished first: nothing to resume
        os.kill(pid, signal.SIGKILL)
    status = server.wait()
    crashed = [n for e, n, p in read_log(log) if e == "start" and p == pid]

    second = _job(adapter, "resume", urls, thread, tmp, None)
    if cold_resume:
        proc = spawn_job(second)
        assert proc.wait(timeout=120) == 0, read_log(log)
        resumed = [n for e, n, p in read_log(log) if e == "start" and p == proc.pid]
    else:
        resume_pid = server.start(second)
        assert server.wait() == 0, read_log(log)
        resumed = [n for e, n, p in read_log(log) if e == "start" and p == resume_pid]

    context = f"{adapter} {urls[0].split(':')[0]} held={held} target={target} " \
              f"crashed={crashed} resumed={resumed} status={status}"  # fmt: skip
    got = _result(second)
    want = expected_state()
    assert {k: got[k] for k in want} == want, context
    if adapter == "pydantic_graph":
        assert got["output"] == want["digest"], context
    # The crashed run started nodes in order, each once.
    assert crashed == list(NODES[: len(crashed)]), context
    if status == 0:
        assert resumed == [], context
    else:
        assert status == -signal.SIGKILL, context
        last = NODES.index(crashed[-1])
        # Only the node that was running may run again; every completed node is kept.
        allowed = [list(NODES[last:]), list(NODES[last + 1 :])]
        if held:
            allowed = [list(NODES[last:])]
        assert resumed in allowed, context
    return Trial(crashed, resumed, held, status)


def _trials(server: ForkServer, adapter: str, urls: list[str], tmp: Path,
            rng: random.Random, count: int, *, cold_every: int = 0) -> list[Trial]:  # fmt: skip
    return [
        run_trial(server, adapter, urls, tmp, rng, held=(i % 2 == 0),
                  cold_resume=bool(cold_every) and i % cold_every == cold_every - 1)
        for i in range(count)
    ]  # fmt: skip


def test_uncrashed_run_gives_the_reference_state(fork_server: ForkServer, tmp_path: Path) -> None:
    """A run that is never killed ends in the reference state, each node run once."""
    urls = [f"sqlite:///{tmp_path / 'ref.db'}"]
    for adapter in ADAPTERS:
        job = _job(adapter, "run", urls, f"ref-{adapter}", tmp_path, None)
        pid = fork_server.start(job)
        assert fork_server.wait() == 0, read_log(Path(job["log"]))
        started = [n for e, n, p in read_log(Path(job["log"])) if e == "start" and p == pid]
        assert started == list(NODES)
        got = _result(job)
        assert {k: got[k] for k in ("trail", "digest")} == expected_state()


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_kill_9_then_resume(
    fork_server: ForkServer, adapter: str, urls: list[str], tmp_path: Path, rng: random.Random
) -> None:
    """SIGKILL at a random point, then a new process resumes: reference final state, no
    completed node lost, only the node that was running runs again (3 trials)."""
    trials = _trials(fork_server, adapter, urls, tmp_path, rng, CI_TRIALS)
    assert any(t.status != 0 for t in trials)


@pytest.mark.soak
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_kill_9_then_resume_soak(
    fork_server: ForkServer, adapter: str, urls: list[str], tmp_path: Path, rng: random.Random
) -> None:
    """Twenty kill -9 trials per adapter and store; every fifth resumes in a fresh
    interpreter instead of a forked process."""
    trials = _trials(fork_server, adapter, urls, tmp_path, rng, SOAK_TRIALS, cold_every=5)
    killed = sum(t.status != 0 for t in trials)
    reran = sum(bool(t.crashed) and t.resumed[:1] == t.crashed[-1:] for t in trials)
    print(f"{adapter} {urls}: {len(trials)} trials, {killed} killed mid-run, "
          f"{reran} re-ran the interrupted node")  # fmt: skip
    assert killed >= SOAK_TRIALS // 2
