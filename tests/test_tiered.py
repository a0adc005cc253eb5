"""TieredStore: the shared suite, write-through, failover, stale-copy eviction, archive."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from checkpointers import (
    EncryptedStore,
    MemoryStore,
    RecordNotFoundError,
    SqliteStore,
    Store,
    StoreUnavailableError,
)
from checkpointers.record import Query, Record, RecordId
from checkpointers.resilience import CircuitBreaker
from checkpointers.testing import StoreContract, deterministic_key_ring
from checkpointers.tiered import TieredStore


class SwitchableStore(MemoryStore):
    """A memory store whose every call fails while `down` is set (a tier outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name in {"get", "put", "put_many", "replicate", "find", "claim", "delete",
                    "delete_thread", "delete_tenant", "sweep", "ping", "setup"}:  # fmt: skip
            inner: Callable[..., Any] = attr

            async def guarded(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                if self.down:
                    raise StoreUnavailableError("tier is down")
                return await inner(*args, **kwargs)

            return guarded
        return attr


class TestTieredStore(StoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        tiered = TieredStore(SqliteStore(tmp_path / "d.db"), hot=MemoryStore(),
                             archive=MemoryStore(), owns_stores=True)  # fmt: skip
        async with tiered:
            yield tiered


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tiers() -> tuple[SwitchableStore, MemoryStore, MemoryStore, Clock, TieredStore]:
    hot, durable, archive, clock = SwitchableStore(), MemoryStore(), MemoryStore(), Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=10, clock=clock)
    return hot, durable, archive, clock, TieredStore(durable, hot=hot, archive=archive,
                                                     breaker=breaker)  # fmt: skip


def _rec(key: str, body: bytes = b"x", thread: str = "t") -> Record:
    return Record(id=RecordId("acme", thread, "", "doc", key), body=body, sort=key)


async def test_write_through_and_read_from_hot(tiers: Any) -> None:
    """A write lands in both tiers with the durable version; reads are served hot."""
    hot, _durable, _, _, tiered = tiers
    assert await tiered.put(_rec("a")) == 1
    assert await tiered.put(_rec("a", b"y")) == 2
    cached = await hot.get(_rec("a").id)
    assert cached is not None
    assert (cached.body, cached.version) == (b"y", 2)
    assert cached.expires_at is not None
    got = await tiered.get(_rec("a").id)
    assert got is not None
    assert got.version == 2
    assert tiered.stats.hot_hits == 1


async def test_durable_read_repopulates_hot(tiers: Any) -> None:
    """A record only in the durable tier is read from there and copied hot."""
    hot, durable, _, _, tiered = tiers
    await durable.put(_rec("a"))
    assert (await tiered.get(_rec("a").id)) is not None
    assert tiered.stats.hot_misses == 1
    assert await hot.get(_rec("a").id) is not None


async def test_hot_outage_fails_over_and_never_serves_stale(
    tiers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With the hot tier down the run continues; when it returns, stale copies are evicted."""
    hot, _durable, _, clock, tiered = tiers
    await tiered.put(_rec("a", b"v1"))
    hot.down = True
    with caplog.at_level(logging.WARNING, logger="checkpointers"):
        assert await tiered.put(_rec("a", b"v2")) == 2
    assert tiered.stats.failovers == 1
    assert any(getattr(r, "event", "") == "checkpointers.failover" for r in caplog.records)
    got = await tiered.get(_rec("a").id)
    assert got is not None
    assert got.body == b"v2"
    calls = hot.calls
    assert (await tiered.get(_rec("a").id)) is not None
    assert hot.calls == calls  # breaker open: hot tier not even tried
    hot.down = False
    clock.now = 11
    got = await tiered.get(_rec("a").id)
    assert got is not None
    assert got.body == b"v2"  # the stale v1 copy was evicted before use
    cached = await hot.get(_rec("a").id)
    assert cached is not None
    assert cached.body == b"v2"


async def test_durable_outage_refuses_writes(tiers: Any) -> None:
    """When the durable tier is down a write raises and is not acknowledged hot."""
    hot, durable, _, _, tiered = tiers

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("durable down", may_have_applied=False)

    durable.put = broken  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailableError):
        await tiered.put(_rec("a"))
    assert await hot.get(_rec("a").id) is None


async def test_archive_verifies_then_moves_and_restores(tiers: Any) -> None:
    """archive_thread copies, verifies and deletes warm copies; reads fall back to it."""
    hot, durable, archive, _, tiered = tiers
    await tiered.put_many([_rec(f"k{i}") for i in range(5)] + [_rec("o", thread="other")])
    assert await tiered.archive_thread("acme", "t") == 5
    assert await durable.find(Query(tenant="acme", thread="t")) == []
    assert await hot.find(Query(tenant="acme", thread="t")) == []
    archived = await archive.find(Query(tenant="acme", thread="t"))
    assert len(archived) == 5
    assert all(r.expires_at is not None for r in archived)
    got = await tiered.get(_rec("k1").id)
    assert got is not None
    assert tiered.stats.archive_reads == 1
    assert len(await tiered.find(Query(tenant="acme", thread="t"))) == 5
    assert await tiered.restore_thread("acme", "t") == 5
    assert len(await durable.find(Query(tenant="acme", thread="t"))) == 5
    with pytest.raises(RecordNotFoundError):
        await tiered.archive_thread("acme", "missing")


async def test_erase_reaches_every_tier(tiers: Any) -> None:
    """delete_thread removes a thread from hot, durable and archive."""
    hot, durable, archive, _, tiered = tiers
    await tiered.put_many([_rec("a"), _rec("b")])
    await archive.replicate([_rec("old")])
    assert await tiered.delete_thread("acme", "t") == 3
    for tier in (hot, durable, archive):
        assert await tier.find(Query(tenant="acme", thread="t")) == []


async def test_tiers_from_urls_through_encrypted_store(tmp_path: Path) -> None:
    """A list of URLs builds tiers; the encrypted API works over them end to end."""
    url = f"sqlite:///{tmp_path}/d.db"
    async with EncryptedStore.from_url(["memory://", url], keys=deterministic_key_ring()) as enc:
        assert isinstance(enc.store, TieredStore)
        rid = enc.record_id("t", "", "doc", "a")
        await enc.put(rid, b"hello")
        entry = await enc.get(rid)
        assert entry is not None
        assert entry.data == b"hello"


async def test_archive_logs_events_with_info_enabled(
    tiers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Archive and restore log structured events (INFO on) without failing the move."""
    _, _, _, _, tiered = tiers
    await tiered.put(_rec("a"))
    with caplog.at_level(logging.INFO, logger="checkpointers"):
        await tiered.archive_thread("acme", "t")
        await tiered.restore_thread("acme", "t")
    events = [getattr(r, "event", "") for r in caplog.records]
    assert "checkpointers.archive" in events
    assert "checkpointers.restore" in events


def test_credential_without_an_azure_tier_is_refused(tmp_path: Path) -> None:
    """credential= goes to the archive tier only; with no archive URL it is an error."""
    from checkpointers import ConfigurationError

    with pytest.raises(ConfigurationError, match="credential"):
        TieredStore.from_urls(["memory://", f"sqlite:///{tmp_path}/d.db"], credential=object())


async def test_absent_record_of_a_live_thread_skips_the_archive(tiers: Any) -> None:
    """A record absent from a thread the durable tier holds is not looked up in the
    archive and counts as absent, not as a miss; an archived thread's record is."""
    _, _, archive, _, tiered = tiers
    await tiered.put(_rec("a"))
    await archive.replicate([_rec("only-archived")])
    assert await tiered.get(_rec("only-archived").id) is None
    assert (tiered.stats.archive_reads, tiered.stats.absent_reads) == (0, 1)
    await tiered.put(_rec("b", thread="gone"))
    await tiered.archive_thread("acme", "gone")
    assert await tiered.get(_rec("b", thread="gone").id) is not None
    assert (tiered.stats.archive_reads, tiered.stats.hot_misses) == (1, 1)
    assert await tiered.get(_rec("a").id) is not None
    assert tiered.stats.hit_ratio == 0.5
