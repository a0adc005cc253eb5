"""The list cache: bounded in states and bytes, least recently used out first."""

from __future__ import annotations

from checkpointers.values import ListCache, ListState


def state(key: str, *items: bytes) -> ListState:
    return ListState.of(key, 0, [(b"t", item) for item in items])


def test_state_counts_item_bytes_and_digests_items() -> None:
    """A state's size is the bytes of its type tags and data; one digest per item."""
    s = state("k", b"abc", b"d")
    assert s.size == 6 and len(s.digests) == 2 and s.depth == 0


def test_byte_budget_evicts_the_least_recently_used() -> None:
    """Past its byte budget the cache drops the states used longest ago."""
    cache = ListCache(max_bytes=10)
    cache.remember({("t1", "", "c"): state("a", b"xxx")})  # 4 bytes
    cache.remember({("t2", "", "c"): state("b", b"xxx")})
    assert cache.hit(("t1", "", "c"), "a") is not None  # t1 is now the most recent
    cache.remember({("t3", "", "c"): state("c", b"xxx")})
    assert set(cache) == {("t1", "", "c"), ("t3", "", "c")}
    assert cache.nbytes == sum(s.size for s in cache.values()) == 8


def test_count_budget_and_oversized_states() -> None:
    """At most `max_states` are kept, and a state above the byte budget is not kept."""
    cache = ListCache(max_states=2, max_bytes=100)
    for n in range(3):
        cache.remember({(f"t{n}", "", "c"): state("k", b"x")})
    assert len(cache) == 2 and ("t0", "", "c") not in cache
    cache.remember({("t1", "", "c"): state("k", b"x" * 200)})
    assert ("t1", "", "c") not in cache and cache.nbytes == 2


def test_hit_needs_the_same_blob() -> None:
    """`hit` answers only for the blob the state was stored under; `peek` for any."""
    cache = ListCache()
    cache.remember({("t", "", "c"): state("k1", b"x")})
    assert cache.hit(("t", "", "c"), "k2") is None
    assert cache.peek(("t", "", "c")) is cache.hit(("t", "", "c"), "k1")


def test_forget_drops_threads_and_their_bytes() -> None:
    """Forgetting a thread drops its states of every namespace and channel."""
    cache = ListCache()
    cache.remember({("t", "", "a"): state("k", b"x"), ("t", "ns", "b"): state("k", b"y")})
    cache.remember({("u", "", "a"): state("k", b"z")})
    cache.forget(["t"])
    assert list(cache) == [("u", "", "a")] and cache.nbytes == 2
    assert "nbytes=2" in repr(cache)
