"""Blob names, metadata and index tags of `AzureBlobStore` records (private).

One blob per record, named ``<prefix><tenant>/<thread>/<namespace>/<kind>/<key>``. Each
component is percent-encoded over a small safe alphabet (letters, digits, ``-`` and ``_``;
everything else, ``.`` and ``~`` included, becomes ``%XX`` of its UTF-8 bytes), and the
empty string is written ``~``. So any id works, no segment is empty, ``.`` or ``..``, and
a name never ends with a dot or a slash (which the Blob service mishandles).

The routing fields live in blob metadata (returned by List Blobs with
``include=metadata``, so filters run without downloading bodies); a few of them are also
blob index tags for `find_blobs_by_tags` (hints only: see `AzureBlobStore`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from checkpointers.errors import RecordTooLargeError
from checkpointers.record import Record, RecordId

__all__ = [
    "LAYOUT_VERSION",
    "MAX_BLOB_NAME",
    "MAX_METADATA_BYTES",
    "TAG_EXPIRES",
    "BlobEntry",
    "blob_metadata",
    "blob_name",
    "blob_tags",
    "decode_component",
    "encode_component",
    "entry_from",
    "expiry_tag",
    "name_prefix",
    "parse_name",
    "tag_value",
]

LAYOUT_VERSION = "1"
MAX_BLOB_NAME = 1024
# The service caps the names and values of all metadata of a blob at 8 KiB together.
MAX_METADATA_BYTES = 8 * 1024
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_EMPTY = "~"
_COMPONENT = re.compile(r"^(?:~|(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+)$")
_TAG_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_MAX_TAG_VALUE = 256

# Metadata keys (C# identifiers, lowercase: the service keeps case, Azurite too).
META_LAYOUT = "cp_layout"
META_VERSION = "cp_version"
META_SORT = "cp_sort"
META_GROUP = "cp_group"
META_STATUS = "cp_status"
META_TOKENS = "cp_tokens"
META_EXPIRES = "cp_expires"
META_LEASE = "cp_lease"
META_UPDATED = "cp_updated"
_NONE = "-"

# Index tag keys.
TAG_TENANT = "cp_tenant"
TAG_THREAD = "cp_thread"
TAG_KIND = "cp_kind"
TAG_STATUS = "cp_status"
TAG_EXPIRES = "cp_expires"


def encode_component(value: str) -> str:
    """Percent-encode one id over the safe alphabet; "" becomes "~"."""
    if not value:
        return _EMPTY
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in value.encode("utf-8"))


def decode_component(text: str) -> str | None:
    """Invert `encode_component`; None when `text` is not one of ours."""
    if not _COMPONENT.match(text):
        return None
    if text == _EMPTY:
        return ""
    raw = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            raw.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.append(ord(text[i]))
            i += 1
    try:
        decoded = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Only the canonical encoding is ours (e.g. "%41" for "A" is not).
    return decoded if encode_component(decoded) == text else None


def name_prefix(prefix: str, *components: str) -> str:
    """The blob name prefix of the leading identity components, ending with "/"."""
    return prefix + "".join(encode_component(c) + "/" for c in components)


def blob_name(prefix: str, rid: RecordId) -> str:
    """The blob name of a record.

    Raises:
        RecordTooLargeError: the encoded identity is longer than a blob name may be.
    """
    name = prefix + "/".join(
        encode_component(c) for c in (rid.tenant, rid.thread, rid.namespace, rid.kind, rid.key)
    )
    if len(name) > MAX_BLOB_NAME:
        raise RecordTooLargeError(
            f"{rid.describe()}: identity needs a {len(name)}-character blob name "
            f"(the service allows {MAX_BLOB_NAME})"
        )
    return name


def parse_name(prefix: str, name: str) -> RecordId | None:
    """The record id of a blob name; None for a blob that is not one of ours."""
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix) :].split("/")
    if len(parts) != 5:
        return None
    decoded = [decode_component(p) for p in parts]
    if any(d is None for d in decoded):
        return None
    tenant, thread, namespace, kind, key = (d or "" for d in decoded)
    try:
        return RecordId(tenant, thread, namespace, kind, key)
    except (TypeError, ValueError):
        return None


def _number(value: float | None) -> str:
    return _NONE if value is None else repr(float(value))


def _parse_number(text: str) -> float | None:
    if text == _NONE:
        return None
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def blob_metadata(record: Record, version: int, now: float) -> dict[str, str]:
    """Metadata of a record blob: every routing field, ASCII only.

    Raises:
        RecordTooLargeError: the routing fields exceed the service's 8 KiB metadata cap.
    """
    metadata = {
        META_LAYOUT: LAYOUT_VERSION,
        META_VERSION: str(version),
        META_SORT: encode_component(record.sort),
        META_GROUP: encode_component(record.group),
        META_STATUS: encode_component(record.status),
        META_TOKENS: ".".join(sorted(record.tokens)) or _NONE,
        META_EXPIRES: _number(record.expires_at),
        META_LEASE: _number(record.lease_until),
        META_UPDATED: _number(now),
    }
    size = sum(len(k) + len(v) for k, v in metadata.items())
    if size > MAX_METADATA_BYTES:
        raise RecordTooLargeError(
            f"{record.id.describe()}: routing fields need {size} bytes of blob metadata "
            f"(the service allows {MAX_METADATA_BYTES}); {len(record.tokens)} index tokens"
        )
    return metadata


def tag_value(value: str) -> str:
    """An index tag value for `value` (letters and digits; others as _XX; long ones hashed)."""
    encoded = "".join(chr(b) if b in _TAG_SAFE else f"_{b:02X}" for b in value.encode("utf-8"))
    if len(encoded) <= _MAX_TAG_VALUE:
        return encoded
    # "=" never appears in the encoding above, so hashed values cannot collide with it.
    return "=" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def expiry_tag(moment: float) -> str:
    """Milliseconds since the epoch, zero-padded so that tag order is time order."""
    return f"{max(0, math.floor(moment * 1000)):016d}"


def blob_tags(record: Record) -> dict[str, str]:
    """Index tags of a record blob (at most 10 are allowed; we write 4 or 5)."""
    rid = record.id
    tags = {
        TAG_TENANT: tag_value(rid.tenant),
        TAG_THREAD: tag_value(rid.thread),
        TAG_KIND: tag_value(rid.kind),
        TAG_STATUS: tag_value(record.status),
    }
    if record.expires_at is not None:
        tags[TAG_EXPIRES] = expiry_tag(record.expires_at)
    return tags


@dataclass(frozen=True, slots=True)
class BlobEntry:
    """A record as listed: routing fields from metadata, the ETag, no body yet."""

    name: str
    etag: str
    record: Record


def entry_from(
    prefix: str, name: str, etag: str, metadata: Mapping[str, str] | None, body: bytes = b""
) -> BlobEntry | None:
    """Rebuild a record from a blob's name and metadata; None when the blob is not ours."""
    rid = parse_name(prefix, name)
    if rid is None or not metadata or metadata.get(META_LAYOUT) != LAYOUT_VERSION:
        return None
    try:
        tokens_text = metadata[META_TOKENS]
        fields = [decode_component(metadata[k]) for k in (META_SORT, META_GROUP, META_STATUS)]
        if any(f is None for f in fields):
            return None
        sort, group, status = (f or "" for f in fields)
        record = Record(
            id=rid,
            body=body,
            sort=sort,
            group=group,
            status=status,
            tokens=frozenset() if tokens_text == _NONE else frozenset(tokens_text.split(".")),
            expires_at=_parse_number(metadata[META_EXPIRES]),
            lease_until=_parse_number(metadata[META_LEASE]),
            version=int(metadata[META_VERSION]),
            updated_at=_parse_number(metadata[META_UPDATED]) or 0.0,
        )
    except (KeyError, TypeError, ValueError):
        return None
    return BlobEntry(name, etag, record)
