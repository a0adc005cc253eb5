"""RedisStore: the shared suite on one server and on a 3-master Redis Cluster, plus what
only Redis has (hash tags, key expiry, reconnects, prefixes)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
import redis
import redis.exceptions
from redis.asyncio import Redis
from redis.crc import key_slot

from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import ConfigurationError, StoreUnavailableError
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.stores.base import Store
from checkpointers.stores.memory import MemoryStore
from checkpointers.stores.redis import RedisStore
from checkpointers.testing import StoreContract, deterministic_key_ring
from checkpointers.urls import open_store
from tests.harness.services import (
    RedisClusterServer,
    RedisServer,
    delete_redis_prefix,
    unique_redis_prefix,
)


class TestRedisStore(StoreContract):
    @pytest.fixture
    async def store(self, redis_server_url: str, redis_prefix: str) -> AsyncIterator[Store]:
        async with RedisStore.from_url(redis_server_url, prefix=redis_prefix) as store:
            yield store


class TestRedisClusterStore(StoreContract):
    @pytest.fixture
    async def store(self, redis_cluster: RedisClusterServer) -> AsyncIterator[Store]:
        prefix = unique_redis_prefix()
        try:
            async with RedisStore.from_url(redis_cluster.url, cluster=True, prefix=prefix) as s:
                yield s
        finally:
            _delete_cluster_prefix(redis_cluster, prefix)


def _delete_cluster_prefix(cluster: RedisClusterServer, prefix: str) -> None:
    """Delete the keys under `prefix` on every node, one key at a time (slots differ)."""
    for node in cluster.nodes:
        with redis.Redis.from_url(node.url) as raw:
            for key in list(raw.scan_iter(match=prefix + "*", count=1000)):
                raw.unlink(key)


# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
async def client(redis_server_url: str) -> AsyncIterator[Redis]:
    """A raw client to look at what the store wrote."""
    raw = Redis.from_url(redis_server_url)
    yield raw
    await raw.aclose()


@pytest.fixture
async def store(redis_server_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    async with RedisStore.from_url(redis_server_url, prefix=redis_prefix) as store:
        yield store


async def _keys(client: Redis, prefix: str) -> list[bytes]:
    return sorted([key async for key in client.scan_iter(match=prefix + "*", count=1000)])


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `check` until it holds (expiry happens in the server, on its own clock)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.02)


async def _shape(client: Redis, prefix: str) -> list[tuple[bytes, bytes, int]]:
    """Keys under `prefix` (prefix cut off, and named P inside) with their type and size."""
    out = []
    for key in await _keys(client, prefix):
        kind = await client.type(key)
        size = {b"zset": client.zcard, b"hash": client.hlen, b"string": client.strlen}[kind](key)
        out.append((key[len(prefix) :].replace(prefix.encode(), b"P"), kind, int(await size)))
    return out


def _rec(thread: str, key: str, **fields: Any) -> Record:
    return Record(RecordId("acme", thread, "", "doc", key), b"body", **fields)


# -- key layout -------------------------------------------------------------------------


async def test_keys_of_a_thread_share_one_slot_whatever_the_ids(
    store: RedisStore, client: Redis
) -> None:
    """Braces, commas and colons in ids neither split a thread across slots nor collide."""
    odd = RecordId("a}{b,", "x{y}z,w:", ":{", "k}", "}{")
    await store.put(Record(odd, b"odd", sort="1", group="g}", status="s{", lease_until=1.0))
    a = RecordId("a,b", "c", "", "doc", "k")
    b = RecordId("a", "b,c", "", "doc", "k")
    await store.put(Record(a, b"a"))
    await store.put(Record(b, b"b"))
    got_a, got_b, got_odd = await store.get(a), await store.get(b), await store.get(odd)
    assert got_a is not None and got_b is not None and got_odd is not None
    assert (got_a.body, got_b.body, got_odd.body) == (b"a", b"b", b"odd")
    tag = store._tag(odd.tenant, odd.thread).encode()
    odd_keys = [k for k in await _keys(client, store.prefix) if k.startswith(tag)]
    assert len(odd_keys) >= 5
    assert len({key_slot(k) for k in odd_keys}) == 1
    assert await store.find(Query(tenant="a}{b,", thread="x{y}z,w:", kind="k}")) == [got_odd]


# -- expiry -----------------------------------------------------------------------------


async def test_expired_records_leave_no_keys(store: RedisStore, client: Redis) -> None:
    """Once every record has expired, no key of the store is left (indexes and listings too)."""
    assert await _keys(client, store.prefix) == []
    soon = time.time() + 0.3
    await store.put(_rec("t1", "a", sort="1", group="g", status="created", expires_at=soon))
    await store.put_many(
        [_rec(f"t{i}", f"b{i}", sort=str(i), lease_until=5.0, expires_at=soon + i / 10)
         for i in range(3)]
    )  # fmt: skip
    await store.claim(Claim("acme", "t1", "doc", ("created",), "pending", lease_until=9.0))
    keys = await _keys(client, store.prefix)
    assert len(keys) > 8
    assert all([await client.pttl(k) > 0 for k in keys])

    async def empty() -> bool:
        return await _keys(client, store.prefix) == []

    await _eventually(empty)
    assert await store.sweep() == 0


async def test_sweep_removes_index_entries_of_expired_records(
    redis_server_url: str, store: RedisStore, client: Redis
) -> None:
    """Next to a record that never expires, the entries of expired ones are swept away."""
    keep = _rec("t1", "keep", sort="0", group="g", status="created", lease_until=1.0)
    await store.put(keep)
    doomed = [replace(keep, id=replace(keep.id, key=f"d{i}"), sort=str(i), group=f"g{i}",
                      expires_at=time.time() + 0.2) for i in range(5)]  # fmt: skip
    await store.put_many(doomed)
    record_keys = [k for k in await _keys(client, store.prefix) if b":r:" in k]
    assert len(record_keys) == 6

    async def expired() -> bool:
        return sum([await client.exists(k) for k in record_keys]) == 1

    await _eventually(expired)
    await store.sweep()
    reference = unique_redis_prefix()
    try:
        async with RedisStore.from_url(redis_server_url, prefix=reference) as alone:
            await alone.put(keep)
            assert await _shape(client, store.prefix) == await _shape(client, reference)
    finally:
        delete_redis_prefix(redis_server_url, reference)


async def test_refresh_ttl_on_read_pushes_expiry(
    redis_server_url: str, redis_prefix: str, client: Redis
) -> None:
    """With refresh_ttl_on_read, a read gives the record its time to live again."""
    async with RedisStore.from_url(
        redis_server_url, prefix=redis_prefix, refresh_ttl_on_read=True
    ) as store:
        written = _rec("t1", "a", sort="1", expires_at=time.time() + 100)
        await store.put(written)
        got = await store.get(written.id)
        assert got is not None and got.expires_at is not None and written.expires_at
        assert got.expires_at > written.expires_at
        for key in await _keys(client, redis_prefix):
            assert await client.pexpiretime(key) >= int(got.expires_at * 1000)


async def test_claim_and_find_of_the_empty_status_and_namespace(store: RedisStore) -> None:
    """Records of the empty status and namespace (no index of their own) are claimed
    oldest first and found by kind, next to records of other statuses and namespaces."""
    done = Record(RecordId("acme", "t", "", "doc", "a"), b"x", sort="1", status="done")
    other = Record(RecordId("acme", "t", "sub", "doc", "b"), b"x", sort="2")
    first = Record(RecordId("acme", "t", "", "doc", "c"), b"x", sort="3")
    second = Record(RecordId("acme", "t", "", "doc", "d"), b"x", sort="4")
    await store.put_many([second, done, other, first])
    found = await store.find(Query(tenant="acme", thread="t", kind="doc", namespace=""))
    assert [r.id.key for r in found] == ["a", "c", "d"]
    claimed = await store.claim(Claim("acme", "t", "doc", ("",), "taken"))
    assert claimed is not None and claimed.id.key == "b"
    claimed = await store.claim(Claim("acme", "t", "doc", ("",), "taken"))
    assert claimed is not None and claimed.id.key == "c"
    taken = await store.find(Query(tenant="acme", thread="t", statuses=("taken",)))
    assert [r.id.key for r in taken] == ["b", "c"]


# -- connections ------------------------------------------------------------------------


async def test_operations_succeed_after_a_server_restart(redis_process: RedisServer) -> None:
    """After the server restarts mid-test, the next operations reconnect and succeed."""
    prefix = unique_redis_prefix()
    async with RedisStore.from_url(redis_process.url, prefix=prefix) as store:
        await store.put(_rec("t1", "a", status="created"))
        redis_process.restart()
        assert await store.put(_rec("t1", "b", status="created")) == 1
        got = await store.get(_rec("t1", "b").id)
        assert got is not None and got.body == b"body"
        claimed = await store.claim(Claim("acme", "t1", "doc", ("created",), "pending"))
        assert claimed is not None and claimed.id.key == "b"
        await store.ping()


async def test_stopped_server_raises_store_unavailable(redis_process: RedisServer) -> None:
    """With the server down, ping and put raise StoreUnavailableError naming host:port,
    never the URL."""
    async with RedisStore.from_url(redis_process.url, prefix="p:") as store:
        await store.put(_rec("t1", "a"))
        redis_process.stop()
        with pytest.raises(StoreUnavailableError) as pinged:
            await store.ping()
        with pytest.raises(StoreUnavailableError) as put:
            await store.put(_rec("t1", "b"))
        with pytest.raises(StoreUnavailableError):
            await store.get(_rec("t1", "a").id)
        for exc in (pinged.value, put.value):
            assert f"cannot connect to 127.0.0.1:{redis_process.port} " in str(exc)
            assert "redis://" not in str(exc)
            assert isinstance(exc.__cause__, redis.exceptions.RedisError)
        redis_process.start()
        await store.ping()


@pytest.mark.parametrize(
    "exc_type",
    sorted(
        {c for c in vars(redis.exceptions).values()
         if isinstance(c, type) and issubclass(c, Exception) and c.__module__ == "redis.exceptions"
         and c is not redis.exceptions.ChildDeadlockedError},
        key=lambda c: c.__name__,
    ),
)  # fmt: skip
async def test_every_driver_exception_is_translated(
    store: RedisStore, exc_type: type[Exception]
) -> None:
    """Each redis-py exception class surfaces as StoreUnavailableError, chained.

    (ChildDeadlockedError is raised by redis-py only in a forked child, never to us.)
    """

    async def fail() -> None:
        raise exc_type.__new__(exc_type)

    with pytest.raises(StoreUnavailableError) as caught:
        await store._io("probe", fail)
    assert caught.value.__cause__ is not None


async def test_borrowed_client_stays_open(redis_server_url: str, redis_prefix: str) -> None:
    """A store built on a caller's client never closes it."""
    client = Redis.from_url(redis_server_url)
    try:
        async with RedisStore(client, prefix=redis_prefix) as store:
            await store.put(_rec("t1", "a"))
        assert await client.ping()
    finally:
        await client.aclose()


