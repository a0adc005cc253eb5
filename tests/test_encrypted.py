"""EncryptedStore: tenants, blind-index tokens, expiry, compare-and-set, size caps."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from checkpointers import (
    ConfigurationError,
    ConflictError,
    EncryptedStore,
    IntegrityError,
    KeyUnavailableError,
    MemoryStore,
    Query,
    RecordTooLargeError,
    SerializationError,
    SqliteStore,
    Write,
)
from checkpointers.testing import deterministic_key_ring


async def test_tokens_match_equal_values_only() -> None:
    """Equal name/value pairs give equal tokens; other values or names differ."""
    enc = EncryptedStore(MemoryStore(), deterministic_key_ring())
    a = await enc.tokens({"source": "loop"})
    assert a == await enc.tokens({"source": "loop"})
    assert a != await enc.tokens({"source": "input"})
    assert a != await enc.tokens({"origin": "loop"})
    assert await enc.tokens({"step": 1}) != await enc.tokens({"step": "1"})


async def test_tokens_differ_between_tenants_and_stores() -> None:
    """Each tenant has its own random index key: tokens cannot be linked across tenants."""
    store = MemoryStore()
    acme = EncryptedStore(store, deterministic_key_ring(), tenant="acme")
    globex = EncryptedStore(store, deterministic_key_ring(), tenant="globex")
    assert await acme.tokens({"user": "bob"}) != await globex.tokens({"user": "bob"})


async def test_index_key_is_shared_by_processes_on_one_store() -> None:
    """Two EncryptedStores racing to create the index key end up with the same tokens."""
    store = MemoryStore()
    ring = deterministic_key_ring()
    first, second = EncryptedStore(store, ring), EncryptedStore(store, ring)
    t1, t2 = await asyncio.gather(first.tokens({"k": "v"}), second.tokens({"k": "v"}))
    assert t1 == t2


async def test_unserializable_index_value_is_a_serialization_error() -> None:
    """An index value that is not JSON raises SerializationError."""
    enc = EncryptedStore(MemoryStore(), deterministic_key_ring())
    with pytest.raises(SerializationError):
        await enc.tokens({"obj": object()})


async def test_find_by_tokens_through_the_store() -> None:
    """Records written with an index are found by equal values, not others."""
    enc = EncryptedStore(MemoryStore(), deterministic_key_ring())
    for i, source in enumerate(["loop", "input", "loop"]):
        await enc.put(enc.record_id("t", "", "cp", f"c{i}"), b"x", sort=str(i),
                      index={"source": source})  # fmt: skip
    found = await enc.find(enc.query(kind="cp", tokens=await enc.tokens({"source": "loop"})))
    assert [e.id.key for e in found] == ["c0", "c2"]


async def test_other_tenant_ids_are_refused() -> None:
    """An EncryptedStore never writes or queries another tenant's records."""
    enc = EncryptedStore(MemoryStore(), deterministic_key_ring(), tenant="acme")
    other = EncryptedStore(MemoryStore(), deterministic_key_ring(), tenant="globex")
    with pytest.raises(ConfigurationError):
        await enc.put(other.record_id("t", "", "k", "a"), b"x")
    with pytest.raises(ConfigurationError):
        await enc.find(other.query())


async def test_update_is_compare_and_set() -> None:
    """update() rewrites a record read earlier, and refuses if it changed since."""
    enc = EncryptedStore(MemoryStore(), deterministic_key_ring())
    rid = enc.record_id("t", "", "snap", "s1")
    await enc.put(rid, b"v1", status="created")
    entry = await enc.get(rid)
    assert entry is not None
    updated = await enc.update(entry, b"v2", status="running")
    assert (updated.data, updated.record.status, updated.record.version) == (b"v2", "running", 2)
    with pytest.raises(ConflictError):
        await enc.update(entry, b"stale")
    again = await enc.get(rid)
    assert again is not None
    assert again.data == b"v2"


async def test_record_size_cap() -> None:
    """A body above max_record_bytes raises RecordTooLargeError and writes nothing."""
    store = MemoryStore()
    enc = EncryptedStore(store, deterministic_key_ring(), max_record_bytes=1000)
    rid = enc.record_id("t", "", "k", "a")
    with pytest.raises(RecordTooLargeError):
        await enc.put(rid, b"x" * 1001)
    assert await store.get(rid) is None


