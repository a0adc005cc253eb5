"""The head cache: the newest snapshot per (thread, namespace), with its value keys."""

from __future__ import annotations

from checkpointers.values import HeadCache, value_key


def test_note_keeps_keys_and_reuses_an_unchanged_head() -> None:
    """Noting the same snapshot and versions again keeps the head (and its record ids)."""
    heads = HeadCache()
    heads.note("t", "", "s1", {"a": "1"})
    head = heads.get("t", "")
    assert head is not None and head.keys == {"a": value_key("a", "1")}
    heads.note("t", "", "s1", {"a": "1"})
    assert heads.get("t", "") is head
    heads.note("t", "", "s2", {"a": "2"})
    assert heads.get("t", "") is not head and heads.get("t", "ns") is None


def test_keys_for_tells_equal_versions_of_other_types_apart() -> None:
    """1, 1.0 and True compare equal but name other records: only exact types match."""
    heads = HeadCache()
    heads.note("t", "", "s", {"a": 1})
    head = heads.get("t", "")
    assert head is not None
    assert head.keys_for({"a": 1}) == head.keys
    assert head.keys_for({"a": 1.0}) is None
    assert head.keys_for({"a": True}) is None
    assert head.keys_for({"a": 2}) is None


def test_size_bound_and_forget() -> None:
    """Past its size the least recently noted head goes; forget drops a thread's heads."""
    heads = HeadCache(size=2)
    for n in range(3):
        heads.note(f"t{n}", "", "s", {})
    assert heads.get("t0", "") is None and heads.get("t2", "") is not None
    heads.forget(["t2"])
    assert heads.get("t2", "") is None and heads.get("t1", "") is not None
