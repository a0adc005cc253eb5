"""The installed `checkpointers` command, in a subprocess, on Redis, PostgreSQL and Azurite.

Records are written through the Python API (`EncryptedStore`, LangGraph's
`CheckpointSaver`) over the same tier URLs the command is given: Redis hot
(`redis://...?prefix=`), PostgreSQL durable (`postgresql://...?schema=`), and an Azurite
archive (`azblob://<container>`, account from `AZURE_STORAGE_CONNECTION_STRING`). Outages
use throwaway servers (`redis_process`) or the session's Azurite, never the shared
Redis/PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
import typer
from azure.storage.blob import ContainerClient
from langgraph.checkpoint.base import empty_checkpoint

from checkpointers import EncryptedStore, KeyRing
from checkpointers.cli import app
from checkpointers.crypto.envelope import Envelope
from checkpointers.crypto.local import create_key_file, read_key_file
from checkpointers.langgraph import CheckpointSaver
from checkpointers.stores._azure_blob_layout import parse_name
from checkpointers.tiered import TieredStore
from checkpointers.urls import open_store
from tests.harness._common import free_port
from tests.harness.azurite import Azurite
from tests.harness.services import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.azurite]

TENANT = "acme"
SCHEMA = "cli"
TIMEOUT = 60.0
HEALTH_TIMEOUT = 2.0  # seconds per check (`health --timeout`)
# An unreachable server must give its one-line error within this (Redis and PostgreSQL
# take about a second).
UNREACHABLE_BOUND = 10.0


def _command() -> list[str]:
    """The console script installed next to this interpreter (else the module)."""
    script = Path(sys.executable).with_name("checkpointers")
    return [str(script)] if script.exists() else [sys.executable, "-m", "checkpointers.cli"]


def _env(connection_string: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKPOINTERS_")}
    env.pop("AZURE_STORAGE_CONNECTION_STRING", None)
    if connection_string is not None:
        env["AZURE_STORAGE_CONNECTION_STRING"] = connection_string
    env["COLUMNS"] = "200"  # help panels wide enough not to wrap option names
    return env


@dataclass
class Tiers:
    """URLs of the three tiers, what is behind them, and a key file."""

    redis_url: str
    prefix: str
    dsn: str
    container: str
    connection_string: str
    key_file: Path

    @property
    def urls(self) -> list[str]:
        return [
            f"{self.redis_url}?prefix={self.prefix}",
            f"{self.dsn}?schema={SCHEMA}",
            f"azblob://{self.container}?create_container=true",
        ]

    def run(self, *args: str, key: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `checkpointers --url ... [--key-file K] --tenant acme ARGS`."""
        urls = [arg for url in self.urls for arg in ("--url", url)]
        keys = ["--key-file", str(self.key_file)] if key else []
        return _run([*urls, *keys, "--tenant", TENANT, *args], self.connection_string)


def _run(args: Sequence[str], connection_string: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_command(), *args], env=_env(connection_string), capture_output=True, text=True,
        timeout=TIMEOUT, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


@pytest.fixture
def tiers(
    redis_server_url: str, redis_prefix: str, postgres_database: str, azurite: Azurite,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Tiers]:  # fmt: skip
    """Tier URLs on the session's Redis (own prefix), a fresh database, a new container."""
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    key_file = tmp_path / "keys"
    create_key_file(key_file)
    found = Tiers(redis_server_url, redis_prefix, postgres_database,
                  f"cli{secrets.token_hex(8)}", azurite.connection_string, key_file)  # fmt: skip
    yield found
    if azurite.running:
        client = ContainerClient.from_connection_string(azurite.connection_string, found.container)
        with client:
            if client.exists():
                client.delete_container()


