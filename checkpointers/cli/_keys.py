"""`checkpointers keys`: local key files, key usage, rotation and retirement (private).

`generate` and `add` write key files (mode 0600); `list` counts the records each key id
wraps; `rotate` re-wraps data keys under the current key, resumably (it prints a cursor
when it stops); `retire` removes a key version once no record uses it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from checkpointers.cli._options import key_file_path, key_versions, options
from checkpointers.cli._output import (
    EPILOG,
    EXIT_INTEGRITY,
    EXIT_OK,
    Progress,
    emit,
    err,
    execute,
    format_table,
)
from checkpointers.cli._stores import Stores, open_tiers
from checkpointers.crypto.keyring import KeyRing
from checkpointers.crypto.local import (
    append_key_file,
    create_key_file,
    read_key_file,
    write_key_file,
)
from checkpointers.errors import ConfigurationError
from checkpointers.maintenance import key_usage, rotate_keys
from checkpointers.observability import log_event
from checkpointers.record import RecordId
from checkpointers.stores.base import Store

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="Local key files, key usage, rotation and retirement.",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=None,
)


FileOption = Annotated[
    Path | None,
    typer.Option("--file", help="Key file (default: --key-file or CHECKPOINTERS_KEY_FILE)."),
]


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


@keys_app.command("generate", epilog=EPILOG)
def keys_generate(ctx: typer.Context, file: FileOption = None) -> None:
    """Create a new key file (mode 0600) with one fresh key; refuses to overwrite."""
    opts = options(ctx)

    async def run() -> int:
        path = key_file_path(opts, file)
        key = create_key_file(path)
        emit(
            opts,
            {"file": str(path), "key_id": key.key_id},
            lambda: [f"created {path} (mode 0600) with key {key.key_id}"],
        )
        return EXIT_OK

    execute(run)


@keys_app.command("add", epilog=EPILOG)
def keys_add(ctx: typer.Context, file: FileOption = None) -> None:
    """Append a fresh key to a key file: it becomes current for new writes."""
    opts = options(ctx)

    async def run() -> int:
        path = key_file_path(opts, file)
        key = append_key_file(path)
        emit(
            opts,
            {"file": str(path), "key_id": key.key_id},
            lambda: [
                f"added key {key.key_id} to {path}; it is current for new writes",
                "run `checkpointers keys rotate` to re-wrap existing records under it",
            ],
        )
        return EXIT_OK

    execute(run)


@keys_app.command("list", epilog=EPILOG)
def keys_list(ctx: typer.Context) -> None:
    """Key versions in the ring and how many records each key id wraps (with --url)."""
    opts = options(ctx)

    async def run() -> int:
        ring = KeyRing(key_versions(opts))
        usage: Counter[str] | None = None
        if opts.urls:
            usage = Counter()
            async with open_tiers(opts) as stores:
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
            return format_table(["KEY_ID", "CURRENT", "IN_RING", "RECORDS"], rows)

        emit(opts, {"keys": keys}, lines)
        missing = [k for k in keys if not k["in_ring"]]
        return EXIT_INTEGRITY if missing else EXIT_OK

    execute(run)


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
    opts = options(ctx)

    async def run() -> int:
        ring = KeyRing(key_versions(opts))
        start_tier, start_after = _decode_cursor(after) if after else (0, None)
        rewrapped = current = gone = 0
        cursor: str | None = after
        async with open_tiers(opts) as stores:
            targets = _rotation_targets(stores)
            with Progress("re-wrapping", quiet=opts.as_json) as progress:
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
                            err(f"stopped; resume with: checkpointers keys rotate --after {cursor}")
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
        emit(
            opts,
            data,
            lambda: [
                f"re-wrapped {rewrapped} record(s) under {ring.current_key_id}; "
                f"{current} already current, {gone} expired or deleted meanwhile",
                *([f"last cursor: --after {cursor}"] if cursor else []),
            ],
        )
        return EXIT_OK

    execute(run)


@keys_app.command("retire", epilog=EPILOG)
def keys_retire(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="Key id to remove, as `keys list` shows it.")],
    file: FileOption = None,
) -> None:
    """Remove a key version from a key file; refused while any record still uses it."""
    opts = options(ctx)

    async def run() -> int:
        path = key_file_path(opts, file)
        versions = read_key_file(path)
        ring = KeyRing(versions)
        in_use = 0
        async with open_tiers(opts) as stores:
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
        emit(
            opts,
            {"retired": key_id, "file": str(path)},
            lambda: [f"retired {key_id} from {path}"],
        )
        return EXIT_OK

    execute(run)
