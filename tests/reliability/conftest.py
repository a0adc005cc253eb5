"""Fixtures of the reliability suite: store URLs per backend, the fork server, a seed."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability._support import ForkServer, with_query

STORE_KINDS = ("sqlite", "postgres", "redis", "tiered")


@pytest.fixture(scope="module")
def fork_server() -> Iterator[ForkServer]:
    """A process that imports the adapters once and forks a new process per job."""
    server = ForkServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """A seeded RNG; the seed is in the test's report (CHECKPOINTERS_RELIABILITY_SEED)."""
    seed = int(os.environ.get("CHECKPOINTERS_RELIABILITY_SEED", random.randrange(2**32)))
    request.node.user_properties.append(("seed", seed))
    print(f"reliability seed: {seed}")
    return random.Random(seed)


def store_urls(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """Store URLs (hottest first) of a backend kind, on fixtures cleaned up afterwards."""
    if kind == "sqlite":
        return [f"sqlite:///{tmp_path / 'checkpoints.db'}"]
    urls: list[str] = []
    if kind in ("redis", "tiered"):
        redis_url = request.getfixturevalue("redis_server_url")
        prefix = request.getfixturevalue("redis_prefix")
        urls.append(with_query(redis_url, prefix=prefix))
    if kind in ("postgres", "tiered"):
        urls.append(request.getfixturevalue("postgres_database"))
    return urls


@pytest.fixture(params=STORE_KINDS)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """URLs of one store kind: sqlite, postgres, redis, or tiered (redis over postgres)."""
    return store_urls(request.param, request, tmp_path)
