"""Microsoft Entra ID access tokens used as database passwords (PostgreSQL, Redis).

Azure Database for PostgreSQL and Azure Cache for Redis accept an Entra access token of
the connecting identity in place of a password. `TokenCache` fetches one from a borrowed
azure-core `AsyncTokenCredential` (never closed here: the caller owns credentials) and
reuses it until shortly before it expires. The stores that take `credential=` build one
`TokenCache` per store with the scope of their service (`POSTGRES_SCOPE`, `REDIS_SCOPE`).

Ground floor: this module imports only `checkpointers.errors` (and the standard library).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from checkpointers.errors import ConfigurationError, StoreUnavailableError

__all__ = ["POSTGRES_SCOPE", "REDIS_SCOPE", "REFRESH_MARGIN", "TokenCache"]

#: The scope of an access token for Azure Database for PostgreSQL.
POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
#: The scope of an access token for Azure Cache for Redis.
REDIS_SCOPE = "https://redis.azure.com/.default"

#: A token is renewed when fewer than this many seconds of its life are left, so that a
#: connection opened (or re-authenticated) with it stays valid for a while.
REFRESH_MARGIN = 300.0


class TokenCache:
    """The current access token for one scope, fetched on demand and cached.

    Args:
        credential: any `AsyncTokenCredential`; borrowed, never closed.
        scope: the scope to ask for.
        store: the store's name, for error messages.
        margin: renew when fewer than this many seconds are left.
        clock: wall clock in seconds since the epoch (tokens expire in that time).

    Attributes:
        scope: the scope its tokens are for.
        generation: how many tokens it has fetched (the Redis store re-authenticates
            its pooled connections when it changes).

    Raises:
        ConfigurationError: `credential` has no `get_token` method.
    """

    def __init__(
        self,
        credential: Any,
        scope: str,
        *,
        store: str,
        margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not callable(getattr(credential, "get_token", None)):
            raise ConfigurationError("credential= must be an azure-core AsyncTokenCredential")
        self.scope = scope
        self._credential = credential
        self._store = store
        self._margin = margin
        self._clock = clock
        self._token: str | None = None
        self._expires_on = 0.0
        #: Increases by one each time a new token is fetched.
        self.generation = 0
        # Guards only the single cached token, so that concurrent connects share one
        # request to the identity endpoint instead of each sending their own.
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        return self._token is not None and self._expires_on - self._clock() > self._margin

    async def token(self) -> str:
        """The cached token, or a new one when it is missing or about to expire.

        Raises:
            StoreUnavailableError: the credential could not issue a token (the message
                names the exception class only).
        """
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            if not self._fresh():
                try:
                    access = await self._credential.get_token(self.scope)
                except Exception as exc:
                    raise StoreUnavailableError(
                        f"{self._store}: the credential could not issue an access token "
                        f"({type(exc).__name__})"
                    ) from exc
                self._token = str(access.token)
                self._expires_on = float(access.expires_on)
                self.generation += 1
            assert self._token is not None
            return self._token

    def __repr__(self) -> str:
        return f"TokenCache(scope={self.scope!r}, generation={self.generation})"
