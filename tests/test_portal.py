"""Portal: the sync bridge runs coroutines on its loop and refuses re-entry."""

from __future__ import annotations

import asyncio
import threading

import pytest

from checkpointers import ConfigurationError, Portal, StoreUnavailableError


def test_call_returns_result_and_propagates_errors() -> None:
    """A sync call returns the coroutine's result or raises its exception."""
    portal = Portal.start()

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
    portal = Portal.start()

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
    portal = Portal.start()
    portal.close()
    portal.close()

    async def inner() -> None:
        return None

    with pytest.raises(ConfigurationError):
        portal.call(inner)


def test_call_on_a_blocked_loop_raises_instead_of_hanging() -> None:
    """A sync call the home loop cannot start (it is blocked) fails within the timeout."""
    portal = Portal.start(sync_timeout=0.3)
    release = threading.Event()

    async def block() -> None:
        release.wait()  # blocks the home loop on purpose

    async def inner() -> int:
        return 1

    try:
        blocker = asyncio.run_coroutine_threadsafe(block(), portal.loop)
        with pytest.raises(ConfigurationError, match="blocked"):
            portal.call(inner)
    finally:
        release.set()
        blocker.result(timeout=10)
        portal.close()


def test_call_timeout_cancels_the_work() -> None:
    """A sync call past `sync_timeout` raises StoreUnavailableError and cancels the work."""
    portal = Portal.start(sync_timeout=0.3)
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        with pytest.raises(StoreUnavailableError) as info:
            portal.call(slow)
        assert info.value.may_have_applied
        assert cancelled.wait(10)
    finally:
        portal.close()


async def test_run_bridges_a_foreign_loop_and_propagates_cancellation() -> None:
    """`run` from another loop runs on the home loop; cancelling the caller cancels it."""
    portal = Portal.start()
    started, cancelled = threading.Event(), threading.Event()

    async def where() -> int:
        return threading.get_ident()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        assert await portal.run(where) != threading.get_ident()
        task = asyncio.ensure_future(portal.run(forever))
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(cancelled.wait, 10)
    finally:
        portal.close()


async def test_borrowed_portal_refuses_sync_calls_from_its_thread() -> None:
    """A borrowed portal runs async callers directly and refuses sync ones on its thread."""
    portal = Portal.borrow()

    async def inner() -> int:
        return 7

    assert portal.at_home()
    assert await portal.run(inner) == 7
    with pytest.raises(ConfigurationError, match="own event loop"):
        portal.call(inner)
    assert await asyncio.to_thread(portal.call, inner) == 7
    portal.close()
    assert not portal.owned
