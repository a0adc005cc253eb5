"""`checkpointers setup` (and its alias `migrate`): create or upgrade schemas (private).

Plain command functions; `checkpointers.cli` registers them on the app.
"""

from __future__ import annotations

import typer

from checkpointers.cli._options import options
from checkpointers.cli._output import EXIT_OK, emit, execute
from checkpointers.cli._stores import open_tiers

__all__ = ["migrate_command", "setup_command"]


def _setup(ctx: typer.Context) -> None:
    opts = options(ctx)

    async def run() -> int:
        async with open_tiers(opts, migrate=False) as stores:
            tiers = stores.tiers
            for tier in tiers:
                await tier.store.setup()
            labels = [t.label for t in tiers]
        emit(opts, {"ready": labels}, lambda: [f"schema ready: {label}" for label in labels])
        return EXIT_OK

    execute(run)


def setup_command(ctx: typer.Context) -> None:
    """Create or upgrade the schema of every store (idempotent)."""
    _setup(ctx)


def migrate_command(ctx: typer.Context) -> None:
    """Alias of `setup`."""
    _setup(ctx)
