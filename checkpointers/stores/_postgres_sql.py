"""SQL of the PostgreSQL store: the migrations and every statement, once.

Statements are templates over three table names. `statements(schema)` validates the
schema name, quotes it once, and formats every template with the quoted names; values
only ever travel as parameters. Text columns use the "C" collation so that ordering and
`before`/`after` comparisons agree with Python's `str` ordering (the reference store).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from checkpointers.options import parse_identifier
from checkpointers.record import Query

COLUMNS: Final = (
    "tenant, thread, namespace, kind, key, sort, grp, status, tokens, "
    "expires_at, lease_until, version, updated_at, body"
)
_PK: Final = "tenant, thread, namespace, kind, key"
_LIVE: Final = "(expires_at IS NULL OR expires_at > {now})"
# Who the audit log names: the store's `actor`, else the session's application_name,
# else the database user.
_ACTOR: Final = "coalesce({p}::text, nullif(current_setting('application_name'), ''), session_user)"

#: (version, name, statements); each runs in its own transaction, idempotent DDL only.
Migration = tuple[int, str, tuple[str, ...]]

MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        "records",
        (
            """
            CREATE TABLE IF NOT EXISTS {records} (
                tenant      text COLLATE "C" NOT NULL,
                thread      text COLLATE "C" NOT NULL,
                namespace   text COLLATE "C" NOT NULL,
                kind        text COLLATE "C" NOT NULL,
                key         text COLLATE "C" NOT NULL,
                sort        text COLLATE "C" NOT NULL,
                grp         text COLLATE "C" NOT NULL,
                status      text COLLATE "C" NOT NULL,
                tokens      text[] NOT NULL,
                expires_at  double precision,
                lease_until double precision,
                version     bigint NOT NULL,
                updated_at  double precision NOT NULL,
                body        bytea NOT NULL,
                PRIMARY KEY (tenant, thread, namespace, kind, key)
            )
            """,
            # Bodies are compressed ciphertext: TOAST compression would only cost CPU.
            "ALTER TABLE {records} ALTER COLUMN body SET STORAGE EXTERNAL",
            # latest per thread, list with before/limit, claim of the oldest.
            "CREATE INDEX IF NOT EXISTS checkpointers_records_by_sort"
            " ON {records} (tenant, kind, thread, sort)",
            # list across threads (LangGraph list with config=None).
            "CREATE INDEX IF NOT EXISTS checkpointers_records_by_kind"
            " ON {records} (tenant, kind, sort)",
            # writes of one checkpoint.
            "CREATE INDEX IF NOT EXISTS checkpointers_records_by_group"
            " ON {records} (tenant, thread, kind, grp)",
            "CREATE INDEX IF NOT EXISTS checkpointers_records_by_expiry"
            " ON {records} (expires_at) WHERE expires_at IS NOT NULL",
            "CREATE INDEX IF NOT EXISTS checkpointers_records_by_tokens"
            " ON {records} USING gin (tokens)",
        ),
    ),
    (
        2,
        "audit",
        (
            """
            CREATE TABLE IF NOT EXISTS {audit} (
                id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                at        timestamptz NOT NULL DEFAULT now(),
                actor     text NOT NULL,
                operation text NOT NULL,
                tenant    text,
                thread    text,
                count     bigint NOT NULL
            )
            """,
            "CREATE INDEX IF NOT EXISTS checkpointers_audit_by_at ON {audit} (at)",
        ),
    ),
    (
        3,
        "leaner indexes",
        (
            # Only records that carry tokens or a group can match a query on them (`find`
            # adds the same predicates), so the other rows need no entry.
            "CREATE INDEX IF NOT EXISTS checkpointers_records_with_tokens"
            " ON {records} USING gin (tokens) WHERE tokens <> '{{}}'::text[]",
            "CREATE INDEX IF NOT EXISTS checkpointers_records_with_group"
            " ON {records} (tenant, thread, kind, grp) WHERE grp <> ''",
            "DROP INDEX IF EXISTS {schema}.checkpointers_records_by_tokens",
            "DROP INDEX IF EXISTS {schema}.checkpointers_records_by_group",
            # by_kind stays: without it a list across threads in sort order (LangGraph's
            # list with config=None and a limit) reads every checkpoint of the tenant.
        ),
    ),
)

# -- migration machinery ---------------------------------------------------------------
ADVISORY_LOCK: Final = "SELECT pg_advisory_xact_lock($1)"
SCHEMA_EXISTS: Final = "SELECT 1 FROM pg_namespace WHERE nspname = $1"
CREATE_SCHEMA: Final = "CREATE SCHEMA IF NOT EXISTS {schema}"
CREATE_MIGRATIONS: Final = (
    "CREATE TABLE IF NOT EXISTS {migrations} (version integer PRIMARY KEY,"
    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
)
CURRENT_VERSION: Final = "SELECT coalesce(max(version), 0) FROM {migrations}"
# The schema name is a validated identifier (no quotes): safe inside the literal.
IS_SET_UP: Final = "SELECT to_regclass('{records}') IS NOT NULL"
MIGRATION_APPLIED: Final = "SELECT 1 FROM {migrations} WHERE version = $1"
# A plain INSERT: applying a migration twice would fail on the primary key, not pass.
RECORD_MIGRATION: Final = "INSERT INTO {migrations} (version, name) VALUES ($1, $2)"

# -- records -----------------------------------------------------------------------------
_KEY_MATCH: Final = "tenant = $1 AND thread = $2 AND namespace = $3 AND kind = $4 AND key = $5"
_SET_FROM_EXCLUDED: Final = (
    " ON CONFLICT (" + _PK + ") DO UPDATE SET"
    " sort = excluded.sort, grp = excluded.grp, status = excluded.status,"
    " tokens = excluded.tokens, expires_at = excluded.expires_at,"
    " lease_until = excluded.lease_until, version = r.version + excluded.version,"
    " updated_at = excluded.updated_at, body = excluded.body"
)
# The version column of an inserted row is how many writes it stands for: 1 for one
# record, n for a batch holding one identity n times (the writes of a `put_many` are
# applied in turn), so an update adds that many to the stored version.
# Insert-if-absent: an expired row counts as absent and is replaced.
_ONLY_IF_EXPIRED: Final = " WHERE r.expires_at IS NOT NULL AND r.expires_at <= excluded.updated_at"

GET: Final = f"SELECT {COLUMNS} FROM {{records}} WHERE {_KEY_MATCH} AND " + _LIVE.format(now="$6")
# Many identities at once: parallel arrays, $6 now; `i` is the position of the identity
# (1-based), absent ones return no row. The LATERAL ... LIMIT 1 keeps the plan one
# primary-key lookup per identity, whatever the planner guesses of the arrays' length.
GET_MANY: Final = (
    f"SELECT u.i, r.* FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])"
    " WITH ORDINALITY AS u(tenant, thread, namespace, kind, key, i)"
    f" CROSS JOIN LATERAL (SELECT {COLUMNS} FROM {{records}} x"
    " WHERE x.tenant = u.tenant AND x.thread = u.thread AND x.namespace = u.namespace"
    " AND x.kind = u.kind AND x.key = u.key"
    " AND (x.expires_at IS NULL OR x.expires_at > $6) LIMIT 1) r"
)
# The common case of `get_many`: keys of one (tenant, thread, namespace, kind), $6 now.
# Constants for the prefix make the plan a primary-key range lookup even before the
# table has statistics.
GET_KEYS: Final = (
    f"SELECT {COLUMNS} FROM {{records}} WHERE tenant = $1 AND thread = $2 AND namespace = $3"
    " AND kind = $4 AND key = ANY($5::text[]) AND " + _LIVE.format(now="$6")
)
# $1-$5 identity, $6 sort, $7 grp, $8 status, $9 tokens, $10 expires_at, $11 lease_until,
# $12 now, $13 body.
UPSERT: Final = (
    f"INSERT INTO {{records}} AS r ({COLUMNS})"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text[], $10, $11, 1, $12, $13)"
    + _SET_FROM_EXCLUDED
    + " RETURNING r.version"
)
INSERT_IF_ABSENT: Final = UPSERT.replace(" RETURNING", _ONLY_IF_EXPIRED + " RETURNING")
# Same parameters plus $14, the expected version.
UPDATE_IF_VERSION: Final = (
    "UPDATE {records} SET sort = $6, grp = $7, status = $8, tokens = $9::text[],"
    " expires_at = $10, lease_until = $11, version = version + 1, updated_at = $12,"
    f" body = $13 WHERE {_KEY_MATCH} AND version = $14 AND "
    + _LIVE.format(now="$12")
    + " RETURNING version"
)
# One statement for a whole batch: parallel arrays, unnested, one row per identity; $13
# now, $14 how many times the batch wrote each identity. Tokens travel as one
# space-separated string per record (they are hex, validated by `Record`). The rows
# written come back with their identity and new version (none for a row kept by
# insert-if-absent), in no particular order.
_PUT_MANY: Final = (
    f"INSERT INTO {{records}} AS r ({COLUMNS})"
    " SELECT u.tenant, u.thread, u.namespace, u.kind, u.key, u.sort, u.grp, u.status,"
    " string_to_array(u.tokens, ' '), u.expires_at, u.lease_until, u.n, $13, u.body"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::text[], $8::text[], $9::text[], $10::float8[], $11::float8[], $12::bytea[],"
    " $14::int[])"
    " AS u(tenant, thread, namespace, kind, key, sort, grp, status, tokens,"
    " expires_at, lease_until, body, n)" + _SET_FROM_EXCLUDED
)
_RETURNING_IDENTITY: Final = f" RETURNING {_PK}, r.version"
PUT_MANY: Final = _PUT_MANY + _RETURNING_IDENTITY
PUT_MANY_IF_ABSENT: Final = _PUT_MANY + _ONLY_IF_EXPIRED + _RETURNING_IDENTITY
# Copies between tiers: the same arrays plus $13 versions and $14 update times, kept as
# is unless the stored row has a higher version (a copy never goes back in version).
REPLICATE: Final = (
    f"INSERT INTO {{records}} AS r ({COLUMNS})"
    " SELECT u.tenant, u.thread, u.namespace, u.kind, u.key, u.sort, u.grp, u.status,"
    " string_to_array(u.tokens, ' '), u.expires_at, u.lease_until, u.version, u.updated_at,"
    " u.body"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::text[], $8::text[], $9::text[], $10::float8[], $11::float8[], $12::bytea[],"
    " $13::bigint[], $14::float8[])"
    " AS u(tenant, thread, namespace, kind, key, sort, grp, status, tokens,"
    " expires_at, lease_until, body, version, updated_at)"
    " ON CONFLICT (" + _PK + ") DO UPDATE SET"
    " sort = excluded.sort, grp = excluded.grp, status = excluded.status,"
    " tokens = excluded.tokens, expires_at = excluded.expires_at,"
    " lease_until = excluded.lease_until, version = excluded.version,"
    " updated_at = excluded.updated_at, body = excluded.body"
    " WHERE r.version <= excluded.version"
)
# $1 tenant, $2 thread, $3 kind, $4 now, $5 statuses, $6 reclaim, $7 to_status, $8 lease.
CLAIM: Final = (
    "UPDATE {records} SET status = $7, lease_until = $8, version = version + 1, updated_at = $4"
    f" WHERE ({_PK}) = (SELECT {_PK} FROM {{records}}"
    "  WHERE tenant = $1 AND thread = $2 AND kind = $3 AND " + _LIVE.format(now="$4") + ""
    "  AND (status = ANY($5::text[])"
    "       OR ($6::boolean AND lease_until IS NOT NULL AND lease_until < $4))"
    "  ORDER BY sort, namespace, key LIMIT 1 FOR UPDATE SKIP LOCKED)"
    f" RETURNING {COLUMNS}"
)
DELETE_MANY: Final = (
    "WITH gone AS (DELETE FROM {records} r"
    " USING unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])"
    " AS u(tenant, thread, namespace, kind, key)"
    " WHERE r.tenant = u.tenant AND r.thread = u.thread AND r.namespace = u.namespace"
    " AND r.kind = u.kind AND r.key = u.key RETURNING r.expires_at)"
    " SELECT count(*) FILTER (WHERE " + _LIVE.format(now="$6") + ") FROM gone"
)
# Audited deletes: the rows and the audit entry go in one statement, hence together.
DELETE_THREAD: Final = (
    "WITH gone AS (DELETE FROM {records} WHERE tenant = $1 AND thread = $2 RETURNING 1)"
    " INSERT INTO {audit} (actor, operation, tenant, thread, count)"
    " SELECT " + _ACTOR.format(p="$3") + ", 'delete_thread', $1, $2, count(*) FROM gone"
    " RETURNING count"
)
DELETE_TENANT: Final = (
    "WITH gone AS (DELETE FROM {records} WHERE tenant = $1 RETURNING 1)"
    " INSERT INTO {audit} (actor, operation, tenant, thread, count)"
    " SELECT " + _ACTOR.format(p="$2") + ", 'delete_tenant', $1, NULL, count(*) FROM gone"
    " RETURNING count"
)
# Batched and safe from several processes: each sweeper takes rows nobody else holds.
SWEEP: Final = (
    "WITH doomed AS (SELECT ctid FROM {records} WHERE expires_at <= $1"
    " LIMIT $2 FOR UPDATE SKIP LOCKED),"
    " gone AS (DELETE FROM {records} WHERE ctid IN (SELECT ctid FROM doomed) RETURNING tenant)"
    " INSERT INTO {audit} (actor, operation, tenant, thread, count)"
    " SELECT " + _ACTOR.format(p="$3") + ", 'sweep', tenant, NULL, count(*)"
    " FROM gone GROUP BY tenant RETURNING count"
)
THREADS: Final = (
    "SELECT DISTINCT tenant, thread FROM {records}"
    " WHERE ($1::text IS NULL OR tenant = $1) AND thread <> ''"
    " AND ($2::text IS NULL OR thread > $2) AND " + _LIVE.format(now="$3") + ""
    " ORDER BY thread, tenant LIMIT $4"
)
SCAN_FIRST: Final = f"SELECT {COLUMNS} FROM {{records}} ORDER BY {_PK} LIMIT $1"
SCAN_AFTER: Final = (
    f"SELECT {COLUMNS} FROM {{records}} WHERE ({_PK}) > ($1, $2, $3, $4, $5)"
    f" ORDER BY {_PK} LIMIT $6"
)
PING: Final = "SELECT 1"

# `find` is composed from these fixed fragments; `{n}` is the parameter number.
FIND_SELECT: Final = f"SELECT {COLUMNS} FROM {{records}} WHERE " + _LIVE.format(now="$1")
FIND_FILTERS: Final = {
    "tenant": " AND tenant = ${n}",
    "kind": " AND kind = ${n}",
    "thread": " AND thread = ${n}",
    "namespace": " AND namespace = ${n}",
    # The redundant `<> ''` and `<> '{}'` let the planner use the partial indexes.
    "group": " AND grp = ${n}",
    "group_set": " AND grp = ${n} AND grp <> ''",
    "statuses": " AND status = ANY(${n}::text[])",
    "tokens": " AND tokens @> ${n}::text[] AND tokens <> '{{}}'::text[]",
    "before": " AND sort < ${n}",
    "after": " AND sort > ${n}",
}
ORDER_ASC: Final = f" ORDER BY sort, {_PK}"
ORDER_DESC: Final = (
    " ORDER BY sort DESC, tenant DESC, thread DESC, namespace DESC, kind DESC, key DESC"
)
LIMIT: Final = " LIMIT ${n}"


def quote_identifier(name: str) -> str:
    """Validate `name` (letters, digits, _ and -) and quote it as a SQL identifier."""
    return '"' + parse_identifier(name).replace('"', '""') + '"'


def migration_lock_key(schema: str) -> int:
    """The advisory lock (a signed 64-bit key) that serializes migrations of `schema`."""
    digest = hashlib.sha256(f"checkpointers:migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of the store, formatted for one schema."""

    create_schema: str
    create_migrations: str
    current_version: str
    is_set_up: str
    migration_applied: str
    record_migration: str
    get: str
    get_many: str
    get_keys: str
    upsert: str
    insert_if_absent: str
    update_if_version: str
    put_many: str
    put_many_if_absent: str
    replicate: str
    claim: str
    delete_many: str
    delete_thread: str
    delete_tenant: str
    sweep: str
    threads: str
    scan_first: str
    scan_after: str
    find_select: str
    migrations: tuple[Migration, ...]


