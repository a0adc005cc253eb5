"""Records to script arguments and script replies to records, for `RedisStore` (private).

A record travels to the WRITE script as its fields in a fixed order (`encode_record`),
a query to the FIND script as its filters (`encode_query`); a record comes back from the
GET, FIND and CLAIM scripts as one row: 11 NUL-joined routing fields, then the body
(`decode_row`). Numbers travel as ``repr(float)``, an absent one as the empty string
(see `checkpointers.stores._redis_lua`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from checkpointers.record import Query, Record, RecordId, malformed_row

__all__ = ["decode_row", "encode_query", "encode_record", "latest", "new_op", "num", "text"]


def num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _opt(value: str | None) -> str:
    return "" if value is None else "=" + value


def new_op() -> str:
    """A new operation id: a retried write or claim with it is applied once."""
    return secrets.token_hex(12)


def text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode()


def decode_row(tenant: str, thread: str, row: bytes) -> Record:
    """A record from a script's reply: 11 NUL-joined routing fields, then the body."""
    with malformed_row("redis"):
        ns, kind, key, sort, group, status, tokens, exp, lease, version, updated, body = row.split(
            b"\0", 11
        )
        return Record(
            id=RecordId(tenant, thread, text(ns), text(kind), text(key)),
            body=bytes(body),
            sort=text(sort),
            group=text(group),
            status=text(status),
            tokens=frozenset(text(tokens).split()),
            expires_at=float(exp) if exp else None,
            lease_until=float(lease) if lease else None,
            version=int(version),
            updated_at=float(updated),
        )


def encode_record(record: Record, *, exact: bool = False) -> list[str | bytes]:
    """A record's fields as the WRITE script reads them; `exact` keeps version and time."""
    rid = record.id
    tokens = f" {' '.join(sorted(record.tokens))} " if record.tokens else ""
    return [
        rid.namespace, rid.kind, rid.key, record.body, record.sort, record.group,
        record.status, tokens, num(record.expires_at), num(record.lease_until),
        str(record.version) if exact else "", num(record.updated_at) if exact else "",
    ]  # fmt: skip


def encode_query(query: Query) -> list[Any]:
    """A query's filters as the FIND script reads them, evaluated at the current time."""
    limit = -1 if query.limit is None else query.limit
    args: list[Any] = [
        num(time.time()), _opt(query.kind), _opt(query.namespace), _opt(query.group),
        _opt(query.before), _opt(query.after), limit, "1" if query.descending else "",
    ]  # fmt: skip
    statuses = None if query.statuses is None else list(query.statuses)
    args += [-1] if statuses is None else [len(statuses), *statuses]
    tokens = list(query.tokens)
    return [*args, len(tokens), *tokens]


def latest(expiries: Sequence[float | None]) -> float | None:
    """The expiry of a key holding records with these expiries (None: never)."""
    return None if any(e is None for e in expiries) else max(e for e in expiries if e)
