"""Connection errors a user makes, through the API: what is wrong, never the URL's secret."""

from __future__ import annotations

import pytest

from checkpointers import ConfigurationError, EncryptedStore, KeyRing, StoreUnavailableError
from checkpointers.stores._redis_client import check_db
from checkpointers.stores.postgres import Target
from tests.harness._common import free_port

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize("url", ["redis://h:6379", "redis://h:6379/", "redis://h/15",
                                 "rediss://u@h:6380/0", "unix:///tmp/r.sock"])  # fmt: skip
def test_good_redis_db_numbers_pass(url: str) -> None:
    """A URL with no db, or a decimal db number, is accepted."""
    check_db(url)


@pytest.mark.parametrize("bad", ["99x", "-1", "1.5", "0x1", " 1"])
def test_redis_db_that_is_not_a_number_names_it(bad: str) -> None:
    """A db path that is not a decimal number is refused by name (redis-py would use 0)."""
    with pytest.raises(ConfigurationError, match=f"database number {bad!r} is not a number"):
        EncryptedStore.from_url(f"redis://:{SECRET}@127.0.0.1:6379/{bad}", keys=KeyRing.generate())


async def test_refused_redis_names_host_and_port() -> None:
    """Nothing listening: 'cannot connect to host:port', and a write was not applied."""
    port = free_port()
    url = f"redis://:{SECRET}@127.0.0.1:{port}/0?attempts=1"
    with pytest.raises(StoreUnavailableError) as caught:
        async with EncryptedStore.from_url(url, keys=KeyRing.generate()):
            pass
    assert f"cannot connect to 127.0.0.1:{port}" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.may_have_applied is False


async def test_refused_postgres_names_host_and_port() -> None:
    """Nothing listening: 'cannot connect to host:port' without the DSN."""
    port = free_port()
    url = f"postgresql://app:{SECRET}@127.0.0.1:{port}/db"
    with pytest.raises(StoreUnavailableError) as caught:
        async with EncryptedStore.from_url(url, keys=KeyRing.generate()):
            pass
    assert f"cannot connect to 127.0.0.1:{port}" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_postgres_target_carries_no_password() -> None:
    """What errors may name about a PostgreSQL server: host, port, database, user only."""
    target = Target.of_url(f"postgresql://app:{SECRET}@db.example:6432/orders?sslmode=require")
    assert target == Target("db.example", 6432, "orders", "app")
    assert SECRET not in repr(target)