async def test_client_decoding_responses_is_refused(redis_server_url: str) -> None:
    """A client with decode_responses=True would corrupt bodies: refused."""
    client = Redis.from_url(redis_server_url, decode_responses=True)
    try:
        with pytest.raises(ConfigurationError):
            RedisStore(client)
    finally:
        await client.aclose()


# -- configuration ----------------------------------------------------------------------


def test_unknown_or_invalid_url_option_names_it_and_hides_the_url() -> None:
    """A typo'd option or a bad prefix is a ConfigurationError naming it, not the URL."""
    with pytest.raises(ConfigurationError, match="'tll'") as typo:
        open_store("redis://:hunter2@127.0.0.1:6379/0?tll=60")
    assert "hunter2" not in str(typo.value)
    with pytest.raises(ConfigurationError, match="'prefix'") as bad:
        open_store("redis://:hunter2@127.0.0.1:6379/0?prefix=a{b}")
    assert "hunter2" not in str(bad.value)
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore.from_url("redis://127.0.0.1:6379/0", prefix="a*")


async def test_url_options_reach_the_store(redis_server_url: str) -> None:
    """prefix, pool_size and refresh_ttl_on_read from the URL configure the store."""
    store, common = open_store(
        f"{redis_server_url}?prefix=cfg:&pool_size=3&refresh_ttl_on_read=true&ttl=5"
    )
    try:
        assert isinstance(store, RedisStore)
        assert (store.prefix, store._refresh, common) == ("cfg:", True, {"ttl": 5.0})
        await store.ping()
        assert "cfg:" in repr(store) and "6379" not in repr(store)
    finally:
        await store.aclose()


