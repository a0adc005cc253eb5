"""Record layout of the LangGraph adapter: kinds, keys and plaintext bodies.

Every body below is plaintext that `EncryptedStore` encrypts and binds to its record id.

* ``checkpoint`` (key: checkpoint id; sort: checkpoint id; group: parent checkpoint id;
  tokens: one blind-index token per metadata key): the checkpoint without its channel
  values, its metadata, its parent id.
* ``blob``: one channel value at one version, written by `checkpointers.values.ValueStore`
  (its layout is described there).
* ``write`` (key: ``[checkpoint id, task id, idx]`` as JSON; group: checkpoint id):
  one pending write with its channel and task path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from checkpointers import IntegrityError, SerializationError
from checkpointers.values import BLOB, frame, unframe

CHECKPOINT = "checkpoint"
WRITE = "write"
KINDS = (CHECKPOINT, BLOB, WRITE)

_MAGIC_CHECKPOINT = b"lgc1"
_MAGIC_WRITE = b"lgw1"


class SerdeCodec:
    """LangGraph's serializer as a `ValueCodec`; failures raise `SerializationError`."""

    __slots__ = ("serde",)

    def __init__(self, serde: SerializerProtocol) -> None:
        self.serde = serde

    def dumps(self, value: Any, what: str) -> tuple[bytes, bytes]:
        """`serde.dumps_typed` as (type tag, bytes)."""
        try:
            type_tag, data = self.serde.dumps_typed(value)
        except Exception as exc:
            raise SerializationError(
                f"{what}: a value of type {type(value).__name__} cannot be serialized"
            ) from exc
        return type_tag.encode("utf-8"), bytes(data)

    def loads(self, type_tag: bytes, data: bytes, what: str) -> Any:
        """`serde.loads_typed` of (type tag, bytes)."""
        try:
            return self.serde.loads_typed((type_tag.decode("utf-8"), data))
        except Exception as exc:
            raise SerializationError(f"{what}: the stored value cannot be deserialized") from exc


# -- keys -------------------------------------------------------------------------------


def write_key(checkpoint_id: str, task_id: str, idx: int) -> str:
    """The record key of one pending write."""
    return json.dumps([checkpoint_id, task_id, idx], separators=(",", ":"), ensure_ascii=False)


def parse_write_key(key: str) -> tuple[str, str, int]:
    """Inverse of `write_key`."""
    try:
        checkpoint_id, task_id, idx = json.loads(key)
    except (ValueError, TypeError):
        raise IntegrityError(f"write record key {key!r} is malformed") from None
    return str(checkpoint_id), str(task_id), int(idx)


# -- checkpoint bodies ------------------------------------------------------------------


def encode_checkpoint(
    codec: SerdeCodec,
    checkpoint: Mapping[str, Any],
    metadata: Mapping[str, Any],
    parent_id: str | None,
) -> bytes:
    """The body of a checkpoint record (channel values excluded)."""
    c_type, c_data = codec.dumps(dict(checkpoint), "checkpoint")
    m_type, m_data = codec.dumps(dict(metadata), "checkpoint metadata")
    return frame(_MAGIC_CHECKPOINT, c_type, c_data, m_type, m_data, (parent_id or "").encode())


def decode_checkpoint(
    codec: SerdeCodec, body: bytes, what: str
) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(checkpoint without values, metadata, parent id) from a checkpoint body."""
    magic, c_type, c_data, m_type, m_data, parent = unframe(body, 6, what)
    if magic != _MAGIC_CHECKPOINT:
        raise IntegrityError(f"{what}: unknown checkpoint body format")
    checkpoint = codec.loads(c_type, c_data, what)
    metadata = codec.loads(m_type, m_data, what)
    return dict(checkpoint), dict(metadata), parent.decode() or None


# -- write bodies -----------------------------------------------------------------------


def encode_write(channel: str, task_path: str, type_tag: bytes, data: bytes) -> bytes:
    """The body of a pending-write record."""
    return frame(_MAGIC_WRITE, channel.encode(), task_path.encode(), type_tag, data)


def decode_write(body: bytes, what: str) -> tuple[str, str, bytes, bytes]:
    """(channel, task path, type tag, data) from a write body."""
    magic, channel, task_path, type_tag, data = unframe(body, 5, what)
    if magic != _MAGIC_WRITE:
        raise IntegrityError(f"{what}: unknown write body format")
    return channel.decode(), task_path.decode(), type_tag, data


# -- metadata index ---------------------------------------------------------------------


def index_value(value: Any) -> Any:
    """The canonical form of a metadata value for its blind-index token.

    Integral floats become ints so that ``{"step": 1.0}`` finds ``step=1``, as Python's
    equality would.
    """
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def is_indexable(value: Any) -> bool:
    """Whether a metadata value can be turned into a token (JSON-serializable)."""
    try:
        json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def metadata_index(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The name -> value pairs of `metadata` that get a blind-index token."""
    return {
        name: index_value(value)
        for name, value in metadata.items()
        if isinstance(name, str) and is_indexable(value)
    }


def matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Plain equality check of decrypted metadata against a filter."""
    return all(name in metadata and metadata[name] == value for name, value in wanted.items())


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """`items` cut into slices of at most `size`."""
    return [items[i : i + size] for i in range(0, len(items), size)]
