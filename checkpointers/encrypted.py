"""`EncryptedStore`: the core record API that adapters use.

It turns plaintext into encrypted records bound to their identity, computes blind-index
tokens for exact-match filters, applies the tenant and the expiry, and decrypts what it
reads. Adapters know frameworks; stores know bytes; this layer joins them.

It also owns the event loop its clients live on (a `Portal`): every async method runs
on that loop whichever loop awaits it, and `call()` runs work there for sync callers, so
adapters never decide which loop runs what.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Concatenate, TypeVar

from typing_extensions import ParamSpec, Self

from checkpointers.crypto.keyring import KeyRing
from checkpointers.errors import (
    ConfigurationError,
    ConflictError,
    IntegrityError,
    KeyUnavailableError,
    RecordTooLargeError,
    SerializationError,
)
from checkpointers.observability import record_decrypt_failure
from checkpointers.options import parse_identifier
from checkpointers.portal import DEFAULT_SYNC_TIMEOUT, Portal
from checkpointers.record import INDEX_KEY_KIND, Claim, Query, Record, RecordId
from checkpointers.stores.base import Store
from checkpointers.urls import open_store

__all__ = ["DEFAULT_TENANT", "EncryptedStore", "Entry", "Write"]

DEFAULT_TENANT = "default"
DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024
_INDEX_KEY_ID = "v1"
_INDEX_KEY_SIZE = 32
_TOKEN_HEX = 32

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def _at_home(
    method: Callable[Concatenate[EncryptedStore, P], Awaitable[R]],
) -> Callable[Concatenate[EncryptedStore, P], Coroutine[Any, Any, R]]:
    """Run an async method on the store's home loop, whichever loop awaits it.

    The first async use binds the home loop (the running one). Awaited on another loop,
    the call is bridged to the home loop with futures; on the home loop it runs as is.
    """

    @functools.wraps(method)
    async def on_home_loop(self: EncryptedStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        portal = self._portal or self._bind_portal(owned=False)
        if portal.at_home():
            return await method(self, *args, **kwargs)
        return await portal.run(method, self, *args, **kwargs)

    return on_home_loop


@dataclass(frozen=True, slots=True)
class Entry:
    """A decrypted record: its routing fields and its plaintext `data`."""

    record: Record
    data: bytes = field(repr=False)

    @property
    def id(self) -> RecordId:
        return self.record.id


@dataclass(frozen=True, slots=True)
class Write:
    """One record for `EncryptedStore.write`: its identity, its plaintext and its clear
    routing fields. `index` holds name/value pairs matched through blind-index tokens;
    `expires=False` exempts the record from the store's `ttl`."""

    id: RecordId
    data: bytes = field(repr=False)
    sort: str = ""
    group: str = ""
    status: str = ""
    index: Mapping[str, Any] | None = field(default=None, repr=False)
    expires: bool = True
    lease_until: float | None = None


