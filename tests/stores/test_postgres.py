"""PostgresStore: the shared suite plus what only PostgreSQL has (pool, migrations, audit)."""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from checkpointers.encrypted import EncryptedStore
from checkpointers.errors import ConfigurationError, ConflictError, StoreUnavailableError
from checkpointers.record import Claim, Query, Record, RecordId
from checkpointers.stores import _postgres_sql as sql
from checkpointers.stores.base import Store
from checkpointers.stores.postgres import _DRIVER_ERRORS, PostgresStore, _translate
from checkpointers.testing import StoreContract, deterministic_key_ring
from checkpointers.urls import open_store

pytestmark = pytest.mark.postgres


def _rid(key: str = "k", *, thread: str = "t1", tenant: str = "acme") -> RecordId:
    return RecordId(tenant, thread, "", "doc", key)


def _url(dsn: str, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"{dsn.split('?', 1)[0]}?{query}" if query else dsn


@pytest.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A unique schema name; the schema is dropped after the test."""
    name = f"t_{secrets.token_hex(6)}"
    yield name
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[Any]:
    """A plain asyncpg connection for looking at the database from outside the store."""
    conn = await asyncpg.connect(postgres_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def stores(postgres_dsn: str, schema: str) -> AsyncIterator[list[PostgresStore]]:
    """A list the test fills with owned stores; every one is closed afterwards."""
    made: list[PostgresStore] = []
    yield made
    for store in made:
        await store.aclose()


def _open(stores: list[PostgresStore], dsn: str, schema: str, **options: Any) -> PostgresStore:
    store = PostgresStore.from_url(dsn.split("?", 1)[0], **{"schema": schema, **options})
    stores.append(store)
    return store


class TestPostgresStore(StoreContract):
    @pytest.fixture
    async def store(self, postgres_dsn: str, schema: str) -> AsyncIterator[Store]:
        async with PostgresStore.from_url(postgres_dsn, schema=schema) as store:
            yield store


class TestPostgresStoreBehindPgbouncer(StoreContract):
    """The shared suite through pgbouncer in transaction mode (statement cache off).

    Uses the harness's `pgbouncer` fixture: `CHECKPOINTERS_TEST_PGBOUNCER_URL` when set,
    else a throwaway pgbouncer in front of the test server (with `CI` set, a missing
    pgbouncer fails the run instead of skipping).
    """

    @pytest.fixture
    async def store(self, schema: str, pgbouncer: str) -> AsyncIterator[Store]:
        url = pgbouncer
        async with PostgresStore.from_url(
            url, schema=schema, statement_cache_size=0, pool_max=20
        ) as store:
            yield store


# -- migrations -------------------------------------------------------------------------


async def test_concurrent_setup_applies_each_migration_once(
    postgres_dsn: str, schema: str, stores: list[PostgresStore], admin: Any
) -> None:
    """Ten stores with their own pools calling setup() at once all succeed, one row each."""
    racers = [_open(stores, postgres_dsn, schema) for _ in range(10)]
    await asyncio.gather(*(s.setup() for s in racers))
    rows = await admin.fetch(f'SELECT version FROM "{schema}".checkpointers_migrations')
    # The migration row is a plain INSERT on a primary key: a second apply would have failed.
    assert sorted(r[0] for r in rows) == [m[0] for m in sql.MIGRATIONS]
    await racers[0].put(Record(id=_rid(), body=b"x"))
    assert await racers[9].get(_rid()) is not None


async def test_setup_is_idempotent(
    postgres_dsn: str, schema: str, stores: list[PostgresStore]
) -> None:
    """setup() on an already migrated schema, from a new store, changes nothing."""
    first = _open(stores, postgres_dsn, schema)
    await first.setup()
    await first.put(Record(id=_rid(), body=b"kept"))
    second = _open(stores, postgres_dsn, schema)
    await second.setup()
    await second.setup()
    got = await second.get(_rid())
    assert got is not None and got.body == b"kept"


async def test_database_at_version_2_upgrades_to_3(
    postgres_dsn: str, schema: str, stores: list[PostgresStore], admin: Any
) -> None:
    """A schema made by migrations 1-2, with records in it, moves to the lean indexes of
    migration 3, and token and group queries still find the same records through them."""
    stmts = sql.statements(schema)
    await admin.execute(stmts.create_schema)
    await admin.execute(stmts.create_migrations)
    for version, name, statements in stmts.migrations[:2]:
        for statement in statements:
            await admin.execute(statement)
        await admin.execute(stmts.record_migration, version, name)
    token = "ab" * 16
    columns = "tenant, thread, namespace, kind, key, sort, grp, status, tokens, version, updated_at"
    await admin.execute(
        f'INSERT INTO "{schema}".checkpointers_records ({columns}, body) VALUES'
        " ('acme', 't1', '', 'checkpoint', 'c1', 'c1', '', '', ARRAY[$1], 1, 0, 'x'),"
        " ('acme', 't1', '', 'write', 'w1', 'c1', 'c1', '', '{}', 1, 0, 'y'),"
        " ('acme', 't1', '', 'blob', 'b1', '', '', '', '{}', 1, 0, 'z')",
        token,
    )
    store = _open(stores, postgres_dsn, schema)
    await store.setup()
    rows = await admin.fetch(f'SELECT version FROM "{schema}".checkpointers_migrations')
    assert sorted(r[0] for r in rows) == [1, 2, 3]
    indexes = {
        r[0]
        for r in await admin.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = $1", schema)
    }
    assert {"checkpointers_records_with_tokens", "checkpointers_records_with_group"} <= indexes
    assert not indexes & {"checkpointers_records_by_tokens", "checkpointers_records_by_group"}
    assert "checkpointers_records_by_kind" in indexes
    by_token = await store.find(Query(tenant="acme", kind="checkpoint", tokens=(token,)))
    assert [r.id.key for r in by_token] == ["c1"]
    by_group = await store.find(Query(tenant="acme", thread="t1", kind="write", group="c1"))
    assert [r.id.key for r in by_group] == ["w1"]
    no_group = await store.find(Query(tenant="acme", thread="t1", group=""))
    assert sorted(r.id.key for r in no_group) == ["b1", "c1"]
    # Queries on tokens or a group can use the partial indexes (the planner proves their
    # predicates from what `find` adds).
    for query, index in (
        (Query(tenant=None, tokens=(token,)), "with_tokens"),
        (Query(tenant="acme", thread="t1", namespace="", kind="write", group="c1"), "with_group"),
    ):
        text, params = sql.compose_find(stmts, query, time.time())
        async with admin.transaction():
            await admin.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in await admin.fetch(f"EXPLAIN {text}", *params))
        assert f"checkpointers_records_{index}" in plan
    await store.setup()  # idempotent on version 3


# -- pool ownership and configuration ---------------------------------------------------


async def test_borrowed_pool_is_not_closed(postgres_dsn: str, schema: str) -> None:
    """aclose() of a store built on a caller's pool leaves the pool open."""
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=2)
    try:
        store = PostgresStore(pool, schema=schema)
        await store.setup()
        await store.put(Record(id=_rid(), body=b"x"))
        await store.aclose()
        await store.aclose()
        assert await pool.fetchval("SELECT 1") == 1
        assert "borrowed" in repr(store)
    finally:
        await pool.close()


