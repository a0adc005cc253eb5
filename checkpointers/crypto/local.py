"""Local key-encryption keys: from a key file or the environment.

A key file holds one base64 key (32 random bytes) per line, oldest first; the last line
is the current key for new writes. It must not be readable by group or others (0600).
`CHECKPOINTERS_KEY` holds the same thing inline (several keys separated by commas).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from checkpointers.errors import ConfigurationError, IntegrityError

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "LocalKey",
    "append_key_file",
    "create_key_file",
    "generate_key_material",
    "load_env_keys",
    "read_key_file",
    "write_key_file",
]

KEY_ENV = "CHECKPOINTERS_KEY"
KEY_FILE_ENV = "CHECKPOINTERS_KEY_FILE"
KEY_SIZE = 32


def generate_key_material() -> bytes:
    """32 random bytes for a new local key."""
    return secrets.token_bytes(KEY_SIZE)


class LocalKey:
    """A KEK held in process memory; wraps data keys with AES-KW (RFC 3394).

    The key id is derived from the material (`local:<16 hex>`), so the same key always
    has the same id and nothing needs to be stored beside it.
    """

    __slots__ = ("_key_id", "_material")

    def __init__(self, material: bytes) -> None:
        if not isinstance(material, bytes) or len(material) != KEY_SIZE:
            raise ConfigurationError("a local key must be exactly 32 bytes (base64 in files)")
        self._material = material
        digest = hashlib.sha256(b"checkpointers/local-kek-id\x00" + material).hexdigest()
        self._key_id = f"local:{digest[:16]}"

    @classmethod
    def from_base64(cls, text: str) -> LocalKey:
        """Decode base64 key material (standard or URL-safe alphabet)."""
        cleaned = text.strip()
        try:
            material = base64.b64decode(cleaned.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError("key material is not valid base64") from None
        return cls(material)

    def to_base64(self) -> str:
        """The key material as base64 (for writing a key file)."""
        return base64.b64encode(self._material).decode("ascii")

    @property
    def key_id(self) -> str:
        return self._key_id

    async def wrap_key(self, key: bytes) -> bytes:
        return aes_key_wrap(self._material, key)

    async def unwrap_key(self, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._material, wrapped)
        except (InvalidUnwrap, ValueError):
            raise IntegrityError(f"data key does not unwrap under {self._key_id}") from None

    def __repr__(self) -> str:
        return f"LocalKey(key_id={self._key_id!r})"


def _parse_keys(lines: Sequence[str], source: str) -> list[LocalKey]:
    keys = [LocalKey.from_base64(line) for line in lines if line.strip()]
    if not keys:
        raise ConfigurationError(f"{source} holds no key")
    return keys


def read_key_file(path: str | os.PathLike[str]) -> list[LocalKey]:
    """Read a key file (oldest first). Refuses a file readable by group or others.

    Raises:
        ConfigurationError: missing, unreadable, too permissive, or malformed.
    """
    key_path = Path(path)
    try:
        mode = key_path.stat().st_mode
        text = key_path.read_text("ascii")
    except FileNotFoundError:
        raise ConfigurationError(f"key file {key_path.name!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"key file {key_path.name!r} cannot be read") from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"key file {key_path.name!r} is accessible by group or others: chmod 600 it"
        )
    return _parse_keys(text.splitlines(), f"key file {key_path.name!r}")


def write_key_file(path: str | os.PathLike[str], keys: Sequence[LocalKey]) -> None:
    """Replace the content of a key file atomically, mode 0600 (oldest key first)."""
    key_path = Path(path)
    tmp = key_path.with_name(f".{key_path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write("".join(f"{key.to_base64()}\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, key_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_key_file(path: str | os.PathLike[str]) -> LocalKey:
    """Create a new key file with one fresh key, mode 0600. Refuses to overwrite.

    Raises:
        ConfigurationError: the file already exists.
    """
    key_path = Path(path)
    key = LocalKey(generate_key_material())
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(f"key file {key_path.name!r} already exists") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(f"{key.to_base64()}\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


def append_key_file(path: str | os.PathLike[str]) -> LocalKey:
    """Add a fresh key at the end of a key file: it becomes the current key."""
    keys = read_key_file(path)
    key = LocalKey(generate_key_material())
    write_key_file(path, [*keys, key])
    return key


def load_env_keys(environ: Mapping[str, str] | None = None) -> list[LocalKey]:
    """Keys from `CHECKPOINTERS_KEY` (comma-separated base64) or `CHECKPOINTERS_KEY_FILE`.

    Raises:
        ConfigurationError: neither is set, both are set, or the value is malformed.
    """
    env = os.environ if environ is None else environ
    inline = env.get(KEY_ENV, "").strip()
    key_file = env.get(KEY_FILE_ENV, "").strip()
    if inline and key_file:
        raise ConfigurationError(f"set only one of {KEY_ENV} and {KEY_FILE_ENV}")
    if inline:
        return _parse_keys(inline.split(","), KEY_ENV)
    if key_file:
        return read_key_file(key_file)
    raise ConfigurationError(
        f"no encryption key: set {KEY_ENV} (base64 of 32 bytes) or {KEY_FILE_ENV}, "
        "or pass keys=KeyRing(...); `checkpointers keys generate` makes one"
    )
