"""Pytest plugin: real services for the tests (list it in conftest's `pytest_plugins`).

Fixtures (all sync, so they work with any event-loop scope):

- ``redis_server_url`` (session, str): URL of a reachable Redis; ``redis_url`` is an alias.
- ``redis_prefix`` (function, str): a unique key prefix; its keys are deleted afterwards.
- ``redis_process`` (function, RedisServer): a throwaway redis-server the test may stop,
  kill and restart on the same port.
- ``redis_cluster`` (session, RedisClusterServer): a 3-master Redis Cluster, started on
  first use only.
- ``postgres_dsn`` (session, str): DSN of a reachable PostgreSQL server.
- ``postgres_database`` (function, str): DSN of a fresh database, dropped afterwards.
- ``postgres_process`` (function, PostgresServer): a throwaway PostgreSQL cluster
  (initdb + pg_ctl) the test may stop and start again on the same port; never the
  shared server.
- ``pgbouncer`` (session, str): DSN of a pgbouncer in transaction mode in front of the
  ``postgres_dsn`` server (``CHECKPOINTERS_TEST_PGBOUNCER_URL`` if set, else a throwaway
  pgbouncer started from the Debian binary).
- ``azurite_server`` (session, Azurite) and ``azurite`` (function, the same object, started
  again if an earlier test left it stopped): Azurite blob service; ``.connection_string``.
- ``keyvault_server`` (session, KeyVaultFake) and ``keyvault`` (function, the same object
  with faults and request log reset before and faults cleared after the test).

When a backend cannot be brought up the test is skipped, or fails when ``CI`` is set.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests.harness._common import HarnessUnavailable
from tests.harness.azurite import Azurite
from tests.harness.keyvault_fake import KeyVaultFake
from tests.harness.services import (
    PostgresServer,
    RedisClusterServer,
    RedisServer,
    delete_redis_prefix,
    pgbouncer_service,
    postgres_service,
    redis_service,
    throwaway_database,
    unique_redis_prefix,
)

BACKEND_MARKERS = {
    "redis": "needs a Redis server (started by the harness if none is running)",
    "redis_cluster": "needs a 3-master Redis Cluster (started by the harness)",
    "postgres": "needs a PostgreSQL server (started by the harness if none is running)",
    "pgbouncer": "needs pgbouncer in front of PostgreSQL (started by the harness)",
    "azurite": "needs Azurite, the Azure Blob emulator (npm, started by the harness)",
    "keyvault": "needs the in-process Azure Key Vault fake",
}


def pytest_configure(config: pytest.Config) -> None:
    """Register one marker per backend (the project runs with --strict-markers)."""
    for name, text in BACKEND_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def unavailable(reason: str) -> NoReturn:
    """Skip the test because a backend is missing, or fail it when `CI` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"backend unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