async def test_owned_pool_is_closed(postgres_dsn: str, schema: str) -> None:
    """aclose() of a store from from_url closes its pool; later calls raise cleanly."""
    store = PostgresStore.from_url(postgres_dsn, schema=schema)
    await store.setup()
    pool = await store._get_pool()
    await store.aclose()
    assert pool.is_closing()
    with pytest.raises(StoreUnavailableError):
        await store.ping()


async def test_pgbouncer_mode_without_statement_cache(
    postgres_dsn: str, schema: str, stores: list[PostgresStore], admin: Any
) -> None:
    """With statement_cache_size=0 from the URL, every operation works and nothing is kept
    prepared on the server (what pgbouncer in transaction mode needs)."""
    url = _url(postgres_dsn, schema=schema, statement_cache_size=0, pool_max=1)
    store, _ = open_store(url)
    assert isinstance(store, PostgresStore)
    stores.append(store)
    await store.setup()
    await store.put_many([Record(id=_rid(f"k{i}"), body=b"x", sort=f"{i}") for i in range(3)])
    assert await store.put(Record(id=_rid("k0"), body=b"y"), expected_version=1) == 2
    assert len(await store.find(Query(tenant="acme"))) == 3
    assert await store.claim(Claim("acme", "t1", "doc", ("",), "taken")) is not None
    pool = await store._get_pool()
    assert await pool.fetchval("SELECT count(*) FROM pg_prepared_statements") == 0


