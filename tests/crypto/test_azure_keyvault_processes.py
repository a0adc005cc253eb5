"""Key Vault keys across processes: what one process wraps, a new one (fresh cache) unwraps.

The parent writes records through the real SDK against the HTTPS fake into a SQLite file;
`tests/crypto/_keyvault_child.py` runs in a new Python process with only the vault URL, the
fake's CA file and a static token, and reads them back, or reports the error it met.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.keys.aio import KeyClient

from checkpointers.crypto.azure_keyvault import KeyVaultKey, key_ring_from_key_vault
from checkpointers.crypto.keyring import KeyRing
from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import KeyUnavailableError
from checkpointers.maintenance import key_usage, rotate_keys
from checkpointers.stores.sqlite import SqliteStore
from tests.harness.keyvault_fake import KeyVaultFake

pytestmark = pytest.mark.keyvault

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("_keyvault_child.py")
# One SDK retry, fast: the parent only sets up keys and records.
FAST: dict[str, Any] = {"retry_total": 1, "retry_backoff_factor": 0.01}
# What "not a hang" means here: the child's whole run, interpreter start included.
BOUND_SECONDS = 20.0


@pytest.fixture
async def key_name(keyvault: KeyVaultFake) -> str:
    """A fresh RSA key in the fake vault (one version)."""
    name = f"kek-{uuid.uuid4().hex[:12]}"
    async with KeyClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as client:
        await client.create_rsa_key(name, size=2048)
    return name


async def _ring(vault: KeyVaultFake, name: str) -> Any:
    return await key_ring_from_key_vault(
        vault.url, name, vault.credential, **vault.client_kwargs, **FAST
    )


async def _write(db: Path, ring: KeyRing, keys: list[str]) -> None:
    async with SqliteStore(db) as store:
        enc = EncryptedStore(store, ring, tenant="acme")
        for key in keys:
            await enc.put(enc.record_id("t1", "", "doc", key), f"secret {key}".encode())


def _child(
    vault: KeyVaultFake, name: str, db: Path, mode: str, *, versions: str = ""
) -> dict[str, Any]:
    """Run the child script in a new interpreter; return its JSON report."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "CP_KV_URL": vault.url,
        "CP_KV_CA": vault.ca_path,
        "CP_KV_TOKEN": "child-static-token",
        "CP_KV_KEY": name,
        "CP_DB": str(db),
        "CP_KV_VERSIONS": versions,
    }
    done = subprocess.run(
        [sys.executable, str(CHILD), mode], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


async def test_records_wrapped_by_the_vault_decrypt_in_a_new_process(
    keyvault: KeyVaultFake, key_name: str, tmp_path: Path
) -> None:
    """A new process with a static credential and an empty cache decrypts every record,
    asking the vault to unwrap the one data key once."""
    db = tmp_path / "records.db"
    keys = [f"r{i:02}" for i in range(20)]
    async with await _ring(keyvault, key_name) as ring:
        await _write(db, ring, keys)
        key_id = ring.current_key_id
    assert b"secret r00" not in db.read_bytes()
    keyvault.clear_requests()
    report = await asyncio.to_thread(_child, keyvault, key_name, db, "read")
    assert report["key_ids"] == [key_id]
    assert report["values"] == {k: f"secret {k}" for k in keys}
    # A fresh process: it met the vault's auth challenge, then unwrapped the data key
    # in the vault exactly once for the 20 records.
    assert keyvault.count(authorized=False, status=401) >= 1
    assert keyvault.count("POST", "/unwrapkey", authorized=True) == 1


async def test_rotation_rewraps_then_the_old_version_is_disabled_and_all_still_decrypt(
    keyvault: KeyVaultFake, key_name: str, tmp_path: Path
) -> None:
    """After a vault rotation, `rotate_keys` re-wraps every record under the new version;
    with the old version disabled, a new process decrypts them all without touching it."""
    db = tmp_path / "records.db"
    old_keys, new_keys = [f"old{i}" for i in range(5)], [f"new{i}" for i in range(3)]
    async with await _ring(keyvault, key_name) as ring:
        old_id = ring.current_key_id
        await _write(db, ring, old_keys)
    async with KeyClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as client:
        rotated = await client.rotate_key(key_name)
    new_id = rotated.id
    assert new_id is not None and new_id != old_id
    async with await _ring(keyvault, key_name) as ring:
        assert ring.key_ids == (old_id, new_id) and ring.current_key_id == new_id
        await _write(db, ring, new_keys)
        async with SqliteStore(db) as store:
            assert await key_usage(store, ring) == {old_id: 5, new_id: 3}
            report = await rotate_keys(store, ring)
            assert (report.rewrapped, report.current, report.gone) == (5, 3, 0)
            assert await key_usage(store, ring) == {new_id: 8}
    old_version = old_id.rsplit("/", 1)[1]
    async with KeyClient(keyvault.url, keyvault.credential, **keyvault.client_kwargs) as client:
        await client.update_key_properties(key_name, old_version, enabled=False)
    # The old version really is refused now, so success below cannot come from it.
    async with KeyVaultKey(old_id, keyvault.credential, **keyvault.client_kwargs, **FAST) as kek:
        with pytest.raises(KeyUnavailableError, match="access denied"):
            await kek.unwrap_key(b"\0" * 256)
    keyvault.clear_requests()
    child = await asyncio.to_thread(_child, keyvault, key_name, db, "read")
    assert child["key_ids"] == [new_id]
    assert child["values"] == {k: f"secret {k}" for k in old_keys + new_keys}
    assert keyvault.count(path_contains=old_version) == 0


# The unreachable case waits out the SDK's default connection retries (~5 s); its
# first-encrypt twin adds nothing that `test_unreachable_vault_fails_fast` does not cover.
@pytest.mark.parametrize(
    ("fault", "listed"),
    [("denied", True), ("denied", False), ("unreachable", True)],
    ids=["denied-ring-from-vault", "denied-given-versions", "unreachable-ring-from-vault"],
)
async def test_denied_or_unreachable_vault_fails_clearly_at_first_use_in_a_new_process(
    keyvault: KeyVaultFake, key_name: str, tmp_path: Path, fault: str, listed: bool
) -> None:
    """A vault answering 403, or not listening, makes a new process's first use (loading
    the ring, or the first encrypt) raise KeyUnavailableError naming vault and key, fast."""
    async with await _ring(keyvault, key_name) as ring:
        version = ring.current_key_id.rsplit("/", 1)[1]
    if fault == "denied":
        keyvault.inject("error", None, status=403)
    else:
        keyvault.stop()
    started = time.monotonic()
    report = await asyncio.to_thread(
        _child, keyvault, key_name, tmp_path / "records.db", "first-use",
        versions="" if listed else version,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert report["error"] == KeyUnavailableError.__name__, report
    message = report["message"]
    assert key_name in message
    assert f"127.0.0.1:{keyvault.port}" in message  # the vault
    assert ("403" in message and "denied" in message) if fault == "denied" else (
        "unreachable" in message)  # fmt: skip
    assert "child-static-token" not in message
    assert elapsed < BOUND_SECONDS and report["seconds"] < BOUND_SECONDS