class EncryptedStore:
    """Encrypts and authenticates every body written to a `Store`.

    Args:
        store: the backend. Borrowed: `aclose()` closes it only when `owns_store`.
        keys: the key ring.
        tenant: tenant of every record written and read through this object.
        ttl: seconds until what is written expires (None: never).
        max_record_bytes: refuse plaintext bodies larger than this.
        owns_store: close `store` on `aclose()` (set by `from_url`).
        migrate: run the store's `setup()` on first use.
        sync_timeout: seconds a synchronous call (`call`, the adapters' sync methods)
            waits for its result before it is cancelled.

    The store lives on one event loop: the loop of its first async use (`async with`),
    or, when first used synchronously (`with`, `call`), a loop on a daemon thread it
    starts and stops on `close()`. Awaiting its methods from another loop works (they
    are bridged to the home loop); a sync call from the home loop's thread is refused.
    """

    def __init__(
        self,
        store: Store,
        keys: KeyRing,
        *,
        tenant: str = DEFAULT_TENANT,
        ttl: float | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        owns_store: bool = False,
        migrate: bool = True,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
    ) -> None:
        self.store = store
        self.keys = keys
        self.tenant = parse_identifier(tenant)
        self.ttl = ttl
        self.max_record_bytes = max_record_bytes
        self._owns_store = owns_store
        self._migrate = migrate
        self._ready = False
        self._index_keys: dict[str, bytes] = {}
        self._key_checked: set[str] = set()
        self._sync_timeout = sync_timeout
        self._portal: Portal | None = None
        # Guards binding the home loop only: two first uses racing from two threads
        # must agree on one loop.
        self._portal_lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str | Sequence[str],
        *,
        keys: KeyRing | None = None,
        tenant: str | None = None,
        ttl: float | None = None,
        migrate: bool = True,
        sync_timeout: float = DEFAULT_SYNC_TIMEOUT,
        **store_options: Any,
    ) -> EncryptedStore:
        """Open the store(s) at `url`; a list of URLs makes tiers, hottest first.

        `keys=None` reads local keys from `CHECKPOINTERS_KEY` / `CHECKPOINTERS_KEY_FILE`.
        `tenant` and `ttl` override the URL's `tenant=` and `ttl=` options.

        Raises:
            ConfigurationError: malformed URL, unknown option, no key configured.
            MissingDependencyError: the extra for a scheme is not installed.
        """
        ring = keys if keys is not None else KeyRing.from_env()
        if isinstance(url, str):
            store, common = open_store(url, **store_options)
        else:
            urls = list(url)
            if not urls:
                raise ConfigurationError("an empty list of store URLs")
            if len(urls) == 1:
                store, common = open_store(urls[0], **store_options)
            else:
                from checkpointers.tiered import TieredStore

                store, common = TieredStore.from_urls(urls, **store_options)
        return cls(
            store,
            ring,
            tenant=tenant or common.get("tenant", DEFAULT_TENANT),
            ttl=ttl if ttl is not None else common.get("ttl"),
            owns_store=True,
            migrate=migrate,
            sync_timeout=sync_timeout,
        )

    # -- lifecycle ------------------------------------------------------------------

    def _bind_portal(self, *, owned: bool) -> Portal:
        """The home loop, bound on first use: the running loop, or an owned thread."""
        with self._portal_lock:
            if self._portal is None:
                if self._closed:
                    raise ConfigurationError("this store is closed")
                self._portal = (
                    Portal.start("checkpointers-store", sync_timeout=self._sync_timeout)
                    if owned
                    else Portal.borrow(sync_timeout=self._sync_timeout)
                )
            return self._portal

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `fn(*args, **kwargs)` on the store's home loop and wait for the result.

        This is the whole sync API: an adapter's sync method is one `call` of its async
        twin. Used before any async use, it starts the store's own loop thread.

        Raises:
            ConfigurationError: called from the home loop's thread (use the async API),
                the store is closed, or its loop is blocked or gone.
            StoreUnavailableError: no result within `sync_timeout`; the call was
                cancelled and may have been applied.
        """
        return (self._portal or self._bind_portal(owned=True)).call(fn, *args, **kwargs)

    @_at_home
    async def setup(self) -> None:
        """Create or migrate the backend schema (idempotent)."""
        await self.store.setup()
        self._ready = True

    async def _ensure_ready(self) -> None:
        if not self._ready and self._migrate:
            await self.setup()
        self._ready = True

    async def _close_store(self) -> None:
        if self._owns_store:
            await self.store.aclose()

    async def aclose(self) -> None:
        """Close the store if this object opened it, and its own loop thread if it
        started one. Idempotent; safe from any loop.
        """
        with self._portal_lock:
            if self._closed:
                return
            self._closed = True
            portal = self._portal
        if portal is None:
            await self._close_store()
            return
        try:
            await portal.run(self._close_store)
        finally:
            # Inside a running loop: stop the owned thread without joining it.
            portal.close(wait=False)

    def close(self) -> None:
        """Sync `aclose`: close the store if this object opened it, and its loop thread.

        Raises:
            ConfigurationError: called from the home loop's thread (use `aclose`).
        """
        with self._portal_lock:
            if self._closed:
                return
            portal = self._portal
        if portal is None:
            portal = self._bind_portal(owned=True)
        if portal.in_home_thread():
            raise ConfigurationError(
                "close() was called from the store's own event loop: use aclose()"
            )
        with self._portal_lock:
            self._closed = True
        try:
            if not portal.closed:
                portal.call(self._close_store)
        finally:
            portal.close()

    async def __aenter__(self) -> Self:
        try:
            if self._portal is None:
                self._bind_portal(owned=False)
            await self._ensure_ready()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        try:
            self.call(self._ensure_ready)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- identities and tokens ------------------------------------------------------

    def record_id(self, thread: str, namespace: str, kind: str, key: str) -> RecordId:
        """The identity of a record of this tenant."""
        return RecordId(self.tenant, thread, namespace, kind, key)

    async def _index_key(self) -> bytes:
        key = self._index_keys.get(self.tenant)
        if key is not None:
            return key
        await self._ensure_ready()
        rid = self.record_id("", "", INDEX_KEY_KIND, _INDEX_KEY_ID)
        found = await self.get(rid)
        if found is None:
            fresh = secrets.token_bytes(_INDEX_KEY_SIZE)
            try:
                await self.put(rid, fresh, expected_version=0, expires=False)
                found_data = fresh
            except ConflictError:
                # Another process created it first: use theirs.
                entry = await self.get(rid)
                if entry is None:
                    raise
                found_data = entry.data
        else:
            found_data = found.data
        if len(found_data) != _INDEX_KEY_SIZE:
            raise IntegrityError(f"{rid.describe()}: blind-index key has a wrong size")
        self._index_keys[self.tenant] = found_data
        return found_data

    async def _check_key(self) -> None:
        """Before this object's first write for its tenant, prove the key ring reads what
        the tenant already stored (its blind-index key, if it has one): a wrong key then
        fails before anything is written, not after a first batch landed."""
        if self.tenant in self._index_keys or self.tenant in self._key_checked:
            return
        found = await self.get(self.record_id("", "", INDEX_KEY_KIND, _INDEX_KEY_ID))
        if found is not None and len(found.data) == _INDEX_KEY_SIZE:
            self._index_keys[self.tenant] = found.data
        self._key_checked.add(self.tenant)

    @_at_home
    async def tokens(self, index: Mapping[str, Any]) -> frozenset[str]:
        """Blind-index tokens for exact-match lookup of `name == value` pairs.

        Values are canonical JSON; the token is a keyed HMAC, so equal values give equal
        tokens and nothing about the value can be read from a token without the key.

        Raises:
            SerializationError: a value is not JSON-serializable.
        """
        if not index:
            return frozenset()
        key = await self._index_key()
        out = set()
        for name, value in index.items():
            try:
                canonical = json.dumps(
                    [name, value], sort_keys=True, separators=(",", ":"), ensure_ascii=False
                )
            except (TypeError, ValueError):
                raise SerializationError(
                    f"index value for {name!r} is not JSON-serializable"
                ) from None
            digest = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()
            out.add(digest[:_TOKEN_HEX])
        return frozenset(out)

    # -- writes -----------------------------------------------------------------------

    async def _seal(self, item: Write) -> Record:
        """Encrypt `item` into a `Record` bound to its identity, without writing it."""
        record_id, data = item.id, item.data
        if record_id.tenant != self.tenant:
            raise ConfigurationError("a record id of another tenant")
        if len(data) > self.max_record_bytes:
            raise RecordTooLargeError(
                f"{record_id.describe()}: {len(data)} bytes exceeds "
                f"max_record_bytes={self.max_record_bytes}"
            )
        seconds = self.ttl if item.expires else None
        body = await self.keys.encrypt(data, record_id.aad(), record=record_id)
        return Record(
            id=record_id,
            body=body,
            sort=item.sort,
            group=item.group,
            status=item.status,
            tokens=await self.tokens(item.index) if item.index else frozenset(),
            expires_at=None if seconds is None else time.time() + float(seconds),
            lease_until=item.lease_until,
        )

    @_at_home
    async def write(self, items: Sequence[Write], *, if_absent: bool = False) -> list[int | None]:
        """Encrypt `items` and write them atomically, in one store call.

        Args:
            items: the records to write, each bound to its identity by encryption.
            if_absent: insert only: a record that exists already is left as it was.

        Returns:
            Each record's new row version, in input order; None for a record that
            `if_absent` left as it was (see `Store.put_many`).

        Raises:
            ConfigurationError: a record id of another tenant.
            RecordTooLargeError: a body is above `max_record_bytes`.
            SerializationError: an index value is not JSON-serializable.
            StoreUnavailableError: the store failed (nothing or everything is written).
            KeyUnavailableError, IntegrityError: the key ring cannot read what this
                tenant stored (a wrong key): raised before anything is written.
        """
        await self._ensure_ready()
        await self._check_key()
        records = [await self._seal(item) for item in items]
        return await self.store.put_many(records, if_absent=if_absent)

    @_at_home
    async def copy(self, records: Sequence[Record], *, thread: str) -> int:
        """Copy records to another thread of this tenant, atomically.

        Each body is decrypted and encrypted again under its new identity (ciphertext is
        bound to its thread); routing fields and blind-index tokens are kept, leases are
        not, and the copies expire after this store's `ttl` from now.

        Returns:
            How many records were written.

        Raises:
            IntegrityError, KeyUnavailableError: a source record cannot be read.
            StoreUnavailableError: the store failed (nothing or everything is written).
        """
        await self._ensure_ready()
        expires_at = None if self.ttl is None else time.time() + float(self.ttl)
        copies = []
        for record in records:
            entry = await self.open(record)
            target = replace(record.id, thread=thread)
            body = await self.keys.encrypt(entry.data, target.aad(), record=target)
            copies.append(
                replace(
                    record,
                    id=target,
                    body=body,
                    version=0,
                    expires_at=expires_at,
                    lease_until=None,
                )
            )
        if copies:
            await self.store.put_many(copies)
        return len(copies)

    @_at_home
    async def put(
        self,
        record_id: RecordId,
        data: bytes,
        *,
        expected_version: int | None = None,
        sort: str = "",
        group: str = "",
        status: str = "",
        index: Mapping[str, Any] | None = None,
        expires: bool = True,
        lease_until: float | None = None,
    ) -> Entry:
        """Encrypt and write one record; returns it as written (with its new row version),
        ready for a later `update` without reading it back.

        `expires=False` exempts the record from the store's `ttl`.

        Raises:
            ConflictError: `expected_version` did not match (0: the record exists).
            RecordTooLargeError, SerializationError, StoreUnavailableError.
            KeyUnavailableError, IntegrityError: the key ring cannot read what this
                tenant stored (a wrong key): raised before anything is written.
        """
        await self._ensure_ready()
        if record_id.kind != INDEX_KEY_KIND:
            await self._check_key()
        record = await self._seal(
            Write(record_id, data, sort, group, status, index, expires, lease_until)
        )
        version = await self.store.put(record, expected_version=expected_version)
        return Entry(record.stored_as(version, record.updated_at), data)

    @_at_home
    async def update(
        self,
        entry: Entry,
        data: bytes | None = None,
        *,
        status: str | None = None,
        lease_until: float | bool | None = False,
    ) -> Entry:
        """Compare-and-set: rewrite `entry` if nobody changed it since it was read.

        `lease_until=False` keeps the current lease.

        Raises:
            ConflictError: the record changed (or vanished) since `entry` was read.
        """
        old = entry.record
        new_data = entry.data if data is None else data
        body = (
            old.body
            if data is None
            else await self.keys.encrypt(new_data, old.id.aad(), record=old.id)
        )
        record = replace(
            old,
            body=body,
            status=old.status if status is None else status,
            lease_until=old.lease_until if lease_until is False else lease_until,
        )
        version = await self.store.put(record, expected_version=old.version)
        return Entry(record.stored_as(version, record.updated_at), new_data)

    # -- reads ------------------------------------------------------------------------

    @_at_home
    async def open(self, record: Record) -> Entry:
        """Decrypt a record read from the store.

        Raises:
            IntegrityError: tampered, truncated, moved or not encrypted.
            KeyUnavailableError: its key is not in the ring or unreachable.
        """
        if record.id.tenant != self.tenant:
            raise IntegrityError(f"{record.id.describe()}: returned for tenant {self.tenant!r}")
        try:
            data = await self.keys.decrypt(record.body, record.id.aad(), record=record.id)
        except (IntegrityError, KeyUnavailableError) as exc:
            record_decrypt_failure(exc)
            raise
        return Entry(record, data)

    @_at_home
    async def get(self, record_id: RecordId) -> Entry | None:
        """The decrypted record, or None when absent or expired."""
        await self._ensure_ready()
        record = await self.store.get(record_id)
        if record is None:
            return None
        if record.id != record_id:
            raise IntegrityError(f"{record_id.describe()}: the store returned another record")
        return await self.open(record)

    @_at_home
    async def get_many(self, record_ids: Sequence[RecordId]) -> list[Entry | None]:
        """The decrypted records at `record_ids`, in order (None where absent or expired),
        read in one store call (one round trip on every backend but Azure Blob).

        Raises:
            IntegrityError: a record was tampered with, moved or is not encrypted.
            KeyUnavailableError: a record's key is not in the ring or unreachable.
            StoreUnavailableError: the backend failed.
        """
        return [
            None if record is None else await self.open(record)
            for record in await self.get_many_records(record_ids)
        ]

    @_at_home
    async def get_many_records(self, record_ids: Sequence[RecordId]) -> list[Record | None]:
        """The records at `record_ids`, still encrypted (open them with `open`), in order.

        Raises:
            IntegrityError: the store returned a record under another identity.
            StoreUnavailableError: the backend failed.
        """
        await self._ensure_ready()
        records = await self.store.get_many(record_ids)
        for record_id, record in zip(record_ids, records, strict=True):
            if record is not None and record.id != record_id:
                raise IntegrityError(f"{record_id.describe()}: the store returned another record")
        return records

    def query(self, **fields: Any) -> Query:
        """A `Query` scoped to this tenant."""
        return Query(tenant=self.tenant, **fields)

    @_at_home
    async def find(self, query: Query) -> list[Entry]:
        """Decrypted records matching `query` (which must be scoped to this tenant)."""
        if query.tenant != self.tenant:
            raise ConfigurationError("a query for another tenant")
        await self._ensure_ready()
        return [await self.open(record) for record in await self.store.find(query)]

    @_at_home
    async def find_records(self, query: Query) -> list[Record]:
        """Records matching `query`, still encrypted (routing fields only)."""
        if query.tenant != self.tenant:
            raise ConfigurationError("a query for another tenant")
        await self._ensure_ready()
        return await self.store.find(query)

    @_at_home
    async def latest(self, query: Query) -> Entry | None:
        """The decrypted record with the greatest `sort` matching `query`."""
        found = await self.find(replace(query, limit=1, descending=True))
        return found[0] if found else None

    @_at_home
    async def claim(self, claim: Claim) -> Entry | None:
        """Atomically claim and decrypt the oldest claimable record, or None."""
        if claim.tenant != self.tenant:
            raise ConfigurationError("a claim for another tenant")
        await self._ensure_ready()
        record = await self.store.claim(claim)
        return None if record is None else await self.open(record)

    # -- deletes ----------------------------------------------------------------------

    @_at_home
    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        """Delete records of this tenant; returns how many existed."""
        if any(rid.tenant != self.tenant for rid in record_ids):
            raise ConfigurationError("a record id of another tenant")
        await self._ensure_ready()
        return await self.store.delete(record_ids)

    @_at_home
    async def delete_thread(self, thread: str) -> int:
        """Delete a thread or run of this tenant, every namespace and kind."""
        await self._ensure_ready()
        return await self.store.delete_thread(self.tenant, thread)

    @_at_home
    async def erase_tenant(self) -> int:
        """Delete every record of this tenant, its blind-index key included."""
        await self._ensure_ready()
        self._index_keys.pop(self.tenant, None)
        self._key_checked.discard(self.tenant)
        return await self.store.delete_tenant(self.tenant)

    def __repr__(self) -> str:
        return f"EncryptedStore(store={type(self.store).__name__}, tenant={self.tenant!r})"
