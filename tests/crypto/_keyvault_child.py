"""A new process for tests/crypto/test_azure_keyvault_processes.py: a fresh key cache.

Configuration comes from the environment only: ``CP_KV_URL`` (the vault), ``CP_KV_CA``
(the fake's CA file), ``CP_KV_TOKEN`` (a static bearer token), ``CP_KV_KEY`` (the key
name), ``CP_DB`` (the SQLite file of records) and ``CP_KV_VERSIONS`` (optional,
space-separated: build the ring from these versions without asking the vault).

Modes (argv[1]), each printing one JSON line:

- ``read``: build the ring from the vault, decrypt every record of tenant acme;
  prints the ring's key ids and ``{key: plaintext}``.
- ``first-use``: build the ring, then encrypt one record; prints the error class,
  message and the seconds it took (or ``"error": null``).

The credential is a static token: DefaultAzureCredential is made unusable first, so any
attempt to fall back to it fails loudly.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import azure.identity
import azure.identity.aio
from azure.core.credentials import AccessToken

from checkpointers.crypto.azure_keyvault import key_ring_from_key_vault
from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import CheckpointersError
from checkpointers.stores.sqlite import SqliteStore


def _forbidden(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("DefaultAzureCredential must not be used by the child")


azure.identity.DefaultAzureCredential = _forbidden  # type: ignore[misc,assignment]
azure.identity.aio.DefaultAzureCredential = _forbidden  # type: ignore[misc,assignment]


class StaticToken:
    """An AsyncTokenCredential returning the token it was given."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def main(mode: str) -> dict[str, Any]:
    env = os.environ
    options = {"connection_verify": env["CP_KV_CA"], "verify_challenge_resource": False}
    versions = env.get("CP_KV_VERSIONS", "").split() or None
    credential = StaticToken(env["CP_KV_TOKEN"])
    started = time.monotonic()
    try:
        async with (
            await key_ring_from_key_vault(
                env["CP_KV_URL"], env["CP_KV_KEY"], credential, versions=versions, **options
            ) as ring,
            SqliteStore(env["CP_DB"]) as store,
        ):
            enc = EncryptedStore(store, ring, tenant="acme")
            if mode == "first-use":
                await enc.put(enc.record_id("t9", "", "doc", "probe"), b"probe")
                return {"error": None, "seconds": time.monotonic() - started}
            values = {}
            for record in await store.scan(limit=10_000):
                if record.id.kind == "doc":
                    values[record.id.key] = (await enc.open(record)).data.decode()
            return {"key_ids": list(ring.key_ids), "values": values}
    except CheckpointersError as exc:
        if mode != "first-use":
            raise
        return {
            "error": type(exc).__name__,
            "message": str(exc),
            "seconds": time.monotonic() - started,
        }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))), flush=True)
