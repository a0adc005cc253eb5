"""Azurite (the Azure Storage emulator, blob service only) for the tests.

Azurite comes from npm, pinned, installed once into a cache directory
(`$CHECKPOINTERS_TEST_CACHE/azurite`, default `~/.cache/checkpointers-test/azurite`).
It listens on a free 127.0.0.1 port; the port is learned from its stdout line
``Azurite Blob service successfully listens on http://127.0.0.1:<port>``, and kept across
`stop()`/`start()` so that a client built from `connection_string` reconnects after
"Azurite down" tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.harness._common import (
    LOOPBACK,
    HarnessUnavailable,
    ManagedProcess,
    port_accepts,
    wait_for,
    which,
)

AZURITE_VERSION = "3.35.0"
DEV_ACCOUNT_NAME = "devstoreaccount1"
# Azurite's published, well-known development account key (not a secret).
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
LISTEN_PATTERN = re.compile(
    r"Azurite Blob service successfully listens on http://127\.0\.0\.1:(\d+)"
)
CACHE_ENV = "CHECKPOINTERS_TEST_CACHE"

__all__ = [
    "AZURITE_VERSION",
    "DEV_ACCOUNT_KEY",
    "DEV_ACCOUNT_NAME",
    "LISTEN_PATTERN",
    "Azurite",
    "azurite_service",
    "ensure_azurite_installed",
]


def cache_root() -> Path:
    """The harness's download cache (`$CHECKPOINTERS_TEST_CACHE` or ~/.cache/...)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "checkpointers-test"


def _installed_version(prefix: Path) -> str | None:
    manifest = prefix / "node_modules" / "azurite" / "package.json"
    try:
        version = json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def ensure_azurite_installed(prefix: Path | None = None, timeout: float = 300.0) -> Path:
    """Install `azurite@3.35.0` under `prefix` unless there; return the `azurite-blob` path.

    Installs are serialised with a file lock so parallel test processes share one.

    Raises:
        HarnessUnavailable: no node/npm, or the install failed.
    """
    prefix = prefix if prefix is not None else cache_root() / "azurite"
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    if which("node") is None:
        raise HarnessUnavailable("Azurite needs Node.js (`node`), which is not on PATH")
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(prefix) == AZURITE_VERSION and binary.exists():
            return binary
        npm = which("npm")
        if npm is None:
            raise HarnessUnavailable("Azurite is not installed and `npm` is not on PATH")
        try:
            result = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(prefix),
                    f"azurite@{AZURITE_VERSION}",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessUnavailable(f"npm install azurite timed out after {timeout}s") from exc
        if result.returncode != 0 or not binary.exists():
            raise HarnessUnavailable(
                f"npm install azurite@{AZURITE_VERSION} failed: {result.stderr[-800:]}"
            )
    return binary


class Azurite:
    """One Azurite blob server on 127.0.0.1, stoppable and restartable on the same port.

    With `persistent=False` (the default) data lives in memory and a restart comes back
    empty; with `persistent=True` data is kept in a temporary directory across restarts.
    """

    account_name = DEV_ACCOUNT_NAME
    account_key = DEV_ACCOUNT_KEY

    def __init__(self, *, persistent: bool = False, binary: Path | None = None) -> None:
        self.persistent = persistent
        self._binary = binary
        self._dir = Path(tempfile.mkdtemp(prefix="cp-azurite-"))
        self._process: ManagedProcess | None = None
        self._port: int | None = None
        self.startup_seconds: float | None = None

    @property
    def port(self) -> int:
        """The blob port (known after the first `start()`)."""
        if self._port is None:
            raise RuntimeError("Azurite has not been started yet")
        return self._port

    @property
    def blob_endpoint(self) -> str:
        """`http://127.0.0.1:<port>/devstoreaccount1`."""
        return f"http://{LOOPBACK}:{self.port}/{DEV_ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        """Explicit connection string for the dev account at this server."""
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={DEV_ACCOUNT_NAME};"
            f"AccountKey={DEV_ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    @property
    def running(self) -> bool:
        """Tell whether the Azurite process is alive."""
        return self._process is not None and self._process.running

    def _argv(self, binary: Path) -> list[str]:
        argv = [
            str(binary),
            "--blobHost", LOOPBACK,
            "--blobPort", str(self._port if self._port is not None else 0),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
        ]  # fmt: skip
        if self.persistent:
            argv += ["--location", str(self._dir / "data")]
        else:
            # --inMemoryPersistence and --location are mutually exclusive in Azurite.
            argv += ["--inMemoryPersistence", "--extentMemoryLimit", "256"]
        return argv

    def start(self, timeout: float = 60.0) -> Azurite:
        """Start Azurite (the same port after the first start) and wait until it listens.

        Raises:
            HarnessUnavailable: Azurite cannot be installed or did not come up in time.
        """
        if self.running:
            return self
        started = time.monotonic()
        binary = self._binary or ensure_azurite_installed()
        self._process = ManagedProcess(
            self._argv(binary), log_path=self._dir / "azurite.log", cwd=self._dir
        )
        self._process.start()
        process = self._process
        found: list[int] = []

        def listening() -> bool:
            match = LISTEN_PATTERN.search(process.log_text())
            if match:
                found.append(int(match.group(1)))
                return True
            if not process.running:
                raise HarnessUnavailable(f"Azurite exited: {process.log_text()[-800:]}")
            return False

        try:
            wait_for(listening, timeout=timeout, what="Azurite to listen", interval=0.01)
        except BaseException:
            process.kill()
            raise
        self._port = found[0]
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Stop Azurite and wait until its port refuses connections."""
        if self._process is not None:
            self._process.stop()
        if self._port is not None:
            port = self._port
            wait_for(lambda: not port_accepts(port), timeout=10.0, what="Azurite port to close")

    def kill(self) -> None:
        """Kill Azurite with SIGKILL, as a crash would."""
        if self._process is not None:
            self._process.kill()

    def restart(self, timeout: float = 60.0) -> Azurite:
        """Stop, then start again on the same port."""
        self.stop()
        return self.start(timeout=timeout)

    def close(self) -> None:
        """Stop Azurite and delete its directory."""
        if self._process is not None:
            self._process.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Azurite:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def azurite_service(*, persistent: bool = False) -> Iterator[Azurite]:
    """Yield a started `Azurite`; stop it and delete its files on exit."""
    with Azurite(persistent=persistent) as server:
        yield server
