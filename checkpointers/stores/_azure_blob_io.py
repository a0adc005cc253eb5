"""Blob primitives of `AzureBlobStore`: one request each, inside the error boundary (private).

`BlobPrimitives` is a mixin over the store's container client: conditional reads and
writes with ETags (`If-Match` / `If-None-Match: *`), listings by name prefix, index-tag
queries, and a bounded fan-out for multi-blob operations. Each method says what it
returns when the blob is absent or a condition fails; a lost race raises `Lost` only
where the caller decides what to do next. The record-level protocol (versions, claims,
retries) lives in the store and `_azure_blob_etags`; `is_live` and `sort_order` are the
record helpers they share.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.storage.blob.aio import BlobPrefix, ContainerClient

from checkpointers.record import Record, RecordId
from checkpointers.stores._azure_blob_errors import Lost, boundary, is_absent, is_lost_race
from checkpointers.stores._azure_blob_layout import (
    BlobEntry,
    blob_metadata,
    blob_tags,
    decode_component,
    entry_from,
    parse_name,
)

__all__ = ["BlobPrimitives", "is_live", "sort_order"]

T = TypeVar("T")


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def is_live(record: Record, now: float) -> bool:
    return record.expires_at is None or record.expires_at > now


def sort_order(record: Record) -> tuple[str, RecordId]:
    return (record.sort, record.id)


class BlobPrimitives:
    """Requests on the blobs of one container; mixed into `AzureBlobStore`."""

    container_name: str
    prefix: str
    _index_tags: bool
    _max_concurrency: int

    def _container(self) -> ContainerClient:
        raise NotImplementedError

    def _boundary(self, what: str, *, write: bool) -> contextlib.AbstractContextManager[None]:
        """Translate Azure SDK errors into checkpointers errors (by status and code)."""
        return boundary(self.container_name, what, write=write)

    async def _head(self, name: str) -> tuple[str, dict[str, str]] | None:
        blob = self._container().get_blob_client(name)
        with self._boundary("read", write=False):
            try:
                props = await blob.get_blob_properties()
            except HttpResponseError as exc:
                if is_absent(exc):
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
                if is_absent(exc) or (etag is not None and is_lost_race(exc)):
                    return None
                raise
        props = stream.properties
        return _quoted(props.etag), dict(props.metadata or {}), body

    async def _upload(self, name: str, record: Record, version: int, now: float,
                      etag: str | None, *, force: bool = False) -> None:  # fmt: skip
        """Write a record blob: create only (etag None), replace only that ETag, or (force)
        replace whatever is there.

        Raises:
            Lost: the condition failed.
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
                if is_lost_race(exc):
                    raise Lost from exc
                raise

    async def _delete_blob(self, name: str, etag: str | None = None) -> bool:
        """Delete a blob (only that ETag, if given); False when it was absent.

        Raises:
            Lost: the ETag no longer matched.
        """
        blob = self._container().get_blob_client(name)
        condition: dict[str, Any] = {}
        if etag is not None:
            condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        with self._boundary("delete", write=True):
            try:
                await blob.delete_blob(**condition)
            except HttpResponseError as exc:
                if is_absent(exc):
                    return False
                if etag is not None and is_lost_race(exc):
                    raise Lost from exc
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
                if is_absent(exc) or is_lost_race(exc):
                    return None
                raise
        return _quoted(str(result["etag"]))

    async def _set_tags(self, name: str, record: Record, etag: str) -> None:
        """Replace a blob's index tags if its ETag still matches; nothing if it changed."""
        blob = self._container().get_blob_client(name)
        with self._boundary("claim", write=True):
            try:
                # Guarded by the new ETag: a later writer set its own tags atomically.
                await blob.set_blob_tags(
                    blob_tags(record), etag=etag, match_condition=MatchConditions.IfNotModified
                )
            except HttpResponseError as exc:
                if not (is_absent(exc) or is_lost_race(exc)):
                    raise

    async def _tagged(self, expression: str, limit: int) -> list[tuple[str, RecordId]]:
        """Names and ids of the record blobs the index matches, up to `limit`."""
        found: list[tuple[str, RecordId]] = []
        with self._boundary("find_blobs_by_tags", write=False):
            async for blob in self._container().find_blobs_by_tags(expression):
                rid = parse_name(self.prefix, blob.name)
                if rid is not None:
                    found.append((blob.name, rid))
                    if len(found) >= limit:
                        break
        return found

    async def _has_live(self, prefix: str) -> bool:
        """Whether any record blob under `prefix` is live now."""
        now = time.time()
        with self._boundary("list", write=False):
            async for item in self._container().list_blobs(
                name_starts_with=prefix, include=["metadata"]
            ):
                entry = entry_from(self.prefix, item.name, item.etag, item.metadata)
                if entry is not None and is_live(entry.record, now):
                    return True
        return False

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
