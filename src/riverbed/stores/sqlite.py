"""The SQLite store: one file in WAL mode, one writer thread, group commits.

Every write is queued to the writer thread, which drains the queue, applies what it found in
one transaction (each write in its own savepoint, so one bad write fails alone) and commits
once. The futures of the batch complete after that commit, so many concurrent requests share
one commit. Reads use a connection per thread and see committed data only.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import (
    ModelExists,
    ModelNotFound,
    PredictionExists,
    ServerError,
    VersionExists,
    VersionNotFound,
)
from riverbed.stores.base import (
    AliasChange,
    AliasRecord,
    Checkpoint,
    LearnRecord,
    MetricPoint,
    ModelRecord,
    PredictionRecord,
    Pruned,
    Retention,
    Store,
    VersionRecord,
    dump,
    load,
)
from riverbed.stores.sqlite_jobs import SCHEMA as JOBS_SCHEMA
from riverbed.stores.sqlite_jobs import SQLiteJobs
from riverbed.stores.sqlite_kv import SCHEMA as CACHE_SCHEMA
from riverbed.stores.sqlite_kv import SQLiteCache
from riverbed.stores.tokens import SQLiteTokenStore, TokenStore

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

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
_VERSION_COLUMNS = "model, version, spec, source, created_at, metadata, format, description, tags"

_STOP = object()
_MAX_BATCH = 4096
# Rows of one table one prune write deletes at most: a few milliseconds of the writer, so
# that a long backlog (retention just turned on) never stalls the commits of requests.
_PRUNE_BATCH = 2000
_WAL_LIMIT = 64 * 1024 * 1024  # the WAL file's size past which it is made to start over
_Op = Callable[[sqlite3.Connection], Any]


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=False,
        timeout=30,
        cached_statements=_STATEMENT_CACHE,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class _Checkpointer(threading.Thread):
    """Moves the WAL into the database file in the background (``PRAGMA
    wal_checkpoint(PASSIVE)`` on a connection of its own), so that the writer's commits never
    wait for a checkpoint's copy and fsync: SQLite's automatic checkpoint would run them
    inside the commit that crosses 1,000 pages, stalling every request of that group commit.
    A passive checkpoint takes no lock that writers need."""

    def __init__(
        self, path: str, synchronous: str, period: float = 0.2, wal_limit: int = _WAL_LIMIT
    ) -> None:
        super().__init__(name="riverbed-sqlite-checkpointer", daemon=True)
        self.path, self.synchronous, self.period = path, synchronous, period
        self.wal_limit = wal_limit
        self.commits = 0  # bumped by the writer; read here without a lock (a hint only)
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        conn = _connect(self.path, self.synchronous)
        # A RESTART checkpoint holds the writers back while it waits: never for long.
        conn.execute("PRAGMA busy_timeout=100")
        seen = 0
        try:
            while not self._halt.wait(self.period):
                if self.commits != seen:
                    seen = self.commits
                    self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """A passive checkpoint, then a RESTART one if the WAL file has outgrown
        ``wal_limit``. Under steady writes a passive checkpoint never catches up with the
        writer, so the log would never start over and its file would grow without end
        (gigabytes in minutes under load); RESTART waits for the commit in progress, copies
        the few frames left and makes the next commit write the log from its start (the
        file cut back to ``journal_size_limit``)."""
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            if os.path.getsize(self.path + "-wal") > self.wal_limit:
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except (sqlite3.Error, OSError):  # pragma: no cover - busy or closing; next period
            log.debug("background WAL checkpoint failed", exc_info=True)


# Rows per multi-row statement: 256s, 64s and 32s, then the rest (under 32) in one; so the
# writer makes at most 34 statements a table, which the connection's statement cache holds.
_CHUNKS = (256, 64, 32)
_STATEMENT_CACHE = 256
_WRITER_CACHE_KIB = 64 * 1024


@functools.lru_cache(maxsize=128)
def _insert_sql(table: str, columns: tuple[str, ...], n: int) -> str:
    row = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row] * n)


@functools.lru_cache(maxsize=64)
def _label_sql(n: int) -> str:
    return f"UPDATE predictions SET labelled = 1 WHERE id IN ({', '.join('?' * n)})"


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    start = 0
    for size in _CHUNKS:
        while len(items) - start >= size:
            yield items[start : start + size]
            start += size
    if start < len(items):
        yield items[start:]


def _insert(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[Any]
) -> None:
    for chunk in _chunks(rows):
        conn.execute(_insert_sql(table, columns, len(chunk)), list(itertools.chain(*chunk)))


def _label(conn: sqlite3.Connection, prediction_ids: list[str]) -> None:
    for chunk in _chunks(prediction_ids):
        conn.execute(_label_sql(len(chunk)), chunk)


class _Append:
    """Rows for one table, and the predictions they label: a write that the writer merges
    with the appends queued next to it. A group commit of hundreds of predictions and learns
    is then a few multi-row statements rather than one statement a write -- and each
    statement also hands Python's GIL over and back, which made the writer wait on the
    event loop once per row. Applied alone (after a failed merge), it raises its own error.
    """

    __slots__ = ("table", "columns", "rows", "labels", "conflict")

    def __init__(
        self,
        table: str,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        labels: list[str],
        conflict: Callable[[], Exception] | None = None,
    ) -> None:
        self.table, self.columns, self.rows = table, columns, rows
        self.labels, self.conflict = labels, conflict

    def __call__(self, conn: sqlite3.Connection) -> None:
        try:
            _insert(conn, self.table, self.columns, self.rows)
        except sqlite3.IntegrityError:
            if self.conflict is None:
                raise
            raise self.conflict() from None
        _label(conn, self.labels)


def _apply_appends(conn: sqlite3.Connection, appends: list[_Append]) -> None:
    """Consecutive appends as one: every table's rows together, then the labels (which may
    name predictions inserted here)."""
    tables: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
    labels: list[str] = []
    for append in appends:
        rows = tables.setdefault((append.table, append.columns), [])
        rows.extend(append.rows)
        labels.extend(append.labels)
    for (table, columns), rows in tables.items():
        _insert(conn, table, columns, rows)
    _label(conn, labels)


def _one_statement(batch: list[tuple[Any, Future[Any]]]) -> bool:
    """Whether the batch is appends to one table, no labels, few enough rows for one
    statement."""
    first = batch[0][0]
    if type(first) is not _Append:
        return False
    rows = 0
    for op, _ in batch:
        if type(op) is not _Append or op.labels or op.table != first.table:
            return False
        if op.columns != first.columns:
            return False
        rows += len(op.rows)
    return rows < _CHUNKS[-1] or rows in _CHUNKS


_PREDICTION_COLUMNS = ("id", "model", "seq", "features", "prediction", "created_at")
_LEARN_COLUMNS = (
    "model",
    "seq",
    "features",
    "target",
    "prediction",
    "prediction_id",
    "created_at",
)


class _Writer(threading.Thread):
    """Applies queued writes in batches, one commit per batch.

    A write is a function of the connection and must not change anything else: when one
    write of a batch fails, the batch is rolled back and applied again with a savepoint per
    write, so that the others still commit.
    """

    def __init__(self, conn: sqlite3.Connection, checkpointer: _Checkpointer | None = None) -> None:
        super().__init__(name="riverbed-sqlite-writer", daemon=True)
        self.conn = conn
        self.checkpointer = checkpointer
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def submit(self, op: _Op) -> Future[Any]:
        future: Future[Any] = Future()
        self.queue.put((op, future))
        return future

    def stop(self) -> None:
        self.queue.put(_STOP)
        self.join()

    def run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self.queue.get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if batch:
                self._apply(batch)
        self.conn.close()

    def _apply(self, batch: list[tuple[_Op, Future[Any]]]) -> None:
        conn = self.conn
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] | None
        try:
            outcomes = self._together(batch)
            if outcomes is None:
                outcomes = self._one_by_one(batch)
        except Exception as exc:  # the commit itself failed: nothing in the batch is durable
            log.exception("SQLite commit failed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = ServerError(f"the database could not commit: {exc}")
            outcomes = [(future, None, failure) for _, future in batch]
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def _together(
        self, batch: list[tuple[_Op, Future[Any]]]
    ) -> list[tuple[Future[Any], Any, BaseException | None]] | None:
        """The batch in one transaction, no savepoints: the common case, where every write
        succeeds. If one fails, everything is rolled back and None says to apply the batch
        again one savepoint per write (writes only touch the connection, so they can)."""
        conn = self.conn
        if _one_statement(batch):
            # One INSERT is a transaction of its own: no BEGIN and COMMIT, each of which
            # would hand the GIL to the event loop and wait to get it back.
            try:
                _apply_appends(conn, [a for a, _ in batch])  # type: ignore[misc]
            except Exception:
                if conn.in_transaction:  # pragma: no cover - a single statement rolls back
                    conn.execute("ROLLBACK")
                return None
            self._committed()
            return [(future, None, None) for _, future in batch]
        conn.execute("BEGIN IMMEDIATE")
        results: list[Any] = []
        try:
            i = 0
            while i < len(batch):
                op = batch[i][0]
                if type(op) is _Append:
                    j = i + 1
                    while j < len(batch) and type(batch[j][0]) is _Append:
                        j += 1
                    _apply_appends(conn, [a for a, _ in batch[i:j]])  # type: ignore[misc]
                    results.extend([None] * (j - i))
                    i = j
                else:
                    results.append(op(conn))
                    i += 1
        except Exception:
            conn.execute("ROLLBACK")
            return None
        conn.execute("COMMIT")
        self._committed()
        return [(future, result, None) for (_, future), result in zip(batch, results, strict=True)]

    def _one_by_one(
        self, batch: list[tuple[_Op, Future[Any]]]
    ) -> list[tuple[Future[Any], Any, BaseException | None]]:
        """The batch in one transaction, each write in its own savepoint: one bad write
        fails alone."""
        conn = self.conn
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        for op, future in batch:
            conn.execute("SAVEPOINT op")
            try:
                result = op(conn)
            except Exception as exc:
                conn.execute("ROLLBACK TO op")
                outcomes.append((future, None, exc))
            else:
                outcomes.append((future, result, None))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
        self._committed()
        return outcomes

    def _committed(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.commits += 1


class SQLiteStore(SQLiteCache, SQLiteJobs, Store):
    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"sqlite synchronous must be NORMAL, FULL or EXTRA, not {synchronous}")
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._synchronous = synchronous.upper()
        conn = _connect(path, self._synchronous)
        conn.executescript(SCHEMA + CACHE_SCHEMA + JOBS_SCHEMA)
        for table, column, definition in COLUMNS:
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        # Checkpoints run beside the writer (see _Checkpointer), not inside its commits; the
        # WAL file is cut back to 64 MiB whenever a checkpoint lets it restart.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        # The writer's page cache holds the indexes' hot pages (2 MB by default: a store of
        # some million rows then read index pages back from the OS on every commit).
        conn.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
        self._checkpointer = _Checkpointer(path, self._synchronous)
        self._checkpointer.start()
        self._writer = _Writer(conn, self._checkpointer)
        self._writer.start()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._tokens: SQLiteTokenStore | None = None

    def token_store(self) -> TokenStore:
        if self._tokens is None:
            self._tokens = SQLiteTokenStore(self._writer.submit, self._read)
        return self._tokens

    # -- plumbing -------------------------------------------------------------------------

    def _read(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self._synchronous)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def sync(self) -> None:
        self._writer.submit(lambda conn: None).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._checkpointer.stop()
        self._writer.stop()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    # -- models and versions ----------------------------------------------------------------

    def create_model(self, model: ModelRecord, version: VersionRecord) -> Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO models (name, task, description, tags, metrics, created_at,"
                    " updated_at, flavor, options) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        model.name,
                        model.task,
                        model.description,
                        dump(model.tags),
                        dump(model.metrics),
                        model.created_at,
                        model.updated_at,
                        model.flavor,
                        dump(model.options),
                    ),
                )
            except sqlite3.IntegrityError:
                raise ModelExists(f"a model named {model.name!r} already exists") from None
            self._insert_version(conn, version)

        return self._writer.submit(op)

    @staticmethod
    def _insert_version(conn: sqlite3.Connection, version: VersionRecord) -> None:
        try:
            conn.execute(
                "INSERT INTO versions (model, version, artifact, spec, source, created_at,"
                " metadata, format, description, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version.model,
                    version.version,
                    version.artifact,
                    None if version.spec is None else dump(version.spec),
                    version.source,
                    version.created_at,
                    dump(version.metadata),
                    version.format,
                    version.description,
                    dump(version.tags),
                ),
            )
        except sqlite3.IntegrityError:
            raise VersionExists(
                f"model {version.model!r} already has a version {version.version}"
            ) from None
        conn.execute(
            "INSERT INTO version_numbers (model, last) VALUES (?, ?) ON CONFLICT (model)"
            " DO UPDATE SET last = MAX(last, excluded.last)",
            (version.model, version.version),
        )

    def delete_model(self, name: str) -> Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            for table, column in (
                ("predictions", "model"),
                ("learns", "model"),
                ("checkpoints", "model"),
                ("aliases", "model"),
                ("alias_history", "model"),
                ("version_numbers", "model"),
                ("metric_points", "model"),
                ("versions", "model"),
                ("models", "name"),
            ):
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))

        return self._writer.submit(op)

    @staticmethod
    def _model(row: tuple[Any, ...]) -> ModelRecord:
        return ModelRecord(
            name=row[0],
            task=row[1],
            description=row[2],
            tags=load(row[3]),
            metrics=load(row[4]),
            created_at=row[5],
            updated_at=row[6],
            flavor=row[7],
            options=load(row[8]),
        )

    def get_model(self, name: str) -> ModelRecord | None:
        row = (
            self._read()
            .execute(
                "SELECT name, task, description, tags, metrics, created_at, updated_at,"
                " flavor, options FROM models WHERE name = ?",
                (name,),
            )
            .fetchone()
        )
        return self._model(row) if row else None

    def list_models(self) -> list[ModelRecord]:
        rows = (
            self._read()
            .execute(
                "SELECT name, task, description, tags, metrics, created_at, updated_at,"
                " flavor, options FROM models ORDER BY name"
            )
            .fetchall()
        )
        return [self._model(row) for row in rows]

    def get_version(self, name: str, version: int | None = None) -> VersionRecord | None:
        query = f"SELECT {_VERSION_COLUMNS}, artifact FROM versions WHERE model = ?"
        if version is None:
            row = self._read().execute(query + " ORDER BY version DESC LIMIT 1", (name,)).fetchone()
        else:
            row = self._read().execute(query + " AND version = ?", (name, version)).fetchone()
        return None if row is None else self._version(row, row[9])

    @staticmethod
    def _version(row: tuple[Any, ...], artifact: bytes) -> VersionRecord:
        return VersionRecord(
            model=row[0],
            version=row[1],
            artifact=artifact,
            spec=load(row[2]),
            source=row[3],
            created_at=row[4],
            metadata=load(row[5]),
            format=row[6],
            description=row[7],
            tags=load(row[8]),
        )

    def update_model(
        self, name: str, *, description: str | None, tags: dict[str, str] | None, at: float
    ) -> Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE models SET description = COALESCE(?, description),"
                " tags = COALESCE(?, tags), updated_at = ? WHERE name = ?",
                (description, None if tags is None else dump(tags), at, name),
            )
            if cursor.rowcount == 0:
                raise ModelNotFound(f"no model named {name!r}")

        return self._writer.submit(op)

    def add_version(self, version: VersionRecord) -> Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            exists = conn.execute("SELECT 1 FROM models WHERE name = ?", (version.model,))
            if exists.fetchone() is None:
                raise ModelNotFound(f"no model named {version.model!r}")
            self._insert_version(conn, version)

        return self._writer.submit(op)

    def list_versions(self, name: str | None = None) -> list[VersionRecord]:
        query = f"SELECT {_VERSION_COLUMNS} FROM versions"
        if name is None:
            rows = self._read().execute(query + " ORDER BY model, version").fetchall()
        else:
            rows = (
                self._read()
                .execute(query + " WHERE model = ? ORDER BY version", (name,))
                .fetchall()
            )
        return [self._version(row, b"") for row in rows]

    def last_version(self, name: str) -> int:
        row = (
            self._read()
            .execute(
                "SELECT MAX(COALESCE((SELECT last FROM version_numbers WHERE model = ?), 0),"
                " COALESCE((SELECT MAX(version) FROM versions WHERE model = ?), 0))",
                (name, name),
            )
            .fetchone()
        )
        return int(row[0])

    def update_version(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Future[None]:
        params = (
            description,
            None if tags is None else dump(tags),
            None if metadata is None else dump(metadata),
            name,
            version,
        )

        def op(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE versions SET description = COALESCE(?, description),"
                " tags = COALESCE(?, tags), metadata = COALESCE(?, metadata)"
                " WHERE model = ? AND version = ?",
                params,
            )
            if cursor.rowcount == 0:
                raise VersionNotFound(f"model {name!r} has no version {version}")

        return self._writer.submit(op)

    def delete_version(self, name: str, version: int) -> Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM versions WHERE model = ? AND version = ?", (name, version))

        return self._writer.submit(op)

    def set_alias(
        self, name: str, alias: str, version: int | None, *, at: float, by: str = ""
    ) -> Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone() is None:
                raise ModelNotFound(f"no model named {name!r}")
            row = conn.execute(
                "SELECT version FROM aliases WHERE model = ? AND alias = ?", (name, alias)
            ).fetchone()
            if version is None:
                conn.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", (name, alias))
            else:
                conn.execute(
                    "INSERT INTO aliases (model, alias, version, updated_at, updated_by)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (model, alias) DO UPDATE SET"
                    " version = excluded.version, updated_at = excluded.updated_at,"
                    " updated_by = excluded.updated_by",
                    (name, alias, version, at, by),
                )
            conn.execute(
                "INSERT INTO alias_history (model, alias, version, previous, at, by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, alias, version, row[0] if row else None, at, by),
            )

        return self._writer.submit(op)

    def list_aliases(self, name: str | None = None) -> list[AliasRecord]:
        query = "SELECT model, alias, version, updated_at, updated_by FROM aliases"
        if name is None:
            rows = self._read().execute(query + " ORDER BY model, alias").fetchall()
        else:
            rows = (
                self._read().execute(query + " WHERE model = ? ORDER BY alias", (name,)).fetchall()
            )
        return [AliasRecord(*row) for row in rows]

    def alias_history(self, name: str) -> list[AliasChange]:
        rows = self._read().execute(
            "SELECT model, alias, version, previous, at, by FROM alias_history"
            " WHERE model = ? ORDER BY rowid",
            (name,),
        )
        return [AliasChange(*row) for row in rows]

    # -- the log -------------------------------------------------------------------------

    def add_prediction(self, record: PredictionRecord) -> Future[None]:
        row = (
            record.id,
            record.model,
            record.seq,
            dump(record.features),
            dump(record.prediction),
            record.created_at,
        )

        def taken() -> Exception:
            return PredictionExists(f"prediction id {record.id!r} is taken; use a new id")

        return self._writer.submit(_Append("predictions", _PREDICTION_COLUMNS, [row], [], taken))

    def add_predictions(self, records: list[PredictionRecord]) -> Future[None]:
        rows = [
            (r.id, r.model, r.seq, dump(r.features), dump(r.prediction), r.created_at)
            for r in records
        ]

        def taken() -> Exception:
            return PredictionExists("a prediction id of the batch is taken")

        return self._writer.submit(_Append("predictions", _PREDICTION_COLUMNS, rows, [], taken))

    def stored_prediction_ids(self, prediction_ids: Iterable[str]) -> set[str]:
        ids = list(prediction_ids)
        conn = self._read()
        found: set[str] = set()
        for chunk in _chunks(ids):
            sql = f"SELECT id FROM predictions WHERE id IN ({', '.join('?' * len(chunk))})"
            found.update(row[0] for row in conn.execute(sql, chunk))
        return found

    def get_prediction(self, prediction_id: str) -> PredictionRecord | None:
        row = (
            self._read()
            .execute(
                "SELECT id, model, seq, features, prediction, created_at, labelled"
                " FROM predictions WHERE id = ?",
                (prediction_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return PredictionRecord(
            id=row[0],
            model=row[1],
            seq=row[2],
            features=load(row[3]),
            prediction=load(row[4]),
            created_at=row[5],
            labelled=bool(row[6]),
        )

    def max_prediction_seq(self, name: str) -> int:
        row = (
            self._read()
            .execute("SELECT MAX(seq) FROM predictions WHERE model = ?", (name,))
            .fetchone()
        )
        return row[0] or 0

    def add_learn(self, record: LearnRecord) -> Future[None]:
        return self.add_learns([record])

    def add_learns(self, records: list[LearnRecord]) -> Future[None]:
        rows = [
            (
                r.model,
                r.seq,
                dump(r.features),
                dump(r.target),
                dump(r.prediction),
                r.prediction_id,
                r.created_at,
            )
            for r in records
        ]
        labels = [r.prediction_id for r in records if r.prediction_id is not None]
        return self._writer.submit(_Append("learns", _LEARN_COLUMNS, rows, labels))

    def learns_after(self, name: str, seq: int) -> Iterator[LearnRecord]:
        cursor = self._read().execute(
            "SELECT model, seq, features, target, prediction, prediction_id, created_at"
            " FROM learns WHERE model = ? AND seq > ? ORDER BY seq",
            (name, seq),
        )
        for row in cursor:
            yield LearnRecord(
                model=row[0],
                seq=row[1],
                features=load(row[2]),
                target=load(row[3]),
                prediction=load(row[4]),
                prediction_id=row[5],
                created_at=row[6],
            )

    # -- metric history ------------------------------------------------------------------

    def add_metric_point(self, point: MetricPoint) -> Future[None]:
        params = (point.model, point.seq, point.time, dump(point.values), point.model)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                'INSERT OR IGNORE INTO metric_points (model, seq, time, "values")'
                " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM models WHERE name = ?)",
                params,
            )

        return self._writer.submit(op)

    def metric_history(
        self, name: str, *, after: int = 0, since: float | None = None, limit: int = 1000
    ) -> list[MetricPoint]:
        rows = (
            self._read()
            .execute(
                'SELECT model, seq, time, "values" FROM metric_points'
                " WHERE model = ? AND seq > ? AND time >= ? ORDER BY seq LIMIT ?",
                (name, after, -1.0 if since is None else since, limit),
            )
            .fetchall()
        )
        return [MetricPoint(r[0], r[1], r[2], load(r[3])) for r in rows]

    # -- retention -----------------------------------------------------------------------

    def prune(self, name: str, retention: Retention) -> Future[Pruned]:
        """One write per batch of at most ``_PRUNE_BATCH`` rows a table, oldest first, each
        queued once the last one committed, until nothing is left beyond the retention."""
        outcome: Future[Pruned] = Future()
        total = Pruned()

        def step(conn: sqlite3.Connection) -> tuple[Pruned, bool]:
            return _prune_step(conn, name, retention)

        def after(future: Future[tuple[Pruned, bool]]) -> None:
            error = future.exception()
            if error is not None:
                outcome.set_exception(error)
                return
            pruned, more = future.result()
            total.predictions += pruned.predictions
            total.learns += pruned.learns
            total.metric_points += pruned.metric_points
            total.predictions_through = max(total.predictions_through, pruned.predictions_through)
            if more and not self._closed:
                self._writer.submit(step).add_done_callback(after)
            else:
                outcome.set_result(total)

        self._writer.submit(step).add_done_callback(after)
        return outcome

    # -- checkpoints ---------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Checkpoint) -> Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO checkpoints (model, seq, state, created_at)"
                " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM models WHERE name = ?)"
                " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq,"
                " state = excluded.state, created_at = excluded.created_at",
                (
                    checkpoint.model,
                    checkpoint.seq,
                    checkpoint.state,
                    checkpoint.created_at,
                    checkpoint.model,
                ),
            )

        return self._writer.submit(op)

    def get_checkpoint(self, name: str) -> Checkpoint | None:
        row = (
            self._read()
            .execute(
                "SELECT model, seq, state, created_at FROM checkpoints WHERE model = ?", (name,)
            )
            .fetchone()
        )
        return Checkpoint(*row) if row else None


def _prune_step(conn: sqlite3.Connection, name: str, retention: Retention) -> tuple[Pruned, bool]:
    """Delete one batch of what ``retention`` does not keep of model ``name``: what was
    deleted, and whether more is left."""
    pruned, more = Pruned(), False
    if retention.predictions:
        through = _cutoff(conn, "predictions", name, retention.predictions)
        if through:
            pruned.predictions, bound, left = _delete_through(conn, "predictions", name, through)
            pruned.predictions_through = bound if pruned.predictions else 0
            more = more or left
    if retention.learns:
        through = _cutoff(conn, "learns", name, retention.learns)
        row = conn.execute("SELECT seq FROM checkpoints WHERE model = ?", (name,)).fetchone()
        through = min(through, row[0] if row else 0)  # the learns a restart replays stay
        if through:
            pruned.learns, _, left = _delete_through(conn, "learns", name, through)
            more = more or left
    if retention.metric_points:
        through = _cutoff(conn, "metric_points", name, retention.metric_points)
        if through:
            pruned.metric_points, _, left = _delete_through(conn, "metric_points", name, through)
            more = more or left
    return pruned, more


def _cutoff(conn: sqlite3.Connection, table: str, name: str, keep: int) -> int:
    """The ``seq`` of the newest row of the model beyond its ``keep`` newest (0: none).
    Walks ``keep`` entries of the table's (model, seq) index."""
    row = conn.execute(
        f"SELECT seq FROM {table} WHERE model = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
        (name, keep),
    ).fetchone()
    return int(row[0]) if row else 0


def _delete_through(
    conn: sqlite3.Connection, table: str, name: str, through: int
) -> tuple[int, int, bool]:
    """Delete the oldest rows of the model with ``seq <= through``, at most
    ``_PRUNE_BATCH``: (rows deleted, the ``seq`` deleted up to, whether rows are left)."""
    row = conn.execute(
        f"SELECT seq FROM {table} WHERE model = ? AND seq <= ? ORDER BY seq LIMIT 1 OFFSET ?",
        (name, through, _PRUNE_BATCH - 1),
    ).fetchone()
    bound = through if row is None else min(through, int(row[0]))
    cursor = conn.execute(f"DELETE FROM {table} WHERE model = ? AND seq <= ?", (name, bound))
    return cursor.rowcount, bound, bound < through
