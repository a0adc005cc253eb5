"""Key-encryption keys in Azure Key Vault.

Two providers, both `KeyEncryptionKey`s for a `KeyRing`:

* `KeyVaultKey`: an RSA (or, on Managed HSM, AES) **key** in the vault. Data keys are
  wrapped with RSA-OAEP-256 and unwrapped by the vault, so the key-encryption key never
  leaves it. Permissions: keys/get (the public key, so that wrapping happens locally),
  keys/wrapKey (used instead when keys/get is not granted), keys/unwrapKey.
* `KeyVaultSecretKey`: key material (base64 of 32 bytes) kept as a Key Vault **secret**,
  fetched once, then AES key wrap (RFC 3394) in process, as `LocalKey`.
  Permission: secrets/get.

The key id written into envelope headers is the versioned Key Vault id
(``https://<vault>.vault.azure.net/keys/<name>/<version>``), so records wrapped under an
old version keep decrypting after the key is rotated, for as long as that version stays
enabled and in the ring. `key_ring_from_key_vault` and `key_ring_from_key_vault_secret`
build a ring from every enabled version, the latest one current.

Credentials: the caller owns the credential (any `AsyncTokenCredential`) and closes it;
we close the SDK clients we create. Keyword options are passed to the SDK clients: retry
settings (``retry_total``...), ``connection_verify``, and ``verify_challenge_resource``
(pass False only for a vault outside ``*.vault.azure.net``, such as a test server).

Errors: access denied (401/403), an unknown key or version (404), throttling (429) that
outlasts the SDK's retries, server errors and an unreachable vault raise
`KeyUnavailableError` naming the key id and the permission involved; a wrapped data key
the vault refuses to unwrap (400) raises `IntegrityError`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.keyvault.keys import KeyVaultKeyIdentifier
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.keys.crypto import KeyWrapAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient
from azure.keyvault.secrets import KeyVaultSecretIdentifier
from azure.keyvault.secrets.aio import SecretClient
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from typing_extensions import Self

from checkpointers.crypto.keyring import KeyRing
from checkpointers.errors import (
    CheckpointersError,
    ConfigurationError,
    IntegrityError,
    KeyUnavailableError,
)

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = [
    "KEYVAULT_KEY_ENV",
    "KEYVAULT_URL_ENV",
    "KeyVaultKey",
    "KeyVaultKeyRing",
    "KeyVaultSecretKey",
    "key_ring_from_environment",
    "key_ring_from_key_vault",
    "key_ring_from_key_vault_secret",
]

#: The variables the Bicep templates in infra/ output for the application.
KEYVAULT_URL_ENV = "CHECKPOINTERS_KEYVAULT_URL"
KEYVAULT_KEY_ENV = "CHECKPOINTERS_KEYVAULT_KEY"

KEY_SIZE = 32
_MAX_KEY_ID = 255
_REASONS = {
    401: "authentication failed",
    403: "access denied",
    404: "not found (unknown, deleted or disabled version?)",
    429: "throttled, still after the SDK's retries",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@contextlib.contextmanager
def _vault_errors(
    what: str, subject: str, permission: str, *, unwrap: bool = False
) -> Iterator[None]:
    """Translate Azure SDK errors by status code; messages name the key and the permission."""
    try:
        yield
    except CheckpointersError:
        raise
    except HttpResponseError as exc:
        status = exc.status_code
        code = str(getattr(exc.error, "code", None) or "")
        if unwrap and status == 400:
            raise IntegrityError(
                f"Key Vault refused to unwrap a data key with {subject} (400 {code}): "
                "the wrapped key is corrupt or was wrapped by another key"
            ) from exc
        reason = _REASONS.get(status or 0, "failed")
        raise KeyUnavailableError(
            f"Key Vault {what} with {subject}: {reason} ({status} {code}; needs {permission})"
        ) from exc
    except AzureError as exc:
        raise KeyUnavailableError(
            f"Key Vault {what} with {subject}: vault unreachable ({type(exc).__name__})"
        ) from exc


def _check_key_id(key_id: str) -> None:
    if not (0 < len(key_id) <= _MAX_KEY_ID and key_id.isascii() and key_id.isprintable()):
        raise ConfigurationError(
            f"a Key Vault id must be 1-{_MAX_KEY_ID} printable ASCII characters"
        )


class KeyVaultKey:
    """A KEK that is one version of a Key Vault key; the vault unwraps data keys.

    Args:
        key_id: the versioned key id, ``https://<vault>.vault.azure.net/keys/<name>/<version>``.
        credential: any `AsyncTokenCredential`. Borrowed: never closed here.
        algorithm: the key wrap algorithm (RSA-OAEP-256 by default; A256KW for AES keys
            of a Managed HSM).
        **client_options: passed to `CryptographyClient` (retry settings,
            ``connection_verify``, ``verify_challenge_resource``...).

    Permissions: keys/get, keys/wrapKey (only without keys/get), keys/unwrapKey.
    Close with `aclose()` (or ``async with``): it owns its `CryptographyClient`.

    Raises:
        ConfigurationError: `key_id` is not a versioned Key Vault key id.
    """

    def __init__(
        self,
        key_id: str,
        credential: AsyncTokenCredential,
        *,
        algorithm: str = KeyWrapAlgorithm.rsa_oaep_256,
        **client_options: Any,
    ) -> None:
        try:
            parsed = KeyVaultKeyIdentifier(key_id)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "not a Key Vault key id (https://<vault>/keys/<name>/<version>)"
            ) from None
        if not parsed.version:
            raise ConfigurationError(
                f"Key Vault key {parsed.name!r} needs a version in its id: records must name "
                "the exact key version; use key_ring_from_key_vault() to load every version"
            )
        self._key_id = parsed.source_id.rstrip("/")
        _check_key_id(self._key_id)
        self._algorithm = KeyWrapAlgorithm(algorithm)
        self._credential = credential
        self._client_options = client_options
        self._client: CryptographyClient | None = None

    @property
    def key_id(self) -> str:
        """The versioned Key Vault key id."""
        return self._key_id

    def _crypto(self) -> CryptographyClient:
        if self._client is None:
            self._client = CryptographyClient(
                self._key_id, self._credential, **self._client_options
            )
        return self._client

    async def wrap_key(self, key: bytes) -> bytes:
        """Wrap a data key (locally with the public key when keys/get is granted).

        Raises:
            KeyUnavailableError: the vault denied access, does not know the key, or failed.
        """
        with _vault_errors("wrapKey", self._key_id, "keys/get or keys/wrapKey"):
            result = await self._crypto().wrap_key(self._algorithm, key)
        return result.encrypted_key

    async def unwrap_key(self, wrapped: bytes) -> bytes:
        """Unwrap a data key in the vault.

        Raises:
            IntegrityError: the vault refused the wrapped key (corrupt, or another key's).
            KeyUnavailableError: the vault denied access, does not know the key, or failed.
        """
        with _vault_errors("unwrapKey", self._key_id, "keys/unwrapKey", unwrap=True):
            result = await self._crypto().unwrap_key(self._algorithm, wrapped)
        return result.key

    async def aclose(self) -> None:
        """Close the SDK client this key created (never the credential). Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"KeyVaultKey(key_id={self._key_id!r}, algorithm={str(self._algorithm)!r})"


def _decode_material(value: str | None, subject: str) -> bytes:
    text = (value or "").strip()
    try:
        material = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        material = b""
    if len(material) != KEY_SIZE:
        raise KeyUnavailableError(f"Key Vault secret {subject} is not base64 of {KEY_SIZE} bytes")
    return material


class KeyVaultSecretKey:
    """A KEK whose material (base64 of 32 bytes) is one version of a Key Vault secret.

    The secret is fetched on first use (or by `load()`), then data keys are wrapped with
    AES key wrap in process. Nothing stays open: the `SecretClient` is closed after the
    fetch, so there is nothing to close.

    Args:
        secret_id: the versioned secret id,
            ``https://<vault>.vault.azure.net/secrets/<name>/<version>``.
        credential: any `AsyncTokenCredential`. Borrowed: never closed here.
        **client_options: passed to `SecretClient`.

    Permission: secrets/get.

    Raises:
        ConfigurationError: `secret_id` is not a versioned Key Vault secret id.
    """

    def __init__(
        self, secret_id: str, credential: AsyncTokenCredential | None, **client_options: Any
    ) -> None:
        try:
            parsed = KeyVaultSecretIdentifier(secret_id)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "not a Key Vault secret id (https://<vault>/secrets/<name>/<version>)"
            ) from None
        if not parsed.version:
            raise ConfigurationError(
                f"Key Vault secret {parsed.name!r} needs a version in its id; use "
                "key_ring_from_key_vault_secret() to load every version"
            )
        self._key_id = parsed.source_id.rstrip("/")
        _check_key_id(self._key_id)
        self._vault_url = parsed.vault_url
        self._name = parsed.name
        self._version = parsed.version
        self._credential = credential
        self._client_options = client_options
        self._material: bytes | None = None
        # Guards the one fetch of the material, so concurrent first uses make one request.
        self._fetching = asyncio.Lock()

    @classmethod
    def _with_material(cls, secret_id: str, material: bytes) -> KeyVaultSecretKey:
        key = cls(secret_id, None)
        key._material = material
        return key

    @property
    def key_id(self) -> str:
        """The versioned Key Vault secret id."""
        return self._key_id

    async def load(self) -> None:
        """Fetch the key material now (it is fetched on first use otherwise).

        Raises:
            KeyUnavailableError: denied, not found, disabled, unreachable, or malformed.
        """
        await self._key()

    async def _key(self) -> bytes:
        if self._material is not None:
            return self._material
        async with self._fetching:
            if self._material is None:
                if self._credential is None:
                    raise KeyUnavailableError(f"Key Vault secret {self._key_id} has no credential")
                with _vault_errors("get secret", self._key_id, "secrets/get"):
                    async with SecretClient(
                        self._vault_url, self._credential, **self._client_options
                    ) as client:
                        secret = await client.get_secret(self._name, self._version)
                self._material = _decode_material(secret.value, self._key_id)
            return self._material

    async def wrap_key(self, key: bytes) -> bytes:
        """Wrap a data key with AES key wrap under the secret's material.

        Raises:
            KeyUnavailableError: the secret cannot be fetched.
        """
        return aes_key_wrap(await self._key(), key)

    async def unwrap_key(self, wrapped: bytes) -> bytes:
        """Unwrap a data key.

        Raises:
            IntegrityError: the wrapped key fails its integrity check.
            KeyUnavailableError: the secret cannot be fetched.
        """
        material = await self._key()
        try:
            return aes_key_unwrap(material, wrapped)
        except (InvalidUnwrap, ValueError):
            raise IntegrityError(f"data key does not unwrap under {self._key_id}") from None

    def __repr__(self) -> str:
        return f"KeyVaultSecretKey(key_id={self._key_id!r})"