async def test_unknown_url_option_names_it_without_echoing_the_url() -> None:
    """A typo in a URL option raises ConfigurationError naming the option, not the URL."""
    with pytest.raises(ConfigurationError) as info:
        open_store("postgresql://app:hunter2@127.0.0.1:5432/db?schema=ok&tll=60")
    text = str(info.value)
    assert "'tll'" in text
    assert "hunter2" not in text and "127.0.0.1" not in text


async def test_invalid_url_values_are_configuration_errors() -> None:
    """A bad schema name, pool size or cache size is refused with the option's name."""
    for query in ("schema=bad;name", "pool_max=0", "statement_cache_size=-1", "pool_min=x"):
        with pytest.raises(ConfigurationError, match="option '"):
            open_store(f"postgresql://app:hunter2@h/db?{query}")
    with pytest.raises(ConfigurationError):
        PostgresStore.from_url("postgresql://h/db", pool_min=5, pool_max=2)


# -- one round trip, concurrency -------------------------------------------------------


async def test_put_many_is_one_statement(
    postgres_dsn: str, schema: str, stores: list[PostgresStore]
) -> None:
    """A batch of 50 records goes to the server as one statement (one round trip).

    Counted with asyncpg's query logger on every pooled connection; the owned pool does
    not send a reset query on release, so only the store's statements are logged. The
    first batch on a connection is a warm-up: asyncpg introspects the float8[]/bytea[]
    parameter types once per connection.
    """
    sent: list[str] = []

    async def init(conn: Any) -> None:
        conn.add_query_logger(lambda q: sent.append(q.query))

    store = _open(stores, postgres_dsn, schema, pool_max=1, init=init)
    await store.setup()
    await store.put_many([Record(id=_rid("warm-up", thread="w"), body=b"")])
    await _flush_loggers()
    sent.clear()
    await store.put_many(
        [Record(id=_rid(f"k{i:02}"), body=b"b" * 100, sort=f"{i:02}") for i in range(50)]
    )
    await _flush_loggers()
    assert len(sent) == 1 and sent[0].startswith("INSERT")
    sent.clear()
    await store.put(Record(id=_rid("k00"), body=b"c"), expected_version=1)
    await store.get(_rid("k00"))
    await _flush_loggers()
    assert len(sent) == 2
    assert len(await store.find(Query(tenant="acme", thread="t1"))) == 50


async def _flush_loggers() -> None:
    """Run the query-logger callbacks asyncpg scheduled with call_soon (FIFO) before now."""
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


async def test_two_writers_compare_and_set_lose_no_update(
    postgres_dsn: str, schema: str, stores: list[PostgresStore]
) -> None:
    """Two writers CAS-ing one record: every write wins or conflicts, none is lost."""
    store = _open(stores, postgres_dsn, schema, pool_max=4)
    await store.setup()
    await store.put(Record(id=_rid(), body=b"0"))

    async def writer() -> int:
        wins = 0
        for _ in range(200):
            current = await store.get(_rid())
            assert current is not None
            try:
                await store.put(
                    Record(id=_rid(), body=str(int(current.body) + 1).encode()),
                    expected_version=current.version,
                )
            except ConflictError:
                continue
            wins += 1
        return wins

    wins = sum(await asyncio.gather(writer(), writer()))
    final = await store.get(_rid())
    assert final is not None
    assert int(final.body) == wins and final.version == wins + 1


