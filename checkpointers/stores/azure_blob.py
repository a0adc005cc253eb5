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

import asyncio
import contextlib
import os
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import BlobPrefix, ContainerClient

from checkpointers.errors import (
    CheckpointersError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    StoreUnavailableError,
)
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.stores._azure_blob_layout import (
    TAG_EXPIRES,
    TAG_KIND,
    TAG_STATUS,
    TAG_TENANT,
    TAG_THREAD,
    BlobEntry,
    blob_metadata,
    blob_name,
    blob_tags,
    decode_component,
    entry_from,
    expiry_tag,
    name_prefix,
    parse_name,
    tag_value,
)
from checkpointers.stores.base import Store
from checkpointers.urls import parse_bool, parse_positive_int

if TYPE_CHECKING:
    from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
    from azure.core.credentials_async import AsyncTokenCredential

    Credential = AsyncTokenCredential | AzureSasCredential | AzureNamedKeyCredential

__all__ = ["CONNECTION_STRING_ENV", "AzureBlobStore"]

T = TypeVar("T")

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
DEFAULT_MAX_CONCURRENCY = 16
_MAX_ATTEMPTS = 50
# After this many lost races the listing is stale: list again rather than keep trying.
_CLAIM_TRIES_PER_LISTING = 4
_PREFIX = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_\-./]{0,199}$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$")
# Refusals by the service that retrying cannot fix: the blob is protected.
_PROTECTED = frozenset({
    "BlobImmutableDueToPolicy",
    "BlobImmutableDueToLegalHold",
    "LeaseIdMissing",
    "LeaseIdMismatchWithBlobOperation",
})  # fmt: skip


def parse_prefix(value: str) -> str:
    """A blob name prefix: letters, digits, ``_ - . /``; no ``..``, not starting with ``/``."""
    if not _PREFIX.match(value) or ".." in value or "//" in value:
        raise ConfigurationError(
            "expected 1-200 characters: letters, digits, _ - . / (no leading /, no ..)"
        )
    return value