class KeyVaultKeyRing(KeyRing):
    """A `KeyRing` of `KeyVaultKey`s that closes their clients: `aclose()` or ``async with``."""

    def __init__(self, keys: Iterable[KeyVaultKey], **options: Any) -> None:
        self._vault_keys = list(keys)
        super().__init__(self._vault_keys, **options)

    async def aclose(self) -> None:
        """Close every key's SDK client (never the credential). Idempotent."""
        for key in self._vault_keys:
            await key.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _created(moment: datetime | None) -> datetime:
    return moment or _EPOCH


async def key_ring_from_key_vault(
    vault_url: str,
    key_name: str,
    credential: AsyncTokenCredential,
    *,
    versions: Sequence[str] | None = None,
    algorithm: str = KeyWrapAlgorithm.rsa_oaep_256,
    **client_options: Any,
) -> KeyVaultKeyRing:
    """A key ring of the enabled versions of a Key Vault key, the latest current.

    Args:
        vault_url: ``https://<vault>.vault.azure.net``.
        key_name: the key's name.
        credential: any `AsyncTokenCredential` (borrowed).
        versions: the versions to use, oldest first, the last current; None lists every
            enabled version (keys/list) and makes the latest (keys/get) current.
        algorithm: the key wrap algorithm.
        **client_options: passed to every SDK client.

    Permissions: keys/list (unless `versions` is given), keys/get, keys/unwrapKey.
    Close the ring (``async with`` or `aclose()`) to close its clients.

    Raises:
        KeyUnavailableError: the vault denied access, does not know the key, or failed.
        ConfigurationError: the key has no enabled version.
    """
    subject = f"key {key_name!r} in {vault_url}"
    base = vault_url.rstrip("/")
    if versions is not None:
        ids = [f"{base}/keys/{key_name}/{version}" for version in versions]
    else:
        with _vault_errors("list key versions", subject, "keys/list and keys/get"):
            async with KeyClient(vault_url, credential, **client_options) as client:
                found = [p async for p in client.list_properties_of_key_versions(key_name)]
                latest = await client.get_key(key_name)
        current = latest.id
        older = sorted(
            (p for p in found if p.enabled and p.id != current),
            key=lambda p: _created(p.created_on),
        )
        ids = [p.id for p in older if p.id] + ([current] if latest.properties.enabled else [])
    if not ids:
        raise ConfigurationError(f"{subject} has no enabled version")
    keys = [KeyVaultKey(i, credential, algorithm=algorithm, **client_options) for i in ids]
    return KeyVaultKeyRing(keys)


