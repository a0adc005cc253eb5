"""The `checkpointers` command on a real SQLite file: keys, listing, checks, erasure."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from checkpointers import EncryptedStore, KeyRing, LocalKey, SqliteStore
from checkpointers.crypto.envelope import Envelope
from checkpointers.crypto.local import read_key_file, write_key_file
from checkpointers.record import RecordId

cli = pytest.importorskip("checkpointers.cli")

TENANT = "acme"


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHECKPOINTERS_KEY", raising=False)
    monkeypatch.delenv("CHECKPOINTERS_KEY_FILE", raising=False)
    monkeypatch.delenv("CHECKPOINTERS_URL", raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "records.db"


@pytest.fixture
def url(db: Path) -> str:
    return f"sqlite:///{db}"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    result = run("keys", "generate", "--file", str(path))
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def canary() -> str:
    return f"canary-{uuid.uuid4()}"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.app, list(args), input=input)


def base(url: str, key_file: Path, *extra: str) -> list[str]:
    return ["--url", url, "--key-file", str(key_file), "--tenant", TENANT, *extra]


def seed(db: Path, key_file: Path, values: dict[tuple[str, str], bytes]) -> None:
    """Write (thread, key) -> value records of tenant acme through the encrypted API."""

    async def write() -> None:
        async with SqliteStore(db) as store:
            enc = EncryptedStore(store, KeyRing.from_key_file(key_file), tenant=TENANT)
            for (thread, key), value in values.items():
                await enc.put(enc.record_id(thread, "", "checkpoint", key), value, sort=key)

    asyncio.run(write())


def read_all(db: Path, key_file: Path) -> dict[RecordId, bytes]:
    async def read() -> dict[RecordId, bytes]:
        async with SqliteStore(db) as store:
            enc = EncryptedStore(store, KeyRing.from_key_file(key_file), tenant=TENANT)
            out = {}
            for record in await store.scan(limit=10_000):
                if record.id.kind == "checkpoint":
                    out[record.id] = (await enc.open(record)).data
            return out

    return asyncio.run(read())


def bodies(db: Path) -> dict[str, bytes]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT key, body FROM records WHERE kind = 'checkpoint'").fetchall()
    return {key: bytes(body) for key, body in rows}


# -- keys ------------------------------------------------------------------------------------


def test_keys_generate_creates_a_private_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    """`keys generate` writes a 0600 key file and exits 2 rather than overwrite it."""
    path = tmp_path / "k"
    first = run("--json", "keys", "generate", "--file", str(path))
    assert first.exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key_id = json.loads(first.stdout)["key_id"]
    assert key_id == read_key_file(path)[0].key_id
    content = path.read_text()
    again = run("keys", "generate", "--file", str(path))
    assert again.exit_code == 2
    assert "already exists" in again.stderr
    assert path.read_text() == content
    assert content.strip() not in first.output + again.output


def test_keys_add_makes_a_new_current_key(url: str, key_file: Path) -> None:
    """`keys add` appends a key that `keys list` shows as current."""
    added = run("--json", "keys", "add", "--file", str(key_file))
    assert added.exit_code == 0
    new_id = json.loads(added.stdout)["key_id"]
    listed = run("--json", "--key-file", str(key_file), "keys", "list")
    keys = json.loads(listed.stdout)["keys"]
    assert [k["key_id"] for k in keys if k["current"]] == [new_id]
    assert len(keys) == 2 and all(k["records"] is None for k in keys)


def test_rotate_then_retire_keeps_records_readable_and_ciphertext_unchanged(
    db: Path, url: str, key_file: Path
) -> None:
    """Retire is refused before rotate and accepted after; bodies keep nonce and ciphertext."""
    seed(db, key_file, {(f"t{i % 3}", f"k{i:03}"): b"state %d" % i for i in range(12)})
    old_id = read_key_file(key_file)[0].key_id
    before = {k: Envelope.parse(b, record=k) for k, b in bodies(db).items()}
    run("keys", "add", "--file", str(key_file))

    refused = run(*base(url, key_file), "keys", "retire", old_id)
    assert refused.exit_code == 2
    assert "rotate" in refused.stderr

    rotated = run(*base(url, key_file), "--json", "keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    report = json.loads(rotated.stdout)
    assert (report["rewrapped"], report["already_current"]) == (12, 0)
    usage = json.loads(run(*base(url, key_file), "--json", "keys", "list").stdout)["keys"]
    assert {k["key_id"]: k["records"] for k in usage}[old_id] == 0

    retired = run(*base(url, key_file), "keys", "retire", old_id)
    assert retired.exit_code == 0, retired.output
    assert old_id not in [k.key_id for k in read_key_file(key_file)]

    after = {k: Envelope.parse(b, record=k) for k, b in bodies(db).items()}
    for key, envelope in before.items():
        assert after[key].key_id != envelope.key_id
        assert (after[key].nonce, after[key].sealed) == (envelope.nonce, envelope.sealed)
    assert sorted(read_all(db, key_file).values()) == sorted(b"state %d" % i for i in range(12))
    assert run(*base(url, key_file), "verify").exit_code == 0


def test_rotate_stopped_by_a_missing_key_prints_a_resume_cursor(
    db: Path, url: str, key_file: Path, tmp_path: Path
) -> None:
    """A rotation that meets a record under an unknown key exits 4 with a cursor to resume."""
    seed(db, key_file, {("a", "k1"): b"one"})
    stranger = tmp_path / "stranger"
    write_key_file(stranger, [LocalKey(b"s" * 32)])
    seed(db, stranger, {("b", "k2"): b"two"})
    run("keys", "add", "--file", str(key_file))

    stopped = run(*base(url, key_file), "keys", "rotate")
    assert stopped.exit_code == 4
    assert "not in the key ring" in stopped.stderr
    cursor = stopped.stderr.split("--after ", 1)[1].split()[0]
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert decoded[:3] == [0, TENANT, "a"]

    bad = run(*base(url, key_file), "keys", "rotate", "--after", "not-a-cursor")
    assert bad.exit_code == 2


# -- listing and showing ------------------------------------------------------------------


def test_threads_lists_each_thread_with_paging(db: Path, url: str, key_file: Path) -> None:
    """`threads` lists the written threads; --limit pages and --after continues."""
    seed(db, key_file, {(f"t{i}", "k"): b"x" for i in range(3)})
    text = run("--url", url, "threads")
    assert text.exit_code == 0
    assert all(f"t{i}" in text.stdout for i in range(3))
    first = json.loads(run("--url", url, "--json", "threads", "--limit", "2").stdout)
    assert [t["thread"] for t in first["threads"]] == ["t0", "t1"]
    rest = json.loads(run("--url", url, "--json", "runs", "--after", first["next"]).stdout)
    assert rest == {"next": None, "threads": [{"tenant": TENANT, "thread": "t2"}]}


def test_show_prints_plaintext_only_with_decrypt(
    db: Path, url: str, key_file: Path, canary: str
) -> None:
    """Without --decrypt `show` prints routing fields only; with it, the decrypted value."""
    seed(db, key_file, {("t1", "k1"): canary.encode(), ("t1", "k2"): bytes(range(256))})
    plain = run(*base(url, key_file), "show", "t1")
    assert plain.exit_code == 0
    assert canary not in plain.output
    assert "k1" in plain.stdout and "checkpoint" in plain.stdout
    rows = json.loads(run(*base(url, key_file), "--json", "show", "t1").stdout)["records"]
    assert {r["key"] for r in rows} == {"k1", "k2"}
    assert all("value" not in r and r["size"] > 0 and r["version"] == 1 for r in rows)

    shown = run(*base(url, key_file), "show", "t1", "--decrypt")
    assert shown.exit_code == 0
    assert canary in shown.stdout
    decoded = json.loads(run(*base(url, key_file), "--json", "show", "t1", "--decrypt").stdout)
    values = {r["key"]: r["value"] for r in decoded["records"]}
    assert values["k1"] == {"text": canary}
    assert values["k2"] == {"size": 256, "hex": bytes(range(32)).hex()}


def test_show_withholds_the_blind_index_key(db: Path, url: str, key_file: Path) -> None:
    """The tenant's blind-index key record is never decrypted for display."""

    async def with_index() -> None:
        async with SqliteStore(db) as store:
            enc = EncryptedStore(store, KeyRing.from_key_file(key_file), tenant=TENANT)
            await enc.tokens({"user": "u1"})

    asyncio.run(with_index())
    shown = json.loads(run(*base(url, key_file), "--json", "show", "", "--decrypt").stdout)
    assert [r["value"] for r in shown["records"]] == [{"withheld": "key material"}]


