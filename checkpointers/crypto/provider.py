"""The key-encryption-key (KEK) interface that every key provider implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["KeyEncryptionKey"]


@runtime_checkable
class KeyEncryptionKey(Protocol):
    """One version of a key-encryption key: wraps and unwraps data keys.

    `key_id` names exactly this version (it is written into every envelope header) and
    must be 1 to 255 printable ASCII characters.

    `unwrap_key` raises `IntegrityError` when the wrapped key fails its integrity check,
    and `KeyUnavailableError` when the provider cannot be reached or refuses.
    """

    @property
    def key_id(self) -> str:
        """The id of this key version, as written in envelope headers."""
        ...

    async def wrap_key(self, key: bytes) -> bytes:
        """Wrap a 32-byte data key."""
        ...

    async def unwrap_key(self, wrapped: bytes) -> bytes:
        """Unwrap a data key wrapped by this key version."""
        ...