# -- secrecy and isolation --------------------------------------------------------------


async def test_no_plaintext_canary_in_any_key(store: RedisStore, client: Redis) -> None:
    """After encrypted writes, the canary is in no key name, DUMP, hash value or member."""
    canary = f"canary-{uuid.uuid4()}".encode()
    enc = EncryptedStore(store, deterministic_key_ring(), tenant="acme", ttl=3600)
    for i in range(3):
        await enc.put(enc.record_id("t1", "", "doc", f"k{i}"), canary * 3, sort=str(i),
                      index={"source": "test"})  # fmt: skip
    entry = await enc.get(enc.record_id("t1", "", "doc", "k0"))
    assert entry is not None and entry.data == canary * 3
    keys = await _keys(client, store.prefix)
    assert keys
    for key in keys:
        assert canary not in key
        assert canary not in (await client.dump(key) or b"")
        kind = await client.type(key)
        if kind == b"hash":
            assert not any(canary in v for v in (await client.hgetall(key)).values())
        elif kind == b"zset":
            assert not any(canary in m for m in await client.zrange(key, 0, -1))


async def test_prefixes_isolate_stores(
    redis_server_url: str, store: RedisStore, client: Redis
) -> None:
    """Two prefixes on one server see and delete only their own records."""
    other_prefix = unique_redis_prefix()
    try:
        async with RedisStore.from_url(redis_server_url, prefix=other_prefix) as other:
            await store.put(_rec("t1", "a", sort="1"))
            await other.put(replace(_rec("t1", "a", sort="1"), body=b"other"))
            mine, theirs = await store.get(_rec("t1", "a").id), await other.get(_rec("t1", "a").id)
            assert mine is not None and theirs is not None
            assert (mine.body, theirs.body) == (b"body", b"other")
            assert [r.body for r in await other.find(Query(tenant=None))] == [b"other"]
            assert await store.delete_tenant("acme") == 1
            assert await other.threads(None) == [("acme", "t1")]
            assert await _keys(client, store.prefix) == []
    finally:
        delete_redis_prefix(redis_server_url, other_prefix)


