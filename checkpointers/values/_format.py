"""Byte layout of channel-value records: framing, record keys and blob bodies."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Mapping
from typing import Any

from checkpointers.errors import IntegrityError

_FULL = b"F"
_TAIL = b"T"
_LEN = struct.Struct(">I")

#: Text that JSON writes as is between quotes: printable ASCII but `"` and `\\`.
_PLAIN = re.compile(r"[ !#-\[\]-~]*")


def frame(*parts: bytes) -> bytes:
    """Length-prefixed concatenation of `parts` (a 4-byte big-endian length each)."""
    return b"".join(_LEN.pack(len(p)) + p for p in parts)


def unframe(data: bytes, count: int, what: str) -> list[bytes]:
    """Split a `frame` into exactly `count` parts, bounds checked.

    Raises:
        IntegrityError: the body is truncated or has trailing bytes (names `what`).
    """
    parts: list[bytes] = []
    pos = 0
    for _ in range(count):
        if pos + _LEN.size > len(data):
            raise IntegrityError(f"{what}: truncated body")
        (size,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + size > len(data):
            raise IntegrityError(f"{what}: truncated body")
        parts.append(data[pos : pos + size])
        pos += size
    if pos != len(data):
        raise IntegrityError(f"{what}: trailing bytes in body")
    return parts


def value_key(channel: str, version: Any) -> str:
    """The record key of a channel's value at a version: `[channel, version]` as JSON."""
    if type(version) is str and _PLAIN.fullmatch(channel) and _PLAIN.fullmatch(version):
        return f'["{channel}","{version}"]'  # what json.dumps writes, without its cost
    return json.dumps([channel, version], separators=(",", ":"), ensure_ascii=False)


def value_keys(versions: Mapping[str, Any]) -> dict[str, str]:
    """`value_key` of every (channel, version) of `versions`, by channel."""
    return {channel: value_key(channel, version) for channel, version in versions.items()}


def digest(type_tag: bytes, data: bytes) -> bytes:
    """A short digest of one serialized item (to detect an unchanged list prefix)."""
    return hashlib.blake2b(frame(type_tag, data), digest_size=16).digest()


def encode_full(type_tag: bytes, data: bytes) -> bytes:
    """A blob body holding the whole value."""
    return frame(_FULL, type_tag, data, b"")


def encode_tail(type_tag: bytes, data: bytes, base_key: str) -> bytes:
    """A blob body holding the list items appended to the value of blob `base_key`."""
    return frame(_TAIL, type_tag, data, base_key.encode())


def decode_blob(body: bytes, what: str) -> tuple[bytes, bytes, str | None]:
    """(type tag, data, base key or None) from a blob body."""
    mode, type_tag, data, base = unframe(body, 4, what)
    if mode == _FULL:
        return type_tag, data, None
    if mode == _TAIL:
        return type_tag, data, base.decode()
    raise IntegrityError(f"{what}: unknown blob body format")
