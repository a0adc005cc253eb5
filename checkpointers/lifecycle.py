"""`StoreOwner`: the lifecycle every adapter shares.

Factories own, constructors borrow: an adapter built by `from_url` owns the
`EncryptedStore` it opened and closes it; an adapter given an opened store borrows it and
never closes it. Both are async and sync context managers; the store owns its event loop
(see `EncryptedStore`), so the sync forms work from any thread but that loop's.
"""

from __future__ import annotations

from types import TracebackType

from typing_extensions import Self

from checkpointers.encrypted import EncryptedStore

__all__ = ["StoreOwner"]


class StoreOwner:
    """Mixin: opens and closes the store an adapter's factory opened, and only that."""

    _owned_store: EncryptedStore | None = None

    def _own(self, store: EncryptedStore) -> None:
        """Take ownership of `store` (called by a `from_url` factory)."""
        self._owned_store = store

    async def __aenter__(self) -> Self:
        if self._owned_store is not None:
            await self._owned_store.__aenter__()  # closes itself if opening fails
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        if self._owned_store is not None:
            self._owned_store.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def aclose(self) -> None:
        """Close the store if `from_url` opened it. Idempotent; from any event loop."""
        if self._owned_store is not None:
            await self._owned_store.aclose()

    def close(self) -> None:
        """Close the store if `from_url` opened it. Idempotent.

        Raises:
            ConfigurationError: called from the store's own event loop (use `aclose`).
        """
        if self._owned_store is not None:
            self._owned_store.close()
