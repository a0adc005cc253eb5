"""`KeyRing`: envelope encryption with data keys wrapped by key-encryption keys.

A data key (DEK) encrypts many records; the current key-encryption key (KEK) wraps it,
and the wrapped DEK travels in every envelope header. Unwrapped DEKs are cached (bounded
LRU) so that a remote key provider is called once per DEK, not once per record.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from checkpointers.crypto.envelope import (
    FLAG_ZSTD,
    FORMAT_VERSION,
    NONCE_SIZE,
    Envelope,
    associated_data,
)
from checkpointers.crypto.local import LocalKey, generate_key_material, load_env_keys, read_key_file
from checkpointers.crypto.provider import KeyEncryptionKey
from checkpointers.errors import (
    ConfigurationError,
    IntegrityError,
    KeyUnavailableError,
    RecordTooLargeError,
)

__all__ = ["KeyRing", "KeyRingStats"]

DEK_SIZE = 32
# Random 96-bit nonces: stay far below the 2**32 messages NIST allows per key.
DEFAULT_DEK_USES = 1 << 24
DEFAULT_CACHE_SIZE = 4096
# zstd on 256 B-1 KiB bodies (checkpoints, small values) saves 40-70% of their bytes for
# about 5 us of CPU per encrypt+decrypt; below 256 B it rarely gains anything.
DEFAULT_COMPRESS_THRESHOLD = 256
DEFAULT_MAX_PLAINTEXT = 64 * 1024 * 1024
ZSTD_LEVEL = 3


_codecs = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstd contexts are costly to build and not thread-safe: one per thread.
    compressor: zstandard.ZstdCompressor | None = getattr(_codecs, "compressor", None)
    if compressor is None:
        compressor = _codecs.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_codecs, "decompressor", None)
    if decompressor is None:
        decompressor = _codecs.decompressor = zstandard.ZstdDecompressor()
    return decompressor


@dataclass(slots=True)
class _DataKey:
    key_id: str
    wrapped: bytes = field(repr=False)
    aead: AESGCM = field(repr=False)
    raw: bytes = field(repr=False)
    uses: int = 0


@dataclass(slots=True)
class KeyRingStats:
    """Counters for metrics: data-key cache hits and misses, provider calls."""

    cache_hits: int = 0
    cache_misses: int = 0
    wraps: int = 0
    unwraps: int = 0


class KeyRing:
    """The key-encryption keys a process may use; one of them is current for writes.

    Args:
        keys: KEK versions, oldest first. The last is current unless `current` names one.
        current: key id of the KEK that wraps new data keys.
        cache_size: how many unwrapped data keys to keep in memory.
        compress_threshold: bodies longer than this many bytes are zstd-compressed.
        max_plaintext: refuse to encrypt or to inflate more than this many bytes.
        dek_uses: how many records one data key encrypts before a new one is made.

    Raises:
        ConfigurationError: no keys, duplicate key ids, or `current` unknown.
    """

    def __init__(
        self,
        keys: Iterable[KeyEncryptionKey],
        *,
        current: str | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD,
        max_plaintext: int = DEFAULT_MAX_PLAINTEXT,
        dek_uses: int = DEFAULT_DEK_USES,
    ) -> None:
        self._keys: dict[str, KeyEncryptionKey] = {}
        for key in keys:
            if key.key_id in self._keys:
                raise ConfigurationError(f"duplicate key id {key.key_id!r} in key ring")
            self._keys[key.key_id] = key
        if not self._keys:
            raise ConfigurationError("a key ring needs at least one key")
        self._current = current if current is not None else next(reversed(self._keys))
        if self._current not in self._keys:
            raise ConfigurationError(f"current key {self._current!r} is not in the key ring")
        self._cache: OrderedDict[tuple[str, bytes], _DataKey] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._write_key: _DataKey | None = None
        # Rotation re-wraps each data key once, however many records share it.
        self._rewrapped: OrderedDict[tuple[str, bytes, str], bytes] = OrderedDict()
        self._compress_threshold = compress_threshold
        self.max_plaintext = max_plaintext
        self._dek_uses = dek_uses
        self.stats = KeyRingStats()

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        """Local keys from `CHECKPOINTERS_KEY` or `CHECKPOINTERS_KEY_FILE`.

        Raises:
            ConfigurationError: neither variable is set, or the keys are malformed.
        """
        return cls(load_env_keys(environ))

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Local keys from a key file (0600; last line current)."""
        return cls(read_key_file(Path(path)))

    @classmethod
    def generate(cls) -> KeyRing:
        """A ring with one fresh random key that lives only in this process (tests, demos)."""
        return cls([LocalKey(generate_key_material())])

    # -- keys ---------------------------------------------------------------------

    @property
    def current_key_id(self) -> str:
        """Key id that wraps new data keys."""
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id in the ring, oldest first."""
        return tuple(self._keys)

    def add(self, key: KeyEncryptionKey, *, make_current: bool = True) -> None:
        """Add a KEK version; by default it becomes current for new writes."""
        if key.key_id in self._keys:
            raise ConfigurationError(f"key {key.key_id!r} is already in the key ring")
        self._keys[key.key_id] = key
        if make_current:
            self._current = key.key_id
            self._write_key = None

    def retire(self, key_id: str) -> None:
        """Remove a KEK version: records still wrapped by it no longer decrypt.

        Raises:
            ConfigurationError: the key is current, or not in the ring.
        """
        if key_id == self._current:
            raise ConfigurationError(f"key {key_id!r} is current: add a new key first")
        if self._keys.pop(key_id, None) is None:
            raise ConfigurationError(f"key {key_id!r} is not in the key ring")
        for cache_key in [k for k in self._cache if k[0] == key_id]:
            del self._cache[cache_key]
        for done in [k for k in self._rewrapped if key_id in (k[0], k[2])]:
            del self._rewrapped[done]

    def _kek(self, key_id: str, record: object) -> KeyEncryptionKey:
        kek = self._keys.get(key_id)
        if kek is None:
            raise KeyUnavailableError(
                f"{record}: wrapped by key {key_id!r}, which is not in the key ring"
            )
        return kek

    # -- data keys ----------------------------------------------------------------

    async def _current_data_key(self) -> _DataKey:
        data_key = self._write_key
        if data_key is None or data_key.uses >= self._dek_uses or data_key.key_id != self._current:
            kek = self._keys[self._current]
            raw = secrets.token_bytes(DEK_SIZE)
            self.stats.wraps += 1
            wrapped = await kek.wrap_key(raw)
            data_key = _DataKey(kek.key_id, wrapped, AESGCM(raw), raw)
            self._remember(data_key)
            self._write_key = data_key
        data_key.uses += 1
        return data_key

    async def _data_key(self, key_id: str, wrapped: bytes, record: object) -> _DataKey:
        cached = self._cache.get((key_id, wrapped))
        if cached is not None:
            self._cache.move_to_end((key_id, wrapped))
            self.stats.cache_hits += 1
            return cached
        self.stats.cache_misses += 1
        kek = self._kek(key_id, record)
        self.stats.unwraps += 1
        try:
            raw = await kek.unwrap_key(wrapped)
        except IntegrityError:
            raise IntegrityError(f"{record}: data key fails to unwrap under {key_id!r}") from None
        if len(raw) != DEK_SIZE:
            raise IntegrityError(f"{record}: data key under {key_id!r} has a wrong size")
        data_key = _DataKey(key_id, wrapped, AESGCM(raw), raw)
        self._remember(data_key)
        return data_key

    def _remember(self, data_key: _DataKey) -> None:
        self._cache[(data_key.key_id, data_key.wrapped)] = data_key
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    # -- envelopes ----------------------------------------------------------------

    async def encrypt(self, plaintext: bytes, aad: bytes, *, record: object = "record") -> bytes:
        """Compress (above the threshold), encrypt and authenticate `plaintext`.

        Args:
            plaintext: the serialized value.
            aad: the record identity the ciphertext is bound to.
            record: the record's name in error messages (its `str()`: built only when
                an error is raised, so callers pass a `RecordId` as is).

        Raises:
            RecordTooLargeError: above `max_plaintext`.
            KeyUnavailableError: the current KEK cannot wrap a new data key.
        """
        if len(plaintext) > self.max_plaintext:
            raise RecordTooLargeError(
                f"{record}: {len(plaintext)} bytes exceeds max_plaintext={self.max_plaintext}"
            )
        flags = 0
        body = plaintext
        if len(plaintext) > self._compress_threshold:
            compressed = _compressor().compress(plaintext)
            if len(compressed) < len(plaintext):
                flags |= FLAG_ZSTD
                body = compressed
        data_key = await self._current_data_key()
        nonce = os.urandom(NONCE_SIZE)
        sealed = data_key.aead.encrypt(nonce, body, associated_data(FORMAT_VERSION, flags, aad))
        return Envelope(flags, data_key.key_id, data_key.wrapped, nonce, sealed).pack()

    async def decrypt(self, blob: bytes, aad: bytes, *, record: object = "record") -> bytes:
        """Authenticate and decrypt an envelope bound to `aad`.

        Raises:
            IntegrityError: not an envelope, tampered, truncated, or bound to another record.
            KeyUnavailableError: the KEK named in the header is not in the ring or unreachable.
        """
        envelope = Envelope.parse(blob, record=record)
        data_key = await self._data_key(envelope.key_id, envelope.wrapped_key, record)
        try:
            body = data_key.aead.decrypt(
                envelope.nonce,
                envelope.sealed,
                associated_data(envelope.version, envelope.flags, aad),
            )
        except InvalidTag:
            raise IntegrityError(
                f"{record}: authentication failed under {envelope.key_id!r} "
                "(tampered, truncated or moved from another record)"
            ) from None
        if not envelope.flags & FLAG_ZSTD:
            return body
        try:
            # A frame's declared size overrides max_output_size in zstandard: check it too.
            if zstandard.frame_content_size(body) > self.max_plaintext:
                raise zstandard.ZstdError("declared size above max_plaintext")
            return _decompressor().decompress(body, max_output_size=self.max_plaintext)
        except zstandard.ZstdError:
            raise IntegrityError(f"{record}: compressed body is malformed or too large") from None

    def key_id_of(self, blob: bytes, *, record: object = "record") -> str:
        """The KEK id in an envelope header (without decrypting)."""
        return Envelope.parse(blob, record=record).key_id

    async def rewrap(self, blob: bytes, *, record: object = "record") -> bytes | None:
        """Re-wrap the data key of `blob` under the current KEK; the ciphertext is unchanged.

        Returns None when the envelope already uses the current KEK.

        Raises:
            IntegrityError, KeyUnavailableError: as `decrypt`.
        """
        envelope = Envelope.parse(blob, record=record)
        if envelope.key_id == self._current:
            return None
        current = self._keys[self._current]
        done = (envelope.key_id, envelope.wrapped_key, current.key_id)
        wrapped = self._rewrapped.get(done)
        if wrapped is None:
            data_key = await self._data_key(envelope.key_id, envelope.wrapped_key, record)
            self.stats.wraps += 1
            wrapped = await current.wrap_key(data_key.raw)
            self._remember(_DataKey(current.key_id, wrapped, data_key.aead, data_key.raw))
            self._rewrapped[done] = wrapped
            while len(self._rewrapped) > self._cache_size:
                self._rewrapped.popitem(last=False)
        return Envelope(
            envelope.flags,
            current.key_id,
            wrapped,
            envelope.nonce,
            envelope.sealed,
            envelope.version,
        ).pack()

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self._keys)!r}, current={self._current!r})"