# -- agreement with the reference store -------------------------------------------------


async def test_random_queries_agree_with_memory_store(store: RedisStore) -> None:
    """Random records and queries give the same answers as the reference MemoryStore."""
    rng = random.Random(7)
    memory = MemoryStore()
    tokens = ["aa" * 16, "bb" * 16, "cc" * 16]
    records = [
        Record(
            RecordId(rng.choice(["acme", "globex"]), rng.choice(["t1", "t2", "t3"]),
                     rng.choice(["", "sub"]), rng.choice(["doc", "write"]), f"k{i:03}"),
            b"b", sort=f"{rng.randrange(40):03}", group=rng.choice(["", "g1", "g2"]),
            status=rng.choice(["created", "done"]),
            tokens=frozenset(rng.sample(tokens, rng.randrange(3))),
        )
        for i in range(150)
    ]  # fmt: skip
    await store.put_many(records)
    await memory.put_many(records)
    for _ in range(150):
        query = Query(
            tenant=rng.choice([None, "acme"]), kind=rng.choice([None, "doc"]),
            thread=rng.choice([None, "t1"]), namespace=rng.choice([None, "", "sub"]),
            group=rng.choice([None, "g1"]), statuses=rng.choice([None, ("done",)]),
            tokens=rng.sample(tokens, rng.choice([0, 0, 1, 2])),
            before=rng.choice([None, "020"]), after=rng.choice([None, "010"]),
            limit=rng.choice([None, 1, 5]), descending=rng.random() < 0.5,
        )  # fmt: skip
        assert [r.id for r in await store.find(query)] == [r.id for r in await memory.find(query)]


