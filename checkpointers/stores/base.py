"""The store protocol every backend implements.

Stores hold `Record`s: encrypted bodies plus clear routing fields. They know bytes, keys
and indexes, nothing about frameworks or plaintext. The shared suite in
`checkpointers.testing` defines the behaviour; `MemoryStore` is its reference.
"""

from __future__ import annotations

import asyncio
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar

from typing_extensions import Self

from checkpointers.record import Claim, Query, Record, RecordId

__all__ = ["Store"]


class Store(ABC):
    """Async storage of encrypted records.

    Contract shared by every backend:

    * `get` returns None when the record is absent or expired; `get_many` answers a
      list of identities in order, with None where `get` would give None.
    * `put` without `expected_version` is an upsert; `expected_version=0` inserts only
      if absent; `expected_version=n` writes only if the stored version is `n`. A lost
      race raises `ConflictError`. The stored version grows by one per write.
    * `put_many` writes all records atomically (all or none); with `if_absent=True`
      records that already exist are left as they are, without error. It returns each
      record's new row version, in input order, or None for one left as it was.
    * deletes are idempotent and return how many records went away.
    * `replicate` never replaces a stored copy by one with a lower row version.
    * `ping` raises `StoreUnavailableError` when the backend cannot answer.
    * failures of the backend raise `StoreUnavailableError`, never a driver exception.
    """

    #: URL query options this store accepts besides the common ones (ttl, tenant),
    #: each with the parser that turns its text into the `from_url` keyword argument.
    url_options: ClassVar[Mapping[str, Callable[[str], Any]]] = {}

    _closed: bool = False
    _owned_resources: bool = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Store:
        """Build a store that owns its clients from a parsed URL (see `open_store`)."""
        raise NotImplementedError

    async def setup(self) -> None:
        """Create or migrate the schema. Idempotent; called on first use by default."""

    @abstractmethod
    async def get(self, record_id: RecordId) -> Record | None:
        """Return the record, or None when absent or expired."""

    async def get_many(self, record_ids: Sequence[RecordId]) -> list[Record | None]:
        """The records at `record_ids`, in that order: None where absent or expired.

        Duplicates are allowed (each gets its answer). This default runs `get`
        concurrently; backends override it with one round trip.

        Raises:
            StoreUnavailableError: the backend failed.
        """
        if not record_ids:
            return []
        return list(await asyncio.gather(*(self.get(rid) for rid in record_ids)))

    @abstractmethod
    async def put(self, record: Record, *, expected_version: int | None = None) -> int:
        """Write one record and return its new row version.

        Raises:
            ConflictError: `expected_version` did not match.
            StoreUnavailableError: the backend failed.
        """

    @abstractmethod
    async def put_many(
        self, records: Sequence[Record], *, if_absent: bool = False
    ) -> list[int | None]:
        """Write many records in one atomic operation (upsert, or insert-if-absent).

        The batch behaves as if each record were `put` in turn, in input order: an
        identity given twice is written twice (the later record is kept, with a version
        one higher), and with `if_absent` its later occurrences find it present.

        Returns:
            For each record, in input order: its new row version (1 for a fresh insert,
            n + 1 over a stored version n, an expired record counting as absent for
            `if_absent`), or None for a record `if_absent` left untouched because a live
            one existed. A version means that this exact record is what the write left
            stored at that version (until a later record of the batch replaced it).

        Raises:
            StoreUnavailableError: the backend failed.
        """

    async def replicate(self, records: Sequence[Record]) -> None:
        """Copy records between tiers: write each one exactly as given (row version and
        timestamps included) unless the stored copy has a higher row version, which is
        then kept. A copy never goes back in version, whatever order concurrent copies of
        one record arrive in; an equal version is overwritten. Within one call, records
        with the same identity are applied in order (the highest version wins). Never
        used for normal writes.

        Raises:
            StoreUnavailableError: the backend failed.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot replicate records")

    @abstractmethod
    async def find(self, query: Query) -> list[Record]:
        """Records matching `query`, ordered by `sort` then identity, at most `limit`."""

    @abstractmethod
    async def claim(self, claim: Claim) -> Record | None:
        """Atomically claim the oldest claimable record; None when there is none."""

    @abstractmethod
    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        """Delete the given records; returns how many existed."""

    @abstractmethod
    async def delete_thread(self, tenant: str, thread: str) -> int:
        """Delete every record of a thread or run, all namespaces and kinds."""

    @abstractmethod
    async def delete_tenant(self, tenant: str) -> int:
        """Delete every record of a tenant."""

    @abstractmethod
    async def threads(
        self, tenant: str | None, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        """Distinct `(tenant, thread)` pairs in order, after the `(thread)` cursor."""

    @abstractmethod
    async def scan(self, after: RecordId | None = None, *, limit: int = 500) -> list[Record]:
        """Every record (expired ones too) in identity order, for maintenance tools."""

    @abstractmethod
    async def sweep(self, *, now: float | None = None, limit: int = 1000) -> int:
        """Delete up to `limit` expired records; returns how many. Safe to run anywhere."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise `StoreUnavailableError` unless the backend answers."""

    async def is_set_up(self) -> bool:
        """Whether `setup()` has created this backend's schema (True for a backend that
        has none). Raises `StoreUnavailableError` when it cannot tell."""
        return True

    async def latest(self, query: Query) -> Record | None:
        """The record with the greatest `sort` matching `query`."""
        from dataclasses import replace

        found = await self.find(replace(query, limit=1, descending=True))
        return found[0] if found else None

    async def _close(self) -> None:
        """Release what the store created (override; called once)."""

    def discard(self) -> None:
        """Drop a store that was built but never used (nothing connected yet), without
        the unclosed-store warning. A store that was used must be closed with `aclose`."""
        self._closed = True

    async def aclose(self) -> None:
        """Close what this store created. Idempotent; never closes borrowed clients."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    async def __aenter__(self) -> Self:
        await self.setup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if self._owned_resources and not self._closed:
            warnings.warn(
                f"unclosed {type(self).__name__}: use 'async with' or await aclose()",
                ResourceWarning,
                stacklevel=2,
            )
