"""Bad input: fuzzed envelopes, URLs and stored rows; oversized and unserializable state."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkpointers.crypto.envelope import Envelope
from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import (
    CheckpointersError,
    ConfigurationError,
    IntegrityError,
    KeyUnavailableError,
    MissingDependencyError,
    RecordTooLargeError,
    SerializationError,
)
from checkpointers.record import RecordId
from checkpointers.stores.sqlite import SqliteStore
from checkpointers.urls import open_store, split_url
from tests.reliability._support import key_ring

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
PASSWORD = "Pw-s3cr3t-MARKER"


# -- envelope parser ------------------------------------------------------------------


def _valid_envelope() -> bytes:
    ring = key_ring()
    return asyncio.run(ring.encrypt(b"hello" * 50, b"aad"))


VALID = _valid_envelope()


@FUZZ
@given(st.binary(max_size=600))
def test_envelope_parse_of_random_bytes_raises_only_integrity_error(blob: bytes) -> None:
    """Envelope.parse of arbitrary bytes returns an envelope or raises IntegrityError only."""
    with contextlib.suppress(IntegrityError):
        Envelope.parse(blob, record="r")


@FUZZ
@given(st.data())
def test_envelope_parse_and_decrypt_of_mutated_envelopes_fail_closed(data: st.DataObject) -> None:
    """A valid envelope with random edits (flips, cuts, inserts) never parses into something
    that decrypts, and fails with IntegrityError or KeyUnavailableError only."""
    blob = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        pos = data.draw(st.integers(0, max(0, len(blob) - 1)))
        if op == "flip" and blob:
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del blob[pos : pos + data.draw(st.integers(1, 40))]
        elif op == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif blob:
            blob[pos] = data.draw(st.integers(0, 255))
    if bytes(blob) == VALID:
        return
    try:
        Envelope.parse(bytes(blob), record="r")
    except IntegrityError:
        return
    with pytest.raises((IntegrityError, KeyUnavailableError)):
        asyncio.run(key_ring().decrypt(bytes(blob), b"aad"))


# -- URL parser -----------------------------------------------------------------------

_SCHEMES = ["memory", "sqlite", "redis", "rediss", "unix", "postgresql", "postgres", "azblob",
            "https", "ftp", "REDIS", "", "mysql"]  # fmt: skip
_OPTIONS = ["ttl", "tenant", "prefix", "cluster", "pool_size", "refresh_ttl_on_read",
            "socket_timeout", "schema", "pool_min", "pool_max", "statement_cache_size",
            "command_timeout", "sslmode", "actor", "busy_timeout", "create_container",
            "index_tags", "max_concurrency", "tll", "x", ""]  # fmt: skip
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_VALUES = st.one_of(_TEXT, st.sampled_from(["1", "0", "-1", "true", "nan", "inf", "1e309",
                                            "²", "٣", "10", "a%20b", "%", "&", "="]))  # fmt: skip


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(_SCHEMES))
    user = draw(st.sampled_from(["", "app", "a:b", "%40"]))
    host = draw(st.sampled_from(["127.0.0.1", "", "[::1", "h", "127.0.0.1:99999", "h:-1",
                                 "h:port", "[::1]:5432"]))  # fmt: skip
    path = draw(st.sampled_from(["", "/", "/0", "/db", "//abs", "/x/../y", "/%00"]))
    pairs = draw(st.lists(st.tuples(st.sampled_from(_OPTIONS), _VALUES), max_size=3))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    junk = draw(st.sampled_from(["", "#frag", "?", "??", "&"]))
    auth = f"{user}:{PASSWORD}@" if user else f":{PASSWORD}@"
    return f"{scheme}://{auth}{host}{path}" + (f"?{query}" if query else "") + junk


def _close(store: Any) -> None:
    """Close a store built by open_store, on a private loop (it owns what it created)."""
    box: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(store.aclose())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if box:
        raise box[0]


@FUZZ
@given(urls())
def test_url_parsing_raises_only_configuration_errors_without_the_password(url: str) -> None:
    """split_url and open_store of fuzzed URLs raise only ConfigurationError or
    MissingDependencyError, and no message or repr echoes the URL's password."""
    for fn in (split_url, open_store):
        refused: list[BaseException] = []
        try:
            result = fn(url)
        except (ConfigurationError, MissingDependencyError) as exc:
            refused.append(exc)
        for exc in refused:
            texts = f"{exc}{exc!r}{exc.__cause__ or ''}"
            assert PASSWORD not in texts
        if not refused and fn is open_store:
            store = result[0]
            assert PASSWORD not in repr(store)
            _close(store)


