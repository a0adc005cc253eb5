"""The stores a `checkpointers` command acts on, opened from the global options (private).

One `--url` is one store; several make a `TieredStore`, and maintenance commands still
visit each tier. A store is printed by its `describe_url` label only: scheme and host,
never the full URL (it may carry a password or a SAS token).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from checkpointers.cli._options import Options
from checkpointers.errors import ConfigurationError
from checkpointers.options import parse_identifier
from checkpointers.stores.base import Store
from checkpointers.urls import open_store

if TYPE_CHECKING:  # imported when tiers are opened: the command starts faster without it
    from checkpointers.tiered import TieredStore

__all__ = ["Stores", "Tier", "describe_url", "open_tiers", "resolve_tenant", "tiered_with_archive"]


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


@dataclass(frozen=True)
class Stores:
    """The configured stores: each tier on its own, and the `TieredStore` over them."""

    tiers: list[Tier]
    tiered: TieredStore | None


@contextlib.asynccontextmanager
async def open_tiers(opts: Options, *, migrate: bool = True) -> AsyncIterator[Stores]:
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
                from checkpointers.tiered import TieredStore

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


def resolve_tenant(opts: Options, tiers: list[Tier]) -> str | None:
    """The `--tenant` option, else the first URL's `tenant=` option, else None (all)."""
    if opts.tenant is not None:
        return parse_identifier(opts.tenant)
    return next((t.tenant for t in tiers if t.tenant is not None), None)


def tiered_with_archive(stores: Stores) -> TieredStore:
    if stores.tiered is None or stores.tiered.archive is None:
        raise ConfigurationError(
            "archive and restore need tiers: --url for the durable store and --url for the "
            "archive (azblob:// or https://)"
        )
    return stores.tiered
