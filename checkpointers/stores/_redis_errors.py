"""redis-py errors to checkpointers errors: the `RedisStore` boundary (private).

Every operation runs inside `retrying`: connection errors and timeouts are tried again
with backoff, up to the store's `attempts`; then they, and at once every other exception
redis-py raises, become a `StoreUnavailableError` chained with ``from``. Errors are
classified by type only (redis messages may carry host names): a write may have been
applied unless the error proves the command was never sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from checkpointers.errors import StoreUnavailableError

__all__ = ["retrying"]

T = TypeVar("T")
_NOT_SENT = (AuthenticationError, AuthorizationError, BusyLoadingError, MaxConnectionsError)
_RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# Every exception redis-py raises derives from one of these (IncorrectPolicyType, from
# cluster command-policy parsing, exists from redis-py 6 on).
_DRIVER: tuple[type[Exception], ...] = tuple(
    c
    for c in (
        RedisError,
        RedisClusterException,
        getattr(redis.exceptions, "IncorrectPolicyType", None),
    )
    if isinstance(c, type) and issubclass(c, Exception)
)


def _unavailable(
    exc: BaseException, what: str, *, write: bool, endpoint: str | None = None
) -> StoreUnavailableError:
    # Classified by type only: redis messages may carry host names.
    if isinstance(exc, RedisConnectionError) and isinstance(exc.__cause__, OSError):
        # redis-py raises this, from the socket's error, when it cannot connect: nothing
        # was sent. The endpoint is the store's own (host:port), never the URL.
        return StoreUnavailableError(
            f"redis {what} failed: cannot connect to {endpoint or 'the server'} "
            f"({type(exc.__cause__).__name__})",
            may_have_applied=False,
        )
    applied = write and isinstance(exc, _RETRYABLE) and not isinstance(exc, _NOT_SENT)
    return StoreUnavailableError(
        f"redis {what} failed ({type(exc).__name__})", may_have_applied=applied
    )


async def retrying(
    what: str,
    fn: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    write: bool,
    endpoint: str | None = None,
) -> T:
    """Run `fn` up to `attempts` times on connection errors; translate driver errors.

    `endpoint` (`host:port`) is named when the server cannot be reached.
    """
    for attempt in range(attempts):
        try:
            return await fn()
        except _RETRYABLE as exc:
            if attempt + 1 >= attempts:
                raise _unavailable(exc, what, write=write, endpoint=endpoint) from exc
        except _DRIVER as exc:
            raise _unavailable(exc, what, write=write, endpoint=endpoint) from exc
        await asyncio.sleep(0.05 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover
