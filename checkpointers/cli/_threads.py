"""`checkpointers threads` (and its alias `runs`) and `show`: what the stores hold (private).

`threads` merges the (tenant, thread) pairs of every store; `show` prints a thread's
records, each labelled with its store, and decrypts them only with `--decrypt`.
Plain command functions; `checkpointers.cli` registers them on the app.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from checkpointers.cli._options import key_versions, options
from checkpointers.cli._output import EXIT_INTEGRITY, EXIT_OK, emit, execute, format_table
from checkpointers.cli._records import WITHHELD_KINDS, record_row, render_value, show_lines
from checkpointers.cli._stores import open_tiers, resolve_tenant
from checkpointers.crypto.keyring import KeyRing
from checkpointers.encrypted import DEFAULT_TENANT, EncryptedStore
from checkpointers.errors import IntegrityError, KeyUnavailableError
from checkpointers.record import Query

__all__ = ["runs_command", "show_command", "threads_command"]


def _threads(ctx: typer.Context, after: str | None, limit: int) -> None:
    opts = options(ctx)

    async def run() -> int:
        async with open_tiers(opts) as stores:
            tiers = stores.tiers
            tenant = resolve_tenant(opts, tiers)
            found: set[tuple[str, str]] = set()
            for tier in tiers:
                found.update(await tier.store.threads(tenant, after=after, limit=limit))
        page = sorted(found, key=lambda pair: (pair[1], pair[0]))[:limit]
        more = page[-1][1] if len(page) == limit else None
        data = {"threads": [{"tenant": t, "thread": th} for t, th in page], "next": more}

        def lines() -> list[str]:
            out = format_table(["TENANT", "THREAD"], [[t, th] for t, th in page])
            if more is not None:
                out.append(f"more: --after {more}")
            return out

        emit(opts, data, lines)
        return EXIT_OK

    execute(run)


AfterOption = Annotated[str | None, typer.Option(help="List threads after this thread id.")]
LimitOption = Annotated[int, typer.Option(min=1, max=10000, help="Page size.")]


def threads_command(
    ctx: typer.Context, after: AfterOption = None, limit: LimitOption = 100
) -> None:
    """List (tenant, thread) pairs, all tenants unless --tenant, in pages."""
    _threads(ctx, after, limit)


def runs_command(ctx: typer.Context, after: AfterOption = None, limit: LimitOption = 100) -> None:
    """Alias of `threads` (pydantic-graph run ids are threads)."""
    _threads(ctx, after, limit)


def show_command(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread or run id.")],
    kind: Annotated[str | None, typer.Option(help="Only records of this kind.")] = None,
    decrypt: Annotated[
        bool, typer.Option("--decrypt", help="Also decrypt and print each value (plaintext!).")
    ] = False,
) -> None:
    """Show a thread's records: kind, key, sort, status, size, version, times, key id."""
    opts = options(ctx)

    async def run() -> int:
        code = EXIT_OK
        rows: list[dict[str, Any]] = []
        async with open_tiers(opts) as stores:
            tiers = stores.tiers
            tenant = resolve_tenant(opts, tiers) or DEFAULT_TENANT
            ring = KeyRing(key_versions(opts)) if decrypt else None
            for tier in tiers:
                records = await tier.store.find(Query(tenant=tenant, thread=thread, kind=kind))
                for record in records:
                    row = record_row(tier, record)
                    if ring is not None:
                        if record.id.kind in WITHHELD_KINDS:
                            row["value"] = {"withheld": "key material"}
                        else:
                            enc = EncryptedStore(tier.store, ring, tenant=tenant, migrate=False)
                            try:
                                row["value"] = render_value((await enc.open(record)).data)
                            except (IntegrityError, KeyUnavailableError) as exc:
                                row["error"] = f"{type(exc).__name__}: {exc}"
                                code = EXIT_INTEGRITY
                    rows.append(row)
        data = {"tenant": tenant, "thread": thread, "records": rows}
        emit(opts, data, lambda: show_lines(rows, decrypt=decrypt))
        return code

    execute(run)
