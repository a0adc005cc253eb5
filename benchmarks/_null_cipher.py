"""A key ring that does not encrypt: the baseline of scenario 5, for benchmarking only.

It lives under `benchmarks/`, which is not part of the installed distribution, so no
user can enable it by accident; it also refuses to be built without an explicit
acknowledgement. It compresses exactly as `KeyRing` does (zstd level 3 above the same
threshold, kept only when smaller), so that the difference it measures is the envelope:
data keys, AES-256-GCM, the header and its parsing. Its output is plaintext with a one-byte
prefix, which the real `KeyRing` refuses to read (it fails closed on the version byte).
"""

from __future__ import annotations

import hashlib

import zstandard

from checkpointers import KeyRing, LocalKey

_RAW = b"\x00"
_ZSTD = b"\x01"
#: KeyRing's default compression threshold and level (crypto/keyring.py).
COMPRESS_THRESHOLD = 1024
ZSTD_LEVEL = 3


class NullCipherKeyRing(KeyRing):
    """Compress like `KeyRing`, but store plaintext. Never use outside benchmarks."""

    def __init__(self, *, i_know_this_stores_plaintext: bool = False) -> None:
        if not i_know_this_stores_plaintext:
            raise RuntimeError("NullCipherKeyRing stores plaintext: benchmarks only")
        # A real key underneath only for key ids and the key-wrapping of the blind index.
        super().__init__([LocalKey(hashlib.sha256(b"null-cipher-benchmark").digest())])

    async def encrypt(self, plaintext: bytes, aad: bytes, *, record: str = "record") -> bytes:
        if len(plaintext) > COMPRESS_THRESHOLD:
            compressed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(plaintext)
            if len(compressed) < len(plaintext):
                return _ZSTD + compressed
        return _RAW + plaintext

    async def decrypt(self, blob: bytes, aad: bytes, *, record: str = "record") -> bytes:
        if blob[:1] == _ZSTD:
            return zstandard.ZstdDecompressor().decompress(blob[1:], max_output_size=1 << 30)
        return blob[1:]

    def __repr__(self) -> str:
        return "NullCipherKeyRing(benchmark only, stores plaintext)"
