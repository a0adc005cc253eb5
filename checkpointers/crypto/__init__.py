"""Envelope encryption: key-encryption keys, the key ring, the envelope format."""

from checkpointers.crypto.keyring import KeyRing, KeyRingStats
from checkpointers.crypto.local import (
    LocalKey,
    append_key_file,
    create_key_file,
    load_env_keys,
    read_key_file,
    write_key_file,
)
from checkpointers.crypto.provider import KeyEncryptionKey

__all__ = [
    "KeyEncryptionKey",
    "KeyRing",
    "KeyRingStats",
    "LocalKey",
    "append_key_file",
    "create_key_file",
    "load_env_keys",
    "read_key_file",
    "write_key_file",
]