async def test_many_claimers_take_each_item_once(
    postgres_dsn: str, schema: str, stores: list[PostgresStore]
) -> None:
    """50 tasks claiming 300 items over a pool of 10: each item is claimed exactly once."""
    store = _open(stores, postgres_dsn, schema, pool_max=10)
    await store.setup()
    await store.put_many(
        [Record(id=_rid(f"s{i:04}", thread="run"), body=b"", sort=f"{i:04}", status="created")
         for i in range(300)]
    )  # fmt: skip
    claim = Claim("acme", "run", "doc", ("created",), "pending")

    async def claimer() -> list[str]:
        taken = []
        while (got := await store.claim(claim)) is not None:
            taken.append(got.id.key)
        return taken

    taken = [k for batch in await asyncio.gather(*(claimer() for _ in range(50))) for k in batch]
    assert sorted(taken) == [f"s{i:04}" for i in range(300)]


async def test_sort_order_is_codepoint_order(
    postgres_dsn: str, schema: str, stores: list[PostgresStore]
) -> None:
    """Ordering and before/after follow Python's str order whatever the database collation."""
    store = _open(stores, postgres_dsn, schema)
    await store.setup()
    keys = ["B", "a", "_", "é", "Z9", "z", "ä", "10", "9"]
    await store.put_many([Record(id=_rid(k), body=b"", sort=k) for k in keys])
    found = await store.find(Query(tenant="acme"))
    assert [r.sort for r in found] == sorted(keys)
    before = await store.find(Query(tenant="acme", before="a"))
    assert [r.sort for r in before] == sorted(k for k in keys if k < "a")


# -- retention, audit, tenancy ----------------------------------------------------------


async def test_concurrent_sweepers_delete_each_expired_record_once(
    postgres_dsn: str, schema: str, stores: list[PostgresStore], admin: Any
) -> None:
    """Three sweepers in batches of 40 remove the 300 expired rows once in total, audited."""
    a, b, c = (_open(stores, postgres_dsn, schema) for _ in range(3))
    await a.setup()
    past = time.time() - 10
    await a.put_many(
        [Record(id=_rid(f"k{i}"), body=b"", expires_at=past) for i in range(300)]
        + [Record(id=_rid("live"), body=b"")]
    )

    async def sweeper(store: PostgresStore) -> int:
        total = 0
        while (n := await store.sweep(limit=40)) > 0:
            total += n
        return total

    assert sum(await asyncio.gather(*(sweeper(s) for s in (a, b, c)))) == 300
    assert [r.id.key for r in await a.scan()] == ["live"]
    swept = await admin.fetchval(
        f"SELECT sum(count) FROM \"{schema}\".checkpointers_audit WHERE operation = 'sweep'"
    )
    assert swept == 300


async def test_deletes_are_audited(
    postgres_dsn: str, schema: str, stores: list[PostgresStore], admin: Any
) -> None:
    """delete_thread and delete_tenant each write an audit row: who, what, which, how many."""
    store = _open(stores, postgres_dsn, schema, actor="ops-bot")
    await store.setup()
    await store.put_many([Record(id=_rid(f"k{i}"), body=b"x") for i in range(3)])
    await store.put(Record(id=_rid(thread="t2", tenant="globex"), body=b"x"))
    assert await store.delete_thread("acme", "t1") == 3
    assert await store.delete_tenant("globex") == 1
    rows = await admin.fetch(
        f'SELECT actor, operation, tenant, thread, count, at FROM "{schema}".checkpointers_audit'
        " ORDER BY id"
    )
    assert [tuple(r)[:5] for r in rows] == [
        ("ops-bot", "delete_thread", "acme", "t1", 3),
        ("ops-bot", "delete_tenant", "globex", None, 1),
    ]
    assert all(r["at"] is not None for r in rows)