class _Broken:
    """Remembers why a session service failed so later tests don't retry it."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def check(self, name: str) -> None:
        if name in self.reasons:
            unavailable(self.reasons[name])

    def record(self, name: str, exc: BaseException) -> NoReturn:
        self.reasons[name] = f"{name}: {exc}"
        unavailable(self.reasons[name])


@pytest.fixture(scope="session")
def _harness_broken() -> _Broken:
    return _Broken()


# --------------------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_server_url(_harness_broken: _Broken) -> Iterator[str]:
    """URL (`redis://host:port/db`) of a Redis server shared by the whole session."""
    _harness_broken.check("redis")
    stack = contextlib.ExitStack()
    try:
        url = stack.enter_context(redis_service())
    except HarnessUnavailable as exc:
        _harness_broken.record("redis", exc)
    with stack:
        yield url


@pytest.fixture(scope="session")
def redis_url(redis_server_url: str) -> str:
    """Alias of `redis_server_url`."""
    return redis_server_url


@pytest.fixture
def redis_prefix(redis_server_url: str) -> Iterator[str]:
    """A key prefix unique to this test (`cptest:<hex>:`); its keys are deleted after."""
    prefix = unique_redis_prefix()
    yield prefix
    delete_redis_prefix(redis_server_url, prefix)


@pytest.fixture
def redis_process(_harness_broken: _Broken) -> Iterator[RedisServer]:
    """A started throwaway redis-server for this test; may be stopped/killed/restarted."""
    _harness_broken.check("redis-server")
    try:
        server = RedisServer()
        server.start()
    except HarnessUnavailable as exc:
        _harness_broken.record("redis-server", exc)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_cluster(_harness_broken: _Broken) -> Iterator[RedisClusterServer]:
    """A 3-master Redis Cluster, started on first request, stopped at session end."""
    _harness_broken.check("redis-cluster")
    try:
        cluster = RedisClusterServer().start()
    except HarnessUnavailable as exc:
        _harness_broken.record("redis-cluster", exc)
    try:
        yield cluster
    finally:
        cluster.close()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_dsn(_harness_broken: _Broken) -> Iterator[str]:
    """DSN of a PostgreSQL server shared by the whole session (may carry a database)."""
    _harness_broken.check("postgres")
    stack = contextlib.ExitStack()
    try:
        dsn = stack.enter_context(postgres_service())
    except HarnessUnavailable as exc:
        _harness_broken.record("postgres", exc)
    with stack:
        yield dsn


@pytest.fixture
def postgres_database(postgres_dsn: str) -> Iterator[str]:
    """DSN of a new empty database `test_<hex>` for this test, dropped (FORCE) after."""
    with throwaway_database(postgres_dsn) as dsn:
        yield dsn


@pytest.fixture
def postgres_process(_harness_broken: _Broken) -> Iterator[PostgresServer]:
    """A started throwaway PostgreSQL cluster for this test; may be stopped and started."""
    _harness_broken.check("postgres-server")
    try:
        server = PostgresServer()
    except HarnessUnavailable as exc:
        _harness_broken.record("postgres-server", exc)
    try:
        server.start()
    except HarnessUnavailable as exc:
        server.close()
        _harness_broken.record("postgres-server", exc)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pgbouncer(postgres_dsn: str, _harness_broken: _Broken) -> Iterator[str]:
    """DSN through a pgbouncer (transaction pooling) to the `postgres_dsn` server."""
    _harness_broken.check("pgbouncer")
    stack = contextlib.ExitStack()
    try:
        url = stack.enter_context(pgbouncer_service(postgres_dsn))
    except HarnessUnavailable as exc:
        stack.close()
        _harness_broken.record("pgbouncer", exc)
    with stack:
        yield url


# --------------------------------------------------------------------------- Azure


@pytest.fixture(scope="session")
def azurite_server(_harness_broken: _Broken) -> Iterator[Azurite]:
    """A started Azurite blob service (in memory) shared by the session."""
    _harness_broken.check("azurite")
    server = Azurite()
    try:
        server.start()
    except HarnessUnavailable as exc:
        server.close()
        _harness_broken.record("azurite", exc)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def azurite(azurite_server: Azurite) -> Azurite:
    """The session's Azurite, restarted (same port, empty) if a test left it stopped."""
    if not azurite_server.running:
        azurite_server.start()
    return azurite_server


@pytest.fixture(scope="session")
def keyvault_server(_harness_broken: _Broken) -> Iterator[KeyVaultFake]:
    """The Key Vault fake shared by the session."""
    _harness_broken.check("keyvault")
    try:
        fake = KeyVaultFake().start()
    except HarnessUnavailable as exc:
        _harness_broken.record("keyvault", exc)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def keyvault(keyvault_server: KeyVaultFake) -> Iterator[KeyVaultFake]:
    """The session's Key Vault fake, with faults and request log reset for this test."""
    keyvault_server.reset()
    if not keyvault_server.running:
        keyvault_server.start()
    yield keyvault_server
    keyvault_server.clear_faults()
    if not keyvault_server.running:
        keyvault_server.start()