def _seed(tiers: Tiers) -> dict[tuple[str, str], bytes]:
    """Write threads `keep` and `gone` (doc records and a LangGraph checkpoint each); `gone`
    is archived, then restored (the archive keeps its copy), so it is in all three tiers.
    Returns the docs."""
    docs = {(thread, f"k{i}"): f"{thread} value {i}".encode()
            for thread in ("keep", "gone") for i in range(3)}  # fmt: skip

    async def write() -> None:
        ring = KeyRing.from_key_file(tiers.key_file)
        async with EncryptedStore.from_url(tiers.urls, keys=ring, tenant=TENANT) as enc:
            for (thread, key), value in docs.items():
                await enc.put(enc.record_id(thread, "", "doc", key), value, sort=key)
        async with CheckpointSaver.from_url(tiers.urls, keys=ring, tenant=TENANT) as saver:
            for thread in ("keep", "gone"):
                checkpoint = empty_checkpoint()
                version = saver.get_next_version(None, None)
                checkpoint["channel_values"] = {"messages": [f"hello from {thread}"]}
                checkpoint["channel_versions"] = {"messages": version}
                config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
                await saver.aput(config, checkpoint, {"step": 1}, {"messages": version})
        tiered, _ = TieredStore.from_urls(tiers.urls)
        async with tiered:
            moved = await tiered.archive_thread(TENANT, "gone")
            assert moved > 3  # the docs and the saver's records
            assert await tiered.restore_thread(TENANT, "gone") == moved

    asyncio.run(write())
    return docs


def _read(tiers: Tiers) -> tuple[dict[tuple[str, str], bytes], dict[str, Any]]:
    """Every doc record and the latest LangGraph messages of each thread, via the API."""

    async def read() -> tuple[dict[tuple[str, str], bytes], dict[str, Any]]:
        ring = KeyRing.from_key_file(tiers.key_file)
        out: dict[tuple[str, str], bytes] = {}
        async with EncryptedStore.from_url(tiers.urls, keys=ring, tenant=TENANT) as enc:
            for thread in ("keep", "gone"):
                for entry in await enc.find(enc.query(thread=thread, kind="doc")):
                    out[(thread, entry.id.key)] = entry.data
        messages: dict[str, Any] = {}
        async with CheckpointSaver.from_url(tiers.urls, keys=ring, tenant=TENANT) as saver:
            for thread in ("keep", "gone"):
                config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
                got = await saver.aget_tuple(config)
                messages[thread] = None if got is None else got.checkpoint["channel_values"]
        return out, messages

    return asyncio.run(read())


def _raw_key_ids(tiers: Tiers) -> dict[str, list[str]]:
    """The key id in the envelope header of every record, per tier, read store by store."""

    async def scan() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for url in tiers.urls:
            store, _ = open_store(url)
            async with store:
                records = await store.scan(limit=10_000)
            ids = [Envelope.parse(r.body, record=r.id.describe()).key_id for r in records
                   if r.id.tenant == TENANT]  # fmt: skip
            out[url.split("://", 1)[0]] = ids
        return out

    return asyncio.run(scan())


def _raw_threads(tiers: Tiers) -> dict[str, set[str]]:
    """Threads of tenant acme found in each tier's raw storage, behind the stores' back."""
    client = redis.Redis.from_url(tiers.redis_url)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{tiers.prefix}*", count=1000)]
    finally:
        client.close()
    in_redis = {t for t in ("keep", "gone") if any(f"{{{TENANT},{t}}}" in k for k in keys)}

    async def rows() -> set[str]:
        conn = await asyncpg.connect(tiers.dsn)
        try:
            found = await conn.fetch(
                f'SELECT DISTINCT thread FROM "{SCHEMA}".checkpointers_records'
                " WHERE tenant = $1 AND thread <> ''",
                TENANT,
            )
        finally:
            await conn.close()
        return {r["thread"] for r in found}

    with ContainerClient.from_connection_string(
        tiers.connection_string, tiers.container
    ) as container:
        names = [b.name for b in container.list_blobs()]
    in_blobs = {rid.thread for n in names
                if (rid := parse_name("", n)) and rid.tenant == TENANT and rid.thread}  # fmt: skip
    assert not [n for n in names if parse_name("", n) is None]  # nothing we cannot read
    return {"redis": in_redis, "postgres": asyncio.run(rows()), "azblob": in_blobs}


