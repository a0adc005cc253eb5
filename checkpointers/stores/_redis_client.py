"""The client `RedisStore.from_url` owns (private): pool, timeouts, Entra ID auth.

On one server: a `BlockingConnectionPool` (callers wait for a connection), no driver
retries (the store retries), a health check of idle connections, and with a credential
an `EntraConnectionPool` (see `checkpointers.stores._redis_entra`). On a cluster: a
`RedisCluster` with its own retries, which re-route after failovers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from checkpointers.errors import ConfigurationError
from checkpointers.stores._redis_entra import (
    EntraConnectionPool,
    EntraCredentialProvider,
    split_entra_url,
)

__all__ = ["Client", "check_db", "connect", "endpoint"]

Client = Redis | RedisCluster


def check_db(url: str) -> None:
    """Refuse a database number that is not a number (redis-py would silently use 0).

    Raises:
        ConfigurationError: naming the bad value (`redis://host:6379/99x`), never the URL.
    """
    try:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
    except ValueError:
        raise ConfigurationError("malformed redis URL") from None
    values = [("db", query["db"])] if "db" in query else []
    if parts.scheme in ("redis", "rediss") and parts.path not in ("", "/"):
        values.append(("database number", parts.path[1:]))
    for what, value in values:
        if not (value.isascii() and value.isdigit()):
            raise ConfigurationError(
                f"redis URL {what} {value[:20]!r} is not a number (redis://host:6379/0)"
            )


def endpoint(client: Client) -> str:
    """`host:port` (or the unix socket path) the client connects to: for error messages."""
    if isinstance(client, RedisCluster):
        nodes = list(client.nodes_manager.startup_nodes.values())
        return f"{nodes[0].host}:{nodes[0].port}" if nodes else "the cluster"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def connect(
    url: str,
    *,
    cluster: bool,
    pool_size: int,
    socket_timeout: float,
    credential: Any,
    options: dict[str, Any],
) -> Client:
    """A new client for `url`; `options` go to redis-py as they are.

    Raises:
        ConfigurationError: a malformed URL or option, or a URL unfit for `credential`.
    """
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
    client: Client
    provider: EntraCredentialProvider | None = None
    if credential is not None:
        url, username = split_entra_url(url, options)
        provider = EntraCredentialProvider(username, credential)
        options = {**options, "credential_provider": provider}
    check_db(url)
    if cluster and urlsplit(url).scheme == "unix":
        raise ConfigurationError("a Redis Cluster is not reached over unix://")
    try:
        if cluster:
            client = RedisCluster.from_url(url, max_connections=pool_size, **timeouts, **options)
        else:
            pool_class = BlockingConnectionPool if provider is None else EntraConnectionPool
            pool = pool_class.from_url(
                url,
                max_connections=pool_size,
                timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=30,
                **timeouts,
                **options,
            )
            if isinstance(pool, EntraConnectionPool):
                pool.provider = provider
            client = Redis.from_pool(pool)
    except (ValueError, TypeError):
        raise ConfigurationError("invalid redis URL or client option") from None
    return client
