"""Shared plumbing of the test harness: ports, polling with deadlines, child processes.

Everything here talks to 127.0.0.1 only. Nothing sleeps in place of synchronisation:
waiting is always a poll of a real condition, bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")

LOOPBACK = "127.0.0.1"


class HarnessUnavailable(RuntimeError):
    """A real service needed by the tests could not be brought up here."""


def free_port(*, also_free: Sequence[int] = ()) -> int:
    """Return a TCP port on 127.0.0.1 that is free now (and `port + offset` for each offset).

    Args:
        also_free: offsets from the port that must be bindable as well (the Redis Cluster
            bus uses port + 10000).
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if all(port + off < 65536 and port_is_free(port + off) for off in also_free):
            return port
    raise HarnessUnavailable("no free port with the requested companions on 127.0.0.1")


def port_is_free(port: int) -> bool:
    """Tell whether 127.0.0.1:`port` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Tell whether a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
) -> None:
    """Poll `condition` until it is true, or raise `HarnessUnavailable` at the deadline.

    The pause between polls only paces the loop; the condition is what synchronises.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise HarnessUnavailable(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def run_coroutine_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop in a helper thread.

    Safe to call from sync fixtures even while the caller's thread runs an event loop.
    """
    box: dict[str, T] = {}
    errors: list[BaseException] = []

    async def main() -> T:
        return await factory()

    def target() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="harness-coroutine", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box["value"]


def is_root() -> bool:
    """Tell whether this process runs as root."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def which(name: str) -> str | None:
    """Locate an executable on PATH."""
    return shutil.which(name)


class ManagedProcess:
    """A child process with its output in a log file, stoppable and restartable by pid.

    It runs in its own process group so that wrapper scripts (npm shims) die with it.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The pid of the running child, or None."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the child (truncating its log); a no-op if it already runs."""
        if self.running:
            return
        self._reap()
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
        )
        _LIVE.add(self)

    @property
    def running(self) -> bool:
        """Tell whether the child is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the child once it has exited."""
        return None if self._proc is None else self._proc.poll()

    def log_text(self) -> str:
        """Everything the child printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child gracefully (SIGTERM), then SIGKILL after `timeout`."""
        self._signal(signal.SIGTERM)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait(timeout=timeout)
        self._reap()

    def kill(self) -> None:
        """Kill the child at once (SIGKILL), as a crash would."""
        self._signal(signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=10.0)
        self._reap()

    def _signal(self, sig: int) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
            _LIVE.discard(self)
        if self._proc is None and self._log is not None:
            self._log.close()
            self._log = None


_LIVE: set[ManagedProcess] = set()


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            proc.kill()
