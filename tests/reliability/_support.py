"""Shared helpers of the reliability suite: keys, store URLs, child processes, polling."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from checkpointers.crypto.keyring import KeyRing
from checkpointers.crypto.local import LocalKey

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_crash_worker.py")
KEY_MATERIAL = hashlib.sha256(b"checkpointers-reliability-key").digest()
KEY_B64 = base64.b64encode(KEY_MATERIAL).decode()


def key_ring() -> KeyRing:
    """The suite's key ring (the same key the child processes get)."""
    return KeyRing([LocalKey(KEY_MATERIAL)])


def child_env(**extra: str) -> dict[str, str]:
    """Environment of a child process: the suite's key, the repository on the path."""
    env = dict(os.environ)
    env["CHECKPOINTERS_KEY"] = KEY_B64
    env.pop("CHECKPOINTERS_KEY_FILE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def poll(condition: Callable[[], T | None], *, timeout: float, what: str,
         interval: float = 0.002) -> T:  # fmt: skip
    """Poll `condition` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)  # paces the poll; the condition is what synchronises


def with_query(url: str, **options: str) -> str:
    """`url` with query options appended."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


def read_log(path: Path) -> list[tuple[str, str, int]]:
    """(event, node, pid) lines of a side-effect log."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("start", "end"):
            out.append((parts[0], parts[1], int(parts[2])))
        elif parts and parts[0] == "error":
            out.append(("error", line, 0))
    return out


class ForkServer:
    """The `_crash_worker.py serve` process: forks one new process per job."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(WORKER), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        assert self._expect(60.0) == "ready"

    def _expect(self, timeout: float) -> str:
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"fork server silent for {timeout:.0f}s")
        line = self._proc.stdout.readline()
        if not line:
            raise AssertionError(f"fork server exited ({self._proc.poll()})")
        return line.strip()

    def start(self, job: dict[str, Any]) -> int:
        """Fork a process for `job`; returns its pid (it is not our child: kill by pid)."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()
        word, pid = self._expect(30.0).split()
        assert word == "pid"
        return int(pid)

    def wait(self, timeout: float = 60.0) -> int:
        """Exit status of the last started job (negative: killed by that signal)."""
        word, status = self._expect(timeout).split()
        assert word == "exit"
        return int(status)

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def spawn_job(job: dict[str, Any]) -> subprocess.Popen[bytes]:
    """Run a job in a fresh interpreter (slower than the fork server, fully cold)."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), "run", json.dumps(job)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        env=child_env(),
        cwd=ROOT,
    )


def three_step_graph(saver: Any, *, note_size: int) -> Any:
    """A compiled a -> b -> c LangGraph whose every node appends its name to `steps` and
    writes a `note` of `note_size` characters."""
    from langgraph.graph import END, START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict, total=False):
        steps: list[str]
        note: str

    def step(name: str) -> Any:
        def run(state: State) -> State:
            return {"steps": [*state.get("steps", []), name], "note": name * note_size}

        return run

    builder = StateGraph(State)
    for name in ("a", "b", "c"):
        builder.add_node(name, step(name))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder.compile(checkpointer=saver)
