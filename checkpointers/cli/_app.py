"""The `checkpointers` app: global options and the command groups (private).

Loaded by `checkpointers.cli.main` (and `checkpointers.cli.app`) only: this is where the
`cli` extra (typer) is first needed, so a missing extra is one `MissingDependencyError`.
Each command group is a private module of this package (`_schema`, `_threads`,
`_retention`, `_archive`, `_checks`, `_keys`), on the helpers `_options`, `_stores`,
`_records` and `_output`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

from checkpointers.errors import MissingDependencyError

try:  # the `cli` extra
    import typer
except ImportError as exc:
    raise MissingDependencyError(exc.name or "typer", "cli") from None

from checkpointers.cli._archive import archive_command, restore_command
from checkpointers.cli._checks import health_command, verify_command
from checkpointers.cli._keys import keys_app
from checkpointers.cli._options import Options
from checkpointers.cli._output import EPILOG, ERRORS_AS_JSON, EXIT_USAGE, err
from checkpointers.cli._retention import erase_command, sweep_command
from checkpointers.cli._schema import migrate_command, setup_command
from checkpointers.cli._threads import runs_command, show_command, threads_command
from checkpointers.observability import EventFormatter

__all__ = ["app"]

app = typer.Typer(
    name="checkpointers",
    help="Operate encrypted checkpoint stores: schemas, threads, keys, retention, checks.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    # Plain help: rendering it with rich costs ~60 ms of the command's start.
    rich_markup_mode=None,
)
app.add_typer(keys_app, name="keys")


# -- global options -----------------------------------------------------------------------


@app.callback()
def _global(
    ctx: typer.Context,
    url: Annotated[
        list[str] | None,
        typer.Option(
            "--url",
            "-u",
            metavar="URL",
            envvar="CHECKPOINTERS_URL",
            show_envvar=True,
            help="Store URL (memory://, sqlite:///file.db, redis://, postgresql://, "
            "azblob://...). Repeat for tiers, hottest first. Prefer the variable for "
            "URLs that carry a password.",
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="Tenant to act on (default: the URL's tenant=, else all or 'default')."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON on stdout.")
    ] = False,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="Local key file (0600, one base64 key per line, last is current). "
            "Default: CHECKPOINTERS_KEY or CHECKPOINTERS_KEY_FILE.",
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(
            envvar="CHECKPOINTERS_LOG_LEVEL",
            help="Level of the structured log events written to stderr (debug, info, "
            "warning, error).",
        ),
    ] = "warning",
) -> None:
    """Operate encrypted checkpoint stores: schemas, threads, keys, retention, checks."""
    ctx.obj = Options(tuple(url or ()), tenant, as_json, key_file)
    as_json_token = ERRORS_AS_JSON.set(as_json)
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        err(f"error: --log-level must be one of debug, info, warning, error, not {log_level!r}")
        raise typer.Exit(EXIT_USAGE)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter(as_json=as_json))
    events = logging.getLogger("checkpointers")
    previous = events.level
    events.addHandler(handler)
    events.setLevel(level)

    def restore() -> None:
        events.removeHandler(handler)
        events.setLevel(previous)
        ERRORS_AS_JSON.reset(as_json_token)

    ctx.call_on_close(restore)


# -- commands, in the order `--help` lists them -------------------------------------------

app.command("setup", epilog=EPILOG)(setup_command)
app.command("migrate", epilog=EPILOG)(migrate_command)
app.command("threads", epilog=EPILOG)(threads_command)
app.command("runs", epilog=EPILOG)(runs_command)
app.command("show", epilog=EPILOG)(show_command)
app.command("sweep", epilog=EPILOG)(sweep_command)
app.command("erase", epilog=EPILOG)(erase_command)
app.command("archive", epilog=EPILOG)(archive_command)
app.command("restore", epilog=EPILOG)(restore_command)
app.command("verify", epilog=EPILOG)(verify_command)
app.command("health", epilog=EPILOG)(health_command)
