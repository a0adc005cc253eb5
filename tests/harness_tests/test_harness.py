"""The test harness proves itself against the real SDKs and servers it provides."""

from __future__ import annotations

import os
import time
from typing import Any

import asyncpg
import pytest
import redis
import redis.asyncio as aioredis
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.keys import KeyClient as SyncKeyClient
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.keys.crypto import CryptographyClient as SyncCryptographyClient
from azure.keyvault.keys.crypto import KeyWrapAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient
from azure.keyvault.secrets import SecretClient as SyncSecretClient
from azure.keyvault.secrets.aio import SecretClient
from azure.storage.blob.aio import BlobServiceClient
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from tests.harness import plugin
from tests.harness._common import HarnessUnavailable, port_accepts
from tests.harness.azurite import LISTEN_PATTERN, Azurite
from tests.harness.keyvault_fake import KeyVaultFake
from tests.harness.services import (
    REDIS_URL_ENV,
    PostgresServer,
    RedisClusterServer,
    RedisServer,
    postgres_reachable,
    redis_service,
    throwaway_database,
    unique_redis_prefix,
)


def _name(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


# --------------------------------------------------------------------------- Azurite


async def test_azurite_blob_round_trip_and_conditional_create(azurite: Azurite) -> None:
    """A blob round-trips through Azurite and a conditional create of an existing blob is 409."""
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(_name("c"))
        await container.create_container()
        blob = container.get_blob_client("run/1")
        await blob.upload_blob(b"payload-1", overwrite=False)
        downloaded = await (await blob.download_blob()).readall()
        assert downloaded == b"payload-1"
        with pytest.raises(ResourceExistsError) as info:
            await blob.upload_blob(b"payload-2", overwrite=False)
        assert info.value.status_code == 409


async def test_azurite_stop_and_start_keeps_port(azurite: Azurite) -> None:
    """A stopped Azurite refuses connections and comes back on the same port."""
    port = azurite.port
    azurite.stop()
    assert not port_accepts(port)
    async with BlobServiceClient.from_connection_string(
        azurite.connection_string, retry_total=0
    ) as service:
        with pytest.raises(ServiceRequestError):
            await service.get_service_properties()
        azurite.start()
        assert azurite.port == port
        await service.create_container(_name("after"))


async def test_azurite_persistent_keeps_blobs_across_restart() -> None:
    """A persistent Azurite keeps its blobs when restarted on the same port."""
    with Azurite(persistent=True) as server:
        async with BlobServiceClient.from_connection_string(server.connection_string) as svc:
            await svc.create_container("kept")
            await svc.get_blob_client("kept", "b").upload_blob(b"x")
            server.restart()
            blob = await svc.get_blob_client("kept", "b").download_blob()
            assert await blob.readall() == b"x"


def test_azurite_listen_line_format() -> None:
    """The parsed stdout line is Azurite's own 'successfully listens' line."""
    line = "Azurite Blob service successfully listens on http://127.0.0.1:44865"
    match = LISTEN_PATTERN.search(line)
    assert match is not None
    assert match.group(1) == "44865"


# --------------------------------------------------------------------------- Key Vault


def test_keyvault_fresh_instance_challenges_then_accepts_bearer() -> None:
    """The first unauthenticated request gets the 401 challenge; the retry with a token passes."""
    with KeyVaultFake() as fake:
        client = SyncSecretClient(fake.url, fake.sync_credential, **fake.client_kwargs)
        with client:
            client.set_secret("challenge", "v")
        log = fake.requests
        assert log[0].status == 401
        assert not log[0].authorized
        assert log[1].authorized
        assert log[1].status == 200
        assert (log[1].method, log[1].path) == ("PUT", "/secrets/challenge")
        assert fake.sync_credential.calls == [("https://vault.azure.net/.default",)]


async def test_keyvault_secret_set_get_latest_and_versions(keyvault: KeyVaultFake) -> None:
    """Async SecretClient sets, gets by version and latest, lists versions and deletes."""
    name = _name("secret")
    async with SecretClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as client:
        first = await client.set_secret(name, "one", content_type="text/plain")
        second = await client.set_secret(name, "two")
        latest = await client.get_secret(name)
        assert latest.value == "two"
        assert latest.properties.version == second.properties.version
        old = await client.get_secret(name, first.properties.version)
        assert old.value == "one"
        assert old.properties.content_type == "text/plain"
        versions = [p.version async for p in client.list_properties_of_secret_versions(name)]
        assert set(versions) == {first.properties.version, second.properties.version}
        names = [p.name async for p in client.list_properties_of_secrets()]
        assert name in names
        deleted = await client.delete_secret(name)
        assert deleted.name == name
        with pytest.raises(ResourceNotFoundError):
            await client.get_secret(name)
    assert keyvault.count("GET", f"/secrets/{name}/") >= 1


async def test_keyvault_rsa_wrap_unwrap_round_trip(keyvault: KeyVaultFake) -> None:
    """KeyClient creates an RSA key and CryptographyClient wraps locally, unwraps in the vault."""
    name = _name("kek")
    async with KeyClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as keys:
        key = await keys.create_rsa_key(name, size=2048)
        assert key.key_type == "RSA"
        async with CryptographyClient(
            key.id, keyvault.credential, **keyvault.client_kwargs
        ) as crypto:
            data_key = os.urandom(32)
            for algorithm in (KeyWrapAlgorithm.rsa_oaep, KeyWrapAlgorithm.rsa_oaep_256):
                wrapped = await crypto.wrap_key(algorithm, data_key)
                assert wrapped.key_id == key.id
                unwrapped = await crypto.unwrap_key(algorithm, wrapped.encrypted_key)
                assert unwrapped.key == data_key
        rotated = await keys.rotate_key(name)
        assert rotated.properties.version != key.properties.version
        latest = await keys.get_key(name)
        assert latest.properties.version == rotated.properties.version
        versions = [p.version async for p in keys.list_properties_of_key_versions(name)]
        assert len(versions) == 2
    assert keyvault.count("POST", "/unwrapkey", status=200) == 2
    assert keyvault.count("POST", "/wrapkey") == 0
    assert keyvault.key_versions(name) == [key.properties.version, rotated.properties.version]


def test_keyvault_sync_clients(keyvault: KeyVaultFake) -> None:
    """The sync KeyClient and CryptographyClient work against the fake too."""
    name = _name("synckek")
    with SyncKeyClient(keyvault.url, keyvault.sync_credential, **keyvault.client_kwargs) as keys:
        key = keys.create_rsa_key(name, size=3072)
        with SyncCryptographyClient(
            key, keyvault.sync_credential, **keyvault.client_kwargs
        ) as crypto:
            wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
            assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == (
                b"k" * 32
            )


async def test_keyvault_fault_injection(keyvault: KeyVaultFake) -> None:
    """Injected 500, 429 (with Retry-After) and hangs reach the SDK as errors, then clear."""
    name = _name("faulty")
    async with SecretClient(
        keyvault.url, keyvault.credential, retry_total=0, **keyvault.client_kwargs
    ) as client:
        await client.set_secret(name, "v")

        keyvault.fail_next(1, status=500)
        with pytest.raises(HttpResponseError) as error:
            await client.get_secret(name)
        assert error.value.status_code == 500

        keyvault.throttle_next(1, retry_after=7)
        with pytest.raises(HttpResponseError) as throttled:
            await client.get_secret(name)
        assert throttled.value.status_code == 429
        response: Any = throttled.value.response
        assert response.headers["Retry-After"] == "7"

        keyvault.hang_next(None, path_contains=f"/secrets/{name}")
        started = time.monotonic()
        with pytest.raises(ServiceResponseError):
            await client.get_secret(name, read_timeout=0.5)
        assert time.monotonic() - started < 10
        keyvault.clear_faults()

        assert (await client.get_secret(name)).value == "v"
    assert keyvault.count(status=500) == 1
    assert keyvault.count(status=429) == 1


async def test_keyvault_down_and_back(keyvault: KeyVaultFake) -> None:
    """A stopped vault refuses connections; restarted on the same port it keeps its secrets."""
    name = _name("restart")
    async with SecretClient(
        keyvault.url, keyvault.credential, retry_total=0, **keyvault.client_kwargs
    ) as client:
        await client.set_secret(name, "kept")
        keyvault.stop()
        with pytest.raises(ServiceRequestError):
            await client.get_secret(name)
        keyvault.start()
        assert (await client.get_secret(name)).value == "kept"


# --------------------------------------------------------------------------- Redis


async def test_redis_server_url_and_prefix(redis_server_url: str, redis_prefix: str) -> None:
    """The session Redis answers and the prefix is unique to the test."""
    assert redis_prefix != unique_redis_prefix()
    client = aioredis.Redis.from_url(redis_server_url)
    try:
        await client.set(redis_prefix + "k", b"v")
        assert await client.get(redis_prefix + "k") == b"v"
    finally:
        await client.aclose()


async def test_redis_restart_client_recovers(redis_process: RedisServer) -> None:
    """A redis.asyncio client fails while the server is down and works again after restart."""
    client = aioredis.Redis.from_url(
        redis_process.url,
        socket_timeout=2.0,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), 3),
        retry_on_error=[redis.ConnectionError],
    )
    try:
        await client.set("k", "v")
        redis_process.stop()
        with pytest.raises(redis.ConnectionError):
            await client.ping()
        redis_process.start()
        assert await client.ping()
        assert await client.get("k") is None  # nothing is persisted
        redis_process.kill()
        assert not redis_process.running
        redis_process.restart()
        await client.set("k2", "v2")  # the stale pooled connection is retried once
        assert await client.get("k2") == b"v2"
    finally:
        await client.aclose()


