"""Key Vault key providers, through the real Azure SDK clients against the HTTPS fake."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import pytest
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.secrets.aio import SecretClient

from checkpointers.crypto.azure_keyvault import (
    KeyVaultKey,
    KeyVaultSecretKey,
    key_ring_from_key_vault,
    key_ring_from_key_vault_secret,
)
from checkpointers.crypto.keyring import KeyRing
from checkpointers.crypto.local import LocalKey
from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import ConfigurationError, IntegrityError, KeyUnavailableError
from checkpointers.stores.memory import MemoryStore
from tests.harness.keyvault_fake import KeyVaultFake

# Small, fast retries: enough to prove the SDK retried, without slowing the suite.
FAST_RETRIES: dict[str, Any] = {"retry_total": 2, "retry_backoff_factor": 0.01,
                                "retry_backoff_max": 0.05}  # fmt: skip


def _options(vault: KeyVaultFake, **extra: Any) -> dict[str, Any]:
    return {**vault.client_kwargs, **FAST_RETRIES, **extra}


@pytest.fixture
async def key_name(keyvault: KeyVaultFake) -> str:
    """A fresh RSA key in the fake vault (one version)."""
    name = f"kek-{uuid.uuid4().hex[:12]}"
    async with KeyClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as client:
        await client.create_rsa_key(name, size=2048)
    return name


async def _rotate(vault: KeyVaultFake, name: str) -> str:
    async with KeyClient(vault.url, vault.credential, **vault.client_kwargs) as client:
        rotated = await client.rotate_key(name)
    assert rotated.id is not None
    return rotated.id


def _store(ring: KeyRing, base: MemoryStore) -> EncryptedStore:
    return EncryptedStore(base, ring, tenant="acme")


async def _write(enc: EncryptedStore, keys: list[str], thread: str = "t1") -> None:
    for key in keys:
        await enc.put(enc.record_id(thread, "", "doc", key), f"secret {key}".encode())


async def _read_all(enc: EncryptedStore, keys: list[str], thread: str = "t1") -> list[bytes]:
    out = []
    for key in keys:
        entry = await enc.get(enc.record_id(thread, "", "doc", key))
        assert entry is not None
        out.append(entry.data)
    return out


async def test_round_trip_through_a_vault_key_ring(keyvault: KeyVaultFake, key_name: str) -> None:
    """Records encrypted with a vault-wrapped data key decrypt with a fresh ring and cache."""
    base = MemoryStore()
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        assert ring.current_key_id.startswith(f"{keyvault.url}keys/{key_name}/")
        await _write(_store(ring, base), ["a", "b"])
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as fresh:
        assert await _read_all(_store(fresh, base), ["a", "b"]) == [b"secret a", b"secret b"]
        raw = await base.get(_store(fresh, base).record_id("t1", "", "doc", "a"))
        assert raw is not None and b"secret" not in raw.body


async def test_rotation_uses_new_version_and_old_records_still_decrypt(
    keyvault: KeyVaultFake, key_name: str
) -> None:
    """After a vault rotation new writes use the new version; old records decrypt, re-wrap,
    and the old version can then be disabled."""
    base = MemoryStore()
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        old_id = ring.current_key_id
        await _write(_store(ring, base), ["old"])
    new_id = await _rotate(keyvault, key_name)
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        assert ring.key_ids == (old_id, new_id) and ring.current_key_id == new_id
        enc = _store(ring, base)
        await _write(enc, ["new"])
        new_raw = await base.get(enc.record_id("t1", "", "doc", "new"))
        assert new_raw is not None and ring.key_id_of(new_raw.body) == new_id
        assert await _read_all(enc, ["old", "new"]) == [b"secret old", b"secret new"]
        for record in await base.scan():
            rewrapped = await ring.rewrap(record.body)
            if rewrapped is not None:
                await base.put(record.__class__(**{**_fields(record), "body": rewrapped}))
    async with KeyClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as client:
        await client.update_key_properties(key_name, old_id.rsplit("/", 1)[1], enabled=False)
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        assert ring.key_ids == (new_id,)
        assert await _read_all(_store(ring, base), ["old", "new"]) == [b"secret old", b"secret new"]


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


async def test_data_key_cache_calls_the_vault_per_data_key_not_per_record(
    keyvault: KeyVaultFake, key_name: str
) -> None:
    """100 records cost one key fetch to write and one unwrap to read with a fresh ring."""
    base = MemoryStore()
    keys = [f"r{i}" for i in range(100)]
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        keyvault.clear_requests()
        await _write(_store(ring, base), keys)
        assert keyvault.count(authorized=True, path_contains=f"/keys/{key_name}") == 1
        assert ring.stats.wraps == 1
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as fresh:
        keyvault.clear_requests()
        assert len(await _read_all(_store(fresh, base), keys)) == 100
        assert keyvault.count("POST", "/unwrapkey", authorized=True) == 1
        assert keyvault.count(authorized=True) <= 2  # the unwrap, maybe a key fetch first
        assert fresh.stats.unwraps == 1


async def test_secret_provider_round_trip(keyvault: KeyVaultFake) -> None:
    """Key material kept as vault secret versions wraps and unwraps data keys; latest current."""
    name = f"kek-secret-{uuid.uuid4().hex[:12]}"
    async with SecretClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as client:
        first = await client.set_secret(name, base64.b64encode(os.urandom(32)).decode())
        assert first.id is not None
        base = MemoryStore()
        await _write(_store(KeyRing([KeyVaultSecretKey(first.id, keyvault.credential,
                                                       **_options(keyvault))]), base), ["a"])  # fmt: skip
        second = await client.set_secret(name, base64.b64encode(os.urandom(32)).decode())
    ring = await key_ring_from_key_vault_secret(
        keyvault.url, name, keyvault.credential, **_options(keyvault)
    )
    assert ring.key_ids == (first.id, second.id) and ring.current_key_id == second.id
    enc = _store(ring, base)
    await _write(enc, ["b"])
    assert await _read_all(enc, ["a", "b"]) == [b"secret a", b"secret b"]
    raw = await base.get(enc.record_id("t1", "", "doc", "b"))
    assert raw is not None and ring.key_id_of(raw.body) == second.id


async def test_malformed_secret_is_a_clear_error(keyvault: KeyVaultFake) -> None:
    """A secret that is not base64 of 32 bytes raises KeyUnavailableError at load."""
    name = f"bad-{uuid.uuid4().hex[:12]}"
    async with SecretClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as client:
        secret = await client.set_secret(name, "not a key")
    assert secret.id is not None
    with pytest.raises(KeyUnavailableError, match="not base64"):
        await KeyVaultSecretKey(secret.id, keyvault.credential, **_options(keyvault)).load()


@pytest.mark.parametrize("fault", ["error", "throttle"])
async def test_failing_vault_gives_key_unavailable_after_sdk_retries(
    keyvault: KeyVaultFake, key_name: str, fault: str
) -> None:
    """A vault answering 500 or 429 on every try raises KeyUnavailableError once retries end."""
    base = MemoryStore()
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        await _write(_store(ring, base), ["a"])
        version_id = ring.current_key_id
    async with KeyVaultKey(version_id, keyvault.credential, **_options(keyvault)) as kek:
        keyvault.clear_requests()
        if fault == "throttle":
            keyvault.inject("throttle", None, retry_after=0, path_contains="/unwrapkey")
        else:
            keyvault.inject("error", None, status=500, path_contains="/unwrapkey")
        with pytest.raises(KeyUnavailableError) as info:
            await _read_all(_store(KeyRing([kek]), base), ["a"])
        assert key_name in str(info.value)
        assert keyvault.count("POST", "/unwrapkey", authorized=True) == 3  # 1 + 2 retries
    if fault == "throttle":
        assert "throttled" in str(info.value)


async def test_denied_and_unknown_keys_are_clear_errors(
    keyvault: KeyVaultFake, key_name: str
) -> None:
    """Unversioned ids, unknown keys, denied access and foreign key ids raise clear errors."""
    with pytest.raises(ConfigurationError, match="version"):
        KeyVaultKey(f"{keyvault.url}keys/{key_name}", keyvault.credential)
    with pytest.raises(ConfigurationError):
        KeyVaultKey("not a url", keyvault.credential)
    unknown = f"{keyvault.url}keys/nope-{uuid.uuid4().hex[:8]}/{'0' * 32}"
    async with KeyVaultKey(unknown, keyvault.credential, **_options(keyvault)) as kek:
        with pytest.raises(KeyUnavailableError, match="not found") as info:
            await kek.wrap_key(os.urandom(32))
        assert unknown in str(info.value)
    with pytest.raises(KeyUnavailableError):
        await key_ring_from_key_vault(keyvault.url, "absent-key", keyvault.credential,
                                      **_options(keyvault))  # fmt: skip
    base = MemoryStore()
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        await _write(_store(ring, base), ["a"])
        keyvault.set_key_enabled(key_name, False)
        try:
            async with KeyVaultKey(ring.current_key_id, keyvault.credential,
                                   **_options(keyvault)) as kek:  # fmt: skip
                with pytest.raises(KeyUnavailableError, match="access denied"):
                    await _read_all(_store(KeyRing([kek]), base), ["a"])
        finally:
            keyvault.set_key_enabled(key_name, True)
    other = _store(KeyRing([LocalKey(os.urandom(32))]), base)
    with pytest.raises(KeyUnavailableError, match="not in the key ring"):
        await _read_all(other, ["a"])


async def test_wrapped_key_the_vault_refuses_is_an_integrity_error(
    keyvault: KeyVaultFake, key_name: str
) -> None:
    """A corrupted wrapped data key that the vault cannot unwrap raises IntegrityError."""
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        kek = KeyVaultKey(ring.current_key_id, keyvault.credential, **_options(keyvault))
        async with kek:
            wrapped = bytearray(await kek.wrap_key(os.urandom(32)))
            wrapped[10] ^= 0xFF
            with pytest.raises(IntegrityError):
                await kek.unwrap_key(bytes(wrapped))


async def test_unreachable_vault_fails_fast(keyvault: KeyVaultFake, key_name: str) -> None:
    """With the vault down, first use raises KeyUnavailableError naming the key, not a hang."""
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        key_id = ring.current_key_id
    keyvault.stop()
    try:
        async with KeyVaultKey(key_id, keyvault.credential,
                               **_options(keyvault, retry_total=0)) as kek:  # fmt: skip
            with pytest.raises(KeyUnavailableError, match=r"unreachable|failed") as info:
                await kek.unwrap_key(os.urandom(256))
            assert key_name in str(info.value)
    finally:
        keyvault.start()


async def test_rotation_from_local_key_to_vault_key(keyvault: KeyVaultFake, key_name: str) -> None:
    """Records under a local key re-wrap under a vault key; the local key can then retire."""
    local = LocalKey(os.urandom(32))
    base = MemoryStore()
    await _write(_store(KeyRing([local]), base), ["a"])
    async with await key_ring_from_key_vault(
        keyvault.url, key_name, keyvault.credential, **_options(keyvault)
    ) as ring:
        ring.add(local, make_current=False)
        for record in await base.scan():
            rewrapped = await ring.rewrap(record.body)
            assert rewrapped is not None
            await base.put(record.__class__(**{**_fields(record), "body": rewrapped}))
        ring.retire(local.key_id)
        assert await _read_all(_store(ring, base), ["a"]) == [b"secret a"]


async def test_key_ring_from_the_environment_variables_infra_outputs(
    keyvault: KeyVaultFake, key_name: str
) -> None:
    """CHECKPOINTERS_KEYVAULT_URL and _KEY name the vault key; a missing one is an error."""
    from checkpointers import ConfigurationError
    from checkpointers.crypto.azure_keyvault import key_ring_from_environment

    environ = {"CHECKPOINTERS_KEYVAULT_URL": keyvault.url, "CHECKPOINTERS_KEYVAULT_KEY": key_name}
    async with await key_ring_from_environment(
        keyvault.credential, environ=environ, **_options(keyvault)
    ) as ring:
        assert ring.current_key_id.startswith(f"{keyvault.url}keys/{key_name}/")
        await _write(_store(ring, MemoryStore()), ["a"])
    with pytest.raises(ConfigurationError, match="CHECKPOINTERS_KEYVAULT_KEY"):
        await key_ring_from_environment(
            keyvault.credential, environ={"CHECKPOINTERS_KEYVAULT_URL": keyvault.url}
        )
