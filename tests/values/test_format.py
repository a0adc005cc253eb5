"""The byte layout of value records: it must never change (stored data keeps reading)."""

from __future__ import annotations

import pytest

from checkpointers import IntegrityError
from checkpointers.values import frame, unframe, value_key, value_keys
from checkpointers.values._format import decode_blob, digest, encode_full, encode_tail


def test_frame_is_length_prefixed_big_endian() -> None:
    """Each part is preceded by its length as 4 big-endian bytes."""
    assert frame(b"ab", b"", b"c") == b"\0\0\0\x02ab\0\0\0\0\0\0\0\x01c"
    assert unframe(frame(b"ab", b"", b"c"), 3, "r") == [b"ab", b"", b"c"]


@pytest.mark.parametrize(
    "body", [b"", b"\0\0\0", b"\0\0\0\x05ab", b"\0\0\0\x01a\0\0\0\x01b\0\0\0\x01c", b"\0\0\0\x01aX"]
)
def test_unframe_refuses_truncated_or_trailing_bytes(body: bytes) -> None:
    """A body that is cut short, or longer than its parts, raises IntegrityError."""
    with pytest.raises(IntegrityError):
        unframe(body, 2, "record r")


def test_blob_bodies_keep_their_stored_layout() -> None:
    """Full and tail bodies are the frames (F|T, type tag, data, base key) they always were."""
    assert encode_full(b"json", b"1") == frame(b"F", b"json", b"1", b"")
    assert encode_tail(b"json", b"[2]", '["c","1"]') == frame(b"T", b"json", b"[2]", b'["c","1"]')
    assert decode_blob(encode_full(b"json", b"1"), "r") == (b"json", b"1", None)
    assert decode_blob(encode_tail(b"t", b"d", "k"), "r") == (b"t", b"d", "k")
    with pytest.raises(IntegrityError):
        decode_blob(frame(b"X", b"t", b"d", b""), "r")


@pytest.mark.parametrize(
    ("channel", "version", "key"),
    [
        ("messages", "0001.5", '["messages","0001.5"]'),
        ('quo"te', "1", '["quo\\"te","1"]'),
        ("é", "1", '["é","1"]'),
        ("c", 3, '["c",3]'),
        ("c", 1.5, '["c",1.5]'),
    ],
)
def test_value_key_is_compact_json(channel: str, version: object, key: str) -> None:
    """The key is `[channel, version]` as compact JSON, with the fast path for plain text."""
    assert value_key(channel, version) == key
    assert value_keys({channel: version}) == {channel: key}


def test_digest_tells_items_apart() -> None:
    """Digests differ when the type tag or the bytes differ, and are 16 bytes long."""
    assert len(digest(b"t", b"d")) == 16
    assert digest(b"t", b"d") != digest(b"td", b"")
