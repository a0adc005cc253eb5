"""Tiers from URLs, hottest first: which URL plays which role (private).

Blob URLs are the archive, the last other URL is durable and one URL above it is hot.
This is the one module of `checkpointers.tiered` that opens stores by URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from checkpointers.errors import ConfigurationError
from checkpointers.stores.base import Store
from checkpointers.urls import open_store

__all__ = ["stores_from_urls"]

_ARCHIVE_SCHEMES = frozenset({"azblob", "https"})
#: A Redis hot tier fails fast (the durable tier is there): a hung server costs one
#: second once, then the tier's breaker skips it. The URL's own options win.
_HOT_REDIS_DEFAULTS: dict[str, Any] = {"socket_timeout": 1.0, "attempts": 1}
#: Schemes whose store takes `credential=` (Microsoft Entra ID auth).
_CREDENTIAL_SCHEMES = frozenset({"postgresql", "postgres", "redis", "rediss", *_ARCHIVE_SCHEMES})


def stores_from_urls(
    urls: Sequence[str], *, credential: Any = None, **options: Any
) -> tuple[dict[str, Store], dict[str, Any]]:
    """The store of each role ("hot", "durable", "archive") and the common options.

    See `TieredStore.from_urls`; nothing is opened yet (the stores are built, not
    connected), and none is left unclosed when a URL is refused.

    Raises:
        ConfigurationError: no durable tier, two of a kind, conflicting options, or
            `credential` while no tier takes one (SQLite, memory only).
    """
    warm = [u for u in urls if u.split("://", 1)[0].lower() not in _ARCHIVE_SCHEMES]
    takes = [u for u in urls if u.split("://", 1)[0].lower() in _CREDENTIAL_SCHEMES]
    if credential is not None and not takes:
        raise ConfigurationError(
            "credential= given but no tier takes one (PostgreSQL, Redis or Azure Blob)"
        )
    if not warm or len(warm) > 2:
        raise ConfigurationError("a tier list needs one durable URL, at most one hot URL above it")
    tiers: dict[str, Store] = {}
    common: dict[str, Any] = {}
    try:
        for url in urls:
            role = "archive" if url not in warm else "durable" if url == warm[-1] else "hot"
            if role in tiers:
                raise ConfigurationError(f"two {role} tiers in the URL list")
            extra = {"credential": credential} if url in takes and credential else {}
            scheme = url.split("://", 1)[0].lower()
            defaults = _HOT_REDIS_DEFAULTS if role == "hot" and scheme.startswith("redis") else None
            store, url_common = open_store(url, defaults=defaults, **options, **extra)
            tiers[role] = store
            for name, value in url_common.items():
                if common.setdefault(name, value) != value:
                    raise ConfigurationError(f"tiers disagree on option {name!r}")
    except BaseException:
        for store in tiers.values():
            store.discard()  # nothing was opened yet
        raise
    return tiers, common
