"""`Portal`: the one event loop a store's clients live on, and the bridge to it.

Redis and PostgreSQL clients are bound to the event loop they were opened on. A
`Portal` names that loop (the home loop) and runs work on it for everyone else:

- async callers on the home loop run directly (no hop, no cost);
- async callers on another loop are bridged with futures (cancelling the caller cancels
  the work on the home loop);
- sync callers in other threads submit and wait, with a timeout, cancelling the work if
  they are interrupted; a sync call from the home loop's own thread is refused (it would
  wait for a loop that cannot run while it waits).

The home loop is either borrowed (the loop running when the store was first used) or
owned (a daemon thread the portal starts, anyio's blocking portal being the model).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from checkpointers.errors import ConfigurationError, StoreUnavailableError

__all__ = ["DEFAULT_SYNC_TIMEOUT", "Portal"]

T = TypeVar("T")

#: Seconds a synchronous call waits for its result before giving up (and cancelling it).
DEFAULT_SYNC_TIMEOUT = 300.0
#: Seconds the home loop gets to start a synchronous call: a loop that does not is
#: blocked (most often waiting for the very thread that made the call).
_START_TIMEOUT = 5.0


class Portal:
    """An event loop that runs coroutines for callers on other loops and threads.

    Build it with `Portal.start()` (a loop on a new daemon thread, owned: `close()`
    stops it) or `Portal.borrow()` (the loop running in the calling thread, not owned:
    `close()` only refuses further calls).

    Args:
        sync_timeout: seconds a sync `call` waits for its result.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread_id: int,
        *,
        thread: threading.Thread | None = None,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
    ) -> None:
        self._loop = loop
        self._thread_id = thread_id
        self._thread = thread
        self._closed = False
        self.sync_timeout = sync_timeout

    @classmethod
    def start(
        cls, name: str = "checkpointers-portal", *, sync_timeout: float = DEFAULT_SYNC_TIMEOUT
    ) -> Portal:
        """A portal over a new event loop on a daemon thread, which it owns."""
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            try:
                loop.run_forever()
            finally:
                # Closing here, on the loop's own thread, lets `close(wait=False)` stop
                # the loop from inside another running loop without joining.
                loop.close()

        thread = threading.Thread(target=main, name=name, daemon=True)
        thread.start()
        started.wait()
        assert thread.ident is not None
        return cls(loop, thread.ident, thread=thread, sync_timeout=sync_timeout)

    @classmethod
    def borrow(cls, *, sync_timeout: float = DEFAULT_SYNC_TIMEOUT) -> Portal:
        """A portal onto the event loop running in the calling thread, not owned.

        Raises:
            RuntimeError: no event loop is running in this thread.
        """
        return cls(asyncio.get_running_loop(), threading.get_ident(), sync_timeout=sync_timeout)

    @property
    def closed(self) -> bool:
        """True after `close()`."""
        return self._closed

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The home loop."""
        return self._loop

    @property
    def owned(self) -> bool:
        """True when the portal started its loop's thread (and `close()` stops it)."""
        return self._thread is not None

    def at_home(self) -> bool:
        """True when called from a coroutine running on the home loop."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def in_home_thread(self) -> bool:
        """True when called from the thread that runs the home loop."""
        return threading.get_ident() == self._thread_id

    def _submit(self, coroutine: Awaitable[T]) -> concurrent.futures.Future[T]:
        if self._closed:
            coroutine.close()  # type: ignore[attr-defined]
            raise ConfigurationError("this store is closed")
        if self._loop.is_closed() or not self._loop.is_running():
            coroutine.close()  # type: ignore[attr-defined]
            raise ConfigurationError(
                "the event loop this store was opened on is no longer running: "
                "open the store on the loop that uses it, or with `with` for sync use"
            )
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await `fn(*args, **kwargs)` on the home loop, from any loop.

        Raises:
            ConfigurationError: the portal is closed or its loop no longer runs.
        """
        if self.at_home():
            return await fn(*args, **kwargs)
        # Cancelling the caller cancels the wrapped future, which cancels the task on
        # the home loop: nothing keeps running for a caller that left.
        return await asyncio.wrap_future(self._submit(fn(*args, **kwargs)))

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the home loop and wait for its result.

        Raises:
            ConfigurationError: called from the home loop's own thread (use the async
                API there), the portal is closed, its loop no longer runs, or the loop
                did not start the call within seconds (it is blocked, most often
                waiting for this very thread).
            StoreUnavailableError: no result within `sync_timeout` seconds; the call
                was cancelled and may have been applied.
        """
        if self.in_home_thread():
            raise ConfigurationError(
                "a synchronous method was called from its own event loop's thread: "
                "use the async API (await the a-prefixed method) there"
            )
        started = threading.Event()

        async def run() -> T:
            started.set()
            return await fn(*args, **kwargs)

        future = self._submit(run())
        try:
            if not started.wait(min(_START_TIMEOUT, self.sync_timeout)):
                raise ConfigurationError(
                    "the event loop this store lives on did not run a synchronous call: "
                    "it is blocked (waiting for this thread?); call the async API from "
                    "that loop instead of blocking it"
                )
            return future.result(timeout=self.sync_timeout)
        except concurrent.futures.TimeoutError:
            raise StoreUnavailableError(
                f"a synchronous call got no result within {self.sync_timeout:g} s "
                "and was cancelled",
                may_have_applied=True,
            ) from None
        finally:
            # On success this is a no-op; on a timeout, an interrupt (KeyboardInterrupt)
            # or any other exit it cancels the work still running on the home loop.
            future.cancel()

    def close(self, *, wait: bool = True) -> None:
        """Refuse further calls; an owned portal also stops its loop. Idempotent.

        Args:
            wait: join the loop's thread (skip it from inside a running event loop,
                where joining would block that loop).
        """
        if self._closed:
            return
        self._closed = True
        if self._thread is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        if wait and not self.in_home_thread():
            self._thread.join(timeout=self.sync_timeout)

    def __repr__(self) -> str:
        mode = "owned" if self.owned else "borrowed"
        state = "closed" if self._closed else "open"
        return f"Portal({mode}, {state})"
