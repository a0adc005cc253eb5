"""Microsoft Entra ID authentication of `RedisStore` connections (Azure Cache for Redis).

The user is the identity's object (principal) id, taken from the URL; the password is
an access token for ``https://redis.azure.com/.default`` (see `checkpointers.auth`).

What redis-py 8 does: it asks a `CredentialProvider` for ``(username, password)`` each
time a connection is opened (``HELLO``/``AUTH`` in ``on_connect``). It re-authenticates
open connections only for a ``StreamingCredentialProvider`` (the separate redis-entraid
package pushes tokens to the pool). Azure closes a connection whose token has expired
unless it was re-authenticated with ``AUTH`` first.

What we do: `EntraCredentialProvider` hands out the cached token (renewed five minutes
before expiry) to every new connection, and `EntraConnectionPool` re-authenticates a
pooled connection with ``AUTH <user> <token>`` when it is checked out after the token
was renewed, so a connection is never used with a token older than the current one.
A connection idle past its token's expiry is closed by the server; redis-py's health
check on checkout then reconnects it, with the current token. On a cluster
(`RedisCluster` has no pool hook) new connections get fresh tokens but long-lived ones
are not re-authenticated.
"""

from __future__ import annotations

import weakref
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError

from checkpointers.auth import REDIS_SCOPE, TokenCache
from checkpointers.errors import ConfigurationError, StoreUnavailableError

__all__ = ["EntraConnectionPool", "EntraCredentialProvider", "split_entra_url"]

_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def split_entra_url(url: str, options: dict[str, Any]) -> tuple[str, str]:
    """The URL without its user, and the user (the identity's object id).

    Raises:
        ConfigurationError: no user, a password (in the URL or `options`), or plain
            ``redis://`` to a host not on this machine. Never echoes the URL.
    """
    if "password" in options or "username" in options or "credential_provider" in options:
        raise ConfigurationError(
            "credential= replaces username=, password= and credential_provider="
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ConfigurationError("invalid redis URL") from None
    if parts.password is not None:
        raise ConfigurationError("credential= and a password in the URL: give only one")
    if not parts.username:
        raise ConfigurationError(
            "credential= needs the identity's object id as the user: rediss://<object-id>@host"
        )
    if parts.scheme == "redis" and not (host in _LOOPBACK or host.startswith("127.")):
        raise ConfigurationError("credential= sends an access token: use rediss:// (TLS)")
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.username)


class EntraCredentialProvider(CredentialProvider):
    """``(object id, access token)`` for each new connection."""

    def __init__(self, username: str, credential: Any) -> None:
        self.username = username
        self.tokens = TokenCache(credential, REDIS_SCOPE, store="redis")

    def get_credentials(self) -> tuple[str, str]:
        raise NotImplementedError("the async client asks get_credentials_async")

    async def get_credentials_async(self) -> tuple[str, str]:
        try:
            return self.username, await self.tokens.token()
        except StoreUnavailableError as exc:
            # A RedisError, so that redis-py drops the half-opened socket.
            raise AuthenticationError("the credential could not issue an access token") from exc

    def __repr__(self) -> str:
        return f"EntraCredentialProvider(scope={self.tokens.scope!r})"


class EntraConnectionPool(BlockingConnectionPool):
    """A blocking pool that re-authenticates a connection on checkout after the token
    was renewed. Set `provider` right after construction."""

    provider: EntraCredentialProvider | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Token generation each connection last authenticated with.
        self._generations: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        provider = self.provider
        if provider is not None:
            # Fetch (or renew) before opening anything: a credential failure surfaces
            # as the clear StoreUnavailableError of the token cache.
            await provider.tokens.token()
        connection = await super().get_connection(*args, **options)  # type: ignore[no-untyped-call]
        if provider is None:
            return connection
        try:
            token = await provider.tokens.token()
            current = provider.tokens.generation
            seen = self._generations.get(connection)
            if seen is not None and seen != current:
                await connection.send_command("AUTH", provider.username, token, check_health=False)
                await connection.read_response()
            self._generations[connection] = current
        except BaseException:
            await connection.disconnect()
            await self.release(connection)
            raise
        return connection
