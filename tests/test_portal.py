"""Portal: the sync bridge runs coroutines on its loop and refuses re-entry."""

from __future__ import annotations

import pytest

from checkpointers import ConfigurationError, Portal


def test_call_returns_result_and_propagates_errors() -> None:
    """A sync call returns the coroutine's result or raises its exception."""
    portal = Portal()

    async def double(x: int) -> int:
        return 2 * x

    async def fail() -> None:
        raise KeyError("boom")

    try:
        assert portal.call(double, 21) == 42
        with pytest.raises(KeyError):
            portal.call(fail)
    finally:
        portal.close()


def test_call_from_the_portal_loop_is_refused() -> None:
    """Calling a sync entry point from the portal's own loop raises instead of deadlocking."""
    portal = Portal()

    async def inner() -> int:
        return 1

    async def reenter() -> None:
        portal.call(inner)

    try:
        with pytest.raises(ConfigurationError, match="own event loop"):
            portal.call(reenter)
    finally:
        portal.close()


def test_closed_portal_refuses_calls() -> None:
    """After close(), calls raise; close() is idempotent."""
    portal = Portal()
    portal.close()
    portal.close()

    async def inner() -> None:
        return None

    with pytest.raises(ConfigurationError):
        portal.call(inner)
