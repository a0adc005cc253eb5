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
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from checkpointers._cli_checks import health_command, verify_command
from checkpointers._cli_keys import keys_app
from checkpointers._cli_options import Options, key_versions, options
from checkpointers._cli_output import (
    EPILOG,
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    emit,
    err,
    execute,
    format_table,
)
from checkpointers._cli_records import WITHHELD_KINDS, record_row, render_value, show_lines
from checkpointers._cli_stores import open_tiers, resolve_tenant, tiered_with_archive
from checkpointers.crypto.keyring import KeyRing
from checkpointers.encrypted import DEFAULT_TENANT, EncryptedStore
from checkpointers.errors import IntegrityError, KeyUnavailableError
from checkpointers.observability import EventFormatter, log_event
from checkpointers.options import parse_identifier
from checkpointers.record import Query

__all__ = ["app", "main"]

app = typer.Typer(
    name="checkpointers",
    help="Operate encrypted checkpoint stores: schemas, threads, keys, retention, checks.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
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

    ctx.call_on_close(restore)


# -- setup, threads, show -----------------------------------------------------------------


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


@app.command("setup", epilog=EPILOG)
def setup_command(ctx: typer.Context) -> None:
    """Create or upgrade the schema of every store (idempotent)."""
    _setup(ctx)


@app.command("migrate", epilog=EPILOG)
def migrate_command(ctx: typer.Context) -> None:
    """Alias of `setup`."""
    _setup(ctx)


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


@app.command("threads", epilog=EPILOG)
def threads_command(
    ctx: typer.Context, after: AfterOption = None, limit: LimitOption = 100
) -> None:
    """List (tenant, thread) pairs, all tenants unless --tenant, in pages."""
    _threads(ctx, after, limit)


@app.command("runs", epilog=EPILOG)
def runs_command(ctx: typer.Context, after: AfterOption = None, limit: LimitOption = 100) -> None:
    """Alias of `threads` (pydantic-graph run ids are threads)."""
    _threads(ctx, after, limit)


@app.command("show", epilog=EPILOG)
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


# -- retention and erasure ----------------------------------------------------------------


@app.command("sweep", epilog=EPILOG)
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


@app.command("erase", epilog=EPILOG)
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
            {"erased": what, "deleted": total, "stores": counts},
            lambda: (
                [f"{label}: {n} record(s) deleted" for label, n in counts.items()]
                + [f"erased {what}: {total} record(s)"]
            ),
        )
        return EXIT_OK

    execute(run)


@app.command("archive", epilog=EPILOG)
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


@app.command("restore", epilog=EPILOG)
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


# -- checks (in `_cli_checks`) ------------------------------------------------------------

app.command("verify", epilog=EPILOG)(verify_command)
app.command("health", epilog=EPILOG)(health_command)


def main() -> None:
    """Entry point of the `checkpointers` console script."""
    app(prog_name="checkpointers")


if __name__ == "__main__":  # pragma: no cover
    main()
