"""The `checkpointers` command: schemas, listing, keys, retention, erasure, checks.

Same conventions as the API: stores are given by URL (`--url`, repeatable for tiers,
hottest first, or `CHECKPOINTERS_URL`), keys by `--key-file` or `CHECKPOINTERS_KEY` /
`CHECKPOINTERS_KEY_FILE`. Maintenance commands (setup, keys, sweep, erase, verify,
health) run on every configured store in turn; `threads` merges them; `show` labels each
record with the store it came from.

What may be printed is an allowlist: routing ids, key ids, sizes, counts, and a store's
scheme and host. Never a full URL, key material, or plaintext (except `show --decrypt`).

`archive` / `restore` need tiers with an archive URL (`checkpointers.tiered`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import typer

from checkpointers.crypto.envelope import Envelope
from checkpointers.crypto.keyring import KeyRing
from checkpointers.crypto.local import (
    KEY_FILE_ENV,
    append_key_file,
    create_key_file,
    load_env_keys,
    read_key_file,
    write_key_file,
)
from checkpointers.crypto.provider import KeyEncryptionKey
from checkpointers.encrypted import DEFAULT_TENANT, EncryptedStore
from checkpointers.errors import (
    CheckpointersError,
    ConfigurationError,
    IntegrityError,
    KeyUnavailableError,
    StoreUnavailableError,
)
from checkpointers.maintenance import key_usage, rotate_keys, verify_records
from checkpointers.observability import EventFormatter, log_event
from checkpointers.record import Query, Record, RecordId
from checkpointers.stores.base import Store
from checkpointers.tiered import TieredStore
from checkpointers.urls import open_store, parse_identifier

__all__ = ["app", "main"]

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

# The blind-index key record (see EncryptedStore): its plaintext is key material.
_WITHHELD_KINDS = frozenset({"__index_key__"})
_HEX_PREVIEW = 32
_PROGRESS_EVERY = 1000

app = typer.Typer(
    name="checkpointers",
    help="Operate encrypted checkpoint stores: schemas, threads, keys, retention, checks.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
keys_app = typer.Typer(
    help="Local key files, key usage, rotation and retirement.",
    epilog=EPILOG,
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


# -- options and context ------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The global options, shared by every subcommand through the typer context."""

    urls: tuple[str, ...]
    tenant: str | None
    as_json: bool
    key_file: Path | None


@dataclass(frozen=True)
class Tier:
    """One configured store: its position, a printable label, and its URL's tenant."""

    index: int
    label: str
    store: Store
    tenant: str | None


def describe_url(url: str) -> str:
    """A printable name for a store URL: scheme and host (no user, password, path or query).

    SQLite URLs show the file name only.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "sqlite":
            return f"sqlite:{Path(unquote(parts.path)).name}"
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            port = None
    except ValueError:
        return "<malformed URL>"
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def _options(ctx: typer.Context) -> Options:
    opts = ctx.find_root().obj
    if not isinstance(opts, Options):  # pragma: no cover - the callback always sets it
        raise ConfigurationError("internal: global options are missing")
    return opts


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _emit(opts: Options, data: Any, lines: Callable[[], list[str]]) -> None:
    """Print `data` as JSON with `--json`, else the human-readable `lines()`."""
    if opts.as_json:
        typer.echo(json.dumps(data, sort_keys=True))
    else:
        for line in lines():
            typer.echo(line)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def _exit_code(error: BaseException) -> int:
    if isinstance(error, ConfigurationError):
        return EXIT_USAGE
    if isinstance(error, StoreUnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(error, (IntegrityError, KeyUnavailableError)):
        return EXIT_INTEGRITY
    return EXIT_FAILED


def _execute(run: Callable[[], Coroutine[Any, Any, int]]) -> None:
    """Run a command's coroutine; turn errors into a one-line message and an exit code."""
    try:
        code = asyncio.run(run())
    except KeyboardInterrupt:
        _err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except CheckpointersError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(_exit_code(exc)) from None
    except Exception as exc:
        if os.environ.get("CHECKPOINTERS_DEBUG"):
            raise
        # The message of a foreign exception may carry a URL or data: print its class only.
        _err(f"error: unexpected {type(exc).__name__} (set CHECKPOINTERS_DEBUG=1 for details)")
        raise typer.Exit(EXIT_FAILED) from None
    raise typer.Exit(code)


# -- stores and keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class Stores:
    """The configured stores: each tier on its own, and the `TieredStore` over them."""

    tiers: list[Tier]
    tiered: TieredStore | None


