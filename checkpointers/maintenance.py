"""Maintenance over every record of a store: key rotation, key usage, verification.

These walk the store with `Store.scan` (identity order), so each can resume from the
last record it reported.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace

from checkpointers.crypto.keyring import KeyRing
from checkpointers.errors import (
    ConfigurationError,
    ConflictError,
    IntegrityError,
    KeyUnavailableError,
)
from checkpointers.observability import log_event, record_decrypt_failure
from checkpointers.record import Record, RecordId
from checkpointers.stores.base import Store

__all__ = [
    "RotationReport",
    "VerifyFailure",
    "iter_records",
    "key_usage",
    "retire_key",
    "rotate_keys",
    "verify_records",
]

Progress = Callable[[RecordId], None]


async def iter_records(
    store: Store, *, after: RecordId | None = None, page: int = 500
) -> AsyncIterator[Record]:
    """Every record of `store` in identity order, starting after `after`."""
    cursor = after
    while True:
        batch = await store.scan(cursor, limit=page)
        if not batch:
            return
        for record in batch:
            yield record
        cursor = batch[-1].id


@dataclass(slots=True)
class RotationReport:
    """What `rotate_keys` did: records re-wrapped, already current, gone (expired or
    deleted while rotating, so nothing to re-wrap), and the last id seen."""

    rewrapped: int = 0
    current: int = 0
    last: RecordId | None = None
    gone: int = 0


async def rotate_keys(
    store: Store,
    keys: KeyRing,
    *,
    after: RecordId | None = None,
    progress: Progress | None = None,
) -> RotationReport:
    """Re-wrap every record's data key under the current KEK; ciphertext is unchanged.

    Each header is rewritten with compare-and-set: a record changed meanwhile is re-read
    (a fresh write already uses the current key). Resume with `after=report.last`.

    Raises:
        KeyUnavailableError: a record's key is not in the ring (add it, then resume).
        IntegrityError: a record's header is malformed.
    """
    report = RotationReport()
    async for record in iter_records(store, after=after):
        await _rotate_one(store, keys, record, report)
        report.last = record.id
        if progress is not None:
            progress(record.id)
    log_event(
        "checkpointers.rotate",
        store=type(store).__name__,
        key_id=keys.current_key_id,
        rewrapped=report.rewrapped,
        current=report.current,
        gone=report.gone,
    )
    return report


async def _rotate_one(store: Store, keys: KeyRing, record: Record, report: RotationReport) -> None:
    current: Record | None = record
    while current is not None:
        body = await keys.rewrap(current.body, record=current.id.describe())
        if body is None:
            report.current += 1
            return
        try:
            await store.put(replace(current, body=body), expected_version=current.version)
        except ConflictError:
            current = await store.get(record.id)
            continue
        report.rewrapped += 1
        return
    report.gone += 1


async def key_usage(store: Store, keys: KeyRing, *, now: float | None = None) -> Counter[str]:
    """How many live records each KEK id wraps (unknown ids included), from headers only.

    Expired records are left out: no reader can see them (the sweeper deletes them) and
    `rotate_keys` cannot rewrite them, so they must not block retiring a key.
    """
    moment = time.time() if now is None else now
    usage: Counter[str] = Counter()
    async for record in iter_records(store):
        if record.expires_at is not None and record.expires_at <= moment:
            continue
        usage[keys.key_id_of(record.body, record=record.id.describe())] += 1
    return usage


async def retire_key(store: Store, keys: KeyRing, key_id: str) -> None:
    """Remove `key_id` from `keys`, refusing while any record still uses it.

    Raises:
        ConfigurationError: records still use the key, or it is current or unknown.
    """
    in_use = (await key_usage(store, keys)).get(key_id, 0)
    if in_use:
        raise ConfigurationError(f"key {key_id!r} still wraps {in_use} record(s): rotate first")
    keys.retire(key_id)


@dataclass(frozen=True, slots=True)
class VerifyFailure:
    """A record that failed to decrypt: its identity and the exception class name."""

    record: RecordId
    error: str
    message: str


async def verify_records(
    store: Store,
    keys: KeyRing,
    *,
    sample_every: int = 1,
    progress: Progress | None = None,
) -> tuple[int, list[VerifyFailure]]:
    """Decrypt-check every record (or every `sample_every`-th); returns (checked, failures).

    Plaintext is discarded at once; failures carry routing ids and the error only.
    """
    checked = 0
    failures: list[VerifyFailure] = []
    index = 0
    async for record in iter_records(store):
        index += 1
        if (index - 1) % sample_every:
            continue
        checked += 1
        try:
            await keys.decrypt(record.body, record.id.aad(), record=record.id.describe())
        except (IntegrityError, KeyUnavailableError) as exc:
            record_decrypt_failure(exc)
            failures.append(VerifyFailure(record.id, type(exc).__name__, str(exc)))
        if progress is not None:
            progress(record.id)
    log_event(
        "checkpointers.verify",
        store=type(store).__name__,
        checked=checked,
        failures=len(failures),
    )
    return checked, failures
