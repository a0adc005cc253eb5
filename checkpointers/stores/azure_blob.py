"""`AzureBlobStore`: records as blobs in Azure Blob Storage (the archive tier).

Layout: one block blob per record, named ``<prefix><tenant>/<thread>/<namespace>/<kind>/<key>``
(each component percent-encoded, see `_azure_blob_layout`). The blob content is the record
body (an envelope: ciphertext only). The routing fields (row version, sort, group, status,
blind-index tokens, expiry, lease, update time) are blob metadata; tenant, thread, kind,
status and expiry are also blob index tags, so operators and `find_by_tags` can look records
up by tenant, thread or status without listing the container.

Concurrency control is optimistic, with ETags: an insert is ``If-None-Match: *``, every
other write (``put``, ``claim``, a conditional delete) reads the blob's ETag and writes
with ``If-Match``. A lost race is a `ConflictError` (or a retry, for plain upserts).

Blob Storage is an archive, not a database. What is slow here:

* `find`, `latest`, `claim`, `threads`, `delete_thread` and `delete_tenant` list the blobs
  under the tenant or thread prefix (one request per 5,000 blobs) and `find`/`claim`
  download each selected body (one request per record). A query without a tenant lists
  the whole prefix of the store.
* `scan` lists every blob of the store for each page (it is for maintenance tools).
* `put_many` writes one blob per record, `max_concurrency` at a time. It is **not atomic**:
  Blob Storage has no multi-blob transaction. If a write fails, the records written before
  it stay and `StoreUnavailableError(may_have_applied=True)` is raised; retrying the batch
  is safe (upserts, or inserts-if-absent). Records are validated before anything is sent.
* `claim` is a read followed by a conditional write; under contention the losers retry
  on the next candidate, so it costs more requests than on a database.
* Index tags are eventually consistent on Azure (not on Azurite): `find_by_tags` and
  `sweep` (which finds expired records by their ``cp_expires`` tag) may miss changes made
  in the last seconds. Everything else reads blob metadata, which is strongly consistent.

Immutability (time-based retention, legal hold) and lifecycle rules are set by
infrastructure on the container. A write or delete the service refuses because of an
immutability policy, a legal hold or a lease raises `ConflictError` (the record is in a
state that forbids the change; retrying will not help and the store is not down, so a
circuit breaker must not trip), naming the service's error code. Azurite cannot emulate
immutability policies or legal holds (it answers 501); the tests drive the same path with
a blob lease, which the service enforces the same way (412 ``LeaseIdMissing``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from azure.core.exceptions import HttpResponseError
from azure.storage.blob.aio import ContainerClient

from checkpointers.errors import (
    ConfigurationError,
    IntegrityError,
    StoreUnavailableError,
)
from checkpointers.options import parse_bool, parse_positive_int
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.stores._azure_blob_etags import (
    claim_oldest,
    delete_expired,
    delete_record,
    replicate_record,
    write_record,
)
from checkpointers.stores._azure_blob_io import BlobPrimitives, is_live, sort_order
from checkpointers.stores._azure_blob_layout import (
    TAG_EXPIRES,
    TAG_KIND,
    TAG_STATUS,
    TAG_TENANT,
    TAG_THREAD,
    blob_metadata,
    blob_name,
    entry_from,
    expiry_tag,
    name_prefix,
    tag_value,
)
from checkpointers.stores._azure_blob_url import (
    CLIENT_DEFAULTS,
    CONNECTION_STRING_ENV,
    azblob_client,
    https_container,
    parse_prefix,
)
from checkpointers.stores.base import Store

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
    from azure.core.credentials_async import AsyncTokenCredential

    Credential = AsyncTokenCredential | AzureSasCredential | AzureNamedKeyCredential

__all__ = ["CONNECTION_STRING_ENV", "AzureBlobStore"]


DEFAULT_MAX_CONCURRENCY = 16


def _default_credential() -> AsyncTokenCredential:
    """The credential used for https:// URLs when the caller passes none (created lazily)."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


