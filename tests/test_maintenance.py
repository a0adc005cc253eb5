"""Key rotation, key usage, retirement and verification over a real SQLite store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from checkpointers import ConfigurationError, EncryptedStore, KeyRing, LocalKey, SqliteStore
from checkpointers.crypto.envelope import Envelope
from checkpointers.maintenance import key_usage, retire_key, rotate_keys, verify_records


@pytest.fixture
async def sqlite(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "m.db")
    await store.setup()
    yield store  # type: ignore[misc]
    await store.aclose()


async def test_rotate_then_retire_keeps_every_record_readable(sqlite: SqliteStore) -> None:
    """After rotate + retire, every record decrypts and its ciphertext bytes are unchanged."""
    old, new = LocalKey(b"o" * 32), LocalKey(b"n" * 32)
    ring = KeyRing([old])
    enc = EncryptedStore(sqlite, ring, tenant="acme")
    for i in range(30):
        await enc.put(enc.record_id(f"t{i % 3}", "", "cp", f"k{i}"), b"state %d" % i * 100)
    before = {r.id: Envelope.parse(r.body, record="r") for r in await sqlite.scan(limit=100)}
    ring.add(new)
    with pytest.raises(ConfigurationError, match="rotate first"):
        await retire_key(sqlite, ring, old.key_id)
    report = await rotate_keys(sqlite, ring)
    assert (report.rewrapped, report.current) == (30, 0)
    assert await key_usage(sqlite, ring) == {new.key_id: 30}
    await retire_key(sqlite, ring, old.key_id)
    assert ring.key_ids == (new.key_id,)
    for record in await sqlite.scan(limit=100):
        if record.id in before:
            after = Envelope.parse(record.body, record="r")
            assert (after.nonce, after.sealed) == (
                before[record.id].nonce,
                before[record.id].sealed,
            )
    fresh = EncryptedStore(sqlite, KeyRing([new]), tenant="acme")
    for i in range(30):
        entry = await fresh.get(fresh.record_id(f"t{i % 3}", "", "cp", f"k{i}"))
        assert entry is not None
        assert entry.data == b"state %d" % i * 100


async def test_rotation_resumes_after_a_cursor(sqlite: SqliteStore) -> None:
    """rotate_keys(after=...) continues where a previous run stopped."""
    ring = KeyRing([LocalKey(b"o" * 32)])
    enc = EncryptedStore(sqlite, ring)
    for i in range(10):
        await enc.put(enc.record_id("t", "", "cp", f"k{i}"), b"x")
    ring.add(LocalKey(b"n" * 32))
    records = await sqlite.scan(limit=100)
    report = await rotate_keys(sqlite, ring, after=records[4].id)
    assert report.rewrapped == 5
    assert (await key_usage(sqlite, ring))[ring.current_key_id] == 5
    rest = await rotate_keys(sqlite, ring)
    assert (rest.rewrapped, rest.current) == (5, 5)


async def test_verify_names_tampered_records(sqlite: SqliteStore) -> None:
    """verify_records reports exactly the tampered records, without plaintext."""
    ring = KeyRing([LocalKey(b"o" * 32)])
    enc = EncryptedStore(sqlite, ring)
    for i in range(5):
        await enc.put(enc.record_id("t", "", "cp", f"k{i}"), b"CANARY secret")
    victim = await sqlite.get(enc.record_id("t", "", "cp", "k2"))
    assert victim is not None
    await sqlite.put(replace(victim, body=victim.body[:-1] + bytes([victim.body[-1] ^ 1])))
    checked, failures = await verify_records(sqlite, ring)
    assert checked == 5
    assert [f.record.key for f in failures] == ["k2"]
    assert failures[0].error == "IntegrityError"
    assert "CANARY" not in failures[0].message
