"""SQL of the SQLite store: the schema migrations and every statement, once."""

from __future__ import annotations

from typing import Final

COLUMNS: Final = (
    "tenant, thread, namespace, kind, key, sort, grp, status, tokens, "
    "expires_at, lease_until, version, updated_at, body"
)

MIGRATIONS: Final[tuple[tuple[int, str, tuple[str, ...]], ...]] = (
    (
        1,
        "records",
        (
            """
            CREATE TABLE IF NOT EXISTS records (
                tenant      TEXT NOT NULL,
                thread      TEXT NOT NULL,
                namespace   TEXT NOT NULL,
                kind        TEXT NOT NULL,
                key         TEXT NOT NULL,
                sort        TEXT NOT NULL,
                grp         TEXT NOT NULL,
                status      TEXT NOT NULL,
                tokens      TEXT NOT NULL,
                expires_at  REAL,
                lease_until REAL,
                version     INTEGER NOT NULL,
                updated_at  REAL NOT NULL,
                body        BLOB NOT NULL,
                PRIMARY KEY (tenant, thread, namespace, kind, key)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX IF NOT EXISTS records_by_sort ON records (tenant, kind, thread, sort)",
            "CREATE INDEX IF NOT EXISTS records_by_kind ON records (tenant, kind, sort)",
            "CREATE INDEX IF NOT EXISTS records_by_group ON records (tenant, thread, kind, grp)",
            "CREATE INDEX IF NOT EXISTS records_by_expiry"
            " ON records (expires_at) WHERE expires_at IS NOT NULL",
        ),
    ),
)

PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)

GET: Final = (
    f"SELECT {COLUMNS} FROM records"
    " WHERE tenant = ? AND thread = ? AND namespace = ? AND kind = ? AND key = ?"
    " AND (expires_at IS NULL OR expires_at > ?)"
)
GET_VERSION: Final = (
    "SELECT version, expires_at FROM records"
    " WHERE tenant = ? AND thread = ? AND namespace = ? AND kind = ? AND key = ?"
)
UPSERT: Final = (
    f"INSERT INTO records ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)"
    " ON CONFLICT (tenant, thread, namespace, kind, key) DO UPDATE SET"
    " sort = excluded.sort, grp = excluded.grp, status = excluded.status,"
    " tokens = excluded.tokens, expires_at = excluded.expires_at,"
    " lease_until = excluded.lease_until, version = records.version + 1,"
    " updated_at = excluded.updated_at, body = excluded.body"
    " RETURNING version"
)
# Insert-if-absent: an expired row counts as absent and is replaced. No row comes back
# when a live one was kept.
_ONLY_IF_EXPIRED: Final = (
    " WHERE records.expires_at IS NOT NULL AND records.expires_at <= excluded.updated_at"
)
INSERT_IF_ABSENT: Final = UPSERT.replace(" RETURNING", _ONLY_IF_EXPIRED + " RETURNING")
# Copies between tiers: kept as given unless the stored row has a higher version.
REPLICATE: Final = (
    f"INSERT INTO records ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant, thread, namespace, kind, key) DO UPDATE SET"
    " sort = excluded.sort, grp = excluded.grp, status = excluded.status,"
    " tokens = excluded.tokens, expires_at = excluded.expires_at,"
    " lease_until = excluded.lease_until, version = excluded.version,"
    " updated_at = excluded.updated_at, body = excluded.body"
    " WHERE records.version <= excluded.version"
)
SELECT_FOR_CLAIM: Final = (
    "SELECT tenant, thread, namespace, kind, key FROM records"
    " WHERE tenant = ? AND thread = ? AND kind = ?"
    " AND (expires_at IS NULL OR expires_at > ?)"
    " AND (status IN (SELECT value FROM json_each(?))"
    "      OR (? AND lease_until IS NOT NULL AND lease_until < ?))"
    " ORDER BY sort, namespace, key LIMIT 1"
)
CLAIM: Final = (
    "UPDATE records SET status = ?, lease_until = ?, version = version + 1, updated_at = ?"
    " WHERE tenant = ? AND thread = ? AND namespace = ? AND kind = ? AND key = ?"
    f" RETURNING {COLUMNS}"
)
DELETE_ONE: Final = (
    "DELETE FROM records"
    " WHERE tenant = ? AND thread = ? AND namespace = ? AND kind = ? AND key = ?"
    " RETURNING expires_at"
)
DELETE_THREAD: Final = "DELETE FROM records WHERE tenant = ? AND thread = ?"
DELETE_TENANT: Final = "DELETE FROM records WHERE tenant = ?"
SWEEP: Final = (
    "DELETE FROM records WHERE (tenant, thread, namespace, kind, key) IN"
    " (SELECT tenant, thread, namespace, kind, key FROM records"
    "  WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?)"
)
THREADS: Final = (
    "SELECT DISTINCT tenant, thread FROM records"
    " WHERE (? IS NULL OR tenant = ?) AND thread != '' AND (? IS NULL OR thread > ?)"
    " AND (expires_at IS NULL OR expires_at > ?)"
    " ORDER BY thread, tenant LIMIT ?"
)
SCAN_FIRST: Final = (
    f"SELECT {COLUMNS} FROM records ORDER BY tenant, thread, namespace, kind, key LIMIT ?"
)
SCAN_AFTER: Final = (
    f"SELECT {COLUMNS} FROM records"
    " WHERE (tenant, thread, namespace, kind, key) > (?, ?, ?, ?, ?)"
    " ORDER BY tenant, thread, namespace, kind, key LIMIT ?"
)
PING: Final = "SELECT 1"

# List queries are composed from these fixed fragments; values only ever go in as
# parameters, never into the SQL text.
LIST_SELECT: Final = f"SELECT {COLUMNS} FROM records WHERE (expires_at IS NULL OR expires_at > ?)"
LIST_FILTERS: Final = {
    "tenant": " AND tenant = ?",
    "kind": " AND kind = ?",
    "thread": " AND thread = ?",
    "namespace": " AND namespace = ?",
    "group": " AND grp = ?",
    "statuses": " AND status IN (SELECT value FROM json_each(?))",
    "token": " AND instr(tokens, ?) > 0",
    "before": " AND sort < ?",
    "after": " AND sort > ?",
}
ORDER_ASC: Final = " ORDER BY sort, tenant, thread, namespace, kind, key"
ORDER_DESC: Final = (
    " ORDER BY sort DESC, tenant DESC, thread DESC, namespace DESC, kind DESC, key DESC"
)
LIMIT: Final = " LIMIT ?"
