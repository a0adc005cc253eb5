"""What an `AzureBlobStore` URL names: container, account and prefix, validated (private).

``azblob://<container>`` takes the account from the ``AZURE_STORAGE_CONNECTION_STRING``
environment variable; ``https://<account>.blob.core.windows.net/<container>`` names the
account itself. Errors name what is wrong, never the URL or the connection string.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import SplitResult

from azure.storage.blob.aio import ContainerClient

from checkpointers.errors import ConfigurationError

__all__ = [
    "CLIENT_DEFAULTS",
    "CONNECTION_STRING_ENV",
    "azblob_client",
    "https_container",
    "parse_prefix",
]

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"

#: SDK client options of clients we create: the storage SDK's own defaults back off from
#: 15 s and keep an unreachable endpoint failing for over a minute; a checkpoint store
#: must report an outage in seconds (the tiered store's breaker depends on it). The
#: caller's keyword options override these.
CLIENT_DEFAULTS: dict[str, Any] = {
    "retry_total": 3,
    "retry_connect": 1,
    "initial_backoff": 0.5,
    "increment_base": 2,
    # The SDK spreads each backoff by +/- 3 s by default: up to ~9 s for two retries.
    "random_jitter_range": 0.5,
    "connection_timeout": 5,
}
_PREFIX = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-./]{0,199}$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")


def parse_prefix(value: str) -> str:
    """A blob name prefix: letters, digits, ``_ - . /``; no ``..``, not starting with ``/``."""
    if not _PREFIX.match(value) or ".." in value or "//" in value:
        raise ConfigurationError(
            "expected 1-200 characters: letters, digits, _ - . / (no leading /, no ..)"
        )
    return value


def _check_container(name: str) -> None:
    if not _CONTAINER.match(name):
        raise ConfigurationError(
            "container names are 3-63 characters: lowercase letters, digits and single hyphens"
        )


def azblob_client(
    parts: SplitResult, credential: object, options: dict[str, Any]
) -> ContainerClient:
    """The client of an ``azblob://<container>`` URL, from the connection string."""
    container = parts.netloc
    if parts.path not in ("", "/"):
        raise ConfigurationError("azblob URLs look like azblob://<container>")
    if credential is not None:
        raise ConfigurationError(
            "azblob:// takes its account and key from the connection string; "
            "use an https:// URL with credential="
        )
    _check_container(container)
    conn_str = os.environ.get(CONNECTION_STRING_ENV, "").strip()
    if not conn_str:
        raise ConfigurationError(
            f"azblob:// needs the {CONNECTION_STRING_ENV} environment variable"
        )
    try:
        return ContainerClient.from_connection_string(conn_str, container, **options)
    except ValueError:
        raise ConfigurationError(f"{CONNECTION_STRING_ENV} is malformed") from None


def https_container(parts: SplitResult) -> tuple[str, str]:
    """The account URL and container of an ``https://`` store URL."""
    host = (parts.hostname or "").lower()
    labels = host.split(".")
    container = parts.path.strip("/")
    if len(labels) < 3 or labels[1] != "blob" or not labels[0]:
        raise ConfigurationError(
            "https store URLs look like https://<account>.blob.core.windows.net/<container>"
        )
    _check_container(container)
    return f"https://{parts.netloc}", container
