"""A fresh machine: the harness fetches pgbouncer itself, so the README command is enough."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import asyncpg
import pytest

from tests.harness import services
from tests.harness._common import run_coroutine_sync, which
from tests.harness.debian import ensure_debian_binary


@pytest.mark.skipif(
    which("apt-get") is None and not os.environ.get("CI"), reason="not a Debian system"
)
def test_pgbouncer_is_fetched_into_the_cache_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_dsn: str
) -> None:
    """With no installed pgbouncer used, the harness unpacks the Debian package and runs it."""
    monkeypatch.setenv("CHECKPOINTERS_TEST_CACHE", str(tmp_path))
    monkeypatch.delenv(services.PGBOUNCER_URL_ENV, raising=False)
    binary = ensure_debian_binary("pgbouncer", "pgbouncer", installed=False)
    # unpacked into the cache; as root with missing libraries, apt-get installed it instead
    assert Path(binary).is_relative_to(tmp_path) or binary.startswith("/usr/")
    assert ensure_debian_binary("pgbouncer", "pgbouncer", installed=False) == binary  # cached
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert "PgBouncer" in version.stdout

    monkeypatch.setattr(services, "_pgbouncer_binary", lambda: binary)
    with services.pgbouncer_service(postgres_dsn) as url:

        async def one() -> int:
            conn = await asyncpg.connect(url, statement_cache_size=0)
            try:
                return int(await conn.fetchval("SELECT 1"))
            finally:
                await conn.close()

        assert run_coroutine_sync(one) == 1