@contextlib.asynccontextmanager
async def _open_tiers(opts: Options, *, migrate: bool = True) -> AsyncIterator[Stores]:
    """Open the configured stores (parsing every URL before any I/O); close them after.

    One URL is one store. Several URLs make a `TieredStore` (hot, durable, archive roles
    as `TieredStore.from_urls` assigns them); maintenance commands still visit each tier.
    """
    if not opts.urls:
        raise ConfigurationError("no store: pass --url or set CHECKPOINTERS_URL")
    async with contextlib.AsyncExitStack() as stack:
        tiers: list[Tier] = []
        tiered: TieredStore | None = None
        try:
            if len(opts.urls) == 1:
                store, common = open_store(opts.urls[0])
                stack.push_async_callback(store.aclose)
                tiers.append(Tier(0, describe_url(opts.urls[0]), store, common.get("tenant")))
            else:
                tiered, common = TieredStore.from_urls(opts.urls)
                stack.push_async_callback(tiered.aclose)
                roles = (("hot", tiered.hot), ("durable", tiered.durable),
                         ("archive", tiered.archive))  # fmt: skip
                for role, member in roles:
                    if member is not None:
                        label = f"{role}:{type(member).__name__}"
                        tiers.append(Tier(len(tiers), label, member, common.get("tenant")))
        except ConfigurationError as exc:
            raise ConfigurationError(f"--url: {exc}") from None
        except ImportError:
            schemes = sorted({describe_url(u).split(":")[0] for u in opts.urls})
            raise ConfigurationError(
                f"--url: a store for {', '.join(schemes)} is not available in this installation"
            ) from None
        if migrate:
            for tier in tiers:
                await tier.store.setup()
        yield Stores(tiers, tiered)


def _tenant(opts: Options, tiers: list[Tier]) -> str | None:
    """The `--tenant` option, else the first URL's `tenant=` option, else None (all)."""
    if opts.tenant is not None:
        return parse_identifier(opts.tenant)
    return next((t.tenant for t in tiers if t.tenant is not None), None)


def _key_versions(opts: Options) -> list[KeyEncryptionKey]:
    if opts.key_file is not None:
        return list(read_key_file(opts.key_file))
    return list(load_env_keys())


def _key_file_path(opts: Options, file: Path | None) -> Path:
    if file is not None:
        return file
    if opts.key_file is not None:
        return opts.key_file
    env = os.environ.get(KEY_FILE_ENV, "").strip()
    if env:
        return Path(env)
    raise ConfigurationError(f"no key file: pass --file, --key-file or set {KEY_FILE_ENV}")


def _record_json(rid: RecordId) -> dict[str, str]:
    return {
        "tenant": rid.tenant,
        "thread": rid.thread,
        "namespace": rid.namespace,
        "kind": rid.kind,
        "key": rid.key,
    }


def _encode_cursor(tier: int, rid: RecordId) -> str:
    raw = json.dumps([tier, rid.tenant, rid.thread, rid.namespace, rid.kind, rid.key])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> tuple[int, RecordId]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        tier, *fields = json.loads(raw)
        if not isinstance(tier, int) or len(fields) != 5:
            raise ValueError
        return tier, RecordId(*fields)
    except (binascii.Error, ValueError, TypeError):
        raise ConfigurationError("--after is not a cursor printed by `keys rotate`") from None