async def test_redis_cluster_spans_slots(redis_cluster: RedisClusterServer) -> None:
    """A RedisCluster client sets and gets keys that land on every master."""
    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    try:
        keys = [f"key-{i}" for i in range(60)]
        for key in keys:
            await client.set(key, key)
        for key in keys:
            assert await client.get(key) == key.encode()
        owners = {getattr(client.get_node_from_key(key), "port", None) for key in keys}
        assert owners == set(redis_cluster.ports)
    finally:
        await client.aclose()


def test_redis_service_falls_back_to_throwaway(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing at the configured URL, a throwaway redis-server is started and stopped."""
    monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:1/0")
    with redis_service() as url:
        assert url != "redis://127.0.0.1:1/0"
        with redis.Redis.from_url(url) as client:
            assert client.ping()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    assert not port_accepts(port)


# --------------------------------------------------------------------------- PostgreSQL


async def test_postgres_database_is_fresh(postgres_database: str) -> None:
    """postgres_database is a new empty database that asyncpg can use."""
    conn = await asyncpg.connect(postgres_database)
    try:
        name = await conn.fetchval("SELECT current_database()")
        assert name.startswith("test_")
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1)")
        assert await conn.fetchval("SELECT count(*) FROM t") == 1
    finally:
        await conn.close()


async def test_throwaway_database_is_dropped(postgres_dsn: str) -> None:
    """The throwaway database exists inside the block and is gone after it."""
    with throwaway_database(postgres_dsn) as dsn:
        name = dsn.rsplit("/", 1)[1]
        conn = await asyncpg.connect(dsn)
        await conn.close()  # left open connections are forced out on drop anyway
    conn = await asyncpg.connect(postgres_dsn)
    try:
        assert await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name) is None
    finally:
        await conn.close()


def test_postgres_throwaway_server() -> None:
    """A throwaway PostgreSQL cluster starts from the Debian binaries and stops."""
    try:
        server = PostgresServer()
    except HarnessUnavailable as exc:
        plugin.unavailable(str(exc))
    with server:
        assert postgres_reachable(server.dsn)
        port = server.port
    assert not port_accepts(port)


# --------------------------------------------------------------------------- plugin rules


def test_unavailable_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing backend skips without CI and fails with CI set."""
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        plugin.unavailable("nothing here")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        plugin.unavailable("nothing here")