async def test_canary_absent_from_raw_sqlite_file(tmp_path: Path) -> None:
    """A canary written through the encrypted layer never appears in the database files."""
    canary = b"CANARY-7f3a9c-do-not-store"
    path = tmp_path / "c.db"
    async with EncryptedStore(SqliteStore(path), deterministic_key_ring(), owns_store=True) as enc:
        for i in range(20):
            await enc.put(enc.record_id("thread", "", "cp", f"k{i}"), canary * (i * 50 + 1),
                          index={"note": canary.decode()})  # fmt: skip
        entry = await enc.get(enc.record_id("thread", "", "cp", "k3"))
        assert entry is not None
        assert entry.data == canary * 151
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert canary not in raw
    assert canary.lower() not in raw.lower()


async def test_swapped_tenant_body_fails_even_with_the_same_key() -> None:
    """A body copied to another tenant's record fails authentication."""
    store = MemoryStore()
    ring = deterministic_key_ring()
    acme = EncryptedStore(store, ring, tenant="acme")
    globex = EncryptedStore(store, ring, tenant="globex")
    await acme.put(acme.record_id("t", "", "k", "a"), b"acme secret")
    await globex.put(globex.record_id("t", "", "k", "a"), b"globex data")
    stolen = await store.get(acme.record_id("t", "", "k", "a"))
    target = await store.get(globex.record_id("t", "", "k", "a"))
    assert stolen is not None
    assert target is not None
    from dataclasses import replace

    await store.put(replace(target, body=stolen.body))
    with pytest.raises(IntegrityError):
        await globex.get(globex.record_id("t", "", "k", "a"))


async def test_write_is_atomic_insert_if_absent_and_tenant_bound() -> None:
    """`write` seals a batch in one call; if_absent keeps what exists; other tenants refused."""
    enc = EncryptedStore(MemoryStore(), deterministic_key_ring())
    a, b = enc.record_id("t", "", "k", "a"), enc.record_id("t", "", "k", "b")
    assert await enc.write([Write(a, b"one", index={"user": "bob"})]) == [1]
    versions = await enc.write([Write(a, b"two"), Write(b, b"three")], if_absent=True)
    assert versions == [None, 1]
    assert [e.data for e in await enc.get_many([a, b]) if e] == [b"one", b"three"]
    found = await enc.find(enc.query(kind="k", tokens=await enc.tokens({"user": "bob"})))
    assert [e.id for e in found] == [a]
    other = EncryptedStore(MemoryStore(), deterministic_key_ring(), tenant="other")
    with pytest.raises(ConfigurationError):
        await enc.write([Write(other.record_id("t", "", "k", "a"), b"x")])


async def test_copy_rebinds_bodies_to_the_target_thread() -> None:
    """Copies decrypt under the target thread, keep routing fields; the source is unchanged."""
    store = MemoryStore()
    enc = EncryptedStore(store, deterministic_key_ring())
    source = enc.record_id("src", "ns", "k", "a")
    await enc.write([Write(source, b"payload", sort="s1", group="g", index={"u": 1})])
    records = await enc.find_records(enc.query(thread="src"))
    assert await enc.copy(records, thread="dst") == 1
    target = enc.record_id("dst", "ns", "k", "a")
    copied = await enc.get(target)
    assert copied is not None and copied.data == b"payload"
    assert (copied.record.sort, copied.record.group) == ("s1", "g")
    assert copied.record.tokens == records[0].tokens
    original = await enc.get(source)
    assert original is not None and original.data == b"payload"
    # The copy is bound to its new identity: put back under the source id, it fails.
    moved = dataclasses.replace(copied.record, id=source, version=0)
    await store.put(moved)
    with pytest.raises(IntegrityError):
        await enc.get(source)


async def test_a_wrong_key_fails_before_anything_is_written() -> None:
    """With a key ring that cannot read what the tenant stored, the first write raises
    before writing: nothing of it lands in the store."""
    store = MemoryStore()
    right = EncryptedStore(store, deterministic_key_ring())
    await right.write([Write(right.record_id("t", "", "k", "a"), b"x", index={"u": 1})])
    before = await store.find(Query(tenant=None))
    wrong = EncryptedStore(store, deterministic_key_ring("another key"))
    with pytest.raises(KeyUnavailableError):
        await wrong.write([Write(wrong.record_id("t", "", "k", f"w{i}"), b"y") for i in range(3)])
    with pytest.raises(KeyUnavailableError):
        await wrong.put(wrong.record_id("t", "", "k", "p"), b"y")
    assert await store.find(Query(tenant=None)) == before
