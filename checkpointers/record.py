"""The record model: what a store holds.

A store keeps opaque encrypted bodies addressed by a `RecordId`, next to a few clear
routing fields (sort key, group, status, expiry, lease, row version, blind-index tokens).
Stores never see plaintext; the `EncryptedStore` turns plaintext into records and back.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

from checkpointers.errors import IntegrityError

__all__ = ["INDEX_KEY_KIND", "Claim", "Query", "Record", "RecordId", "malformed_row"]

#: The record kind of a tenant's blind-index key (written by `EncryptedStore`). Its
#: plaintext is key material: tools that print decrypted values must withhold it.
INDEX_KEY_KIND = "__index_key__"

_TOKEN = re.compile(r"^[0-9a-f]{16,64}$")
_MAX_FIELD = 1024


def _check_field(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"record field {name} must be str, not {type(value).__name__}")
    if len(value) > _MAX_FIELD or "\x00" in value:
        raise ValueError(f"record field {name} is longer than {_MAX_FIELD} or holds NUL")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)


@contextmanager
def malformed_row(store: str) -> Iterator[None]:
    """Turn a stored row whose routing fields do not decode into `IntegrityError`.

    A row that cannot be read back as a `Record` was altered outside this package: it is
    refused like a tampered body, never passed on half-decoded.
    """
    try:
        yield
    except (TypeError, ValueError, OverflowError, UnicodeDecodeError, AttributeError):
        raise IntegrityError(f"{store}: a stored row is malformed (tampered?)") from None


@dataclass(frozen=True, slots=True, order=True)
class RecordId:
    """Identity of one record: `(tenant, thread, namespace, kind, key)`.

    `thread` is a LangGraph thread id or a pydantic-graph run id; `namespace` is the
    checkpoint namespace ("" for the root graph); `kind` names the record type; `key` is
    unique within the rest.
    """

    tenant: str
    thread: str
    namespace: str
    kind: str
    key: str
    # The encoded identity, computed on first use (every encrypt and decrypt needs it).
    _aad: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("tenant", "thread", "namespace", "kind", "key"):
            _check_field(name, getattr(self, name))

    def aad(self) -> bytes:
        """Length-prefixed encoding of the identity, bound into the ciphertext."""
        aad = self._aad
        if aad is None:
            parts = [
                p.encode() for p in (self.tenant, self.thread, self.namespace, self.kind, self.key)
            ]
            aad = b"".join(struct.pack(">I", len(p)) + p for p in parts)
            object.__setattr__(self, "_aad", aad)
        return aad

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """A printable name of the record (routing ids only) for error messages."""
        return (
            f"record(tenant={self.tenant!r}, thread={self.thread!r}, "
            f"namespace={self.namespace!r}, kind={self.kind!r}, key={self.key!r})"
        )


@dataclass(frozen=True, slots=True)
class Record:
    """An encrypted record with its clear routing fields.

    Attributes:
        id: the identity.
        body: the envelope (ciphertext); never plaintext.
        sort: ordering key within a thread and kind (a checkpoint id, a padded sequence).
        group: a secondary key to select related records (the checkpoint of a write).
        status: a small state machine value ("created", "pending", ...), or "".
        tokens: blind-index tokens (lowercase hex) matched by `Query.tokens`.
        expires_at: epoch seconds after which the record is gone, or None.
        lease_until: epoch seconds until which a claim holds, or None.
        version: row version, 1 on insert, +1 on every write; 0 means not stored yet.
        updated_at: epoch seconds of the last write (set by the store).
    """

    id: RecordId
    body: bytes = field(repr=False)
    sort: str = ""
    group: str = ""
    status: str = ""
    tokens: frozenset[str] = frozenset()
    expires_at: float | None = None
    lease_until: float | None = None
    version: int = 0
    updated_at: float = 0.0

    def stored_as(self, version: int, updated_at: float) -> Record:
        """This record with the row version and write time a store gave it.

        A store's hot path: unlike `dataclasses.replace`, the other fields are not
        validated again (they were when this record was built).
        """
        copy = object.__new__(Record)
        for name in _RECORD_FIELDS:
            object.__setattr__(copy, name, getattr(self, name))
        object.__setattr__(copy, "version", version)
        object.__setattr__(copy, "updated_at", updated_at)
        return copy

    def __post_init__(self) -> None:
        if not isinstance(self.body, bytes):
            raise TypeError("record body must be bytes")
        for name in ("sort", "group", "status"):
            _check_field(name, getattr(self, name))
        for token in self.tokens:
            if not isinstance(token, str) or not _TOKEN.match(token):
                raise ValueError("blind-index tokens must be 16 to 64 lowercase hex digits")
        if not _is_int(self.version) or self.version < 0:
            raise TypeError("record version must be an int >= 0")
        for name in ("expires_at", "lease_until", "updated_at"):
            value = getattr(self, name)
            if not (value is None and name != "updated_at") and not _is_number(value):
                raise TypeError(f"record field {name} must be a number")


_RECORD_FIELDS = tuple(f.name for f in fields(Record))


@dataclass(frozen=True, slots=True)
class Query:
    """A selection of records on routing fields; results ordered by `sort`.

    `tenant=None` or `kind=None` select every tenant or kind (for operations tools).
    `tokens` must all be present on a record. `before`/`after` compare with `sort`
    (strictly). Ties on `sort` are ordered by the rest of the identity.
    """

    tenant: str | None
    kind: str | None = None
    thread: str | None = None
    namespace: str | None = None
    group: str | None = None
    statuses: Collection[str] | None = None
    tokens: Collection[str] = ()
    before: str | None = None
    after: str | None = None
    limit: int | None = None
    descending: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise ValueError("limit must be >= 0")

    def matches(self, record: Record, now: float) -> bool:
        """Whether `record` is selected (reference semantics for every store)."""
        rid = record.id
        return (
            (self.tenant is None or rid.tenant == self.tenant)
            and (self.kind is None or rid.kind == self.kind)
            and (self.thread is None or rid.thread == self.thread)
            and (self.namespace is None or rid.namespace == self.namespace)
            and (self.group is None or record.group == self.group)
            and (self.statuses is None or record.status in self.statuses)
            and all(t in record.tokens for t in self.tokens)
            and (self.before is None or record.sort < self.before)
            and (self.after is None or record.sort > self.after)
            and (record.expires_at is None or record.expires_at > now)
        )


@dataclass(frozen=True, slots=True)
class Claim:
    """An atomic claim: take the oldest record (by `sort`) of one thread and kind.

    A record is claimable when its status is in `statuses`, or, with `reclaim_expired`,
    when it holds a lease that ended before now. The claimed record gets `to_status`,
    `lease_until` and a new row version. `at` is the time (epoch seconds) leases and
    expiry are judged at: the caller's clock, the one its leases are written in (None:
    the store's clock).
    """

    tenant: str
    thread: str
    kind: str
    statuses: tuple[str, ...]
    to_status: str
    lease_until: float | None = None
    reclaim_expired: bool = False
    at: float | None = None

    def now(self) -> float:
        """The time this claim is judged at: `at`, else the store's clock."""
        return time.time() if self.at is None else self.at

    def claimable(self, record: Record, now: float) -> bool:
        """Whether `record` can be claimed now (reference semantics for every store)."""
        rid = record.id
        if (rid.tenant, rid.thread, rid.kind) != (self.tenant, self.thread, self.kind):
            return False
        if record.expires_at is not None and record.expires_at <= now:
            return False
        if record.status in self.statuses:
            return True
        return self.reclaim_expired and record.lease_until is not None and record.lease_until < now
