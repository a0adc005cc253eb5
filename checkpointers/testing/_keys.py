"""Reproducible keys for tests."""

from __future__ import annotations

import hashlib

from checkpointers.crypto.keyring import KeyRing
from checkpointers.crypto.local import LocalKey


def deterministic_key(seed: str) -> LocalKey:
    """A local key derived from `seed` (never use outside tests)."""
    return LocalKey(hashlib.sha256(f"checkpointers-test-key:{seed}".encode()).digest())


def deterministic_key_ring(*seeds: str) -> KeyRing:
    """A key ring of keys derived from `seeds` (default one seed, "test"); last is current."""
    return KeyRing([deterministic_key(seed) for seed in (seeds or ("test",))])