def test_non_ascii_digit_option_is_a_configuration_error() -> None:
    """A pool size written with a superscript digit is refused with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        split_url("redis://127.0.0.1/0?pool_size=²")


# -- stored rows ------------------------------------------------------------------------

_COLUMN_VALUES = {
    "sort": st.one_of(st.text(max_size=5), st.integers(), st.none(), st.binary(max_size=4)),
    "grp": st.one_of(st.text(max_size=5), st.integers(), st.binary(max_size=4)),
    "status": st.one_of(st.text(max_size=5), st.just("a\x00b"), st.floats()),
    "tokens": st.one_of(st.text(max_size=12), st.just(" zz "), st.just(" " + "a" * 16 + " ")),
    "expires_at": st.one_of(st.none(), st.floats(), st.text(max_size=4), st.binary(max_size=3)),
    "lease_until": st.one_of(st.none(), st.floats(), st.text(max_size=4)),
    "version": st.one_of(st.integers(), st.text(max_size=4), st.floats(), st.none()),
    "updated_at": st.one_of(st.floats(), st.text(max_size=4), st.integers()),
    "body": st.one_of(st.binary(max_size=40), st.text(max_size=10), st.integers()),
}


@FUZZ
@given(column=st.sampled_from(sorted(_COLUMN_VALUES)), data=st.data())
def test_sqlite_rows_tampered_in_any_column_fail_with_checkpointers_errors(
    tmp_path_factory: pytest.TempPathFactory, column: str, data: st.DataObject
) -> None:
    """A stored row whose column holds a value of any type or shape reads back as a record
    or raises a CheckpointersError, never a ValueError/TypeError from row decoding."""
    value = data.draw(_COLUMN_VALUES[column])
    path = tmp_path_factory.mktemp("rows") / "fuzz.db"
    rid = RecordId("acme", "t1", "", "doc", "k")

    async def main() -> None:
        async with SqliteStore(path) as raw_store:
            store = EncryptedStore(raw_store, key_ring(), tenant="acme")
            await store.put(rid, b"payload", sort="s", status="created")
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                conn.execute(f"UPDATE records SET {column} = ?", (value,))  # column: fixed list
            except (sqlite3.IntegrityError, OverflowError):
                return  # NOT NULL (or SQLite's integer range) refused it: nothing to read
            finally:
                conn.close()
            try:
                got = await store.get(rid)
            except CheckpointersError:
                return
            assert got is None or got.data == b"payload"

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"])
async def test_tampered_index_tokens_fail_with_integrity_error(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A record whose stored blind-index tokens were replaced by non-hex text raises
    IntegrityError on read (not the ValueError of Record's validation)."""
    from tests.reliability._raw import PostgresRaw, RedisRaw, SqliteRaw, open_backend

    rid = RecordId("acme", "t1", "", "doc", "k")
    async with open_backend(backend, request, tmp_path) as (raw_store, raw):
        store = EncryptedStore(raw_store, key_ring(), tenant="acme")
        await store.put(rid, b"payload", index={"run_id": "r1"})
        if isinstance(raw, SqliteRaw):
            conn = sqlite3.connect(raw.path, isolation_level=None)
            conn.execute("UPDATE records SET tokens = ' not-hex '")
            conn.close()
        elif isinstance(raw, PostgresRaw):
            conn = await raw._conn()
            await conn.execute(f"UPDATE {raw.table} SET tokens = ARRAY['not-hex']")
        else:
            assert isinstance(raw, RedisRaw)
            import redis.asyncio

            async with redis.asyncio.Redis.from_url(raw.url) as client:
                await client.hset(raw.key(rid), "tk", " not-hex ")
        with pytest.raises(IntegrityError):
            await store.get(rid)