class AzureBlobStore(BlobPrimitives, Store):
    """Records as blobs in one container of Azure Blob Storage.

    Args:
        container: a `ContainerClient` (aio). Borrowed: never closed by this store.
        prefix: prepended to every blob name (e.g. ``"checkpoints/"``).
        create_container: create the container in `setup()` when it does not exist.
            Off by default: production containers come from infrastructure, with their
            immutability and lifecycle policies.
        index_tags: write blob index tags and use them in `sweep` (turn off on accounts
            with a hierarchical namespace, which do not support tags).
        max_concurrency: requests in flight at once for one multi-blob operation.

    Permissions (Azure RBAC): "Storage Blob Data Contributor" on the container, plus
    "Storage Blob Data Owner" (or the ``blobs/tags/read`` and ``tags/write`` data actions)
    for index tags.
    """

    url_options: ClassVar = {
        "prefix": parse_prefix,
        "create_container": parse_bool,
        "index_tags": parse_bool,
        "max_concurrency": parse_positive_int,
    }

    def __init__(
        self,
        container: ContainerClient,
        *,
        prefix: str = "",
        create_container: bool = False,
        index_tags: bool = True,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self._configure(container.container_name, prefix, create_container, index_tags,
                        max_concurrency)  # fmt: skip
        self._client: ContainerClient | None = container

    def _configure(
        self,
        container_name: str,
        prefix: str = "",
        create_container: bool = False,
        index_tags: bool = True,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self._client = None
        self._factory: Callable[[], ContainerClient] | None = None
        self._owned_credential: AsyncTokenCredential | None = None
        self.container_name = container_name
        self.prefix = parse_prefix(prefix) if prefix else ""
        self._create_container = create_container
        self._index_tags = index_tags
        self._max_concurrency = max(1, max_concurrency)
        self._ready = False

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AzureBlobStore:
        """Build a store that owns its client.

        * ``azblob://<container>``: the account comes from the
          ``AZURE_STORAGE_CONNECTION_STRING`` environment variable.
        * ``https://<account>.blob.core.windows.net/<container>``: Microsoft Entra ID auth
          with ``credential=`` (any `AsyncTokenCredential`, or a SAS/shared-key credential
          object; borrowed, never closed). Without one, a ``DefaultAzureCredential`` is
          created on first use and closed by `aclose()`.

        Other keyword options are the constructor's (``prefix``...) or are passed to the
        SDK client (``retry_total``, ``connection_timeout``, ``read_timeout``...).

        Raises:
            ConfigurationError: malformed URL or container name, no connection string.
        """
        credential = options.pop("credential", None)
        store_kwargs = {k: options.pop(k) for k in list(options) if k in cls.url_options}
        options = {**CLIENT_DEFAULTS, **options}
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "azblob":
            store = cls(azblob_client(parts, credential, options), **store_kwargs)
        elif scheme == "https":
            account_url, container = https_container(parts)
            store = cls.__new__(cls)
            store._init_lazy(account_url, container, credential, options, store_kwargs)
        else:
            raise ConfigurationError(f"AzureBlobStore cannot open {scheme}:// URLs")
        store._owned_resources = True
        return store

    def _init_lazy(
        self,
        account_url: str,
        container: str,
        credential: Credential | None,
        client_options: dict[str, Any],
        store_kwargs: dict[str, Any],
    ) -> None:
        """Set up without a client: it is built on first use, with a default credential
        made only then, if the caller passed none."""
        self._configure(container, **store_kwargs)

        def factory() -> ContainerClient:
            cred = credential
            if cred is None:
                self._owned_credential = cred = _default_credential()
            return ContainerClient(account_url, container, credential=cred, **client_options)

        self._factory = factory

    def _container(self) -> ContainerClient:
        if self._closed:
            raise StoreUnavailableError(f"azure blob store {self.container_name!r} is closed")
        if self._client is None:
            if self._factory is None:
                raise StoreUnavailableError("azure blob store has no client")
            self._client = self._factory()
        return self._client

    async def _close(self) -> None:
        client, credential = self._client, self._owned_credential
        self._client = self._owned_credential = None
        try:
            if client is not None and self._owned_resources:
                await client.close()
        finally:
            if credential is not None:
                await credential.close()

    def __repr__(self) -> str:
        return f"AzureBlobStore(container={self.container_name!r}, prefix={self.prefix!r})"

    # -- protocol -----------------------------------------------------------------------

    async def setup(self) -> None:
        """Check that the container exists (create it if `create_container`).

        Raises:
            StoreUnavailableError: unreachable, access denied, or no such container.
        """
        if self._ready:
            return
        container = self._container()
        with self._boundary("setup", write=False):
            try:
                await container.get_container_properties()
            except HttpResponseError as exc:
                if exc.status_code != 404 or not self._create_container:
                    raise
                try:
                    await container.create_container()
                except HttpResponseError as create_exc:
                    if create_exc.status_code != 409:
                        raise
        self._ready = True

    async def ping(self) -> None:
        with self._boundary("ping", write=False):
            await self._container().get_container_properties()

    async def get(self, record_id: RecordId) -> Record | None:
        name = blob_name(self.prefix, record_id)
        got = await self._download(name)
        if got is None:
            return None
        etag, metadata, body = got
        entry = entry_from(self.prefix, name, etag, metadata, body)
        if entry is None:
            raise IntegrityError(f"{record_id.describe()}: blob has no checkpointers metadata")
        return entry.record if is_live(entry.record, time.time()) else None

    async def put(self, record: Record, *, expected_version: int | None = None) -> int:
        version = await write_record(self, record, expected_version)
        if version is None:  # pragma: no cover - only if_absent returns None
            raise RuntimeError("unreachable")
        return version

    async def put_many(
        self, records: Sequence[Record], *, if_absent: bool = False
    ) -> list[int | None]:
        """Write many records, concurrently. Not atomic (Blob Storage has no transaction).

        Distinct identities are written concurrently; the records of one identity one
        after the other, in input order. Returns each record's new version (None where
        `if_absent` found a live one).

        Raises:
            StoreUnavailableError: a write failed; the others may have been applied
                (`may_have_applied` is True). Retrying the whole batch is safe.
            ConflictError: a blob is protected (immutability, legal hold, lease).
            RecordTooLargeError: an identity or its routing fields do not fit (checked
                for every record before anything is written).
        """
        for record in records:
            blob_name(self.prefix, record.id)
            blob_metadata(record, 1, 0.0)

        by_identity: dict[RecordId, list[int]] = {}
        for position, record in enumerate(records):
            by_identity.setdefault(record.id, []).append(position)
        out: list[int | None] = [None] * len(records)

        def job(positions: list[int]) -> Callable[[], Awaitable[None]]:
            async def write_in_turn() -> None:
                for position in positions:
                    out[position] = await write_record(
                        self, records[position], None, if_absent=if_absent
                    )

            return write_in_turn

        try:
            await self._bounded([job(positions) for positions in by_identity.values()])
        except StoreUnavailableError as exc:
            raise StoreUnavailableError(
                f"azure blob container {self.container_name!r}: put_many of {len(records)} "
                "records failed part way; some may have been written",
                may_have_applied=True,
            ) from exc
        return out

    async def replicate(self, records: Sequence[Record]) -> None:
        """Write records as given (version and update time kept) unless the stored blob
        has a higher version (read its ETag, then a conditional write).

        Like `put_many`, not atomic: on failure some records may have been written.

        Raises:
            StoreUnavailableError: a write failed (`may_have_applied` is True).
            ConflictError: a blob is protected (immutability, legal hold, lease).
        """
        highest: dict[RecordId, Record] = {}
        for record in records:
            blob_name(self.prefix, record.id)
            blob_metadata(record, record.version, record.updated_at)
            kept = highest.get(record.id)
            if kept is None or kept.version <= record.version:
                highest[record.id] = record

        def job(record: Record) -> Callable[[], Awaitable[None]]:
            return lambda: replicate_record(self, record)

        try:
            await self._bounded([job(r) for r in highest.values()])
        except StoreUnavailableError as exc:
            raise StoreUnavailableError(
                f"azure blob container {self.container_name!r}: replicate of {len(records)} "
                "records failed part way; some may have been written",
                may_have_applied=True,
            ) from exc

    def _query_prefix(self, query: Query) -> str:
        leading: list[str] = []
        for value in (query.tenant, query.thread, query.namespace, query.kind):
            if value is None:
                break
            leading.append(value)
        return name_prefix(self.prefix, *leading)

    async def find(self, query: Query) -> list[Record]:
        """Records matching `query` (lists the tenant or thread prefix, then downloads)."""
        if query.limit == 0:
            return []
        now = time.time()
        entries = [e for e in await self._list(self._query_prefix(query)) if
                   query.matches(e.record, now)]  # fmt: skip
        entries.sort(key=lambda e: sort_order(e.record), reverse=query.descending)
        if query.limit is not None:
            entries = entries[: query.limit]
        found = await self._with_bodies(entries, lambda r: query.matches(r, time.time()))
        return sorted(found, key=sort_order, reverse=query.descending)

    async def claim(self, claim: Claim) -> Record | None:
        """Claim the oldest claimable record.

        The listing gives each candidate's routing fields and ETag; the claim itself is one
        Set Blob Metadata with ``If-Match`` (no body transfer), so a claimer that loses a
        race pays one request and moves on. Each record is claimed exactly once. Without
        contention the oldest record is taken; a claimer that lost races picks among the
        next few records (a window doubling per loss), so under heavy contention a claim
        may return a slightly younger record than the oldest one left. The winner then
        updates the index tags (guarded by the new ETag) and downloads the body.
        """
        return await claim_oldest(self, claim)

    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        """Delete records (two requests each: a read for the ETag, a conditional delete).

        Raises:
            ConflictError: a blob is protected (immutability policy, legal hold, lease);
                the other records are deleted.
        """

        def job(rid: RecordId) -> Callable[[], Awaitable[int]]:
            return lambda: delete_record(self, rid)

        return sum(await self._bounded([job(r) for r in record_ids]))

    async def _delete_prefix(self, prefix: str) -> int:
        names = [e.name for e in await self._list(prefix)]

        def job(name: str) -> Callable[[], Awaitable[bool]]:
            return lambda: self._delete_blob(name)

        return sum(await self._bounded([job(n) for n in names]))

    async def delete_thread(self, tenant: str, thread: str) -> int:
        """Delete every blob of a thread (lists the thread prefix).

        Raises:
            ConflictError: some blobs are protected; the others are deleted.
        """
        return await self._delete_prefix(name_prefix(self.prefix, tenant, thread))

    async def delete_tenant(self, tenant: str) -> int:
        """Delete every blob of a tenant (lists the tenant prefix).

        Raises:
            ConflictError: some blobs are protected; the others are deleted.
        """
        return await self._delete_prefix(name_prefix(self.prefix, tenant))

    async def threads(
        self, tenant: str | None, *, after: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        """Distinct threads (one hierarchical listing per tenant, then a probe per thread)."""
        tenants = [tenant] if tenant is not None else await self._children(self.prefix)
        pairs: list[tuple[str, str]] = []
        for name in tenants:
            for thread in await self._children(name_prefix(self.prefix, name)):
                if thread and (after is None or thread > after):
                    pairs.append((name, thread))
        pairs.sort(key=lambda p: (p[1], p[0]))
        result: list[tuple[str, str]] = []
        for pair in pairs:
            if len(result) >= limit:
                break
            if await self._has_live(name_prefix(self.prefix, *pair)):
                result.append(pair)
        return result

    async def scan(self, after: RecordId | None = None, *, limit: int = 500) -> list[Record]:
        """Every record in identity order. Slow: lists the whole store for each page."""
        entries = sorted(
            (e for e in await self._list(self.prefix) if after is None or e.record.id > after),
            key=lambda e: e.record.id,
        )[:limit]
        found = await self._with_bodies(entries, lambda r: True)
        return sorted(found, key=lambda r: r.id)

    async def sweep(self, *, now: float | None = None, limit: int = 1000) -> int:
        """Delete expired records, found through the ``cp_expires`` index tag.

        Each candidate is re-read and deleted only if its ETag still matches, so a record
        rewritten with a later expiry since the (eventually consistent) index saw it stays.
        """
        moment = time.time() if now is None else now
        names: list[str] = []
        if self._index_tags:
            expression = f"\"{TAG_EXPIRES}\" <= '{expiry_tag(moment)}'"
            names = [name for name, _ in await self._tagged(expression, limit)]
        else:
            entries = await self._list(self.prefix)
            names = [e.name for e in entries if not is_live(e.record, moment)][:limit]

        def job(name: str) -> Callable[[], Awaitable[bool]]:
            return lambda: delete_expired(self, name, moment)

        return sum(await self._bounded([job(n) for n in names]))

    async def find_by_tags(
        self,
        tenant: str,
        *,
        thread: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[RecordId]:
        """Record ids by tenant, thread, kind and status through the blob index.

        One request per page of matches, without listing the container. The index is
        eventually consistent on Azure: re-read the records (`get`) before acting on them.

        Raises:
            ConfigurationError: the store was built with ``index_tags=False``.
            StoreUnavailableError: the service failed.
        """
        if not self._index_tags:
            raise ConfigurationError("find_by_tags needs index_tags=True")
        terms = [(TAG_TENANT, tenant), (TAG_THREAD, thread), (TAG_KIND, kind),
                 (TAG_STATUS, status)]  # fmt: skip
        expression = " AND ".join(
            f"\"{key}\" = '{tag_value(value)}'" for key, value in terms if value is not None
        )
        return sorted(rid for _, rid in await self._tagged(expression, limit))