# -- checks -----------------------------------------------------------------------------------


def test_verify_names_a_tampered_record(db: Path, url: str, key_file: Path) -> None:
    """`verify` exits 0 on intact records and 1 naming a record whose body was altered."""
    seed(db, key_file, {("t1", "good"): b"fine", ("t1", "victim"): b"will be tampered"})
    assert run(*base(url, key_file), "verify").exit_code == 0
    with sqlite3.connect(db) as conn:
        (body,) = conn.execute("SELECT body FROM records WHERE key = 'victim'").fetchone()
        flipped = bytes(body[:-1]) + bytes([body[-1] ^ 1])
        conn.execute("UPDATE records SET body = ? WHERE key = 'victim'", (flipped,))
    failed = run(*base(url, key_file), "verify")
    assert failed.exit_code == 1
    assert "victim" in failed.stdout and "good" not in failed.stdout
    report = json.loads(run(*base(url, key_file), "--json", "verify", "--sample", "1").stdout)
    assert report["ok"] is False
    assert [f["record"]["key"] for f in report["failures"]] == ["victim"]
    assert report["failures"][0]["error"] == "IntegrityError"


def test_health_passes_and_fails_on_a_broken_store_or_missing_key(
    url: str, key_file: Path, tmp_path: Path
) -> None:
    """`health` exits 0 when stores and keys work, 1 when a store or the key is broken."""
    ok = run(*base(url, key_file), "--json", "health")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["healthy"] is True
    (tmp_path / "dir.db").mkdir()
    broken = run("--url", f"sqlite:///{tmp_path}/dir.db", "--key-file", str(key_file), "health")
    assert broken.exit_code == 1
    assert "FAIL store sqlite:dir.db" in broken.stdout
    keyless = run("--url", url, "--json", "health")
    assert keyless.exit_code == 1
    assert [c["check"] for c in json.loads(keyless.stdout)["checks"] if not c["ok"]] == ["keys"]


