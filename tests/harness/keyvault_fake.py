"""An in-process HTTPS fake of the Azure Key Vault REST API, for the real Azure SDK clients.

No Key Vault emulator exists, so the tests run the real `azure-keyvault-secrets` and
`azure-keyvault-keys` clients (sync and async, `CryptographyClient` included) against this
server on 127.0.0.1. It speaks TLS with a throwaway CA from `trustme`; clients trust it with
``connection_verify=fake.ca_path`` and must pass ``verify_challenge_resource=False``
(the vault is not under vault.azure.net); `fake.client_kwargs` holds both.

Behaviour that the SDK relies on:

- A request without ``Authorization: Bearer ...`` gets 401 with the Key Vault challenge
  (``WWW-Authenticate: Bearer authorization=".../<tenant>", resource="https://vault.azure.net"``).
  The SDK caches the challenge per origin for the whole process.
- Any api-version is accepted.
- Secrets: set (PUT), get by version or latest (``/secrets/<name>/`` or without the slash),
  list, list versions, update (PATCH), delete (no soft delete: no ``recoveryId``, so the
  SDK's delete poller finishes at once).
- Keys: create RSA 2048/3072/4096 (real keys from `cryptography`), get by version or
  latest (a valid public JWK), list, list versions, rotate, update, delete, and
  wrapkey/unwrapkey/encrypt/decrypt with RSA-OAEP, RSA-OAEP-256 and RSA1_5.

For reliability tests, faults can be injected (429 + Retry-After, any 5xx, or a hang until
released), for the next N authorised requests or until cleared, optionally only for
requests whose path contains a substring. Every request is logged (`requests`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from aiohttp import web
from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.harness._common import LOOPBACK, HarnessUnavailable

try:  # azure-core >= 1.31
    from azure.core.credentials import AccessTokenInfo
except ImportError:  # pragma: no cover - older azure-core
    AccessTokenInfo = None  # type: ignore[assignment,misc]

__all__ = [
    "DEFAULT_TENANT_ID",
    "AsyncStaticTokenCredential",
    "FaultKind",
    "KeyVaultFake",
    "RecordedRequest",
    "StaticTokenCredential",
]

DEFAULT_TENANT_ID = "72f988bf-0000-4000-8000-00000000c0de"
KEY_VAULT_RESOURCE = "https://vault.azure.net"
NAME_PATTERN = re.compile(r"^[0-9A-Za-z-]{1,127}$")
RSA_SIZES = (2048, 3072, 4096)
DEFAULT_KEY_OPS = ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey")

FaultKind = Literal["throttle", "error", "hang"]


# --------------------------------------------------------------------------- credentials


class StaticTokenCredential:
    """A sync `TokenCredential` (and `SupportsTokenInfo`) that returns a fixed token.

    Tests use it instead of DefaultAzureCredential/ManagedIdentityCredential, which
    would probe the instance metadata address. `calls` records the scopes asked for.
    """

    def __init__(self, token: str = "test-token", lifetime: int = 3600) -> None:
        self.token = token
        self.lifetime = lifetime
        self.calls: list[tuple[str, ...]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """Return the fixed token, valid for `lifetime` seconds from now."""
        self.calls.append(scopes)
        return AccessToken(self.token, int(time.time()) + self.lifetime)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        """Return the fixed token as an `AccessTokenInfo`."""
        self.calls.append(scopes)
        expires_on = int(time.time()) + self.lifetime
        if AccessTokenInfo is None:  # pragma: no cover - older azure-core
            return AccessToken(self.token, expires_on)
        return AccessTokenInfo(self.token, expires_on)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> StaticTokenCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStaticTokenCredential:
    """An `AsyncTokenCredential` (and `AsyncSupportsTokenInfo`) with a fixed token."""

    def __init__(self, token: str = "test-token", lifetime: int = 3600) -> None:
        self._sync = StaticTokenCredential(token, lifetime)

    @property
    def calls(self) -> list[tuple[str, ...]]:
        """The scopes asked for, one entry per token request."""
        return self._sync.calls

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """Return the fixed token."""
        return self._sync.get_token(*scopes, claims=claims, tenant_id=tenant_id)

    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        """Return the fixed token as an `AccessTokenInfo`."""
        return self._sync.get_token_info(*scopes, options=options)

    async def close(self) -> None:
        """Nothing to release."""

    async def __aenter__(self) -> AsyncStaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --------------------------------------------------------------------------- state


class RecordedRequest(NamedTuple):
    """One request seen by the fake."""

    method: str
    path: str
    status: int
    authorized: bool
    query: str


@dataclass
class _Fault:
    kind: FaultKind
    remaining: int | None
    status: int
    retry_after: int
    path_contains: str | None
    method: str | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path_contains is None or self.path_contains in path


@dataclass
class _SecretVersion:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str] | None
    enabled: bool
    created: int
    updated: int


@dataclass
class _KeyVersion:
    version: str
    private_key: rsa.RSAPrivateKey
    kty: str
    key_ops: list[str]
    tags: dict[str, str] | None
    enabled: bool
    created: int
    updated: int


@dataclass
class _Vault:
    secrets: dict[str, list[_SecretVersion]] = field(default_factory=dict)
    keys: dict[str, list[_KeyVersion]] = field(default_factory=dict)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


def _new_version() -> str:
    return secrets.token_hex(16)


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _padding_for(alg: str) -> padding.AsymmetricPadding:
    if alg == "RSA-OAEP":
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    if alg == "RSA-OAEP-256":
        return padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
    if alg == "RSA1_5":
        return padding.PKCS1v15()
    raise _HttpError(400, "BadParameter", f"Unsupported algorithm: {alg}")


# --------------------------------------------------------------------------- server


class KeyVaultFake:
    """The fake vault: an aiohttp HTTPS server on its own loop in a daemon thread.

    Start it with `start()` (or as a context manager); the port is kept across
    `stop()`/`start()` so that "vault down" tests can bring it back. State (secrets, keys)
    survives a restart.
    """

    def __init__(self, *, tenant_id: str = DEFAULT_TENANT_ID, hang_limit: float = 60.0) -> None:
        import trustme

        self.tenant_id = tenant_id
        self.hang_limit = hang_limit
        self._dir = Path(tempfile.mkdtemp(prefix="cp-kvfake-"))
        self._ca = trustme.CA()
        self.ca_path = str(self._dir / "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_path)
        self._server_cert = self._ca.issue_cert(LOOPBACK, "localhost")
        self.credential = AsyncStaticTokenCredential()
        self.sync_credential = StaticTokenCredential()
        self._vault = _Vault()
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        """The HTTPS port (known after the first `start()`)."""
        if self._port is None:
            raise RuntimeError("the Key Vault fake has not been started")
        return self._port

    @property
    def url(self) -> str:
        """The vault URL, `https://127.0.0.1:<port>/`."""
        return f"https://{LOOPBACK}:{self.port}/"

    @property
    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every SDK client needs for this vault."""
        return {"connection_verify": self.ca_path, "verify_challenge_resource": False}

    @property
    def running(self) -> bool:
        """Tell whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 30.0) -> KeyVaultFake:
        """Start serving (same port as before, if any) and return once it listens."""
        if self.running:
            return self
        started = time.monotonic()
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, errors), name="keyvault-fake", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise HarnessUnavailable("the Key Vault fake did not start in time")
        if errors:
            self._thread.join()
            raise HarnessUnavailable(f"the Key Vault fake failed to start: {errors[0]!r}")
        self.startup_seconds = time.monotonic() - started
        return self

    def _serve(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                errors.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close_runner())
        finally:
            loop.close()
            self._loop = None

    async def _open(self) -> None:
        self._release = asyncio.Event()
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, self._port or 0))
            sock.listen(128)
        except OSError:
            sock.close()
            await runner.cleanup()
            raise
        self._port = sock.getsockname()[1]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(context)
        site = web.SockSite(runner, sock, ssl_context=context)
        await site.start()
        self._runner = runner

    async def _close_runner(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            server = self._runner.server
            if server is not None:
                # "Vault down" is abrupt: drop every connection instead of a TLS goodbye
                # that would outlive this loop.
                for handler in server.connections:
                    if handler.transport is not None:
                        handler.transport.abort()
            await self._runner.cleanup()
            self._runner = None
        current = asyncio.current_task()
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        # Let the transports' close callbacks (scheduled with call_soon) run before the
        # loop closes, or their sockets would leak.
        for _ in range(3):
            await asyncio.sleep(0)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving: open connections are closed, hung requests released."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("the Key Vault fake did not stop in time")
        self._thread = None

    def restart(self) -> KeyVaultFake:
        """Stop, then start again on the same port (state is kept)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and delete the CA files."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> KeyVaultFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._log.clear()

    def count(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        *,
        status: int | None = None,
        authorized: bool | None = None,
    ) -> int:
        """Count logged requests matching every given filter."""
        return sum(
            1
            for entry in self.requests
            if (method is None or entry.method == method.upper())
            and (path_contains is None or path_contains in entry.path)
            and (status is None or entry.status == status)
            and (authorized is None or entry.authorized == authorized)
        )

    # ------------------------------------------------------------------ faults

    def inject(
        self,
        kind: FaultKind,
        count: int | None = 1,
        *,
        status: int | None = None,
        retry_after: int = 1,
        path_contains: str | None = None,
        method: str | None = None,
    ) -> None:
        """Make the next `count` matching authorised requests fail (None: until cleared).

        Args:
            kind: "throttle" (429 + Retry-After), "error" (`status`, default 500) or
                "hang" (no answer until `clear_faults()`, `stop()` or `hang_limit`).
            count: how many requests the fault applies to; None for all until cleared.
            status: the status of an "error" fault.
            retry_after: seconds in the Retry-After header of a "throttle" fault.
            path_contains: only requests whose path contains this text.
            method: only requests with this HTTP method.
        """
        if count is not None and count < 1:
            raise ValueError("count must be positive or None")
        default = {"throttle": 429, "error": 500, "hang": 503}[kind]
        fault = _Fault(kind, count, status or default, retry_after, path_contains, method)
        with self._lock:
            self._faults.append(fault)

    def throttle_next(
        self, count: int | None = 1, *, retry_after: int = 1, path_contains: str | None = None
    ) -> None:
        """Answer the next `count` requests with 429 and `Retry-After: retry_after`."""
        self.inject("throttle", count, retry_after=retry_after, path_contains=path_contains)

    def fail_next(
        self, count: int | None = 1, *, status: int = 500, path_contains: str | None = None
    ) -> None:
        """Answer the next `count` requests with `status` (default 500)."""
        self.inject("error", count, status=status, path_contains=path_contains)

    def hang_next(self, count: int | None = 1, *, path_contains: str | None = None) -> None:
        """Leave the next `count` requests unanswered until released (a client timeout)."""
        self.inject("hang", count, path_contains=path_contains)

    def clear_faults(self) -> None:
        """Remove every pending fault and release hung requests."""
        with self._lock:
            self._faults.clear()
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._release_hung)

    def _release_hung(self) -> None:
        if self._release is not None:
            self._release.set()
            self._release = asyncio.Event()

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def reset(self) -> None:
        """Clear faults and the request log (stored secrets and keys are kept)."""
        self.clear_faults()
        self.clear_requests()

    # ------------------------------------------------------------------ inspection

    def secret_versions(self, name: str) -> list[str]:
        """Versions of a stored secret, oldest first."""
        with self._lock:
            return [item.version for item in self._vault.secrets.get(name, [])]

    def key_versions(self, name: str) -> list[str]:
        """Versions of a stored key, oldest first."""
        with self._lock:
            return [item.version for item in self._vault.keys.get(name, [])]

    def set_key_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable every version of a key (disabled keys refuse operations)."""
        with self._lock:
            for item in self._vault.keys.get(name, []):
                item.enabled = enabled

    # ------------------------------------------------------------------ HTTP

    def _log_request(self, request: web.Request, status: int, authorized: bool) -> None:
        entry = RecordedRequest(
            request.method, request.path, status, authorized, request.query_string
        )
        with self._lock:
            self._log.append(entry)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            self._log_request(request, 401, False)
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
                f'resource="{KEY_VAULT_RESOURCE}"'
            )
            return self._error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                headers={"WWW-Authenticate": challenge},
            )
        fault = self._take_fault(request.method, request.path)
        if fault is not None:
            return await self._apply_fault(request, fault)
        try:
            body = await self._json_body(request)
            status, payload = await self._dispatch(request.method, request.path, body)
        except _HttpError as exc:
            self._log_request(request, exc.status, True)
            return self._error(exc.status, exc.code, exc.message)
        self._log_request(request, status, True)
        return web.json_response(payload, status=status)

    async def _apply_fault(self, request: web.Request, fault: _Fault) -> web.StreamResponse:
        if fault.kind == "hang":
            release = self._release
            self._log_request(request, 0, True)
            if release is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(release.wait(), self.hang_limit)
            return self._error(503, "ServiceUnavailable", "released after a hang")
        self._log_request(request, fault.status, True)
        if fault.kind == "throttle":
            return self._error(
                fault.status,
                "Throttled",
                "Request was not processed because too many requests were received.",
                headers={"Retry-After": str(fault.retry_after)},
            )
        return self._error(fault.status, "InternalServerError", "injected fault")

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        raw = await request.read()
        if not raw:
            return {}
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise _HttpError(400, "BadParameter", "The request body is not JSON.") from exc
        if not isinstance(parsed, dict):
            raise _HttpError(400, "BadParameter", "The request body must be an object.")
        return parsed

    @staticmethod
    def _error(
        status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.json_response(
            {"error": {"code": code, "message": message}}, status=status, headers=headers
        )

    async def _dispatch(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        parts = path.lstrip("/").split("/")
        collection, rest = parts[0], parts[1:]
        if rest and rest[-1] == "" and len(rest) > 1 and rest[-2] != "":
            rest = rest[:-1]  # "/secrets/name/" is the latest version
        handler: Callable[[str, list[str], dict[str, Any]], Awaitable[tuple[int, Any]]]
        if collection == "secrets":
            handler = self._secrets
        elif collection == "keys":
            handler = self._keys
        else:
            raise _HttpError(404, "NotFound", "Unknown path.")
        return await handler(method, rest, body)

    # ------------------------------------------------------------------ secrets

    def _secret_id(self, name: str, version: str | None = None) -> str:
        base = f"https://{LOOPBACK}:{self.port}/secrets/{name}"
        return f"{base}/{version}" if version else base

    @staticmethod
    def _secret_attributes(item: _SecretVersion) -> dict[str, Any]:
        return {
            "enabled": item.enabled,
            "created": item.created,
            "updated": item.updated,
            "recoveryLevel": "Purgeable",
            "recoverableDays": 0,
        }

    def _secret_bundle(self, name: str, item: _SecretVersion) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "value": item.value,
            "id": self._secret_id(name, item.version),
            "attributes": self._secret_attributes(item),
            "tags": item.tags,
        }
        if item.content_type is not None:
            bundle["contentType"] = item.content_type
        return bundle

    def _secret_item(self, name: str, item: _SecretVersion, versioned: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": self._secret_id(name, item.version if versioned else None),
            "attributes": self._secret_attributes(item),
            "tags": item.tags,
        }
        if item.content_type is not None:
            entry["contentType"] = item.content_type
        return entry

    def _find_secret(self, name: str, version: str) -> _SecretVersion:
        versions = self._vault.secrets.get(name)
        if not versions:
            raise _HttpError(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {name} was not found in this key vault.",
            )
        if not version:
            return versions[-1]
        for item in versions:
            if item.version == version:
                return item
        raise _HttpError(
            404,
            "SecretNotFound",
            f"A secret with (name/id) {name}/{version} was not found in this key vault.",
        )

    async def _secrets(self, method: str, rest: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        if not rest or rest == [""]:
            if method != "GET":
                raise _HttpError(405, "MethodNotAllowed", "Method not allowed.")
            with self._lock:
                items = [self._secret_item(n, v[-1], False) for n, v in self._vault.secrets.items()]
            return 200, {"value": items, "nextLink": None}
        name = rest[0]
        if not NAME_PATTERN.match(name):
            raise _HttpError(400, "BadParameter", "The secret name is not valid.")
        tail = rest[1:]
        with self._lock:
            if method == "PUT" and not tail:
                value = body.get("value")
                if not isinstance(value, str):
                    raise _HttpError(400, "BadParameter", "The secret value is required.")
                now = int(time.time())
                attributes = body.get("attributes") or {}
                item = _SecretVersion(
                    _new_version(),
                    value,
                    body.get("contentType"),
                    body.get("tags"),
                    bool(attributes.get("enabled", True)),
                    now,
                    now,
                )
                self._vault.secrets.setdefault(name, []).append(item)
                return 200, self._secret_bundle(name, item)
            if method == "DELETE" and not tail:
                versions = self._vault.secrets.pop(name, None)
                if not versions:
                    raise _HttpError(404, "SecretNotFound", f"Secret {name} not found.")
                return 200, self._secret_bundle(name, versions[-1])
            if method == "GET" and tail == ["versions"]:
                versions = self._vault.secrets.get(name)
                if not versions:
                    raise _HttpError(404, "SecretNotFound", f"Secret {name} not found.")
                items = [self._secret_item(name, v, True) for v in versions]
                return 200, {"value": items, "nextLink": None}
            if len(tail) <= 1:
                item = self._find_secret(name, tail[0] if tail else "")
                if method == "GET":
                    if not item.enabled:
                        raise _HttpError(
                            403, "Forbidden", "Operation get is not allowed on a disabled secret."
                        )
                    return 200, self._secret_bundle(name, item)
                if method == "PATCH":
                    attributes = body.get("attributes") or {}
                    if "enabled" in attributes:
                        item.enabled = bool(attributes["enabled"])
                    if "contentType" in body:
                        item.content_type = body["contentType"]
                    if "tags" in body:
                        item.tags = body["tags"]
                    item.updated = int(time.time())
                    bundle = self._secret_bundle(name, item)
                    bundle.pop("value")
                    return 200, bundle
        raise _HttpError(405, "MethodNotAllowed", "Method not allowed.")

    # ------------------------------------------------------------------ keys

    def _key_id(self, name: str, version: str | None = None) -> str:
        base = f"https://{LOOPBACK}:{self.port}/keys/{name}"
        return f"{base}/{version}" if version else base

    @staticmethod
    def _key_attributes(item: _KeyVersion) -> dict[str, Any]:
        return {
            "enabled": item.enabled,
            "created": item.created,
            "updated": item.updated,
            "recoveryLevel": "Purgeable",
            "recoverableDays": 0,
            "exportable": False,
        }

    def _key_bundle(self, name: str, item: _KeyVersion) -> dict[str, Any]:
        numbers = item.private_key.public_key().public_numbers()
        return {
            "key": {
                "kid": self._key_id(name, item.version),
                "kty": item.kty,
                "key_ops": list(item.key_ops),
                "n": _b64url(_int_bytes(numbers.n)),
                "e": _b64url(_int_bytes(numbers.e)),
            },
            "attributes": self._key_attributes(item),
            "tags": item.tags,
        }

    def _key_item(self, name: str, item: _KeyVersion, versioned: bool) -> dict[str, Any]:
        return {
            "kid": self._key_id(name, item.version if versioned else None),
            "attributes": self._key_attributes(item),
            "tags": item.tags,
        }

    def _find_key(self, name: str, version: str) -> _KeyVersion:
        versions = self._vault.keys.get(name)
        if not versions:
            raise _HttpError(
                404, "KeyNotFound", f"A key with (name/id) {name} was not found in this key vault."
            )
        if not version:
            return versions[-1]
        for item in versions:
            if item.version == version:
                return item
        raise _HttpError(
            404,
            "KeyNotFound",
            f"A key with (name/id) {name}/{version} was not found in this key vault.",
        )

    @staticmethod
    def _generate(body: dict[str, Any], like: _KeyVersion | None) -> _KeyVersion:
        if like is not None:
            kty, size = like.kty, like.private_key.key_size
            exponent, ops, tags = (
                like.private_key.public_key().public_numbers().e,
                like.key_ops,
                like.tags,
            )
        else:
            kty = body.get("kty", "RSA")
            if kty not in ("RSA", "RSA-HSM"):
                raise _HttpError(
                    400, "BadParameter", f"The fake vault supports RSA keys only, not {kty}."
                )
            size = int(body.get("key_size") or 2048)
            if size not in RSA_SIZES:
                raise _HttpError(400, "BadParameter", f"Unsupported RSA key size {size}.")
            exponent = int(body.get("public_exponent") or 65537)
            ops = list(body.get("key_ops") or DEFAULT_KEY_OPS)
            tags = body.get("tags")
        private_key = rsa.generate_private_key(public_exponent=exponent, key_size=size)
        now = int(time.time())
        attributes = body.get("attributes") or {}
        return _KeyVersion(
            _new_version(),
            private_key,
            kty,
            list(ops),
            tags,
            bool(attributes.get("enabled", True)),
            now,
            now,
        )

    async def _keys(self, method: str, rest: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        if not rest or rest == [""]:
            if method != "GET":
                raise _HttpError(405, "MethodNotAllowed", "Method not allowed.")
            with self._lock:
                items = [self._key_item(n, v[-1], False) for n, v in self._vault.keys.items()]
            return 200, {"value": items, "nextLink": None}
        name = rest[0]
        if not NAME_PATTERN.match(name):
            raise _HttpError(400, "BadParameter", "The key name is not valid.")
        tail = rest[1:]
        if method == "POST" and tail in (["create"], ["rotate"]):
            with self._lock:
                like = None
                if tail == ["rotate"]:
                    like = self._find_key(name, "")
            # Key generation runs off the server loop so other requests keep flowing.
            item = await asyncio.get_running_loop().run_in_executor(
                None, self._generate, body, like
            )
            with self._lock:
                self._vault.keys.setdefault(name, []).append(item)
                return 200, self._key_bundle(name, item)
        with self._lock:
            if method == "DELETE" and not tail:
                versions = self._vault.keys.pop(name, None)
                if not versions:
                    raise _HttpError(404, "KeyNotFound", f"Key {name} not found.")
                return 200, self._key_bundle(name, versions[-1])
            if method == "GET" and tail == ["versions"]:
                versions = self._vault.keys.get(name)
                if not versions:
                    raise _HttpError(404, "KeyNotFound", f"Key {name} not found.")
                return 200, {
                    "value": [self._key_item(name, v, True) for v in versions],
                    "nextLink": None,
                }
            if len(tail) <= 1:
                item = self._find_key(name, tail[0] if tail else "")
                if method == "GET":
                    return 200, self._key_bundle(name, item)
                if method == "PATCH":
                    attributes = body.get("attributes") or {}
                    if "enabled" in attributes:
                        item.enabled = bool(attributes["enabled"])
                    if body.get("key_ops"):
                        item.key_ops = list(body["key_ops"])
                    if "tags" in body:
                        item.tags = body["tags"]
                    item.updated = int(time.time())
                    return 200, self._key_bundle(name, item)
            if method == "POST" and len(tail) == 2:
                item = self._find_key(name, tail[0])
                return 200, self._key_operation(name, item, tail[1], body)
        raise _HttpError(405, "MethodNotAllowed", "Method not allowed.")

    def _key_operation(
        self, name: str, item: _KeyVersion, operation: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        op_names = {
            "wrapkey": "wrapKey",
            "unwrapkey": "unwrapKey",
            "encrypt": "encrypt",
            "decrypt": "decrypt",
        }
        op = op_names.get(operation)
        if op is None:
            raise _HttpError(400, "BadParameter", f"Unsupported operation {operation}.")
        if not item.enabled:
            raise _HttpError(403, "Forbidden", f"Operation {op} is not allowed on a disabled key.")
        if op not in item.key_ops:
            raise _HttpError(403, "Forbidden", f"Operation {op} is not permitted on this key.")
        alg, value = body.get("alg"), body.get("value")
        if not isinstance(alg, str) or not isinstance(value, str):
            raise _HttpError(400, "BadParameter", "alg and value are required.")
        pad = _padding_for(alg)
        try:
            data = _unb64url(value)
        except ValueError as exc:
            raise _HttpError(400, "BadParameter", "value is not base64url.") from exc
        if op in ("wrapKey", "encrypt"):
            result = item.private_key.public_key().encrypt(data, pad)
        else:
            try:
                result = item.private_key.decrypt(data, pad)
            except ValueError as exc:
                raise _HttpError(400, "BadParameter", "Decryption failed.") from exc
        return {"kid": self._key_id(name, item.version), "value": _b64url(result)}
