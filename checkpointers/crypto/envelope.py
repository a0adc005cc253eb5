"""The envelope format: a versioned header, then AES-256-GCM ciphertext.

Layout of format version 1 (all integers big-endian)::

    version   u8      = 1, checked first
    flags     u8      bit 0: body compressed with zstd; other bits must be 0
    key_id    u8 len  + ASCII id of the key-encryption key (KEK) that wrapped the DEK
    wrapped   u16 len + the data key (DEK) wrapped by that KEK
    nonce     12 bytes
    sealed    ciphertext + 16-byte GCM tag

The associated data is `b"checkpointers" || version || flags || record identity`; the
key id and the wrapped DEK stay out of it so that rotation rewrites headers only (key
wrapping carries its own integrity). This module only packs and parses; `KeyRing` does
the cryptography.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from checkpointers.errors import IntegrityError

__all__ = ["FLAG_ZSTD", "FORMAT_VERSION", "Envelope", "associated_data"]

FORMAT_VERSION = 1
FLAG_ZSTD = 0x01
_KNOWN_FLAGS = FLAG_ZSTD
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_KEY_ID = 255
MAX_WRAPPED = 1024
_AAD_PREFIX = b"checkpointers"


def associated_data(version: int, flags: int, identity: bytes) -> bytes:
    """The AAD of a body: format version, flags and the record identity."""
    return _AAD_PREFIX + bytes((version, flags)) + identity


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed envelope. `sealed` is ciphertext followed by the tag."""

    flags: int
    key_id: str
    wrapped_key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    sealed: bytes = field(repr=False)
    version: int = FORMAT_VERSION

    def pack(self) -> bytes:
        """Serialize to bytes."""
        key_id = self.key_id.encode("ascii")
        if not 0 < len(key_id) <= MAX_KEY_ID:
            raise ValueError("key id must be 1 to 255 ASCII bytes")
        if not 0 < len(self.wrapped_key) <= MAX_WRAPPED:
            raise ValueError("wrapped key must be 1 to 1024 bytes")
        if len(self.nonce) != NONCE_SIZE:
            raise ValueError("nonce must be 12 bytes")
        return b"".join(
            (
                bytes((self.version, self.flags, len(key_id))),
                key_id,
                struct.pack(">H", len(self.wrapped_key)),
                self.wrapped_key,
                self.nonce,
                self.sealed,
            )
        )

    @classmethod
    def parse(cls, blob: bytes, *, record: object) -> Envelope:
        """Parse `blob`, checking every length before slicing.

        Raises:
            IntegrityError: not an envelope of a known version, or malformed.
        """

        def bad(why: str) -> IntegrityError:
            return IntegrityError(f"{record}: {why}")

        if len(blob) < 3:
            raise bad("truncated envelope")
        version, flags, key_id_len = blob[0], blob[1], blob[2]
        if version != FORMAT_VERSION:
            raise bad(
                f"unknown envelope format version {version} (not encrypted by checkpointers?)"
            )
        if flags & ~_KNOWN_FLAGS:
            raise bad("unknown envelope flags")
        pos = 3
        if key_id_len == 0 or len(blob) < pos + key_id_len + 2:
            raise bad("truncated envelope header")
        try:
            key_id = blob[pos : pos + key_id_len].decode("ascii")
        except UnicodeDecodeError:
            raise bad("malformed key id") from None
        if not key_id.isprintable():
            raise bad("malformed key id")
        pos += key_id_len
        (wrapped_len,) = struct.unpack_from(">H", blob, pos)
        pos += 2
        if not 0 < wrapped_len <= MAX_WRAPPED:
            raise bad("malformed wrapped key length")
        if len(blob) < pos + wrapped_len + NONCE_SIZE + TAG_SIZE:
            raise bad("truncated envelope")
        wrapped = blob[pos : pos + wrapped_len]
        pos += wrapped_len
        nonce = blob[pos : pos + NONCE_SIZE]
        pos += NONCE_SIZE
        return cls(
            flags=flags,
            key_id=key_id,
            wrapped_key=wrapped,
            nonce=nonce,
            sealed=blob[pos:],
            version=version,
        )