def test_health_fails_when_the_keys_cannot_read_the_stored_data(
    db: Path, url: str, key_file: Path, tmp_path: Path
) -> None:
    """`health` with a key that wraps and unwraps fine but cannot read the tenant's data
    exits 1 with a failing data check; with the right key it passes."""

    async def index() -> None:
        async with SqliteStore(db) as store:
            enc = EncryptedStore(store, KeyRing.from_key_file(key_file), tenant=TENANT)
            await enc.tokens({"user": "bob"})  # creates the tenant's blind-index key

    asyncio.run(index())
    other = tmp_path / "other.key"
    assert run("keys", "generate", "--file", str(other)).exit_code == 0
    wrong = run("--url", url, "--key-file", str(other), "--json", "health")
    assert wrong.exit_code == 1, wrong.output
    failed = [c for c in json.loads(wrong.stdout)["checks"] if not c["ok"]]
    assert [c["check"] for c in failed] == ["data"]
    assert "KeyUnavailableError" in failed[0]["error"]
    right = run(*base(url, key_file), "--json", "health")
    assert right.exit_code == 0, right.output
    assert any(c["check"] == "data" and c["ok"] for c in json.loads(right.stdout)["checks"])


def test_a_broken_store_exits_3_for_other_commands(tmp_path: Path) -> None:
    """A store that cannot be opened gives exit 3 and a one-line error."""
    (tmp_path / "dir.db").mkdir()
    result = run("--url", f"sqlite:///{tmp_path}/dir.db", "threads")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_bad_urls_and_missing_keys_exit_2_without_echoing_secrets(url: str) -> None:
    """Configuration errors exit 2 with one line naming the option, never the URL."""
    for bad in (
        "memory://admin:hunter2@host/?tll=60",
        "nosuch://admin:hunter2@host/db",
        "not a url hunter2",
    ):
        result = run("--url", bad, "threads")
        assert result.exit_code == 2, bad
        assert "hunter2" not in result.output
        assert result.stderr.startswith("error: --url") and result.stderr.count("\n") == 1
    assert "'tll'" in run("--url", "memory://?tll=60", "threads").stderr
    keyless = run("--url", url, "verify")
    assert keyless.exit_code == 2 and "CHECKPOINTERS_KEY" in keyless.stderr
    assert run("threads").exit_code == 2


