"""The SQLite store: one file in WAL mode, group commits.

Every write goes through the :class:`~riverbed.stores.sqlite.writer.Writer` (group commits in
its thread or on a server's event loop, merged appends, background checkpoints); a write's
future completes after its commit. Reads use a connection per thread and see committed data only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import (
    ModelExists,
    ModelNotFound,
    PredictionExists,
    VersionExists,
    VersionNotFound,
)
from riverbed.stores.base import (
    AliasChange,
    AliasRecord,
    CanaryArm,
    Checkpoint,
    DriftAlarm,
    LearnRecord,
    MetricPoint,
    ModelRecord,
    PredictionRecord,
    Pruned,
    Retention,
    Store,
    VersionRecord,
    dump,
    learn_rows,
    load,
)
from riverbed.stores.readonly import NoHold, RefusingWriter
from riverbed.stores.sqlite.checkpoints import open_checkpointer
from riverbed.stores.sqlite.jobs import SQLiteJobs
from riverbed.stores.sqlite.kv import SQLiteCache
from riverbed.stores.sqlite.learns import (
    BLOCK_COLUMNS,
    block_row,
    delete_blocks_through,
    fits_a_block,
    learn_cutoff,
    learns_after,
)
from riverbed.stores.sqlite.lock import DatabaseLock
from riverbed.stores.sqlite.schema import open_schema
from riverbed.stores.sqlite.tokens import SQLiteTokenStore
from riverbed.stores.sqlite.writer import Append, Ordered, Writer, chunks, connect
from riverbed.stores.tokens import TokenStore
from riverbed.stores.webhookstore import SQLWebhooks, WebhookStore

__all__ = ["SQLiteStore"]

log = logging.getLogger(__name__)

_VERSION_COLUMNS = "model, version, spec, source, created_at, metadata, format, description, tags"

# Rows of one table one prune write deletes at most: a few milliseconds of the writer, so
# that a long backlog (retention just turned on) never stalls the commits of requests.
_PRUNE_BATCH = 2000
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


class SQLiteStore(SQLiteCache, SQLiteJobs, Store):
    """``read_only``: take no writer lock, start no writer and open the file's connections
    read-only, beside the process that writes it (stores/readonly.py); the file must exist
    at this version's layout (:func:`riverbed.stores.open_store` checks)."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL", read_only: bool = False) -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"sqlite synchronous must be NORMAL, FULL or EXTRA, not {synchronous}")
        self.path = path
        self.read_only = read_only
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._tokens: SQLiteTokenStore | None = None
        if read_only:
            self._synchronous = synchronous.upper()
            self._hold: DatabaseLock | NoHold = NoHold()
            self._checkpointer: Any = RefusingWriter(path)  # stops, as a checkpointer does
            self._writer: Any = RefusingWriter(path)
            return
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._synchronous = synchronous.upper()
        self._hold = DatabaseLock(path)  # DatabaseInUse when another store has the file
        try:
            conn = connect(path, self._synchronous)
        except BaseException:
            self._hold.release()
            raise
        try:
            open_schema(conn, path)
        except BaseException:
            conn.close()
            self._hold.release()
            raise
        self._checkpointer = open_checkpointer(path, self._synchronous, process=False)
        self._writer = Writer(conn, self._checkpointer, path=path)
        self._writer.start()

    def token_store(self) -> TokenStore:
        if self._tokens is None:
            self._tokens = SQLiteTokenStore(self._writer.submit, self._read)
        return self._tokens

    def webhook_store(self) -> WebhookStore:
        return SQLWebhooks(
            self._writer.submit, lambda sql, params: self._read().execute(sql, params).fetchall()
        )

    # -- plumbing -------------------------------------------------------------------------

    def _read(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self._synchronous, read_only=self.read_only)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _submit(self, op: Any) -> Future[Any]:
        """Run ``op(conn)`` in the writer's next commit (stores/copy.py writes rows so)."""
        return self._writer.submit(op)

    def sync(self) -> None:
        self._writer.submit(lambda conn: None).result()

    def serve_on(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Commit the writes made on ``loop`` on it (see Writer.serve_on), and checkpoint in
        a process of its own while it serves, where the checkpoints take no turn of the
        loop's GIL (stores/sqlite/checkpoints.py); None goes back to the writer thread and a
        checkpoint thread."""
        self._writer.serve_on(loop)
        old = self._checkpointer
        new = open_checkpointer(self.path, self._synchronous, process=loop is not None)
        self._checkpointer = self._writer.checkpointer = new
        old.stop()

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
        self._hold.release()

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
                ("learn_blocks", "model"),
                ("checkpoints", "model"),
                ("aliases", "model"),
                ("alias_history", "model"),
                ("version_numbers", "model"),
                ("metric_points", "model"),
                ("drift_alarms", "model"),
                ("canary_arms", "model"),
                ("versions", "model"),
                ("models", "name"),
            ):
                conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (name,))

        return self._writer.submit(Ordered(op, name, 0, reset=True))

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

        return self._writer.submit(Append("predictions", _PREDICTION_COLUMNS, [row], [], taken))

    def add_predictions(self, records: list[PredictionRecord]) -> Future[None]:
        rows = [
            (r.id, r.model, r.seq, dump(r.features), dump(r.prediction), r.created_at)
            for r in records
        ]

        def taken() -> Exception:
            return PredictionExists("a prediction id of the batch is taken")

        return self._writer.submit(Append("predictions", _PREDICTION_COLUMNS, rows, [], taken))

    def stored_prediction_ids(self, prediction_ids: Iterable[str]) -> set[str]:
        ids = list(prediction_ids)
        conn = self._read()
        found: set[str] = set()
        for chunk in chunks(ids):
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
        return None if row is None else self._prediction(row)

    def predictions_after(self, name: str, seq: int) -> list[PredictionRecord]:
        rows = self._read().execute(
            "SELECT id, model, seq, features, prediction, created_at, labelled"
            " FROM predictions WHERE model = ? AND seq > ? ORDER BY seq",
            (name, seq),
        )
        return [self._prediction(row) for row in rows]

    @staticmethod
    def _prediction(row: tuple[Any, ...]) -> PredictionRecord:
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
        labels = [r.prediction_id for r in records if r.prediction_id is not None]
        # The writer commits a model's learns in the order of their seqs (Writer._fenced).
        learns = (records[0].model, records[0].seq, records[-1].seq) if records else None
        if fits_a_block(records):  # one row for the batch (see stores/sqlite/learns.py)
            return self._writer.submit(
                Append("learn_blocks", BLOCK_COLUMNS, [block_row(records)], labels, None, learns)
            )
        rows = learn_rows(records)
        return self._writer.submit(Append("learns", _LEARN_COLUMNS, rows, labels, None, learns))

    def learns_after(self, name: str, seq: int) -> Iterator[LearnRecord]:
        return learns_after(self._read(), name, seq)

    # -- metric history ------------------------------------------------------------------

    def add_metric_point(self, point: MetricPoint) -> Future[None]:
        params = (point.model, point.seq, point.time, dump(point.values), point.model)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                'INSERT OR IGNORE INTO metric_points (model, seq, time, "values")'
                " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM models WHERE name = ?)",
                params,
            )

        return self._writer.submit(Ordered(op, point.model, point.seq))

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

    # -- drift alarms --------------------------------------------------------------------

    def add_drift_alarm(self, alarm: DriftAlarm) -> Future[None]:
        params = (alarm.model, alarm.seq, alarm.detector, alarm.time, dump(alarm.data), alarm.model)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO drift_alarms (model, seq, detector, time, data)"
                " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM models WHERE name = ?)",
                params,
            )

        return self._writer.submit(Ordered(op, alarm.model, alarm.seq))

    def drift_alarms(self, name: str, *, after: int = 0, limit: int = 1000) -> list[DriftAlarm]:
        rows = (
            self._read()
            .execute(
                "SELECT model, seq, detector, time, data FROM drift_alarms"
                " WHERE model = ? AND seq > ? ORDER BY seq, detector LIMIT ?",
                (name, after, limit),
            )
            .fetchall()
        )
        return [DriftAlarm(r[0], r[1], r[2], r[3], load(r[4])) for r in rows]

    # -- canary splits -------------------------------------------------------------------

    def add_canary_arm(self, arm: CanaryArm) -> Future[None]:
        params = (arm.model, arm.id, arm.seq, arm.run, arm.arm, arm.model)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO canary_arms (model, id, seq, run, arm)"
                " SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM models WHERE name = ?)",
                params,
            )

        return self._writer.submit(op)

    def canary_arm(self, name: str, prediction_id: str) -> CanaryArm | None:
        row = (
            self._read()
            .execute(
                "SELECT model, id, seq, run, arm FROM canary_arms WHERE model = ? AND id = ?",
                (name, prediction_id),
            )
            .fetchone()
        )
        return CanaryArm(row[0], row[1], row[2], row[3], row[4]) if row else None

    def canary_arm_counts(self, name: str, *, after: int = 0) -> dict[tuple[str, str], int]:
        rows = (
            self._read()
            .execute(
                "SELECT run, arm, COUNT(*) FROM canary_arms WHERE model = ? AND seq > ?"
                " GROUP BY run, arm",
                (name, after),
            )
            .fetchall()
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

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

        return self._writer.submit(Ordered(op, checkpoint.model, checkpoint.seq))

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
        through = learn_cutoff(conn, name, retention.learns)
        row = conn.execute("SELECT seq FROM checkpoints WHERE model = ?", (name,)).fetchone()
        through = min(through, row[0] if row else 0)  # the learns a restart replays stay
        if through:
            pruned.learns, _, left = _delete_through(conn, "learns", name, through)
            batched, cut = delete_blocks_through(conn, name, through, _PRUNE_BATCH)
            pruned.learns += batched
            more = more or left or cut
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