# -- keys: add, rotate, retire, then verify --------------------------------------------------


def test_add_rotate_retire_then_verify_passes_on_every_tier(tiers: Tiers) -> None:
    """`keys add`, `keys rotate` and `keys retire` leave every record in every tier under the
    new key (retire refused before rotating), `verify` exits 0, and everything decrypts."""
    docs = _seed(tiers)
    before, messages = _read(tiers)
    assert before == docs
    old_id = read_key_file(tiers.key_file)[0].key_id
    raw = _raw_key_ids(tiers)
    assert all(raw[tier] for tier in ("redis", "postgresql", "azblob")), raw
    assert {i for ids in raw.values() for i in ids} == {old_id}
    total = sum(len(ids) for ids in raw.values())

    added = tiers.run("--json", "keys", "add", "--file", str(tiers.key_file))
    assert added.returncode == 0, added.stderr
    new_id = _json(added)["key_id"]
    refused = tiers.run("keys", "retire", old_id)
    assert refused.returncode == 2 and "rotate" in refused.stderr
    assert [k.key_id for k in read_key_file(tiers.key_file)] == [old_id, new_id]

    rotated = tiers.run("--json", "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    report = _json(rotated)
    assert report["rewrapped"] > 0 and report["key_id"] == new_id
    usage = {k["key_id"]: k["records"] for k in _json(tiers.run("--json", "keys", "list"))["keys"]}
    assert usage == {old_id: 0, new_id: total}

    retired = tiers.run("--json", "keys", "retire", old_id)
    assert retired.returncode == 0, retired.stderr
    assert [k.key_id for k in read_key_file(tiers.key_file)] == [new_id]

    verified = tiers.run("--json", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert _json(verified) == {"checked": total, "failures": [], "ok": True}
    raw_after = _raw_key_ids(tiers)
    assert {tier: len(ids) for tier, ids in raw_after.items()} == {
        tier: len(ids) for tier, ids in raw.items()}  # fmt: skip
    assert {i for ids in raw_after.values() for i in ids} == {new_id}
    assert _read(tiers) == (docs, messages)  # with the new key file only


# -- erase, then nothing is left ------------------------------------------------------------


def test_erase_thread_then_verify_show_and_raw_tiers_show_nothing_left(tiers: Tiers) -> None:
    """`erase --thread gone --yes` removes it from Redis, PostgreSQL and the archive: `show`
    lists nothing, `verify` passes on the rest, and no raw key, row or blob of it is left."""
    _seed(tiers)
    assert _raw_threads(tiers) == {"redis": {"keep", "gone"}, "postgres": {"keep", "gone"},
                                   "azblob": {"gone"}}  # fmt: skip
    shown = tiers.run("--json", "show", "gone")
    assert shown.returncode == 0 and _json(shown)["records"]
    before = _json(tiers.run("--json", "verify"))["checked"]

    erased = tiers.run("--json", "erase", "--thread", "gone", "--yes")
    assert erased.returncode == 0, erased.stderr
    deleted = _json(erased)["deleted"]
    assert deleted > 0

    shown = tiers.run("--json", "show", "gone")
    assert shown.returncode == 0 and _json(shown)["records"] == []
    verified = tiers.run("--json", "verify")
    assert verified.returncode == 0, verified.stdout
    assert _json(verified)["ok"] is True and 0 < _json(verified)["checked"] < before
    threads = _json(tiers.run("--json", "threads"))["threads"]
    assert [t["thread"] for t in threads] == ["keep"]
    assert _raw_threads(tiers) == {"redis": {"keep"}, "postgres": {"keep"}, "azblob": set()}
    docs, messages = _read(tiers)
    assert {thread for thread, _ in docs} == {"keep"}
    assert messages == {"keep": {"messages": ["hello from keep"]}, "gone": None}

    async def audit() -> list[Any]:
        conn = await asyncpg.connect(tiers.dsn)
        try:
            return list(await conn.fetch(
                f'SELECT operation, tenant, thread FROM "{SCHEMA}".checkpointers_audit'
            ))  # fmt: skip
        finally:
            await conn.close()

    assert ("delete_thread", TENANT, "gone") in [tuple(r) for r in asyncio.run(audit())]


# -- health -----------------------------------------------------------------------------------


def _health(tiers: Tiers) -> tuple[int, dict[str, bool], float]:
    started = time.monotonic()
    done = tiers.run("--json", "health", "--timeout", str(HEALTH_TIMEOUT))
    elapsed = time.monotonic() - started
    assert done.stderr.count("\n") <= 1 and "Traceback" not in done.stderr
    checks = {c["name"] if c["check"] == "store" else "keys": c["ok"]
              for c in _json(done)["checks"]}  # fmt: skip
    return done.returncode, checks, elapsed


def test_health_exits_1_while_a_tier_is_down_and_0_when_all_are_up(
    tiers: Tiers, redis_process: RedisServer, azurite: Azurite
) -> None:
    """`health` exits 0 with every tier up, 1 naming the tier while the throwaway Redis or
    Azurite is stopped, and 0 again once they are back; each run ends within seconds."""
    tiers.redis_url = redis_process.url
    assert tiers.run("setup").returncode == 0  # creates the schema and the container
    all_ok = {"hot:RedisStore": True, "durable:PostgresStore": True,
              "archive:AzureBlobStore": True, "keys": True}  # fmt: skip
    code, checks, _ = _health(tiers)
    assert (code, checks) == (0, all_ok)

    redis_process.stop()
    code, checks, elapsed = _health(tiers)
    assert (code, checks) == (1, {**all_ok, "hot:RedisStore": False})
    assert elapsed < 3 * HEALTH_TIMEOUT + 10

    azurite.stop()
    try:
        code, checks, elapsed = _health(tiers)
        assert code == 1
        assert checks == {**all_ok, "hot:RedisStore": False, "archive:AzureBlobStore": False}
        assert elapsed < 3 * HEALTH_TIMEOUT + 10
        redis_process.start()
    finally:
        azurite.start()
    # This Azurite keeps blobs in memory: it came back empty, so create the container again.
    assert tiers.run("setup").returncode == 0
    code, checks, _ = _health(tiers)
    assert (code, checks) == (0, all_ok)


# -- one-line errors --------------------------------------------------------------------------


def _closed_port() -> int:
    return free_port()


def _error_cases(tiers: Tiers) -> dict[str, tuple[list[str], int, str | None]]:
    """Case name -> (arguments, expected exit code, connection string for the child)."""
    port = _closed_port()
    good = [arg for url in tiers.urls for arg in ("--url", url)]
    key = ["--key-file", str(tiers.key_file)]
    cs = tiers.connection_string
    return {
        "unknown redis option": (
            ["--url", f"{tiers.redis_url}?prefx=a", "threads"], 2, cs),
        "bad postgres schema": (
            ["--url", "postgresql://app:hunter2@127.0.0.1:5432/db?schema=bad;x", "threads"], 2, cs),
        "unknown scheme": (["--url", "mongodb://app:hunter2@127.0.0.1/db", "threads"], 2, cs),
        "azblob without a connection string": (
            ["--url", f"azblob://{tiers.container}", "threads"], 2, None),
        "bad container name": (["--url", "azblob://Bad_Name", "threads"], 2, cs),
        "missing key": ([*good, "verify"], 2, cs),
        "missing key file": ([*good, "--key-file", "/nonexistent/keys", "verify"], 2, cs),
        "postgres unreachable": (
            ["--url", f"postgresql://app:hunter2@127.0.0.1:{port}/db", *key, "threads"], 3, cs),
        "redis unreachable": (
            ["--url", f"redis://:hunter2@127.0.0.1:{port}/0", *key, "threads"], 3, cs),
    }  # fmt: skip


def test_bad_url_missing_key_and_unreachable_server_give_one_line_errors(tiers: Tiers) -> None:
    """Each configuration or connection failure prints one `error:` line on stderr (no
    traceback, no password) and exits 2 (configuration) or 3 (unreachable), in bounded time."""
    cases = _error_cases(tiers)
    started = time.monotonic()
    procs = {
        name: subprocess.Popen(
            [*_command(), *args],
            env=_env(cs),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, _, cs) in cases.items()
    }
    failures = []
    try:
        for name, proc in procs.items():
            # All run at once on a small machine: twice the bound for the whole batch.
            left = started + 2 * UNREACHABLE_BOUND - time.monotonic()
            out, err = proc.communicate(timeout=max(0.1, left))
            expected = cases[name][1]
            lines = err.strip().splitlines()
            ok = (
                proc.returncode == expected
                and len(lines) == 1
                and lines[0].startswith("error: ")
                and "Traceback" not in out + err
                and "hunter2" not in out + err
                and str(tiers.key_file.parent) not in err
            )
            if not ok:
                failures.append(f"{name}: exit {proc.returncode} (want {expected}): {err!r}")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert failures == []


# -- help -------------------------------------------------------------------------------------


def _commands() -> list[tuple[list[str], Any]]:
    """Every command path of the app (groups included), with its (typer) click command."""
    root = typer.main.get_command(app)
    out: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        out.append((path, command))
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk([*path, name], sub)

    walk([], root)
    return out


def test_help_of_every_subcommand_exits_0_and_lists_its_options() -> None:
    """`checkpointers [...] --help` exits 0 for the root, each group and each subcommand,
    and names every option and argument the command takes."""
    commands = _commands()
    names = {" ".join(path) for path, _ in commands}
    assert {"setup", "migrate", "threads", "runs", "show", "sweep", "erase", "archive",
            "restore", "verify", "health", "keys", "keys rotate", "keys retire", "keys add",
            "keys generate", "keys list"} <= names  # fmt: skip
    procs = [
        (path, command, subprocess.Popen(
            [*_command(), *path, "--help"], env=_env(None), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
        for path, command in commands
    ]  # fmt: skip
    problems = []
    for path, command, proc in procs:
        out, err = proc.communicate(timeout=TIMEOUT)
        shown = " ".join(path) or "(root)"
        if proc.returncode != 0 or "Usage:" not in out or err:
            problems.append(f"{shown}: exit {proc.returncode} {err!r}")
            continue
        for param in command.params:
            if param.param_type_name == "option":
                wanted = [name for name in param.opts if name.startswith("--")][:1]
            else:
                wanted = [str(param.name)]  # typer shows an argument by its name
            missing = [name for name in wanted if name not in out]
            if missing:
                problems.append(f"{shown}: help does not list {missing}")
        summary = " ".join(command.help.split("\n", 1)[0].rstrip(".").split()) if command.help else ""
        if summary and summary not in " ".join(out.split()):  # help text is wrapped
            problems.append(f"{shown}: help does not show its summary")
    assert problems == []


def test_unreachable_blob_endpoint_gives_a_one_line_error_in_bounded_time(
    tiers: Tiers,
) -> None:
    """With nothing listening at the account's blob endpoint, a command exits 3 with one
    `error:` line within seconds, as it does for an unreachable Redis or PostgreSQL."""
    dead_account = (
        f"DefaultEndpointsProtocol=http;AccountName={Azurite.account_name};"
        f"AccountKey={Azurite.account_key};"
        f"BlobEndpoint=http://127.0.0.1:{_closed_port()}/devstoreaccount1;"
    )
    args = ["--url", f"azblob://{tiers.container}", "--key-file", str(tiers.key_file), "threads"]
    proc = subprocess.Popen(
        [*_command(), *args], env=_env(dead_account), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=UNREACHABLE_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"still running after {UNREACHABLE_BOUND} s")
    assert proc.returncode == 3
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