@lru_cache(maxsize=256)
def statements(schema: str) -> Statements:
    """The statements for `schema`; the name is validated and quoted here, once.

    Raises:
        ConfigurationError: `schema` is not a valid identifier.
    """
    quoted = quote_identifier(schema)
    names = {
        "schema": quoted,
        "records": f"{quoted}.checkpointers_records",
        "migrations": f"{quoted}.checkpointers_migrations",
        "audit": f"{quoted}.checkpointers_audit",
    }
    templates = {
        "create_schema": CREATE_SCHEMA, "create_migrations": CREATE_MIGRATIONS,
        "current_version": CURRENT_VERSION, "migration_applied": MIGRATION_APPLIED,
        "is_set_up": IS_SET_UP,
        "record_migration": RECORD_MIGRATION, "get": GET, "get_many": GET_MANY,
        "get_keys": GET_KEYS, "upsert": UPSERT,
        "insert_if_absent": INSERT_IF_ABSENT, "update_if_version": UPDATE_IF_VERSION,
        "put_many": PUT_MANY, "put_many_if_absent": PUT_MANY_IF_ABSENT, "replicate": REPLICATE,
        "claim": CLAIM,
        "delete_many": DELETE_MANY, "delete_thread": DELETE_THREAD,
        "delete_tenant": DELETE_TENANT, "sweep": SWEEP, "threads": THREADS,
        "scan_first": SCAN_FIRST, "scan_after": SCAN_AFTER, "find_select": FIND_SELECT,
    }  # fmt: skip
    migrations = tuple(
        (version, name, tuple(s.format(**names) for s in stmts))
        for version, name, stmts in MIGRATIONS
    )
    return Statements(**{k: v.format(**names) for k, v in templates.items()}, migrations=migrations)


def compose_find(stmts: Statements, query: Query, now: float) -> tuple[str, Sequence[Any]]:
    """The text and parameters of a `find`: fixed fragments, values as parameters."""
    text = stmts.find_select
    params: list[Any] = [now]
    for name, value in (
        ("tenant", query.tenant),
        ("kind", query.kind),
        ("thread", query.thread),
        ("namespace", query.namespace),
        ("group", query.group),
        ("statuses", None if query.statuses is None else list(query.statuses)),
        ("tokens", sorted(query.tokens) or None),
        ("before", query.before),
        ("after", query.after),
    ):
        if value is not None:
            params.append(value)
            fragment = "group_set" if name == "group" and value else name
            text += FIND_FILTERS[fragment].format(n=len(params))
    text += ORDER_DESC if query.descending else ORDER_ASC
    if query.limit is not None:
        params.append(query.limit)
        text += LIMIT.format(n=len(params))
    return text, params
