"""The PostgreSQL database's layout: its tables, and the number of the layout, kept in the
one-row table ``riverbed_schema``.

Opening a database (:func:`open_schema`) creates what is missing and stamps the database
with :data:`SCHEMA_VERSION` (upgrading an older one); a database a newer riverbed wrote is
refused, changing nothing (:class:`~riverbed.stores.sqlite.schema.NewerDatabase`, as an
SQLite file is). Values are JSON bytes (``stores.base.dump``) in ``bytea`` columns; times
are seconds since the epoch, as on SQLite.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from riverbed.stores.sqlite.schema import NewerDatabase
from riverbed.stores.webhookstore import POSTGRES_SCHEMA as WEBHOOKS_SCHEMA

__all__ = ["SCHEMA", "SCHEMA_VERSION", "check_schema", "open_schema", "schema_version"]

# The layout this version writes. Raise it when a change means an older riverbed would
# misread the database; add the upgrade from the number before to open_schema.
SCHEMA_VERSION = 1

# Taken (transaction-scoped) while a database's tables are created, so that two processes
# opening a new database at once do not race.
_CREATE_LOCK = 0x72697662  # "rivb"

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS riverbed_schema (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    tags BYTEA NOT NULL,
    metrics BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    flavor TEXT NOT NULL DEFAULT 'river',
    options BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    artifact BYTEA NOT NULL,
    spec BYTEA,
    source TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    metadata BYTEA NOT NULL,
    format TEXT NOT NULL DEFAULT 'riverbed',
    description TEXT NOT NULL DEFAULT '',
    tags BYTEA NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS version_numbers (
    model TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    updated_by TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model, alias)
);
CREATE TABLE IF NOT EXISTS alias_history (
    n BIGSERIAL PRIMARY KEY,
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER,
    previous INTEGER,
    at DOUBLE PRECISION NOT NULL,
    by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alias_history_model ON alias_history (model, n);
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    seq BIGINT NOT NULL,
    features BYTEA NOT NULL,
    prediction BYTEA,
    created_at DOUBLE PRECISION NOT NULL,
    labelled BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS predictions_model_seq ON predictions (model, seq);
CREATE TABLE IF NOT EXISTS learns (
    model TEXT NOT NULL,
    seq BIGINT NOT NULL,
    features BYTEA NOT NULL,
    target BYTEA NOT NULL,
    prediction BYTEA,
    prediction_id TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (model, seq)
);
CREATE TABLE IF NOT EXISTS metric_points (
    model TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    "values" BYTEA NOT NULL,
    PRIMARY KEY (model, seq)
);
CREATE TABLE IF NOT EXISTS drift_alarms (
    model TEXT NOT NULL,
    seq BIGINT NOT NULL,
    detector TEXT NOT NULL,
    time DOUBLE PRECISION NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (model, seq, detector)
);
CREATE TABLE IF NOT EXISTS canary_arms (
    model TEXT NOT NULL,
    id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    run TEXT NOT NULL,
    arm TEXT NOT NULL,
    PRIMARY KEY (model, id)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    model TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    state BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    is_list BOOLEAN NOT NULL DEFAULT FALSE,
    value BYTEA,
    expires_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS cache_expiry ON cache (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS cache_items (
    key TEXT NOT NULL,
    pos BIGINT NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (key, pos)
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    record BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_model ON jobs (model, created_at);
CREATE TABLE IF NOT EXISTS job_data (
    id TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    data BYTEA NOT NULL
);
"""
    + WEBHOOKS_SCHEMA
)
_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))


def _missing_tables(conn: psycopg.Connection[Any]) -> bool:
    """Whether a table of :data:`SCHEMA` is missing: one added to the layout without a new
    number (an addition an older riverbed ignores), in a database stamped before it."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()
    return not _TABLES <= {row[0] for row in rows}


def schema_version(conn: psycopg.Connection[Any]) -> int | None:
    """The layout number the database is stamped with; None for a database riverbed has
    not written (no ``riverbed_schema`` table)."""
    present = conn.execute("SELECT to_regclass('riverbed_schema') IS NOT NULL").fetchone()
    if not present or not present[0]:
        return None
    row = conn.execute("SELECT version FROM riverbed_schema").fetchone()
    return int(row[0]) if row else 0


def _refuse_newer(found: int | None, where: str) -> None:
    if found is not None and found > SCHEMA_VERSION:
        raise NewerDatabase(
            f"{where} was written by a newer riverbed (database schema {found}; this version "
            f"reads schema {SCHEMA_VERSION} and older): upgrade riverbed to open it"
        )


def check_schema(conn: psycopg.Connection[Any], where: str) -> None:
    """Raise NewerDatabase if a newer riverbed wrote the database. Reads only."""
    _refuse_newer(schema_version(conn), where)


def open_schema(conn: psycopg.Connection[Any], where: str) -> None:
    """Create or bring up to date the tables of a database this version can read, and stamp
    it with :data:`SCHEMA_VERSION`; refuse, changing nothing, one a newer version wrote.
    ``conn`` is in autocommit mode; this runs in one transaction of its own."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
        found = schema_version(conn)
        _refuse_newer(found, where)
        if found == SCHEMA_VERSION and not _missing_tables(conn):
            return
        # Upgrades from an older number go here, before the tables are (re)created.
        conn.execute(SCHEMA)
        conn.execute(
            "INSERT INTO riverbed_schema (one, version) VALUES (TRUE, %s)"
            " ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            (SCHEMA_VERSION,),
        )