def _default_credential() -> AsyncTokenCredential:
    """The credential used for https:// URLs when the caller passes none (created lazily)."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


class _Lost(Exception):
    """A conditional request lost its race (412 ConditionNotMet or 409 BlobAlreadyExists)."""


def _error_code(exc: HttpResponseError) -> str:
    # Set by azure-storage from the x-ms-error-code header (a StorageErrorCode or a str).
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _is_lost_race(exc: HttpResponseError) -> bool:
    code = _error_code(exc)
    return (exc.status_code == 412 and code in ("ConditionNotMet", "")) or (
        exc.status_code == 409 and code == "BlobAlreadyExists"
    )


def _is_absent(exc: HttpResponseError) -> bool:
    return exc.status_code == 404 and _error_code(exc) in ("BlobNotFound", "")


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _live(record: Record, now: float) -> bool:
    return record.expires_at is None or record.expires_at > now


def _order(record: Record) -> tuple[str, RecordId]:
    return (record.sort, record.id)


class AzureBlobStore(Store):
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
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "azblob":
            container = parts.netloc
            if parts.path not in ("", "/"):
                raise ConfigurationError("azblob URLs look like azblob://<container>")
            if credential is not None:
                raise ConfigurationError(
                    "azblob:// takes its account and key from the connection string; "
                    "use an https:// URL with credential="
                )
            _check_container(container)
            conn_str = os.environ.get(CONNECTION_STRING_ENV, "").strip()
            if not conn_str:
                raise ConfigurationError(
                    f"azblob:// needs the {CONNECTION_STRING_ENV} environment variable"
                )
            try:
                client = ContainerClient.from_connection_string(conn_str, container, **options)
            except ValueError:
                raise ConfigurationError(f"{CONNECTION_STRING_ENV} is malformed") from None
            store = cls(client, **store_kwargs)
        elif scheme == "https":
            host = (parts.hostname or "").lower()
            labels = host.split(".")
            container = parts.path.strip("/")
            if len(labels) < 3 or labels[1] != "blob" or not labels[0]:
                raise ConfigurationError(
                    "https store URLs look like https://<account>.blob.core.windows.net/<container>"
                )
            _check_container(container)
            account_url = f"https://{parts.netloc}"
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

    # -- error translation --------------------------------------------------------------

    @contextlib.contextmanager
    def _boundary(self, what: str, *, write: bool) -> Iterator[None]:
        """Translate Azure SDK errors into checkpointers errors (by status and code)."""
        try:
            yield
        except (CheckpointersError, _Lost):
            raise
        except HttpResponseError as exc:
            code = _error_code(exc)
            if code in _PROTECTED:
                raise ConflictError(
                    f"azure blob container {self.container_name!r}: {what} refused: the blob "
                    f"is protected ({getattr(exc, 'status_code', None)} {code}: immutability "
                    "policy, legal hold or lease)"
                ) from exc
            status: int | None = getattr(exc, "status_code", None)
            # No status: raised before a response (e.g. by the credential): not applied.
            may = write and status is not None and (status >= 500 or status == 408)
            raise StoreUnavailableError(
                f"azure blob container {self.container_name!r}: {what} failed "
                f"({status} {code or type(exc).__name__})",
                may_have_applied=may,
            ) from exc
        except AzureError as exc:
            # Not sent (connection refused, DNS, credential): nothing applied. Sent without
            # an answer (timeout, reset): a write may have been applied.
            sent = isinstance(exc, ServiceResponseError) and not isinstance(
                exc, ServiceRequestError
            )
            raise StoreUnavailableError(
                f"azure blob container {self.container_name!r}: {what} failed "
                f"({type(exc).__name__})",
                may_have_applied=write and sent,
            ) from exc

    # -- blob primitives ----------------------------------------------------------------

    async def _head(self, name: str) -> tuple[str, dict[str, str]] | None:
        blob = self._container().get_blob_client(name)
        with self._boundary("read", write=False):
            try:
                props = await blob.get_blob_properties()
            except HttpResponseError as exc:
                if _is_absent(exc):
                    return None
                raise
        return _quoted(props.etag), dict(props.metadata or {})

    async def _download(
        self, name: str, etag: str | None = None
    ) -> tuple[str, dict[str, str], bytes] | None:
        """The blob's ETag, metadata and content; None when absent or (with etag) changed."""
        blob = self._container().get_blob_client(name)
        condition: dict[str, Any] = {}
        if etag is not None:
            condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        with self._boundary("read", write=False):
            try:
                stream = await blob.download_blob(**condition)
                body = await stream.readall()
            except HttpResponseError as exc:
                if _is_absent(exc) or (etag is not None and _is_lost_race(exc)):
                    return None
                raise
        props = stream.properties
        return _quoted(props.etag), dict(props.metadata or {}), body

    async def _upload(self, name: str, record: Record, version: int, now: float,
                      etag: str | None, *, force: bool = False) -> None:  # fmt: skip
        """Write a record blob: create only (etag None), replace only that ETag, or (force)
        replace whatever is there.

        Raises:
            _Lost: the condition failed.
        """
        blob = self._container().get_blob_client(name)
        condition: dict[str, Any] = {"overwrite": force}
        if etag is not None:
            condition = {
                "overwrite": True,
                "etag": etag,
                "match_condition": MatchConditions.IfNotModified,
            }
        tags = blob_tags(record) if self._index_tags else None
        with self._boundary("write", write=True):
            try:
                await blob.upload_blob(
                    record.body,
                    metadata=blob_metadata(record, version, now),
                    tags=tags,
                    **condition,
                )
            except HttpResponseError as exc:
                if _is_lost_race(exc):
                    raise _Lost from exc
                raise

    async def _delete_blob(self, name: str, etag: str | None = None) -> bool:
        """Delete a blob (only that ETag, if given); False when it was absent.

        Raises:
            _Lost: the ETag no longer matched.
        """
        blob = self._container().get_blob_client(name)
        condition: dict[str, Any] = {}
        if etag is not None:
            condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        with self._boundary("delete", write=True):
            try:
                await blob.delete_blob(**condition)
            except HttpResponseError as exc:
                if _is_absent(exc):
                    return False
                if etag is not None and _is_lost_race(exc):
                    raise _Lost from exc
                raise
        return True

    async def _list(self, prefix: str) -> list[BlobEntry]:
        """Every record blob under `prefix`, with routing fields and ETag (no bodies)."""
        entries: list[BlobEntry] = []
        with self._boundary("list", write=False):
            async for item in self._container().list_blobs(
                name_starts_with=prefix, include=["metadata"]
            ):
                entry = entry_from(self.prefix, item.name, _quoted(item.etag), item.metadata)
                if entry is not None:
                    entries.append(entry)
        return entries

    async def _children(self, prefix: str) -> list[str]:
        """The decoded next path component of every blob under `prefix`."""
        found: list[str] = []
        with self._boundary("list", write=False):
            async for item in self._container().walk_blobs(name_starts_with=prefix):
                if isinstance(item, BlobPrefix):
                    value = decode_component(item.name[len(prefix) :].rstrip("/"))
                    if value is not None:
                        found.append(value)
        return found

    async def _bounded(self, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        """Run jobs, `max_concurrency` at a time; raise the first error after all finish."""
        gate = asyncio.Semaphore(self._max_concurrency)

        async def run(job: Callable[[], Awaitable[T]]) -> T:
            async with gate:
                return await job()

        results = await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return [r for r in results if not isinstance(r, BaseException)]

    async def _with_bodies(
        self, entries: Sequence[BlobEntry], keep: Callable[[Record], bool]
    ) -> list[Record]:
        """Download the bodies of listed records, dropping those gone or no longer kept."""

        def job(entry: BlobEntry) -> Callable[[], Awaitable[Record | None]]:
            async def fetch() -> Record | None:
                got = await self._download(entry.name)
                if got is None:
                    return None
                etag, metadata, body = got
                fresh = entry_from(self.prefix, entry.name, etag, metadata, body)
                return fresh.record if fresh is not None and keep(fresh.record) else None

            return fetch

        fetched = await self._bounded([job(e) for e in entries])
        return [r for r in fetched if r is not None]

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
        return entry.record if _live(entry.record, time.time()) else None

    async def _write(
        self, record: Record, expected_version: int | None, *, if_absent: bool = False
    ) -> int | None:
        """Read-modify-write of one blob; None when `if_absent` found a live record."""
        name = blob_name(self.prefix, record.id)
        blob_metadata(record, 1, 0.0)  # refuse oversized routing fields before any I/O
        for _ in range(_MAX_ATTEMPTS):
            head = await self._head(name)
            now = time.time()
            stored = live = 0
            etag = None
            if head is not None:
                etag, metadata = head
                entry = entry_from(self.prefix, name, etag, metadata)
                if entry is not None:
                    stored = entry.record.version
                    live = stored if _live(entry.record, now) else 0
            if if_absent and live:
                return None
            if expected_version is not None and expected_version != live:
                raise ConflictError(
                    f"{record.id.describe()}: version is {live}, expected {expected_version}"
                )
            try:
                await self._upload(name, record, stored + 1, now, etag)
            except _Lost:
                if expected_version is not None:
                    raise ConflictError(
                        f"{record.id.describe()}: changed concurrently "
                        f"(expected version {expected_version})"
                    ) from None
                continue
            return stored + 1
        raise ConflictError(f"{record.id.describe()}: gave up after {_MAX_ATTEMPTS} racing writes")

    async def put(self, record: Record, *, expected_version: int | None = None) -> int:
        version = await self._write(record, expected_version)
        if version is None:  # pragma: no cover - only if_absent returns None
            raise RuntimeError("unreachable")
        return version

    async def put_many(self, records: Sequence[Record], *, if_absent: bool = False) -> None:
        """Write many records, concurrently. Not atomic (Blob Storage has no transaction).

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

        def job(record: Record) -> Callable[[], Awaitable[int | None]]:
            return lambda: self._write(record, None, if_absent=if_absent)

        try:
            await self._bounded([job(r) for r in records])
        except StoreUnavailableError as exc:
            raise StoreUnavailableError(
                f"azure blob container {self.container_name!r}: put_many of {len(records)} "
                "records failed part way; some may have been written",
                may_have_applied=True,
            ) from exc

    async def replicate(self, records: Sequence[Record]) -> None:
        """Write records exactly as given (version and update time kept), replacing blobs.

        Like `put_many`, not atomic: on failure some records may have been written.

        Raises:
            StoreUnavailableError: a write failed (`may_have_applied` is True).
            ConflictError: a blob is protected (immutability, legal hold, lease).
        """
        names = [blob_name(self.prefix, r.id) for r in records]
        for record in records:
            blob_metadata(record, record.version, record.updated_at)

        def job(name: str, record: Record) -> Callable[[], Awaitable[None]]:
            return lambda: self._upload(
                name, record, record.version, record.updated_at, None, force=True
            )

        try:
            await self._bounded([job(n, r) for n, r in zip(names, records, strict=True)])
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
        entries.sort(key=lambda e: _order(e.record), reverse=query.descending)
        if query.limit is not None:
            entries = entries[: query.limit]
        found = await self._with_bodies(entries, lambda r: query.matches(r, time.time()))
        return sorted(found, key=_order, reverse=query.descending)

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
        prefix = name_prefix(self.prefix, claim.tenant, claim.thread)
        losses = 0
        for _ in range(_MAX_ATTEMPTS):
            now = time.time()
            candidates = sorted(
                (e for e in await self._list(prefix) if claim.claimable(e.record, now)),
                key=lambda e: _order(e.record),
            )
            if not candidates:
                return None
            tries = 0
            while candidates and tries < _CLAIM_TRIES_PER_LISTING:
                tries += 1
                # The first try is the oldest record. A lost race proves contention: then
                # pick among a window that doubles with each loss, so that many claimers
                # spread over the queue instead of all racing for the same next record.
                window = min(len(candidates), 1 << min(losses, 16))
                candidate = candidates.pop(random.randrange(window))  # noqa: S311
                now = time.time()
                version = candidate.record.version + 1
                claimed = replace(
                    candidate.record,
                    status=claim.to_status,
                    lease_until=claim.lease_until,
                    version=version,
                    updated_at=now,
                )
                etag = await self._set_metadata(candidate.name, claimed, now, candidate.etag)
                if etag is None:
                    losses += 1  # changed or deleted since the listing: someone else took it
                    continue
                return await self._claimed(candidate.name, claimed, etag)
        raise ConflictError(
            f"claim on thread {claim.thread!r}: gave up after {_MAX_ATTEMPTS} contended rounds"
        )

    async def _set_metadata(self, name: str, record: Record, now: float, etag: str) -> str | None:
        """Replace a blob's routing fields if its ETag still matches; the new ETag, or None."""
        blob = self._container().get_blob_client(name)
        with self._boundary("claim", write=True):
            try:
                result = await blob.set_blob_metadata(
                    blob_metadata(record, record.version, now),
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except HttpResponseError as exc:
                if _is_absent(exc) or _is_lost_race(exc):
                    return None
                raise
        return _quoted(str(result["etag"]))

    async def _claimed(self, name: str, claimed: Record, etag: str) -> Record:
        """After a won claim: refresh the index tags, then fetch the body."""
        blob = self._container().get_blob_client(name)
        if self._index_tags:
            with self._boundary("claim", write=True):
                try:
                    # Guarded by the new ETag: a later writer set its own tags atomically.
                    await blob.set_blob_tags(
                        blob_tags(claimed), etag=etag, match_condition=MatchConditions.IfNotModified
                    )
                except HttpResponseError as exc:
                    if not (_is_absent(exc) or _is_lost_race(exc)):
                        raise
        got = await self._download(name, etag)
        if got is not None:
            return replace(claimed, body=got[2])
        # Rewritten or deleted right after the claim: return what is there now, if anything.
        latest = await self._download(name)
        if latest is not None:
            entry = entry_from(self.prefix, name, *latest)
            if entry is not None:
                return entry.record
        return claimed

    async def delete(self, record_ids: Sequence[RecordId]) -> int:
        """Delete records (two requests each: a read for the ETag, a conditional delete).

        Raises:
            ConflictError: a blob is protected (immutability policy, legal hold, lease);
                the other records are deleted.
        """

        def job(rid: RecordId) -> Callable[[], Awaitable[int]]:
            async def remove() -> int:
                name = blob_name(self.prefix, rid)
                for _ in range(_MAX_ATTEMPTS):
                    head = await self._head(name)
                    if head is None:
                        return 0
                    etag, metadata = head
                    entry = entry_from(self.prefix, name, etag, metadata)
                    live = entry is not None and _live(entry.record, time.time())
                    try:
                        return int(await self._delete_blob(name, etag) and live)
                    except _Lost:
                        continue
                raise ConflictError(f"{rid.describe()}: changed concurrently during delete")

            return remove

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

    async def _has_live(self, prefix: str) -> bool:
        now = time.time()
        with self._boundary("list", write=False):
            async for item in self._container().list_blobs(
                name_starts_with=prefix, include=["metadata"]
            ):
                entry = entry_from(self.prefix, item.name, item.etag, item.metadata)
                if entry is not None and _live(entry.record, now):
                    return True
        return False

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
            with self._boundary("find_blobs_by_tags", write=False):
                async for found in self._container().find_blobs_by_tags(expression):
                    if parse_name(self.prefix, found.name) is not None:
                        names.append(found.name)
                        if len(names) >= limit:
                            break
        else:
            entries = await self._list(self.prefix)
            names = [e.name for e in entries if not _live(e.record, moment)][:limit]

        def job(name: str) -> Callable[[], Awaitable[bool]]:
            async def remove() -> bool:
                head = await self._head(name)
                if head is None:
                    return False
                etag, metadata = head
                entry = entry_from(self.prefix, name, etag, metadata)
                if entry is None or _live(entry.record, moment):
                    return False
                try:
                    return await self._delete_blob(name, etag)
                except _Lost:
                    return False

            return remove

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
        ids: list[RecordId] = []
        with self._boundary("find_blobs_by_tags", write=False):
            async for found in self._container().find_blobs_by_tags(expression):
                rid = parse_name(self.prefix, found.name)
                if rid is not None:
                    ids.append(rid)
                    if len(ids) >= limit:
                        break
        return sorted(ids)


def _check_container(name: str) -> None:
    if not _CONTAINER.match(name):
        raise ConfigurationError(
            "container names are 3-63 characters: lowercase letters, digits and single hyphens"
        )
