"""URL parsing: scheme -> store class, query options -> typed values.

This is the one place where a store registers its scheme. The stores are loaded lazily
(each needs its driver), so no store imports this module: the typed option parsers
they declare their options with live in `checkpointers.options`. Errors name the scheme
or the option, never the URL (it may carry a password or a SAS token).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from checkpointers.errors import ConfigurationError, MissingDependencyError
from checkpointers.options import COMMON_OPTIONS, OptionTable

if TYPE_CHECKING:
    from checkpointers.stores.base import Store

__all__ = ["StoreSpec", "open_store"]


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """Where the class for a URL scheme lives and which extra installs its driver."""

    module: str
    class_name: str
    extra: str | None
    driver: str | None


_SCHEMES: dict[str, StoreSpec] = {
    "memory": StoreSpec("checkpointers.stores.memory", "MemoryStore", None, None),
    "sqlite": StoreSpec("checkpointers.stores.sqlite", "SqliteStore", None, None),
    "redis": StoreSpec("checkpointers.stores.redis", "RedisStore", "redis", "redis"),
    "rediss": StoreSpec("checkpointers.stores.redis", "RedisStore", "redis", "redis"),
    "unix": StoreSpec("checkpointers.stores.redis", "RedisStore", "redis", "redis"),
    "postgresql": StoreSpec(
        "checkpointers.stores.postgres", "PostgresStore", "postgres", "asyncpg"
    ),
    "postgres": StoreSpec("checkpointers.stores.postgres", "PostgresStore", "postgres", "asyncpg"),
    "azblob": StoreSpec(
        "checkpointers.stores.azure_blob", "AzureBlobStore", "azure", "azure.storage.blob"
    ),
    "https": StoreSpec(
        "checkpointers.stores.azure_blob", "AzureBlobStore", "azure", "azure.storage.blob"
    ),
}


def store_class(scheme: str) -> type[Store]:
    """The store class registered for `scheme`, importing its driver lazily.

    Raises:
        ConfigurationError: unknown scheme.
        MissingDependencyError: the extra for this scheme is not installed.
    """
    spec = _SCHEMES.get(scheme)
    if spec is None:
        known = ", ".join(sorted(_SCHEMES))
        raise ConfigurationError(f"unknown URL scheme {scheme!r}; known: {known}")
    if spec.driver is not None:
        try:
            importlib.import_module(spec.driver)
        except ImportError:
            raise MissingDependencyError(spec.driver, spec.extra or "all") from None
    module = importlib.import_module(spec.module)
    cls: type[Store] = getattr(module, spec.class_name)
    return cls


def split_url(url: str) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """Split a URL into (scheme, URL without query, common options, store options).

    Raises:
        ConfigurationError: malformed URL, unknown scheme, unknown or invalid option.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError("a store URL looks like scheme://...; see the README")
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigurationError("malformed store URL") from None
    scheme = parts.scheme.lower()
    cls = store_class(scheme)
    store_parsers: OptionTable = cls.url_options
    common: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for name, raw in pairs:
        parser = COMMON_OPTIONS.get(name) or store_parsers.get(name)
        if parser is None:
            accepted = ", ".join(sorted({*COMMON_OPTIONS, *store_parsers}))
            raise ConfigurationError(
                f"unknown option {name!r} for {scheme}:// URLs; accepted: {accepted}"
            )
        if name in common or name in options:
            raise ConfigurationError(f"option {name!r} given twice")
        try:
            value = parser(raw)
        except ConfigurationError as exc:
            raise ConfigurationError(f"option {name!r}: {exc}") from None
        (common if name in COMMON_OPTIONS else options)[name] = value
    # Cut the query off the text rather than re-joining parts: urlunsplit() would turn
    # sqlite:////abs/path into a URL with a host.
    bare = url.split("?", 1)[0].split("#", 1)[0]
    return scheme, bare, common, options


def open_store(
    url: str, *, defaults: Mapping[str, Any] | None = None, **overrides: Any
) -> tuple[Store, dict[str, Any]]:
    """Build the store for `url` (it owns its clients) and return it with the common options.

    `defaults` are store options the URL's own options replace; keyword overrides replace
    both and are passed to the store's `from_url` (pool sizes, a credential...).
    """
    scheme, bare, common, options = split_url(url)
    store = store_class(scheme).from_url(bare, **{**(defaults or {}), **options, **overrides})
    return store, common