# -- retention and erasure -----------------------------------------------------------------


def test_sweep_deletes_only_expired_records(db: Path, url: str, key_file: Path) -> None:
    """`sweep` deletes expired records in batches and prints the count."""
    seed(db, key_file, {("t1", f"k{i}"): b"x" for i in range(5)})
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE records SET expires_at = ? WHERE key IN ('k0', 'k1', 'k2')", (time.time() - 1,)
        )
    result = run("--url", url, "--json", "sweep", "--batch", "2")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["deleted"] == 3
    assert set(bodies(db)) == {"k3", "k4"}


def test_erase_asks_for_confirmation_and_logs_the_event(
    db: Path, url: str, key_file: Path, canary: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`erase` deletes nothing unless confirmed, then deletes and logs ids and counts only."""
    seed(db, key_file, {("t1", "k1"): canary.encode(), ("t1", "k2"): b"x", ("t2", "k"): b"y"})
    declined = run(*base(url, key_file), "erase", "--thread", "t1", input="n\n")
    assert declined.exit_code == 2
    assert len(bodies(db)) == 3
    assert run(*base(url, key_file), "erase").exit_code == 2

    with caplog.at_level(logging.INFO, logger="checkpointers"):
        erased = run(*base(url, key_file), "--json", "erase", "--thread", "t1", "--yes")
    assert erased.exit_code == 0
    assert json.loads(erased.stdout)["deleted"] == 2
    assert set(bodies(db)) == {"k"}
    events = [r for r in caplog.records if getattr(r, "event", None) == "checkpointers.erase"]
    assert len(events) == 1
    assert (events[0].tenant, events[0].thread_id, events[0].deleted) == (TENANT, "t1", 2)  # type: ignore[attr-defined]
    assert canary not in caplog.text

    confirmed = run(*base(url, key_file), "erase", "--tenant", TENANT, input="y\n")
    assert confirmed.exit_code == 0
    assert bodies(db) == {}


def test_setup_is_idempotent_and_help_documents_exit_codes(url: str) -> None:
    """`setup` and its alias `migrate` run twice; --help lists the exit codes."""
    for command in ("setup", "migrate", "setup"):
        result = run("--url", url, "--json", command)
        assert result.exit_code == 0
        assert json.loads(result.stdout) == {"ready": ["sqlite:records.db"]}
    help_text = run("--help").stdout
    assert "Exit codes" in help_text and "3 a store is unavailable" in help_text
    for command in (["keys", "rotate"], ["verify"], ["health"], ["erase"], ["show"]):
        assert "Exit codes" in run(*command, "--help").stdout


def test_console_script_runs_in_a_subprocess(db: Path, url: str, key_file: Path) -> None:
    """The installed module runs end to end: setup, health and verify exit 0."""
    env = {**os.environ, "CHECKPOINTERS_URL": url, "CHECKPOINTERS_KEY_FILE": str(key_file)}
    for args in (["setup"], ["health"], ["--json", "verify"]):
        done = subprocess.run(
            [sys.executable, "-m", "checkpointers.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"checked": 0, "failures": [], "ok": True}


def test_tiers_are_visited_one_by_one_and_rotated_through_the_tiered_store(
    db: Path, url: str, key_file: Path, tmp_path: Path
) -> None:
    """With two URLs, rotation writes through to the hot tier and verify checks both tiers."""
    seed(db, key_file, {("t1", "k1"): b"one", ("t2", "k2"): b"two"})
    old_id = read_key_file(key_file)[0].key_id
    tiers = ["--url", f"sqlite:///{tmp_path}/hot.db", *base(url, key_file)]
    run("keys", "add", "--file", str(key_file))
    rotated = run(*tiers, "--json", "keys", "rotate")
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["rewrapped"] == 2
    report = json.loads(run(*tiers, "--json", "verify").stdout)
    assert (report["checked"], report["ok"]) == (4, True)
    assert run(*tiers, "keys", "retire", old_id).exit_code == 0
    health = json.loads(run(*tiers, "--json", "health").stdout)
    assert [c["name"] for c in health["checks"][:2]] == ["hot:SqliteStore", "durable:SqliteStore"]
    listed = json.loads(run(*tiers, "--json", "threads").stdout)["threads"]
    assert [t["thread"] for t in listed] == ["t1", "t2"]
    assert run(*tiers, "archive", "t1").exit_code == 2
