"""How `checkpointers show` and `verify` print records (private).

An allowlist: identity, routing fields, sizes, times and the envelope's key id. A value is
rendered only for `show --decrypt`, and never for a record whose plaintext is key
material (`WITHHELD_KINDS`).
"""

from __future__ import annotations

import json
from typing import Any

from checkpointers.cli._output import format_table, format_time
from checkpointers.cli._stores import Tier
from checkpointers.crypto.envelope import Envelope
from checkpointers.errors import IntegrityError
from checkpointers.record import INDEX_KEY_KIND, Record, RecordId

__all__ = [
    "WITHHELD_KINDS",
    "describe_value",
    "record_json",
    "record_row",
    "render_value",
    "show_lines",
]

#: Kinds of record whose plaintext is key material: the blind-index key (`EncryptedStore`).
WITHHELD_KINDS = frozenset({INDEX_KEY_KIND})
_HEX_PREVIEW = 32


def record_json(rid: RecordId) -> dict[str, str]:
    return {
        "tenant": rid.tenant,
        "thread": rid.thread,
        "namespace": rid.namespace,
        "kind": rid.kind,
        "key": rid.key,
    }


def render_value(data: bytes) -> dict[str, Any]:
    """Decoded JSON, else text, else the size and a hex preview."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"size": len(data), "hex": data[:_HEX_PREVIEW].hex()}
    try:
        return {"json": json.loads(text)}
    except ValueError:
        return {"text": text}


def record_row(tier: Tier, record: Record) -> dict[str, Any]:
    try:
        key_id: str | None = Envelope.parse(record.body, record=record.id.describe()).key_id
    except IntegrityError:
        key_id = None
    return {
        "store": tier.label,
        "namespace": record.id.namespace,
        "kind": record.id.kind,
        "key": record.id.key,
        "sort": record.sort,
        "status": record.status,
        "size": len(record.body),
        "version": record.version,
        "updated_at": record.updated_at,
        "expires_at": record.expires_at,
        "key_id": key_id,
    }


def show_lines(rows: list[dict[str, Any]], *, decrypt: bool) -> list[str]:
    """The `show` table; with `decrypt`, each row followed by its value (or error)."""
    headers = [
        "STORE",
        "NAMESPACE",
        "KIND",
        "KEY",
        "SORT",
        "STATUS",
        "SIZE",
        "VERSION",
        "UPDATED",
        "EXPIRES",
        "KEY_ID",
    ]
    table = format_table(
        headers,
        [
            [
                r["store"],
                r["namespace"],
                r["kind"],
                r["key"],
                r["sort"],
                r["status"],
                str(r["size"]),
                str(r["version"]),
                format_time(r["updated_at"]),
                format_time(r["expires_at"]),
                r["key_id"] or "?",
            ]
            for r in rows
        ],
    )
    if not decrypt:
        return table
    out = table[:1]
    for line, row in zip(table[1:], rows, strict=True):
        out.append(line)
        out.append("    " + describe_value(row))
    return out


def describe_value(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"! {row['error']}"
    value = row["value"]
    if "json" in value:
        return json.dumps(value["json"], sort_keys=True)
    if "text" in value:
        return str(value["text"])
    if "withheld" in value:
        return "(withheld: key material)"
    return f"({value['size']} bytes) {value['hex']}"
