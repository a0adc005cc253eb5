"""Errors a user makes, seen through the `checkpointers` command: one line, what is wrong,
the right exit code, no secret. Each test runs the installed command in a subprocess."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.harness._common import free_port

SECRET = "s3cr3t-pw"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("checkpointers")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "checkpointers.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINTERS_")}
    env["CHECKPOINTERS_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert SECRET not in done.stderr + done.stdout
    return lines[0]


def test_redis_db_that_is_not_a_number_is_refused() -> None:
    """`redis://host:6379/99x` is refused naming the bad db number (not written to db 0)."""
    done = _run("--url", f"redis://:{SECRET}@127.0.0.1:6379/99x", "setup")
    line = _one_error_line(done)
    assert done.returncode == 2
    assert "database number '99x' is not a number" in line


def test_refused_redis_connection_names_host_and_port() -> None:
    """A Redis server that refuses the connection: "cannot connect to host:port", exit 3."""
    port = free_port()
    done = _run("--url", f"redis://:{SECRET}@127.0.0.1:{port}/0", "setup")
    line = _one_error_line(done)
    assert done.returncode == 3
    assert f"cannot connect to 127.0.0.1:{port}" in line


def test_refused_postgres_connection_names_host_and_port() -> None:
    """A PostgreSQL server that refuses the connection: "cannot connect to host:port"."""
    port = free_port()
    done = _run("--url", f"postgresql://app:{SECRET}@127.0.0.1:{port}/db", "setup")
    line = _one_error_line(done)
    assert done.returncode == 3
    assert f"cannot connect to 127.0.0.1:{port}" in line


@pytest.mark.postgres
def test_missing_postgres_database_is_named(postgres_dsn: str) -> None:
    """A database that does not exist is named, with SQLSTATE, without echoing the password."""
    parts = urlsplit(postgres_dsn)
    user = parts.username or "postgres"
    netloc = f"{user}:{SECRET}@{parts.hostname}:{parts.port or 5432}"
    url = urlunsplit((parts.scheme, netloc, "/nosuchdb", "", ""))
    done = _run("--url", url, "setup")
    line = _one_error_line(done)
    assert done.returncode == 3
    assert 'database "nosuchdb" does not exist' in line
    assert "SQLSTATE 3D000" in line


def test_json_errors_go_to_stdout_as_json() -> None:
    """With --json an error is one JSON object on stdout (message, type, exit code)."""
    done = _run("--json", "--url", f"redis://:{SECRET}@127.0.0.1:6379/99x", "threads")
    assert done.returncode == 2
    error = json.loads(done.stdout)
    assert error["exit_code"] == 2 and error["type"] == "ConfigurationError"
    assert "'99x' is not a number" in error["error"]
    assert SECRET not in done.stdout + done.stderr


def test_erase_of_a_missing_thread_says_so(tmp_path: Path) -> None:
    """Erasing a thread that no store holds says it was not found (and erases nothing)."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    done = _run("--url", url, "erase", "--thread", "no-such-thread", "--yes")
    assert done.returncode == 0, done.stderr
    assert "thread 'no-such-thread' not found in any store: nothing erased" in done.stdout
    as_json = _run("--json", "--url", url, "erase", "--thread", "no-such-thread", "--yes")
    assert json.loads(as_json.stdout)["found"] is False


def test_verify_sample_is_explained_as_every_nth() -> None:
    """`verify --help` explains --sample N as every Nth record."""
    done = _run("verify", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--sample N" in text and "every Nth record" in text
