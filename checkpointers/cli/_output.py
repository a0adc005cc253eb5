"""What the `checkpointers` command prints, and how it ends (private).

JSON (`--json`) or human-readable lines on stdout; messages and progress on stderr; one
exit code per thing the caller can do differently (see `EPILOG`). `execute` runs a
command's coroutine and turns a checkpointers error into a one-line message and its code;
the message of a foreign exception is never printed (it may carry a URL or data).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, NoReturn

import typer

from checkpointers.cli._options import Options
from checkpointers.errors import (
    CheckpointersError,
    ConfigurationError,
    IntegrityError,
    KeyUnavailableError,
    StoreUnavailableError,
)
from checkpointers.record import RecordId

__all__ = [
    "EPILOG",
    "ERRORS_AS_JSON",
    "EXIT_FAILED",
    "EXIT_INTEGRITY",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Progress",
    "emit",
    "err",
    "execute",
    "exit_code",
    "fail",
    "format_table",
    "format_time",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTEGRITY = 4
EXIT_INTERRUPTED = 130

EPILOG = (
    "Exit codes: 0 ok; 1 a check failed (verify, health) or another failure; "
    "2 usage or configuration error (bad URL or option, missing key, erase not confirmed); "
    "3 a store is unavailable; 4 integrity or key error (tampered record, unknown key); "
    "130 interrupted.\n\n"
    "Environment: CHECKPOINTERS_URL (space-separated URLs), CHECKPOINTERS_KEY (base64) or "
    "CHECKPOINTERS_KEY_FILE, CHECKPOINTERS_LOG_LEVEL, CHECKPOINTERS_DEBUG=1 (tracebacks of "
    "unexpected errors)."
)

_PROGRESS_EVERY = 1000


def err(message: str) -> None:
    typer.echo(message, err=True)


def emit(opts: Options, data: Any, lines: Callable[[], list[str]]) -> None:
    """Print `data` as JSON with `--json`, else the human-readable `lines()`."""
    if opts.as_json:
        typer.echo(json.dumps(data, sort_keys=True))
    else:
        for line in lines():
            typer.echo(line)


def format_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]


def format_time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def exit_code(error: BaseException) -> int:
    if isinstance(error, ConfigurationError):
        return EXIT_USAGE
    if isinstance(error, StoreUnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(error, (IntegrityError, KeyUnavailableError)):
        return EXIT_INTEGRITY
    return EXIT_FAILED


#: `--json` of the running command, for errors raised before or outside its `emit`.
ERRORS_AS_JSON: ContextVar[bool] = ContextVar("checkpointers_cli_json", default=False)


def fail(message: str, code: int, kind: str = "error") -> NoReturn:
    """End the command with `message`: one `error:` line on stderr, or with `--json` one
    JSON object on stdout (`{"error": ..., "type": ..., "exit_code": ...}`)."""
    if ERRORS_AS_JSON.get():
        typer.echo(json.dumps({"error": message, "type": kind, "exit_code": code}))
    else:
        err(f"error: {message}")
    raise typer.Exit(code)


def execute(run: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """Run a command's coroutine; turn errors into a one-line message and an exit code."""
    try:
        code = asyncio.run(run())
    except KeyboardInterrupt:
        err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except CheckpointersError as exc:
        fail(str(exc), exit_code(exc), type(exc).__name__)
    except Exception as exc:
        if os.environ.get("CHECKPOINTERS_DEBUG"):
            raise
        # The message of a foreign exception may carry a URL or data: print its class only.
        fail(
            f"unexpected {type(exc).__name__} (set CHECKPOINTERS_DEBUG=1 for details)",
            EXIT_FAILED,
            type(exc).__name__,
        )
    raise typer.Exit(code)


class Progress:
    """A progress display on stderr: a rich spinner on a terminal, else a counter."""

    def __init__(self, description: str, *, quiet: bool) -> None:
        self.count = 0
        self._description = description
        self._quiet = quiet
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if not self._quiet and sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.progress import Progress as RichProgress
                from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
            except ImportError:
                return self
            self._rich = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}: {task.completed} records"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._rich.start()
            self._task = self._rich.add_task(self._description, total=None)
        return self

    def advance(self, _rid: RecordId | None = None) -> None:
        self.count += 1
        if self._rich is not None:
            self._rich.update(self._task, completed=self.count)
        elif not self._quiet and self.count % _PROGRESS_EVERY == 0:
            err(f"{self._description}: {self.count} records")

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()
