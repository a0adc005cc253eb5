"""The `checkpointers` command: schemas, listing, keys, retention, erasure, checks.

Same conventions as the API: stores are given by URL (`--url`, repeatable for tiers,
hottest first, or `CHECKPOINTERS_URL`), keys by `--key-file` or `CHECKPOINTERS_KEY` /
`CHECKPOINTERS_KEY_FILE`. Maintenance commands (setup, keys, sweep, erase, verify,
health) run on every configured store in turn; `threads` merges them; `show` labels each
record with the store it came from.

What may be printed is an allowlist: routing ids, key ids, sizes, counts, and a store's
scheme and host. Never a full URL, key material, or plaintext (except `show --decrypt`).

`archive` / `restore` need tiers with an archive URL (`checkpointers.tiered`);
`verify --tiers` compares threads across tiers (and `--repair` fixes the warmer ones).

This module needs nothing beyond the core: `main` loads the app (`_app`, which needs the
`cli` extra) and turns a missing extra into one `error:` line, and `app` is loaded on
first access. The command groups are private modules of this package.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from checkpointers.errors import MissingDependencyError

if TYPE_CHECKING:
    from checkpointers.cli._app import app

__all__ = ["app", "main"]

#: Exit code of a usage or configuration error (`_output.EXIT_USAGE`, which needs typer).
_EXIT_USAGE = 2


def main() -> None:
    """Entry point of the `checkpointers` console script.

    Without the `cli` extra it prints one `error:` line naming the `pip install` to run
    and exits with 2 (a configuration error), instead of an import traceback.
    """
    try:
        from checkpointers.cli._app import app
    except MissingDependencyError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(_EXIT_USAGE) from None
    app(prog_name="checkpointers")


def __getattr__(name: str) -> Any:
    """`checkpointers.cli.app`, loaded on first access (it needs the `cli` extra)."""
    if name == "app":
        from checkpointers.cli._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