async def test_delete_tenant_finds_threads_missing_from_the_listing(
    store: RedisStore, client: Redis
) -> None:
    """A thread whose listing step was lost is still erased by delete_tenant (SCAN pass)."""
    await store.put_many([_rec("t1", "a"), _rec("t2", "b", group="g", lease_until=1.0)])
    await client.zrem(store._threads_key("acme"), "t2")
    assert await store.threads("acme") == [("acme", "t1")]
    assert await store.delete_tenant("acme") == 2
    assert await _keys(client, store.prefix) == []


# --------------------------------------------------------------------------- Entra ID

_OID = "00000000-1111-2222-3333-444444444444"
_SCOPE = "https://redis.azure.com/.default"


@pytest.fixture
def acl_server() -> Any:
    """A throwaway redis-server with an ACL user named like an object id, password `t1`."""
    extra = ("--user", _OID, "on", ">t1", "~*", "&*", "+@all")
    with RedisServer(extra_args=extra) as server:
        server.start()
        yield server


def _entra_url(server: RedisServer) -> str:
    return f"redis://{_OID}@127.0.0.1:{server.port}/0"


async def test_credential_authenticates_with_object_id_and_token(acl_server: RedisServer) -> None:
    """With credential=, connections AUTH as the URL's user with the token (right scope)."""
    from tests.harness.keyvault_fake import AsyncStaticTokenCredential

    credential = AsyncStaticTokenCredential("t1")
    async with RedisStore.from_url(_entra_url(acl_server), credential=credential) as store:
        await store.put(Record(id=RecordId("acme", "t", "", "doc", "k"), body=b"x"))
        assert await store.get(RecordId("acme", "t", "", "doc", "k")) is not None
        who = await store._client.execute_command("ACL", "WHOAMI")
    assert who == _OID.encode()
    assert credential.calls == [(_SCOPE,)]


async def test_credential_wrong_token_is_unavailable(acl_server: RedisServer) -> None:
    """A token the server rejects is a StoreUnavailableError that does not show it."""
    from tests.harness.keyvault_fake import AsyncStaticTokenCredential

    store = RedisStore.from_url(
        _entra_url(acl_server), credential=AsyncStaticTokenCredential("bad")
    )
    try:
        with pytest.raises(StoreUnavailableError) as info:
            await store.ping()
    finally:
        await store.aclose()
    assert "bad" not in str(info.value)


async def test_credential_renewal_reauthenticates_pooled_connections(
    acl_server: RedisServer,
) -> None:
    """A renewed token is sent with AUTH on a pooled connection at its next checkout."""
    from tests.harness.keyvault_fake import AsyncStaticTokenCredential

    credential = AsyncStaticTokenCredential("t1", lifetime=60)  # always near expiry
    async with RedisStore.from_url(_entra_url(acl_server), credential=credential) as store:
        await store.ping()
        with redis.Redis.from_url(acl_server.url) as admin:
            admin.execute_command("ACL", "SETUSER", _OID, ">t2", "<t1")
            credential._sync.token = "t2"
            await store.ping()  # re-AUTH with t2 on the same connection
            credential._sync.token = "t3"  # not accepted: the re-AUTH must fail
            with pytest.raises(StoreUnavailableError):
                await store.ping()
            stats = admin.info("commandstats")
    assert stats["cmdstat_auth"]["calls"] >= 2
    assert len(credential.calls) >= 3 and set(credential.calls) == {(_SCOPE,)}


@pytest.mark.parametrize(
    "url",
    [
        "rediss://127.0.0.1:6380/0",
        f"rediss://{_OID}:pw@127.0.0.1:6380/0",
        f"redis://{_OID}@cache.example.net:6379/0",
    ],
)
def test_credential_refuses_bad_urls(url: str) -> None:
    """credential= needs a user, no password, and TLS to a remote host."""
    with pytest.raises(ConfigurationError) as info:
        RedisStore.from_url(url, credential=object())
    assert "pw" not in str(info.value) and "example" not in str(info.value)


def test_cluster_over_a_unix_socket_is_refused_with_its_reason() -> None:
    """cluster=true with a unix:// URL names the problem instead of a generic URL error."""
    from checkpointers import ConfigurationError

    with pytest.raises(ConfigurationError, match="unix://"):
        RedisStore.from_url("unix:///tmp/redis.sock", cluster=True)