# -- oversized and unserializable state ---------------------------------------------


@dataclass
class _Opaque:
    """Neither JSON nor msgpack can serialize this (it holds a lock)."""

    lock: Any


async def _all_records(store: SqliteStore) -> list[Any]:
    return [(r.id, r.body, r.version) for r in await store.scan(limit=10_000)]


async def test_langgraph_oversized_and_unserializable_state_fail_before_writing(
    tmp_path: Path,
) -> None:
    """A LangGraph checkpoint above max_record_bytes raises RecordTooLargeError and one
    holding an unserializable value raises SerializationError; the store is unchanged."""
    from langgraph.checkpoint.base import empty_checkpoint

    from checkpointers.langgraph import CheckpointSaver

    async with SqliteStore(tmp_path / "lg.db") as raw_store:
        store = EncryptedStore(raw_store, key_ring(), max_record_bytes=64 * 1024)
        saver = CheckpointSaver(store)
        config = {"configurable": {"thread_id": "t-big", "checkpoint_ns": ""}}
        small = empty_checkpoint()
        small["channel_values"] = {"x": "ok"}
        small["channel_versions"] = {"x": saver.get_next_version(None, None)}
        config = await saver.aput(config, small, {"step": 0}, small["channel_versions"])
        before = await _all_records(raw_store)

        for value, error in (("A" * 200_000, RecordTooLargeError),
                             (_Opaque(threading.Lock()), SerializationError)):  # fmt: skip
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"x": "ok", "big": value}
            checkpoint["channel_versions"] = {
                "x": small["channel_versions"]["x"],
                "big": saver.get_next_version(None, None),
            }
            with pytest.raises(error) as info:
                await saver.aput(config, checkpoint, {"step": 1}, {"big": "1"})
            assert "A" * 100 not in str(info.value)
            with pytest.raises(error):
                await saver.aput_writes(config, [("big", value)], task_id=str(uuid.uuid4()))
            assert await _all_records(raw_store) == before


async def test_pydantic_graph_oversized_and_unserializable_state_fail_before_writing(
    tmp_path: Path,
) -> None:
    """A pydantic-graph snapshot above max_record_bytes raises RecordTooLargeError and one
    whose state cannot be serialized raises SerializationError; the store is unchanged."""
    from pydantic_graph import BaseNode, End, GraphRunContext
    from pydantic_graph.graph import Graph

    from checkpointers.pydantic_graph import StatePersistence

    @dataclass
    class State:
        payload: Any = None

    @dataclass
    class Only(BaseNode[State, None, int]):
        async def run(self, ctx: GraphRunContext[State, None]) -> End[int]:
            return End(1)

    graph = Graph(nodes=[Only])
    async with SqliteStore(tmp_path / "pg.db") as raw_store:
        store = EncryptedStore(raw_store, key_ring(), max_record_bytes=64 * 1024)
        await store.setup()
        before = await _all_records(raw_store)
        for payload, error in (("B" * 200_000, RecordTooLargeError),
                               (_Opaque(threading.Lock()), SerializationError)):  # fmt: skip
            persistence = StatePersistence[State, int](store, run_id=f"run-{uuid.uuid4().hex}")
            with pytest.raises(error) as info:
                await graph.run(Only(), state=State(payload), persistence=persistence)
            assert "B" * 100 not in str(info.value)
            assert await _all_records(raw_store) == before
