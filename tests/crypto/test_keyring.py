"""KeyRing: envelope round trips, the tamper matrix, compression, rotation, caching."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkpointers import (
    ConfigurationError,
    IntegrityError,
    KeyRing,
    KeyUnavailableError,
    LocalKey,
    RecordId,
    RecordTooLargeError,
)
from checkpointers.crypto.envelope import FLAG_ZSTD, Envelope
from checkpointers.testing import deterministic_key_ring

AAD = RecordId("acme", "thread-1", "", "checkpoint", "c1").aad()
OTHER_THREAD = RecordId("acme", "thread-2", "", "checkpoint", "c1").aad()
OTHER_TENANT = RecordId("globex", "thread-1", "", "checkpoint", "c1").aad()
OTHER_KEY = RecordId("acme", "thread-1", "", "checkpoint", "c2").aad()


async def test_round_trip_small_and_large() -> None:
    """Small bodies are stored raw, large ones compressed; both decrypt to the input."""
    ring = deterministic_key_ring()
    small = b"hello"
    large = b"chat message " * 1000
    small_blob = await ring.encrypt(small, AAD)
    large_blob = await ring.encrypt(large, AAD)
    assert Envelope.parse(small_blob, record="r").flags == 0
    assert Envelope.parse(large_blob, record="r").flags == FLAG_ZSTD
    assert len(large_blob) < len(large) // 10
    assert await ring.decrypt(small_blob, AAD) == small
    assert await ring.decrypt(large_blob, AAD) == large


async def test_incompressible_body_is_not_flagged() -> None:
    """Random bytes above the threshold stay uncompressed (zstd would grow them)."""
    ring = deterministic_key_ring()
    blob = await ring.encrypt(os.urandom(4096), AAD)
    assert Envelope.parse(blob, record="r").flags == 0


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000))
async def test_round_trip_any_bytes(data: bytes) -> None:
    """Any byte string survives encrypt then decrypt."""
    ring = deterministic_key_ring()
    assert await ring.decrypt(await ring.encrypt(data, AAD), AAD) == data


@settings(max_examples=200, deadline=None)
@given(st.data())
async def test_any_single_bit_flip_is_refused(data: st.DataObject) -> None:
    """Flipping any one bit anywhere in an envelope never returns data."""
    ring = deterministic_key_ring()
    plaintext = data.draw(st.binary(min_size=0, max_size=2000))
    blob = bytearray(await ring.encrypt(plaintext, AAD))
    position = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[position // 8] ^= 1 << (position % 8)
    with pytest.raises((IntegrityError, KeyUnavailableError)):
        await ring.decrypt(bytes(blob), AAD)


def _field_offsets(blob: bytes) -> dict[str, int]:
    key_id_len = blob[2]
    wrapped_at = 3 + key_id_len + 2
    (wrapped_len,) = struct.unpack_from(">H", blob, 3 + key_id_len)
    nonce_at = wrapped_at + wrapped_len
    return {
        "version": 0,
        "flags": 1,
        "key_id_length": 2,
        "key_id": 3,
        "wrapped_length": 3 + key_id_len,
        "wrapped_key": wrapped_at,
        "nonce": nonce_at,
        "ciphertext": nonce_at + 12,
        "tag": len(blob) - 1,
    }


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("version", IntegrityError),
        ("flags", IntegrityError),
        ("key_id_length", IntegrityError),
        ("key_id", KeyUnavailableError),
        ("wrapped_length", IntegrityError),
        ("wrapped_key", IntegrityError),
        ("nonce", IntegrityError),
        ("ciphertext", IntegrityError),
        ("tag", IntegrityError),
    ],
)
async def test_tamper_matrix_each_header_field(field: str, expected: type[Exception]) -> None:
    """A flipped bit in each header field and in the body raises the specific error."""
    ring = deterministic_key_ring()
    blob = bytearray(await ring.encrypt(b"secret state " * 10, AAD))
    blob[_field_offsets(bytes(blob))[field]] ^= 0x01
    with pytest.raises(expected):
        await ring.decrypt(bytes(blob), AAD)


@pytest.mark.parametrize("cut", [0, 1, 2, 10, 40, -17, -1])
async def test_truncated_envelope_is_refused(cut: int) -> None:
    """A truncated envelope raises IntegrityError wherever it is cut."""
    ring = deterministic_key_ring()
    blob = await ring.encrypt(b"secret state", AAD)
    with pytest.raises(IntegrityError):
        await ring.decrypt(blob[:cut], AAD)


@pytest.mark.parametrize("aad", [OTHER_THREAD, OTHER_TENANT, OTHER_KEY])
async def test_body_moved_to_another_record_is_refused(aad: bytes) -> None:
    """A body bound to one record fails on another thread, tenant or key."""
    ring = deterministic_key_ring()
    blob = await ring.encrypt(b"secret state", AAD)
    with pytest.raises(IntegrityError, match="moved"):
        await ring.decrypt(blob, aad)


@pytest.mark.parametrize("plaintext", [b"", b"{}", b'{"messages": []}', b"\x01\x00\x05hello"])
async def test_plaintext_is_refused(plaintext: bytes) -> None:
    """Unencrypted data in the store never decodes as a record."""
    with pytest.raises((IntegrityError, KeyUnavailableError)):
        await deterministic_key_ring().decrypt(plaintext, AAD)


async def test_wrong_key_is_refused_without_trying_others() -> None:
    """A ring without the writer's key raises KeyUnavailableError naming the key id."""
    writer = deterministic_key_ring("writer")
    blob = await writer.encrypt(b"secret", AAD)
    reader = deterministic_key_ring("reader")
    with pytest.raises(KeyUnavailableError) as info:
        await reader.decrypt(blob, AAD, record="rec-42")
    assert writer.current_key_id in str(info.value)
    assert "rec-42" in str(info.value)