async def test_schema_per_tenant_isolates_records(
    postgres_dsn: str, schema: str, stores: list[PostgresStore], admin: Any
) -> None:
    """Two schemas hold separate records under the same identity; deletes stay in one."""
    other = f"{schema}_b"
    try:
        a = _open(stores, postgres_dsn, schema)
        b = _open(stores, postgres_dsn, other)
        await asyncio.gather(a.setup(), b.setup())
        await a.put(Record(id=_rid(), body=b"in a"))
        await b.put(Record(id=_rid(), body=b"in b"))
        got_a, got_b = await a.get(_rid()), await b.get(_rid())
        assert got_a is not None and got_a.body == b"in a"
        assert got_b is not None and got_b.body == b"in b"
        assert await a.delete_tenant("acme") == 1
        assert await a.get(_rid()) is None and await b.get(_rid()) is not None
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')


async def test_no_plaintext_in_any_table(
    postgres_dsn: str, schema: str, stores: list[PostgresStore], admin: Any
) -> None:
    """A canary written through EncryptedStore (body and index) appears in no table."""
    canary = f"canary-{uuid.uuid4()}"
    store = _open(stores, postgres_dsn, schema)
    enc = EncryptedStore(store, deterministic_key_ring(), tenant="acme")
    rid = enc.record_id("t1", "", "doc", "a")
    await enc.put(rid, canary.encode() * 50, index={"note": canary})
    await enc.put(enc.record_id("t1", "", "doc", "b"), canary.encode())
    await enc.delete_thread("t2")
    found = await enc.find(enc.query(kind="doc", tokens=await enc.tokens({"note": canary})))
    assert [e.id.key for e in found] == ["a"]
    tables = await admin.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    assert len(tables) == 3
    for (table,) in tables:
        dump = await admin.fetchval(
            f"SELECT coalesce(string_agg(t::text, '\n'), '') FROM \"{schema}\".\"{table}\" t"
        )
        assert canary not in dump
        assert canary.encode().hex() not in dump


# -- failures ---------------------------------------------------------------------------


async def _terminate(admin: Any, application_name: str) -> int:
    """Kill the server processes of one pool (found first, so nothing else is touched)."""
    pids = await admin.fetchval(
        "SELECT array_agg(pid) FROM pg_stat_activity WHERE application_name = $1",
        application_name,
    )
    # pg_terminate_backend with a timeout waits until each process has exited.
    killed = await admin.fetch(
        "SELECT pg_terminate_backend(p, 5000) FROM unnest($1::int[]) AS p", pids or []
    )
    return sum(1 for row in killed if row[0])


async def test_terminated_connections_recover_or_raise_store_unavailable(
    postgres_dsn: str, schema: str, stores: list[PostgresStore], admin: Any
) -> None:
    """After the server kills every pooled connection, calls never leak asyncpg errors and
    the pool reconnects."""
    app = f"ckpt-{secrets.token_hex(4)}"
    store = _open(
        stores, postgres_dsn, schema, pool_min=3, pool_max=3,
        server_settings={"application_name": app},
    )  # fmt: skip
    await store.setup()
    await asyncio.gather(*(store.put(Record(id=_rid(f"k{i}"), body=b"x")) for i in range(3)))
    failures: list[StoreUnavailableError] = []
    for operation in (
        lambda: store.get(_rid("k0")),
        lambda: store.put(Record(id=_rid("k1"), body=b"y")),
    ):
        assert await _terminate(admin, app) >= 1
        try:
            await operation()
        except StoreUnavailableError as exc:  # allowed; any other exception fails the test
            failures.append(exc)
        assert await store.get(_rid("k2")) is not None
    assert all(isinstance(f.__cause__, BaseException) for f in failures)