class _Progress:
    """A progress display on stderr: a rich spinner on a terminal, else a counter."""

    def __init__(self, description: str, *, quiet: bool) -> None:
        self.count = 0
        self._description = description
        self._quiet = quiet
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if not self._quiet and sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            except ImportError:
                return self
            self._rich = Progress(
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
            _err(f"{self._description}: {self.count} records")

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()


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
        _err(f"error: --log-level must be one of debug, info, warning, error, not {log_level!r}")
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
    opts = _options(ctx)

    async def run() -> int:
        async with _open_tiers(opts, migrate=False) as stores:
            tiers = stores.tiers
            for tier in tiers:
                await tier.store.setup()
            labels = [t.label for t in tiers]
        _emit(opts, {"ready": labels}, lambda: [f"schema ready: {label}" for label in labels])
        return EXIT_OK

    _execute(run)


@app.command("setup", epilog=EPILOG)
def setup_command(ctx: typer.Context) -> None:
    """Create or upgrade the schema of every store (idempotent)."""
    _setup(ctx)


@app.command("migrate", epilog=EPILOG)
def migrate_command(ctx: typer.Context) -> None:
    """Alias of `setup`."""
    _setup(ctx)


def _threads(ctx: typer.Context, after: str | None, limit: int) -> None:
    opts = _options(ctx)

    async def run() -> int:
        async with _open_tiers(opts) as stores:
            tiers = stores.tiers
            tenant = _tenant(opts, tiers)
            found: set[tuple[str, str]] = set()
            for tier in tiers:
                found.update(await tier.store.threads(tenant, after=after, limit=limit))
        page = sorted(found, key=lambda pair: (pair[1], pair[0]))[:limit]
        more = page[-1][1] if len(page) == limit else None
        data = {"threads": [{"tenant": t, "thread": th} for t, th in page], "next": more}

        def lines() -> list[str]:
            out = _table(["TENANT", "THREAD"], [[t, th] for t, th in page])
            if more is not None:
                out.append(f"more: --after {more}")
            return out

        _emit(opts, data, lines)
        return EXIT_OK

    _execute(run)


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


def _render_value(data: bytes) -> dict[str, Any]:
    """Decoded JSON, else text, else the size and a hex preview."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"size": len(data), "hex": data[:_HEX_PREVIEW].hex()}
    try:
        return {"json": json.loads(text)}
    except ValueError:
        return {"text": text}


def _record_row(tier: Tier, record: Record) -> dict[str, Any]:
    try:
        key_id: str | None = Envelope.parse(record.body, record=record.id.describe()).key_id
    except IntegrityError:
        key_id = None
    return {
        "store": tier.label,
        "namespace": record.id.namespace,
        "kind": record.id.kind,
        "key": record.id.key,
        "sort": record.sort,
        "status": record.status,
        "size": len(record.body),
        "version": record.version,
        "updated_at": record.updated_at,
        "expires_at": record.expires_at,
        "key_id": key_id,
    }


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
    opts = _options(ctx)

    async def run() -> int:
        code = EXIT_OK
        rows: list[dict[str, Any]] = []
        async with _open_tiers(opts) as stores:
            tiers = stores.tiers
            tenant = _tenant(opts, tiers) or DEFAULT_TENANT
            ring = KeyRing(_key_versions(opts)) if decrypt else None
            for tier in tiers:
                records = await tier.store.find(Query(tenant=tenant, thread=thread, kind=kind))
                for record in records:
                    row = _record_row(tier, record)
                    if ring is not None:
                        if record.id.kind in _WITHHELD_KINDS:
                            row["value"] = {"withheld": "key material"}
                        else:
                            enc = EncryptedStore(tier.store, ring, tenant=tenant, migrate=False)
                            try:
                                row["value"] = _render_value((await enc.open(record)).data)
                            except (IntegrityError, KeyUnavailableError) as exc:
                                row["error"] = f"{type(exc).__name__}: {exc}"
                                code = EXIT_INTEGRITY
                    rows.append(row)
        data = {"tenant": tenant, "thread": thread, "records": rows}

        def lines() -> list[str]:
            headers = [
                "STORE",
                "NAMESPACE",
                "KIND",
                "KEY",
                "SORT",
                "STATUS",
                "SIZE",
                "VERSION",
                "UPDATED",
                "EXPIRES",
                "KEY_ID",
            ]
            table = _table(
                headers,
                [
                    [
                        r["store"],
                        r["namespace"],
                        r["kind"],
                        r["key"],
                        r["sort"],
                        r["status"],
                        str(r["size"]),
                        str(r["version"]),
                        _when(r["updated_at"]),
                        _when(r["expires_at"]),
                        r["key_id"] or "?",
                    ]
                    for r in rows
                ],
            )
            if not decrypt:
                return table
            out = table[:1]
            for line, row in zip(table[1:], rows, strict=True):
                out.append(line)
                out.append("    " + _describe_value(row))
            return out

        _emit(opts, data, lines)
        return code

    _execute(run)


def _describe_value(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"! {row['error']}"
    value = row["value"]
    if "json" in value:
        return json.dumps(value["json"], sort_keys=True)
    if "text" in value:
        return str(value["text"])
    if "withheld" in value:
        return "(withheld: key material)"
    return f"({value['size']} bytes) {value['hex']}"


# -- keys ---------------------------------------------------------------------------------

FileOption = Annotated[
    Path | None,
    typer.Option("--file", help="Key file (default: --key-file or CHECKPOINTERS_KEY_FILE)."),
]


@keys_app.command("generate", epilog=EPILOG)
def keys_generate(ctx: typer.Context, file: FileOption = None) -> None:
    """Create a new key file (mode 0600) with one fresh key; refuses to overwrite."""
    opts = _options(ctx)

    async def run() -> int:
        path = _key_file_path(opts, file)
        key = create_key_file(path)
        _emit(
            opts,
            {"file": str(path), "key_id": key.key_id},
            lambda: [f"created {path} (mode 0600) with key {key.key_id}"],
        )
        return EXIT_OK

    _execute(run)


@keys_app.command("add", epilog=EPILOG)
def keys_add(ctx: typer.Context, file: FileOption = None) -> None:
    """Append a fresh key to a key file: it becomes current for new writes."""
    opts = _options(ctx)

    async def run() -> int:
        path = _key_file_path(opts, file)
        key = append_key_file(path)
        _emit(
            opts,
            {"file": str(path), "key_id": key.key_id},
            lambda: [
                f"added key {key.key_id} to {path}; it is current for new writes",
                "run `checkpointers keys rotate` to re-wrap existing records under it",
            ],
        )
        return EXIT_OK

    _execute(run)


@keys_app.command("list", epilog=EPILOG)
def keys_list(ctx: typer.Context) -> None:
    """Key versions in the ring and how many records each key id wraps (with --url)."""
    opts = _options(ctx)

    async def run() -> int:
        ring = KeyRing(_key_versions(opts))
        usage: Counter[str] | None = None
        if opts.urls:
            usage = Counter()
            async with _open_tiers(opts) as stores:
                tiers = stores.tiers
                for tier in tiers:
                    usage.update(await key_usage(tier.store, ring))
        ids = list(ring.key_ids) + sorted(set(usage or ()) - set(ring.key_ids))
        keys: list[dict[str, Any]] = [
            {
                "key_id": key_id,
                "current": key_id == ring.current_key_id,
                "in_ring": key_id in ring.key_ids,
                "records": None if usage is None else usage.get(key_id, 0),
            }
            for key_id in ids
        ]

        def lines() -> list[str]:
            rows = [
                [
                    k["key_id"],
                    "yes" if k["current"] else "",
                    "yes" if k["in_ring"] else "MISSING",
                    "-" if k["records"] is None else str(k["records"]),
                ]
                for k in keys
            ]
            return _table(["KEY_ID", "CURRENT", "IN_RING", "RECORDS"], rows)

        _emit(opts, {"keys": keys}, lines)
        missing = [k for k in keys if not k["in_ring"]]
        return EXIT_INTEGRITY if missing else EXIT_OK

    _execute(run)


def _rotation_targets(stores: Stores) -> list[Store]:
    """What `keys rotate` walks: the tiered store (its durable tier, written through to
    the hot tier so hot copies keep the durable row version), then the archive; or each
    store on its own."""
    if stores.tiered is None:
        return [tier.store for tier in stores.tiers]
    archive = stores.tiered.archive
    return [stores.tiered] if archive is None else [stores.tiered, archive]


@keys_app.command("rotate", epilog=EPILOG)
def keys_rotate(
    ctx: typer.Context,
    after: Annotated[
        str | None,
        typer.Option(help="Resume after this cursor (printed when a rotation stops)."),
    ] = None,
) -> None:
    """Re-wrap every record's data key under the current key (headers only), resumably."""
    opts = _options(ctx)

    async def run() -> int:
        ring = KeyRing(_key_versions(opts))
        start_tier, start_after = _decode_cursor(after) if after else (0, None)
        rewrapped = current = gone = 0
        cursor: str | None = after
        async with _open_tiers(opts) as stores:
            targets = _rotation_targets(stores)
            with _Progress("re-wrapping", quiet=opts.as_json) as progress:
                for index, target in enumerate(targets):
                    if index < start_tier:
                        continue
                    resume = start_after if index == start_tier else None

                    def seen(rid: RecordId, index: int = index) -> None:
                        nonlocal cursor
                        cursor = _encode_cursor(index, rid)
                        progress.advance()

                    try:
                        report = await rotate_keys(target, ring, after=resume, progress=seen)
                    except BaseException:
                        if cursor is not None:
                            _err(
                                f"stopped; resume with: checkpointers keys rotate --after {cursor}"
                            )
                        raise
                    rewrapped += report.rewrapped
                    current += report.current
                    gone += report.gone
        data = {
            "rewrapped": rewrapped,
            "already_current": current,
            "gone": gone,
            "key_id": ring.current_key_id,
            "last": cursor,
        }
        _emit(
            opts,
            data,
            lambda: [
                f"re-wrapped {rewrapped} record(s) under {ring.current_key_id}; "
                f"{current} already current, {gone} expired or deleted meanwhile",
                *([f"last cursor: --after {cursor}"] if cursor else []),
            ],
        )
        return EXIT_OK

    _execute(run)


@keys_app.command("retire", epilog=EPILOG)
def keys_retire(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="Key id to remove, as `keys list` shows it.")],
    file: FileOption = None,
) -> None:
    """Remove a key version from a key file; refused while any record still uses it."""
    opts = _options(ctx)

    async def run() -> int:
        path = _key_file_path(opts, file)
        versions = read_key_file(path)
        ring = KeyRing(versions)
        in_use = 0
        async with _open_tiers(opts) as stores:
            tiers = stores.tiers
            for tier in tiers:
                in_use += (await key_usage(tier.store, ring)).get(key_id, 0)
        if in_use:
            raise ConfigurationError(
                f"key {key_id!r} still wraps {in_use} record(s): run `keys rotate` first"
            )
        ring.retire(key_id)
        write_key_file(path, [k for k in versions if k.key_id != key_id])
        log_event("checkpointers.retire", key_id=key_id, stores=len(tiers))
        _emit(
            opts,
            {"retired": key_id, "file": str(path)},
            lambda: [f"retired {key_id} from {path}"],
        )
        return EXIT_OK

    _execute(run)