async def test_errors_never_contain_plaintext_or_key_material() -> None:
    """Messages name the record and key id, never the plaintext or the key."""
    key = LocalKey(b"k" * 32)
    ring = KeyRing([key])
    blob = bytearray(await ring.encrypt(b"CANARY-PLAINTEXT", AAD))
    blob[-1] ^= 1
    with pytest.raises(IntegrityError) as info:
        await ring.decrypt(bytes(blob), AAD)
    text = str(info.value) + repr(info.value) + repr(ring) + repr(key)
    assert "CANARY" not in text
    assert key.to_base64() not in text


async def test_oversized_plaintext_is_refused() -> None:
    """Encrypting more than max_plaintext raises RecordTooLargeError."""
    ring = KeyRing([LocalKey(b"k" * 32)], max_plaintext=100)
    with pytest.raises(RecordTooLargeError):
        await ring.encrypt(b"x" * 101, AAD)


async def test_decompression_is_bounded() -> None:
    """A compressed body that inflates past max_plaintext is refused on read."""
    big = KeyRing([LocalKey(b"k" * 32)])
    blob = await big.encrypt(b"a" * 100_000, AAD)
    small = KeyRing([LocalKey(b"k" * 32)], max_plaintext=10_000)
    with pytest.raises(IntegrityError):
        await small.decrypt(blob, AAD)


async def test_data_keys_are_shared_and_cached() -> None:
    """Many records share one data key: one wrap, and reads hit the cache."""
    ring = deterministic_key_ring()
    blobs = [await ring.encrypt(b"x%d" % i, AAD) for i in range(100)]
    assert ring.stats.wraps == 1
    for blob in blobs:
        await ring.decrypt(blob, AAD)
    assert ring.stats.unwraps == 0
    fresh = deterministic_key_ring()
    for blob in blobs:
        await fresh.decrypt(blob, AAD)
    assert fresh.stats.unwraps == 1
    assert fresh.stats.cache_hits == 99


async def test_cache_is_bounded() -> None:
    """The unwrapped data-key cache never grows past cache_size."""
    writer = KeyRing([LocalKey(b"k" * 32)], dek_uses=1)
    blobs = [await writer.encrypt(b"x", AAD) for _ in range(20)]
    reader = KeyRing([LocalKey(b"k" * 32)], cache_size=5)
    for blob in blobs:
        await reader.decrypt(blob, AAD)
    assert len(reader._cache) == 5
    assert reader.stats.unwraps == 20


async def test_data_key_is_replaced_after_its_use_limit() -> None:
    """After dek_uses records a new data key is wrapped."""
    ring = KeyRing([LocalKey(b"k" * 32)], dek_uses=10)
    blobs = [await ring.encrypt(b"x", AAD) for _ in range(25)]
    assert ring.stats.wraps == 3
    assert len({Envelope.parse(b, record="r").wrapped_key for b in blobs}) == 3


async def test_rotation_rewraps_header_only_and_retires_old_key() -> None:
    """After add + rewrap + retire, records decrypt and their ciphertext is unchanged."""
    old, new = LocalKey(b"o" * 32), LocalKey(b"n" * 32)
    ring = KeyRing([old])
    blobs = [await ring.encrypt(b"state %d" % i * 200, AAD) for i in range(5)]
    ring.add(new)
    assert ring.current_key_id == new.key_id
    rewrapped = [await ring.rewrap(blob) for blob in blobs]
    assert all(r is not None for r in rewrapped)
    for before, after in zip(blobs, rewrapped, strict=True):
        assert after is not None
        a, b = Envelope.parse(before, record="r"), Envelope.parse(after, record="r")
        assert (a.nonce, a.sealed, a.flags) == (b.nonce, b.sealed, b.flags)
        assert b.key_id == new.key_id
    ring.retire(old.key_id)
    only_new = KeyRing([new])
    for i, blob in enumerate(rewrapped):
        assert blob is not None
        assert await only_new.decrypt(blob, AAD) == b"state %d" % i * 200
        assert await ring.rewrap(blob) is None
    with pytest.raises(KeyUnavailableError):
        await ring.decrypt(blobs[0], AAD)


def test_retire_refuses_current_and_unknown() -> None:
    """The current key cannot be retired; an unknown id is a configuration error."""
    ring = deterministic_key_ring("a", "b")
    with pytest.raises(ConfigurationError):
        ring.retire(ring.current_key_id)
    with pytest.raises(ConfigurationError):
        ring.retire("local:unknown")


def test_ring_configuration_errors() -> None:
    """Empty rings, duplicate ids and an unknown current key are refused."""
    with pytest.raises(ConfigurationError):
        KeyRing([])
    with pytest.raises(ConfigurationError):
        KeyRing([LocalKey(b"a" * 32), LocalKey(b"a" * 32)])
    with pytest.raises(ConfigurationError):
        KeyRing([LocalKey(b"a" * 32)], current="local:nope")


async def test_mid_sized_bodies_are_compressed() -> None:
    """Bodies above 256 bytes that compress (a checkpoint, a short message) are stored
    compressed; shorter ones are stored raw."""
    ring = deterministic_key_ring()
    mid = b'{"channel_versions":{"messages":"00000000000000000000000000000007.0.1"}}' * 5
    short = b"x" * 200
    mid_blob, short_blob = await ring.encrypt(mid, AAD), await ring.encrypt(short, AAD)
    assert 256 < len(mid) < 1024
    assert Envelope.parse(mid_blob, record="r").flags == FLAG_ZSTD
    assert len(mid_blob) < len(mid)
    assert Envelope.parse(short_blob, record="r").flags == 0
    assert await ring.decrypt(mid_blob, AAD) == mid
