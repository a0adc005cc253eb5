"""`Portal`: run the async core from synchronous code.

One background thread runs an event loop; each sync call submits a coroutine to it and
waits. Sync APIs are one-line wrappers over the async ones (never a hand-written twin).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from checkpointers.errors import ConfigurationError

__all__ = ["Portal"]

T = TypeVar("T")


class Portal:
    """An event loop on a daemon thread that runs coroutines for synchronous callers."""

    def __init__(self, name: str = "checkpointers-portal") -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        self._started.wait()
        self._closed = False
        self._owned = True

    @classmethod
    def borrow_running_loop(cls) -> Portal:
        """A portal onto the event loop running in the calling thread, which it does not own.

        Synchronous calls from other threads run on that loop; `close()` only refuses
        further calls and leaves the loop alone.

        Raises:
            RuntimeError: no event loop is running in this thread.
        """
        portal = cls.__new__(cls)
        portal._loop = asyncio.get_running_loop()
        portal._started = threading.Event()
        portal._started.set()
        portal._thread = threading.current_thread()
        portal._closed = False
        portal._owned = False
        return portal

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        self._loop.run_forever()

    @property
    def closed(self) -> bool:
        """True after `close()`."""
        return self._closed

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's event loop."""
        return self._loop

    def in_portal_thread(self) -> bool:
        """True when called from the portal's own thread."""
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the portal loop and return its result.

        Raises:
            ConfigurationError: called from the portal's own loop (it would deadlock),
                or after `close()`.
        """
        if self._closed:
            raise ConfigurationError("this synchronous object is closed")
        if self.in_portal_thread():
            raise ConfigurationError(
                "a synchronous method was called from its own event loop: use the async API"
            )

        async def run() -> T:
            return await fn(*args, **kwargs)

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result()

    def close(self) -> None:
        """Stop the loop and join its thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._owned:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