# -- retention and erasure ----------------------------------------------------------------


@app.command("sweep", epilog=EPILOG)
def sweep_command(
    ctx: typer.Context,
    batch: Annotated[int, typer.Option(min=1, max=100000, help="Records per delete.")] = 1000,
) -> None:
    """Delete expired records from every store, in batches; prints how many."""
    opts = _options(ctx)

    async def run() -> int:
        counts: dict[str, int] = {}
        async with _open_tiers(opts) as stores:
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
        _emit(
            opts,
            {"deleted": total_all, "stores": counts},
            lambda: (
                [f"{label}: {n} expired record(s) deleted" for label, n in counts.items()]
                + [f"total: {total_all}"]
            ),
        )
        return EXIT_OK

    _execute(run)


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
    opts = _options(ctx)
    if (thread is None) == (tenant is None):
        _err("error: give exactly one of --thread or --tenant")
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
            _err("not confirmed: nothing erased (use --yes in scripts)")
            raise typer.Exit(EXIT_USAGE)

    async def run() -> int:
        counts: dict[str, int] = {}
        async with _open_tiers(opts) as stores:
            tiers = stores.tiers
            target = parse_identifier(tenant) if tenant else _tenant(opts, tiers) or DEFAULT_TENANT
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
        _emit(
            opts,
            {"erased": what, "deleted": total, "stores": counts},
            lambda: (
                [f"{label}: {n} record(s) deleted" for label, n in counts.items()]
                + [f"erased {what}: {total} record(s)"]
            ),
        )
        return EXIT_OK

    _execute(run)


