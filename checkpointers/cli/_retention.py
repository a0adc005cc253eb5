"""`checkpointers sweep` and `erase`: expired records, and erasure of a thread or a
tenant from every store (private).

Plain command functions; `checkpointers.cli` registers them on the app.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from checkpointers.cli._options import options
from checkpointers.cli._output import EXIT_OK, EXIT_USAGE, emit, err, execute
from checkpointers.cli._stores import open_tiers, resolve_tenant
from checkpointers.encrypted import DEFAULT_TENANT
from checkpointers.observability import log_event
from checkpointers.options import parse_identifier

__all__ = ["erase_command", "sweep_command"]


def sweep_command(
    ctx: typer.Context,
    batch: Annotated[int, typer.Option(min=1, max=100000, help="Records per delete.")] = 1000,
) -> None:
    """Delete expired records from every store, in batches; prints how many."""
    opts = options(ctx)

    async def run() -> int:
        counts: dict[str, int] = {}
        async with open_tiers(opts) as stores:
            tiers = stores.tiers
            for tier in tiers:
                total = 0
                while True:
                    deleted = await tier.store.sweep(limit=batch)
                    total += deleted
                    if deleted < batch:
                        break
                counts[tier.label] = total
                log_event("checkpointers.sweep", store=tier.label, deleted=total)
        total_all = sum(counts.values())
        emit(
            opts,
            {"deleted": total_all, "stores": counts},
            lambda: (
                [f"{label}: {n} expired record(s) deleted" for label, n in counts.items()]
                + [f"total: {total_all}"]
            ),
        )
        return EXIT_OK

    execute(run)


def erase_command(
    ctx: typer.Context,
    thread: Annotated[
        str | None, typer.Option(help="Erase this thread or run (of --tenant).")
    ] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Erase this whole tenant.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a thread or a whole tenant from every store (asks unless --yes)."""
    opts = options(ctx)
    if (thread is None) == (tenant is None):
        err("error: give exactly one of --thread or --tenant")
        raise typer.Exit(EXIT_USAGE)
    what = f"tenant {tenant!r}" if tenant is not None else f"thread {thread!r}"
    if not yes:
        try:
            confirmed = typer.confirm(
                f"Erase {what} from {len(opts.urls)} store(s)? This cannot be undone",
                default=False,
                err=True,
            )
        except typer.Abort:
            confirmed = False
        if not confirmed:
            err("not confirmed: nothing erased (use --yes in scripts)")
            raise typer.Exit(EXIT_USAGE)

    async def run() -> int:
        counts: dict[str, int] = {}
        async with open_tiers(opts) as stores:
            tiers = stores.tiers
            target = (
                parse_identifier(tenant)
                if tenant
                else resolve_tenant(opts, tiers) or DEFAULT_TENANT
            )
            for tier in tiers:
                if thread is None:
                    deleted = await tier.store.delete_tenant(target)
                else:
                    deleted = await tier.store.delete_thread(target, thread)
                counts[tier.label] = deleted
                log_event(
                    "checkpointers.erase",
                    level=logging.WARNING,
                    scope="tenant" if thread is None else "thread",
                    tenant=target,
                    thread_id=thread,
                    store=tier.label,
                    deleted=deleted,
                )
        total = sum(counts.values())
        emit(
            opts,
            {"erased": what, "deleted": total, "stores": counts, "found": total > 0},
            lambda: (
                [f"{label}: {n} record(s) deleted" for label, n in counts.items()]
                + [
                    f"erased {what}: {total} record(s)"
                    if total
                    else f"{what} not found in any store: nothing erased"
                ]
            ),
        )
        return EXIT_OK

    execute(run)