async def test_read_after_terminate_is_retried(
    postgres_dsn: str, schema: str, stores: list[PostgresStore], admin: Any
) -> None:
    """A read on a connection the server killed is retried on a fresh one and succeeds."""
    app = f"ckpt-{secrets.token_hex(4)}"
    store = _open(stores, postgres_dsn, schema, pool_min=1, pool_max=1,
                  server_settings={"application_name": app})  # fmt: skip
    await store.setup()
    await store.put(Record(id=_rid(), body=b"x"))
    assert await _terminate(admin, app) == 1
    assert await store.get(_rid()) is not None


async def test_down_server_raises_store_unavailable_from_ping(
    stores: list[PostgresStore], schema: str
) -> None:
    """Nothing listening on the port: ping() raises StoreUnavailableError naming host:port,
    never the DSN or its password."""
    store = _open(stores, "postgresql://app:hunter2@127.0.0.1:1/db", schema)
    with pytest.raises(StoreUnavailableError) as info:
        await store.ping()
    assert info.value.may_have_applied is False
    assert "hunter2" not in str(info.value) and "postgresql://" not in str(info.value)
    assert "cannot connect to 127.0.0.1:1 " in str(info.value)
    with pytest.raises(StoreUnavailableError) as write:
        await store.put(Record(id=_rid(), body=b"x"))
    assert write.value.may_have_applied is False


def _driver_exception_classes() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(asyncpg.exceptions, inspect.isclass)
        if issubclass(cls, Exception) and not issubclass(cls, Warning)
    ]


@pytest.mark.parametrize("cls", _driver_exception_classes(), ids=lambda c: c.__name__)
def test_every_driver_exception_is_translated(cls: type[BaseException]) -> None:
    """Each asyncpg exception class maps to StoreUnavailableError, classified by type."""
    assert issubclass(cls, _DRIVER_ERRORS)
    exc = cls("secret DETAIL text")
    err = _translate(exc, "put", write=True, sent=True)
    assert isinstance(err, StoreUnavailableError)
    assert "secret" not in str(err)
    state = getattr(exc, "sqlstate", None) or ""
    lost = issubclass(cls, asyncpg.PostgresError) and (
        state.startswith("08") or state in ("57P01", "57P02", "57P03")
    )
    assert err.may_have_applied is lost
    assert _translate(exc, "get", write=False, sent=True).may_have_applied is False


@pytest.mark.parametrize("exc", [ConnectionResetError(), TimeoutError(), asyncio.TimeoutError()])
def test_lost_link_during_a_write_may_have_applied(exc: BaseException) -> None:
    """A socket error or timeout after a write was sent leaves its outcome unknown."""
    assert _translate(exc, "put", write=True, sent=True).may_have_applied is True
    assert _translate(exc, "put", write=True, sent=False).may_have_applied is False


# --------------------------------------------------------------------------- Entra ID