def _tiered_with_archive(stores: Stores) -> TieredStore:
    if stores.tiered is None or stores.tiered.archive is None:
        raise ConfigurationError(
            "archive and restore need tiers: --url for the durable store and --url for the "
            "archive (azblob:// or https://)"
        )
    return stores.tiered


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
    opts = _options(ctx)
    if (thread is None) == (idle is None):
        _err("error: give exactly one of THREAD or --idle")
        raise typer.Exit(EXIT_USAGE)

    async def run() -> int:
        async with _open_tiers(opts) as stores:
            tiered = _tiered_with_archive(stores)
            tenant = _tenant(opts, stores.tiers)
            if thread is not None:
                moved = await tiered.archive_thread(tenant or DEFAULT_TENANT, thread)
            else:
                moved = await tiered.archive_idle(tenant, idle_seconds=float(idle or 0))
        _emit(opts, {"archived": moved}, lambda: [f"archived {moved} record(s)"])
        return EXIT_OK

    _execute(run)


@app.command("restore", epilog=EPILOG)
def restore_command(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread or run id to restore.")],
) -> None:
    """Copy an archived thread back into the durable tier (the archive keeps its copy)."""
    opts = _options(ctx)

    async def run() -> int:
        async with _open_tiers(opts) as stores:
            tiered = _tiered_with_archive(stores)
            tenant = _tenant(opts, stores.tiers) or DEFAULT_TENANT
            restored = await tiered.restore_thread(tenant, thread)
        _emit(opts, {"restored": restored}, lambda: [f"restored {restored} record(s)"])
        return EXIT_OK

    _execute(run)


