"""`checkpointers archive` and `restore`: move threads to the archive tier and back
(private).

They need tiers with an archive URL (see `checkpointers.tiered`). Plain command
functions; `checkpointers.cli` registers them on the app.
"""

from __future__ import annotations

from typing import Annotated

import typer

from checkpointers.cli._options import options
from checkpointers.cli._output import EXIT_OK, EXIT_USAGE, emit, err, execute
from checkpointers.cli._stores import open_tiers, resolve_tenant, tiered_with_archive
from checkpointers.encrypted import DEFAULT_TENANT

__all__ = ["archive_command", "restore_command"]


def archive_command(
    ctx: typer.Context,
    thread: Annotated[str | None, typer.Argument(help="Thread or run id to archive.")] = None,
    idle: Annotated[
        float | None,
        typer.Option(min=1, help="Instead: archive every thread idle this many seconds."),
    ] = None,
) -> None:
    """Move a thread (or every idle thread) to the archive tier, verified before deletion."""
    opts = options(ctx)
    if (thread is None) == (idle is None):
        err("error: give exactly one of THREAD or --idle")
        raise typer.Exit(EXIT_USAGE)

    async def run() -> int:
        async with open_tiers(opts) as stores:
            tiered = tiered_with_archive(stores)
            tenant = resolve_tenant(opts, stores.tiers)
            if thread is not None:
                moved = await tiered.archive_thread(tenant or DEFAULT_TENANT, thread)
            else:
                moved = await tiered.archive_idle(tenant, idle_seconds=float(idle or 0))
        emit(opts, {"archived": moved}, lambda: [f"archived {moved} record(s)"])
        return EXIT_OK

    execute(run)


def restore_command(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread or run id to restore.")],
) -> None:
    """Copy an archived thread back into the durable tier (the archive keeps its copy)."""
    opts = options(ctx)

    async def run() -> int:
        async with open_tiers(opts) as stores:
            tiered = tiered_with_archive(stores)
            tenant = resolve_tenant(opts, stores.tiers) or DEFAULT_TENANT
            restored = await tiered.restore_thread(tenant, thread)
        emit(opts, {"restored": restored}, lambda: [f"restored {restored} record(s)"])
        return EXIT_OK

    execute(run)