class _FailingCredential:
    """An `AsyncTokenCredential` whose every token request fails (counted)."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.calls += 1
        raise RuntimeError("no token: secret-marker-xyz")


@pytest.fixture
async def token_role(postgres_process: Any) -> tuple[str, str]:
    """(URL without password, token): a throwaway cluster with a role `app` that logs in
    with a SCRAM password equal to the token, and trust kept for `postgres` only."""
    token = f"tok-{secrets.token_hex(8)}"
    admin = await asyncpg.connect(postgres_process.dsn)
    try:
        await admin.execute("SET password_encryption = 'scram-sha-256'")
        await admin.execute(f"CREATE ROLE app LOGIN PASSWORD '{token}'")
        await admin.execute("GRANT CREATE ON DATABASE postgres TO app")
        hba = await admin.fetchval("SHOW hba_file")
        path = Path(hba)
        rules = "host all app 127.0.0.1/32 scram-sha-256\n" + path.read_text(encoding="utf-8")
        await asyncio.to_thread(path.write_text, rules, encoding="utf-8")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()
    return f"postgresql://app@127.0.0.1:{postgres_process.port}/postgres", token


async def test_credential_token_is_the_password(token_role: tuple[str, str]) -> None:
    """With credential=, the store logs in with the Entra token (right scope) as password."""
    from tests.harness.keyvault_fake import AsyncStaticTokenCredential

    url, token = token_role
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(url)  # the role really needs its password
    credential = AsyncStaticTokenCredential(token)
    async with PostgresStore.from_url(url, credential=credential, pool_min=3, schema="s1") as store:
        await store.setup()
        await store.put(Record(id=_rid(), body=b"x"))
        assert (await store.get(_rid())) is not None
    assert credential.calls == [("https://ossrdbms-aad.database.windows.net/.default",)]


async def test_credential_token_renewed_near_expiry(token_role: tuple[str, str]) -> None:
    """A token within five minutes of expiry is not reused: each new connection asks."""
    from tests.harness.keyvault_fake import AsyncStaticTokenCredential

    url, token = token_role
    credential = AsyncStaticTokenCredential(token, lifetime=60)
    async with PostgresStore.from_url(url, credential=credential, pool_min=3, schema="s1") as store:
        await store.ping()
    assert len(credential.calls) == 3


async def test_credential_failures_are_unavailable(token_role: tuple[str, str]) -> None:
    """A rejected token or a failing credential is a StoreUnavailableError without secrets."""
    from tests.harness.keyvault_fake import AsyncStaticTokenCredential

    url, _ = token_role
    wrong = AsyncStaticTokenCredential("not-the-token")
    store = PostgresStore.from_url(url, credential=wrong)
    try:
        with pytest.raises(StoreUnavailableError, match="28P01") as info:
            await store.ping()
    finally:
        await store.aclose()
    assert "not-the-token" not in str(info.value)
    failing = _FailingCredential()
    store = PostgresStore.from_url(url, credential=failing)
    try:
        with pytest.raises(StoreUnavailableError, match="credential") as info:
            await store.ping()
        assert "secret-marker" not in str(info.value) and "secret-marker" not in repr(store)
    finally:
        await store.aclose()
    assert failing.calls >= 1


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("postgresql://app:pw@127.0.0.1/db", {}),
        ("postgresql://app@127.0.0.1/db?password=pw", {}),
        ("postgresql://app@127.0.0.1/db", {"password": "pw"}),
        ("postgresql://app@db.example.net/db", {}),
        ("postgresql://app@db.example.net/db", {"sslmode": "prefer"}),
        ("postgresql://app@db.example.net/db?sslmode=allow", {}),
        ("postgresql://app@127.0.0.1,db.example.net/db", {}),
    ],
)
def test_credential_refuses_passwords_and_cleartext(url: str, options: dict[str, Any]) -> None:
    """credential= refuses a password too, and a remote host without required TLS."""
    with pytest.raises(ConfigurationError) as info:
        PostgresStore.from_url(url, credential=object(), **options)
    assert "pw" not in str(info.value) and "example" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("postgresql://app@db.example.net/db", {"sslmode": "require"}),
        ("postgresql://app@db.example.net/db?sslmode=verify-full", {}),
        ("postgresql://app@[::1]:5432/db", {}),
        ("postgresql://app@localhost/db", {}),
    ],
)
async def test_credential_accepts_tls_or_loopback(url: str, options: dict[str, Any]) -> None:
    """Required TLS, or a server on this machine, is accepted with credential=."""
    from tests.harness.keyvault_fake import AsyncStaticTokenCredential

    store = PostgresStore.from_url(url, credential=AsyncStaticTokenCredential(), **options)
    await store.aclose()


async def test_is_set_up_tells_a_fresh_schema_from_a_migrated_one(
    postgres_dsn: str, schema: str, stores: list[PostgresStore]
) -> None:
    """A schema setup() never ran on is not set up; after setup() it is."""
    store = _open(stores, postgres_dsn, schema)
    assert await store.is_set_up() is False
    await store.setup()
    assert await store.is_set_up() is True