# -- checks -------------------------------------------------------------------------------


@app.command("verify", epilog=EPILOG)
def verify_command(
    ctx: typer.Context,
    sample: Annotated[
        int, typer.Option(min=1, help="Check every N-th record (1: every record).")
    ] = 1,
) -> None:
    """Decrypt-check every record (or a sample); exit 1 naming the records that fail."""
    opts = _options(ctx)

    async def run() -> int:
        ring = KeyRing(_key_versions(opts))
        checked = 0
        failures: list[dict[str, Any]] = []
        async with _open_tiers(opts) as stores:
            tiers = stores.tiers
            with _Progress("verifying", quiet=opts.as_json) as progress:
                for tier in tiers:
                    count, failed = await verify_records(
                        tier.store, ring, sample_every=sample, progress=progress.advance
                    )
                    checked += count
                    failures += [
                        {
                            "store": tier.label,
                            "record": _record_json(f.record),
                            "error": f.error,
                            "message": f.message,
                        }
                        for f in failed
                    ]
        data = {"checked": checked, "failures": failures, "ok": not failures}
        _emit(
            opts,
            data,
            lambda: (
                [f"FAIL {f['store']} {f['error']}: {f['message']}" for f in failures]
                + [f"checked {checked} record(s): {len(failures)} failure(s)"]
            ),
        )
        return EXIT_FAILED if failures else EXIT_OK

    _execute(run)


async def _check_keys(versions: list[KeyEncryptionKey]) -> None:
    """Wrap and unwrap a random data key with every key version, then a full envelope."""
    for version in versions:
        data_key = secrets.token_bytes(32)
        unwrapped = await version.unwrap_key(await version.wrap_key(data_key))
        if not hmac.compare_digest(unwrapped, data_key):
            raise IntegrityError(f"key {version.key_id!r} does not round-trip a data key")
    aad = RecordId("health", "health", "", "health", "health").aad()
    sealed = await KeyRing(versions).encrypt(b"checkpointers health check", aad)
    # A fresh ring has an empty cache, so this decrypt really unwraps the data key.
    if await KeyRing(versions).decrypt(sealed, aad) != b"checkpointers health check":
        raise IntegrityError("the key ring does not round-trip an envelope")


@app.command("health", epilog=EPILOG)
def health_command(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per check.")] = 10.0,
) -> None:
    """Ping every store and check the key ring wraps and unwraps; exit 0 or 1."""
    opts = _options(ctx)

    async def run() -> int:
        checks: list[dict[str, Any]] = []

        async def check(
            kind: str, name: str, probe: Callable[[], Coroutine[Any, Any, None]]
        ) -> None:
            start = time.perf_counter()
            try:
                await asyncio.wait_for(probe(), timeout)
            except (CheckpointersError, asyncio.TimeoutError) as exc:
                error = "timed out" if isinstance(exc, asyncio.TimeoutError) else str(exc)
                checks.append(
                    {
                        "check": kind,
                        "name": name,
                        "ok": False,
                        "error": f"{type(exc).__name__}: {error}",
                    }
                )
                return
            ms = round((time.perf_counter() - start) * 1000, 1)
            checks.append({"check": kind, "name": name, "ok": True, "ms": ms})

        async with _open_tiers(opts, migrate=False) as stores:
            tiers = stores.tiers
            for tier in tiers:
                await check("store", tier.label, tier.store.ping)
        try:
            versions = _key_versions(opts)
        except ConfigurationError as exc:
            checks.append(
                {
                    "check": "keys",
                    "name": "key ring",
                    "ok": False,
                    "error": f"ConfigurationError: {exc}",
                }
            )
        else:
            ids = ", ".join(v.key_id for v in versions)
            await check("keys", ids, lambda: _check_keys(versions))
        healthy = all(c["ok"] for c in checks)

        def lines() -> list[str]:
            out = [
                f"ok   {c['check']} {c['name']} ({c['ms']} ms)"
                if c["ok"]
                else f"FAIL {c['check']} {c['name']}: {c['error']}"
                for c in checks
            ]
            return [*out, "healthy" if healthy else "unhealthy"]

        _emit(opts, {"healthy": healthy, "checks": checks}, lines)
        return EXIT_OK if healthy else EXIT_FAILED

    _execute(run)


def main() -> None:
    """Entry point of the `checkpointers` console script."""
    app(prog_name="checkpointers")


if __name__ == "__main__":  # pragma: no cover
    main()
