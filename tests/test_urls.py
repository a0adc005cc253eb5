"""URL parsing: schemes, typed options, errors that never echo the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from checkpointers import ConfigurationError, EncryptedStore, MemoryStore, SqliteStore, open_store
from checkpointers.testing import deterministic_key_ring


async def test_memory_and_sqlite_urls(tmp_path: Path) -> None:
    """memory:// and sqlite:///path open the matching stores with common options split off."""
    store, common = open_store("memory://?ttl=60&tenant=acme")
    assert isinstance(store, MemoryStore)
    assert common == {"ttl": 60.0, "tenant": "acme"}
    db = tmp_path / "x.db"
    sqlite, common = open_store(f"sqlite:///{db}?busy_timeout=2")
    assert isinstance(sqlite, SqliteStore)
    assert sqlite.path == str(db)
    assert common == {}
    await sqlite.aclose()


async def test_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:///file.db is relative to the working directory."""
    monkeypatch.chdir(tmp_path)
    store, _ = open_store("sqlite:///file.db")
    assert isinstance(store, SqliteStore)
    assert store.path == "file.db"
    await store.aclose()


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("nonsense", "scheme://"),
        ("ftp://user:hunter2@host/x", "unknown URL scheme 'ftp'"),
        ("memory://?tll=60", "unknown option 'tll'"),
        ("memory://?ttl=-5", "option 'ttl'"),
        ("memory://?ttl=abc", "option 'ttl'"),
        ("memory://?ttl=1&ttl=2", "given twice"),
        ("memory://?tenant=bad%20tenant", "option 'tenant'"),
        ("sqlite://hunter2@host/x.db", "no host"),
        ("sqlite:///:memory:", "memory://"),
    ],
)
def test_bad_urls_raise_clear_errors_without_echoing(url: str, needle: str) -> None:
    """Each malformed URL raises ConfigurationError naming the problem, not the URL."""
    with pytest.raises(ConfigurationError) as info:
        open_store(url)
    message = str(info.value)
    assert needle in message
    assert "hunter2" not in message


def test_missing_directory_is_a_configuration_error(tmp_path: Path) -> None:
    """A sqlite file in a directory that does not exist is refused up front."""
    with pytest.raises(ConfigurationError):
        open_store(f"sqlite:///{tmp_path}/missing/x.db")


async def test_from_url_applies_tenant_and_ttl() -> None:
    """tenant= and ttl= from the URL reach the EncryptedStore; records get an expiry."""
    async with EncryptedStore.from_url(
        "memory://?tenant=acme&ttl=30", keys=deterministic_key_ring()
    ) as enc:
        assert enc.tenant == "acme"
        rid = enc.record_id("t", "", "doc", "k")
        await enc.put(rid, b"x")
        entry = await enc.get(rid)
        assert entry is not None
        assert entry.record.expires_at is not None


def test_from_url_without_keys_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No keys argument and no key in the environment: ConfigurationError, never plaintext."""
    monkeypatch.delenv("CHECKPOINTERS_KEY", raising=False)
    monkeypatch.delenv("CHECKPOINTERS_KEY_FILE", raising=False)
    with pytest.raises(ConfigurationError, match="CHECKPOINTERS_KEY"):
        EncryptedStore.from_url("memory://")
