"""The SQLite file's layout: its tables, the columns added since, and the number of the
layout, kept in ``PRAGMA user_version``.

Opening a file (:func:`open_schema`) creates what is missing, adds the newer columns and
stamps the file with :data:`SCHEMA_VERSION`. A file a newer riverbed wrote is refused,
changing nothing (:class:`NewerDatabase`): it could hold what this version would misread;
:func:`check_schema` says so before anything opens the file.
"""

from __future__ import annotations

import os
import pathlib
import re
import sqlite3

from riverbed.stores.sqlite.jobs import SCHEMA as JOBS_SCHEMA
from riverbed.stores.sqlite.kv import SCHEMA as CACHE_SCHEMA
from riverbed.stores.sqlite.learns import SCHEMA as LEARNS_SCHEMA
from riverbed.stores.webhookstore import SQLITE_SCHEMA as WEBHOOKS_SCHEMA

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "NewerDatabase",
    "check_schema",
    "is_current",
    "open_schema",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    options TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS versions (
    model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    artifact BLOB NOT NULL,
    spec TEXT,
    source TEXT NOT NULL,
    created_at REAL NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    seq INTEGER NOT NULL,
    features TEXT NOT NULL,
    prediction TEXT,
    created_at REAL NOT NULL,
    labelled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS predictions_model_seq ON predictions (model, seq);
CREATE TABLE IF NOT EXISTS learns (
    model TEXT NOT NULL,
    seq INTEGER NOT NULL,
    features TEXT NOT NULL,
    target TEXT NOT NULL,
    prediction TEXT,
    prediction_id TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (model, seq)
);
CREATE TABLE IF NOT EXISTS metric_points (
    model TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    "values" TEXT NOT NULL,
    PRIMARY KEY (model, seq)
);
CREATE TABLE IF NOT EXISTS drift_alarms (
    model TEXT NOT NULL,
    seq INTEGER NOT NULL,
    detector TEXT NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (model, seq, detector)
);
CREATE TABLE IF NOT EXISTS canary_arms (
    model TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    run TEXT NOT NULL,
    arm TEXT NOT NULL,
    PRIMARY KEY (model, id)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    model TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS version_numbers (
    model TEXT PRIMARY KEY,
    last INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    model TEXT NOT NULL REFERENCES models(name) ON DELETE CASCADE,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (model, alias)
);
CREATE TABLE IF NOT EXISTS alias_history (
    model TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER,
    previous INTEGER,
    at REAL NOT NULL,
    by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alias_history_model ON alias_history (model);
"""

# Columns added after the first release of a table: (table, column, definition).
COLUMNS = (
    ("models", "flavor", "TEXT NOT NULL DEFAULT 'river'"),
    ("models", "options", "TEXT NOT NULL DEFAULT '{}'"),
    ("versions", "format", "TEXT NOT NULL DEFAULT 'riverbed'"),
    ("versions", "description", "TEXT NOT NULL DEFAULT ''"),
    ("versions", "tags", "TEXT NOT NULL DEFAULT '{}'"),
)
# The layout this version writes, kept in the file's ``PRAGMA user_version``. Raise it when a
# change means an older riverbed would misread the file (as a batch of learns kept in
# ``learn_blocks`` would be, read by a version that knows only ``learns``): that older
# version then refuses the file rather than lose what it cannot see. 0 is a file from before
# the number was kept; 1 has ``learn_blocks``.
SCHEMA_VERSION = 1


class NewerDatabase(ValueError):
    """The file was written by a newer riverbed, in a layout this version could misread."""


def _refuse_newer(found: int, path: str) -> None:
    if found > SCHEMA_VERSION:
        raise NewerDatabase(
            f"{path} was written by a newer riverbed (database schema {found}; this version "
            f"reads schema {SCHEMA_VERSION} and older): upgrade riverbed to open it"
        )


def check_schema(path: str) -> None:
    """Raise :class:`NewerDatabase` if the SQLite file at ``path`` was written by a newer
    riverbed. Reads only; a missing file, or one that is not SQLite, is left to the store."""
    if not os.path.isfile(path):
        return
    try:
        conn = sqlite3.connect(f"{pathlib.Path(path).absolute().as_uri()}?mode=ro", uri=True)
        try:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return
    _refuse_newer(found, path)


def is_current(path: str) -> bool:
    """Whether the SQLite file at ``path`` is at this version's layout, every table, index
    and column of it there: what a store opened to read only (stores/readonly.py) needs,
    since it cannot bring an older file up to date. Reads only."""
    scripts = SCHEMA + LEARNS_SCHEMA + CACHE_SCHEMA + JOBS_SCHEMA + WEBHOOKS_SCHEMA
    wanted = set(re.findall(r"CREATE (?:UNIQUE )?(?:TABLE|INDEX) IF NOT EXISTS (\w+)", scripts))
    try:
        conn = sqlite3.connect(f"{pathlib.Path(path).absolute().as_uri()}?mode=ro", uri=True)
        try:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            columns = {
                (table, row[1])
                for table in {t for t, _, _ in COLUMNS} & present
                for row in conn.execute(f"PRAGMA table_info({table})")
            }
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return (
        found == SCHEMA_VERSION
        and wanted <= present
        and all((table, column) in columns for table, column, _ in COLUMNS)
    )


def open_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create or bring up to date the tables of a file this version can read, and mark it
    with :data:`SCHEMA_VERSION`; refuse, changing nothing, a file a newer version wrote."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    _refuse_newer(found, path)
    conn.executescript(SCHEMA + LEARNS_SCHEMA + CACHE_SCHEMA + JOBS_SCHEMA + WEBHOOKS_SCHEMA)
    for table, column, definition in COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    if found < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