async def key_ring_from_environment(
    credential: AsyncTokenCredential,
    *,
    environ: Mapping[str, str] | None = None,
    **client_options: Any,
) -> KeyVaultKeyRing:
    """`key_ring_from_key_vault` for the vault and key named by `CHECKPOINTERS_KEYVAULT_URL`
    and `CHECKPOINTERS_KEYVAULT_KEY` (the outputs of the templates in infra/).

    Permissions: as `key_ring_from_key_vault`.

    Raises:
        ConfigurationError: a variable is missing.
        KeyUnavailableError: as `key_ring_from_key_vault`.
    """
    env = os.environ if environ is None else environ
    vault_url = env.get(KEYVAULT_URL_ENV, "").strip()
    key_name = env.get(KEYVAULT_KEY_ENV, "").strip()
    if not vault_url or not key_name:
        raise ConfigurationError(f"set {KEYVAULT_URL_ENV} and {KEYVAULT_KEY_ENV}")
    return await key_ring_from_key_vault(vault_url, key_name, credential, **client_options)


async def key_ring_from_key_vault_secret(
    vault_url: str,
    secret_name: str,
    credential: AsyncTokenCredential,
    *,
    versions: Sequence[str] | None = None,
    **client_options: Any,
) -> KeyRing:
    """A key ring of the enabled versions of a Key Vault secret (key material), latest current.

    Every version's material is fetched now, so a denied or missing secret fails here,
    at startup, rather than on the first record. Nothing stays open afterwards.

    Permissions: secrets/list (unless `versions` is given) and secrets/get.

    Raises:
        KeyUnavailableError: denied, not found, unreachable, or a malformed secret value.
        ConfigurationError: the secret has no enabled version.
    """
    subject = f"secret {secret_name!r} in {vault_url}"
    keys: list[KeyVaultSecretKey] = []
    with _vault_errors("get secret versions", subject, "secrets/list and secrets/get"):
        async with SecretClient(vault_url, credential, **client_options) as client:
            if versions is None:
                found = [p async for p in client.list_properties_of_secret_versions(secret_name)]
                latest = await client.get_secret(secret_name)
                older = sorted(
                    (p for p in found if p.enabled and p.version != latest.properties.version),
                    key=lambda p: _created(p.created_on),
                )
                wanted = [p.version for p in older if p.version]
                if latest.properties.enabled and latest.properties.version:
                    wanted.append(latest.properties.version)
            else:
                wanted = list(versions)
            for version in wanted:
                secret = await client.get_secret(secret_name, version)
                secret_id = secret.id or f"{vault_url.rstrip('/')}/secrets/{secret_name}/{version}"
                material = _decode_material(secret.value, secret_id)
                keys.append(KeyVaultSecretKey._with_material(secret_id, material))
    if not keys:
        raise ConfigurationError(f"{subject} has no enabled version")
    return KeyRing(keys)
