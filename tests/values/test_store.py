"""ValueStore on every backend: values once per version, growing lists as appended tails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from checkpointers import EncryptedStore, IntegrityError, SerializationError, Store, Write
from checkpointers.testing import deterministic_key_ring
from checkpointers.values import (
    BLOB,
    MAX_TAIL_CHAIN,
    HeadCache,
    ListCache,
    ValueStore,
    value_key,
)

from ._codec import JsonCodec


@pytest.fixture
async def encrypted(any_store: Store) -> AsyncIterator[EncryptedStore]:
    """The record API over every store, with deterministic test keys."""
    async with EncryptedStore(any_store, deterministic_key_ring()) as store:
        yield store


def values_of(store: EncryptedStore) -> ValueStore:
    """A value store with a cache of its own (as a fresh process would have)."""
    return ValueStore(store, JsonCodec(), lists=ListCache())


async def blobs(store: EncryptedStore, thread: str = "t") -> dict[str, str]:
    """key -> group of the thread's value records."""
    records = await store.find_records(store.query(kind=BLOB, thread=thread))
    return {r.id.key: r.group for r in records}


async def grow(values: ValueStore, turns: int, start: int = 0) -> list[int]:
    """Store a list growing by one item per version; returns the last list."""
    items: list[int] = list(range(start))
    for n in range(start, start + turns):
        items = [*items, n]
        await values.put("t", "", {"c": f"{n:04}"}, {"c": items})
    return items


async def test_values_round_trip_and_absent_channels_are_left_out(
    encrypted: EncryptedStore,
) -> None:
    """Stored values load back at their versions; a channel with no value is left out."""
    values = values_of(encrypted)
    await values.put("t", "", {"a": "1", "b": "1", "gone": "1"}, {"a": {"x": 1}, "b": "s"})
    got = await values_of(encrypted).load("t", "", {"a": "1", "b": "1", "gone": "1"})
    assert got == {"a": {"x": 1}, "b": "s"}


async def test_growing_list_is_stored_as_tails_and_rebuilt_by_a_new_reader(
    encrypted: EncryptedStore,
) -> None:
    """Each version of a growing list is a tail pointing at the previous blob."""
    values = values_of(encrypted)
    expected = await grow(values, 5)
    groups = await blobs(encrypted)
    assert groups[value_key("c", "0000")] == ""
    assert groups[value_key("c", "0004")] == value_key("c", "0003")
    assert await values_of(encrypted).load("t", "", {"c": "0004"}) == {"c": expected}
    assert await values.load("t", "", {"c": "0002"}) == {"c": expected[:3]}


async def test_list_changed_in_place_is_stored_in_full(encrypted: EncryptedStore) -> None:
    """A list that does not extend the previous one is stored whole."""
    values = values_of(encrypted)
    await values.put("t", "", {"c": "1"}, {"c": [1, 2]})
    await values.put("t", "", {"c": "2"}, {"c": [9, 2, 3]})
    assert (await blobs(encrypted))[value_key("c", "2")] == ""
    assert await values_of(encrypted).load("t", "", {"c": "2"}) == {"c": [9, 2, 3]}


async def test_chain_is_cut_by_a_full_copy(encrypted: EncryptedStore) -> None:
    """After MAX_TAIL_CHAIN links a growing list is stored whole again."""
    values = values_of(encrypted)
    expected = await grow(values, MAX_TAIL_CHAIN + 2)
    full = [key for key, group in (await blobs(encrypted)).items() if not group]
    assert len(full) == 2
    assert await values_of(encrypted).load("t", "", {"c": f"{MAX_TAIL_CHAIN + 1:04}"}) == {
        "c": expected
    }


async def test_append_only_off_stores_full_copies(encrypted: EncryptedStore) -> None:
    """With append_only=False every version is a full copy."""
    values = ValueStore(encrypted, JsonCodec(), append_only=False)
    await grow(values, 3)
    assert set((await blobs(encrypted)).values()) == {""}


async def test_first_value_stored_for_a_version_is_kept(encrypted: EncryptedStore) -> None:
    """Values are insert-if-absent: a second put of a version keeps the first value."""
    values = values_of(encrypted)
    await values.put("t", "", {"a": "1"}, {"a": "first"})
    await values.put("t", "", {"a": "1"}, {"a": "second"})
    assert await values_of(encrypted).load("t", "", {"a": "1"}) == {"a": "first"}


async def test_with_records_are_written_in_the_same_batch(encrypted: EncryptedStore) -> None:
    """Records handed to put are written with the values; a serialization error writes none."""
    values = values_of(encrypted)
    snapshot = Write(encrypted.record_id("t", "", "snap", "s1"), b"body", sort="s1")
    await values.put("t", "", {"a": "1"}, {"a": 1}, with_records=[snapshot])
    entry = await encrypted.get(snapshot.id)
    assert entry is not None and entry.data == b"body"
    other = Write(encrypted.record_id("t", "", "snap", "s2"), b"body")
    with pytest.raises(SerializationError):
        await values.put("t", "", {"a": "2"}, {"a": object()}, with_records=[other])
    assert await encrypted.get(other.id) is None


async def test_missing_base_of_a_tail_raises(encrypted: EncryptedStore) -> None:
    """A tail whose base was deleted fails closed with IntegrityError."""
    await grow(values_of(encrypted), 3)
    await encrypted.delete([encrypted.record_id("t", "", BLOB, value_key("c", "0001"))])
    with pytest.raises(IntegrityError, match="missing base"):
        await values_of(encrypted).load("t", "", {"c": "0002"})


async def test_prefetched_head_loads_without_another_read(
    encrypted: EncryptedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values prefetched for the head are used as they are; other versions are read."""
    values = values_of(encrypted)
    await values.put("t", "", {"a": "1", "b": "1"}, {"a": 1, "b": [1]})
    heads = HeadCache()
    heads.note("t", "", "s1", {"a": "1", "b": "1"})
    head = heads.get("t", "")
    assert head is not None
    prefetched = await values_of(encrypted).prefetch("t", "", head)
    reads: list[Any] = []
    original = encrypted.get_many_records

    async def counting(ids: Any) -> Any:
        reads.append(ids)
        return await original(ids)

    monkeypatch.setattr(encrypted, "get_many_records", counting)
    fresh = values_of(encrypted)
    assert await fresh.load("t", "", {"a": "1", "b": "1"}, prefetched) == {"a": 1, "b": [1]}
    assert reads == []
    assert await fresh.load("t", "", {"a": "1"}, prefetched) == {"a": 1}
    assert len(reads) == 1


async def test_unreferenced_keeps_the_bases_of_kept_values(encrypted: EncryptedStore) -> None:
    """Values no kept version needs are unreferenced; bases of kept tails are not."""
    values = values_of(encrypted)
    await grow(values, 3)
    await values.put("t", "", {"x": "1"}, {"x": "old"})
    records = await encrypted.find_records(encrypted.query(kind=BLOB, thread="t"))
    gone = ValueStore.unreferenced(records, [{"c": "0001"}])
    assert sorted(rid.key for rid in gone) == [value_key("c", "0002"), value_key("x", "1")]


async def test_forget_makes_the_next_list_a_full_copy(encrypted: EncryptedStore) -> None:
    """After forget, the next version of a list cannot be a tail (the base is unknown)."""
    values = values_of(encrypted)
    await grow(values, 2)
    values.forget(["t"])
    await grow(values, 1, start=2)
    assert (await blobs(encrypted))[value_key("c", "0002")] == ""
    assert "ValueStore(" in repr(values)
