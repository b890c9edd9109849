"""The PostgreSQL store: every table of the SQLite file in a PostgreSQL database, written
through group commits, read through a connection pool.

Needs psycopg 3 and psycopg_pool (``pip install 'riverbed[postgresql]'``). Every write goes
through the :class:`~riverbed.stores.postgres.writer.PostgresWriter` (one transaction and one
commit for every write queued meanwhile); a write's future completes after its commit, so
what riverbed acknowledges is on the server's disk. Reads take a connection of the pool
(autocommit, so they see committed data only). One riverbed process writes a database at a
time: the writer's connection holds a session advisory lock, and a second process is
refused (:class:`~riverbed.stores.sqlite.lock.DatabaseInUse`), as a second process on an
SQLite file is. A server that cannot be reached fails reads and writes with
:class:`~riverbed.exceptions.Unavailable` (503), and the store connects again by itself.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import (
    Conflict,
    ModelExists,
    ModelNotFound,
    PredictionExists,
    ServerError,
    Unavailable,
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
from riverbed.stores.jobstore import JobRecord, JobStore
from riverbed.stores.kv import CacheStore, _Keep, list_held, value_held
from riverbed.stores.tokens import TOKEN_COLUMNS, TokenRecord, TokenStore, token_record
from riverbed.stores.webhookstore import SQLWebhooks, WebhookStore

try:
    import psycopg
    import psycopg_pool
    from psycopg import errors as pg_errors
except ImportError:  # pragma: no cover - the test extra installs them
    raise ServerError(
        "a PostgreSQL database needs psycopg: pip install 'riverbed[postgresql]'"
    ) from None

from riverbed.stores.postgres.schema import (
    SCHEMA_VERSION,
    check_schema,
    open_schema,
    schema_version,
)
from riverbed.stores.postgres.writer import (
    CONNECT_TIMEOUT,
    Append,
    Ordered,
    PostgresWriter,
    connect,
    redact,
    store_error,
    take_writer_lock,
)
from riverbed.stores.readonly import RefusingWriter

__all__ = ["PostgresStore", "is_postgres_url"]

log = logging.getLogger(__name__)

_Conn = psycopg.Connection[Any]
_PRUNE_BATCH = 2000  # rows of one table one prune write deletes at most (as on SQLite)
_LEARN_PAGE = 5000  # learns read per query by learns_after
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
_MODEL_COLUMNS = "name, task, description, tags, metrics, created_at, updated_at, flavor, options"
_VERSION_COLUMNS = "model, version, spec, source, created_at, metadata, format, description, tags"
_TOKEN_COLUMNS = TOKEN_COLUMNS
_DOWN_WAIT = 1.0  # seconds a read waits for a pooled connection while the server is down
_RECONNECT_SECONDS = 3.0  # the read pool gives up opening one connection after this
# After a prune that removed rows, the pruned tables are vacuumed (at most this often), so
# the space of the rows retention removed is used again whether or not the server's
# autovacuum is on: without it a database under retention grows without end.
_VACUUM_SECONDS = 10.0
_VACUUM_SQL = "VACUUM predictions, learns, metric_points"


class _Broken(Exception):
    """A read's connection broke under it."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def is_postgres_url(database: str) -> bool:
    return database.lower().startswith(("postgresql://", "postgres://"))


class PostgresStore(CacheStore, JobStore, Store):
    """``read_only``: take no writer lock and start no writer, beside the process that
    writes the database (stores/readonly.py), when the database is at this version's layout
    (an older one is opened as a writer, which brings it up to date).

    ``shared``: one of the processes of a scale-out cluster (riverbed/scaleout), which write
    the database together: the writer lock is held shared (see ``take_writer_lock``)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        pool_timeout: float = 5.0,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_only: bool = False,
        shared: bool = False,
    ) -> None:
        self.url = url
        self.where = f"the PostgreSQL database {redact(url)}"
        self._pool_timeout = pool_timeout
        self._connect_timeout = connect_timeout
        try:
            conn = connect(url, timeout=connect_timeout)
        except psycopg.Error as exc:
            raise store_error(exc) from None
        try:
            if read_only:
                check_schema(conn, self.where)
                read_only = schema_version(conn) == SCHEMA_VERSION
            if read_only:
                conn.close()
            else:
                open_schema(conn, self.where)
                self._lock_key = _lock_key(conn)
                take_writer_lock(conn, self._lock_key, url, shared=shared)
        except BaseException:
            conn.close()
            raise
        self.read_only = read_only
        self._pool_size = max(1, pool_size)
        self._pool = self._new_pool()
        self._down = False  # the last read found the server out of reach
        self._outages = 0  # times the server was found out of reach
        self._pool_outages = 0  # ... when the pool was made
        self._checking = threading.Lock()
        self._renewing = threading.Lock()
        self._writer: PostgresWriter | RefusingWriter = (
            RefusingWriter(self.where)
            if read_only
            else PostgresWriter(
                url, conn, lock=self._lock_key, connect_timeout=connect_timeout, shared=shared
            )
        )
        self._writer.start()
        self._closed = False
        self._vacuum_lock = threading.Lock()
        self._vacuumed = -_VACUUM_SECONDS  # monotonic time of the last VACUUM's end
        self._vacuum_thread: threading.Thread | None = None
        self._tokens: PostgresTokenStore | None = None

    # -- plumbing -------------------------------------------------------------------------

    def _new_pool(self) -> psycopg_pool.ConnectionPool[Any]:
        # No check of a connection as it is taken (a round trip per read): a read on a
        # broken one is tried again on another (see _query).
        return psycopg_pool.ConnectionPool(
            self.url,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(self._connect_timeout))},
            timeout=self._pool_timeout,
            # A connection the pool cannot open is given up after a few seconds, not tried
            # again with a back-off that doubles for minutes (see _renew_pool).
            reconnect_timeout=_RECONNECT_SECONDS,
            open=True,
            name="riverbed-reads",
        )

    def _renew_pool(self) -> None:
        """A new pool once the server is back after an outage: the old one may still be
        backing off from its failed connections for seconds. It is closed aside (the reads
        under way give their connections back to it)."""
        with self._renewing:
            if self._pool_outages >= self._outages or self._closed:
                return
            old, self._pool = self._pool, self._new_pool()
            self._pool_outages = self._outages
        threading.Thread(target=old.close, kwargs={"timeout": 5}, daemon=True).start()

    def _submit(self, op: Any) -> Future[Any]:
        return self._writer.submit(op)

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read on a pooled connection. A read on a connection that broke (the
        server restarted, the backend was terminated) is tried once more on another, after
        the pool dropped its broken ones. While the server is out of reach a read waits at
        most ``_DOWN_WAIT`` for a connection (not the pool's timeout), then a probe tells
        the server out of reach (Unavailable, cause database_unreachable) from a pool whose
        connections are all busy (cause pool_busy)."""
        params = tuple(params)
        recovering = self._down
        if recovering:
            if not self._probe():  # refused at once: no wait for the pool
                raise self._unreachable()
            self._renew_pool()
        try:
            return self._read(sql, params, _DOWN_WAIT if recovering else self._pool_timeout)
        except _Broken:
            pass
        self._drop_broken()
        try:
            return self._read(sql, params, _DOWN_WAIT)
        except _Broken as broken:
            self._probe()  # down until a probe finds it back
            raise store_error(broken.cause) from None

    def _read(self, sql: str, params: tuple[Any, ...], wait: float) -> list[tuple[Any, ...]]:
        try:
            with self._pool.connection(timeout=wait) as conn:
                try:
                    rows = conn.execute(sql, params).fetchall()
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    if conn.broken or conn.closed:
                        raise _Broken(exc) from None
                    raise store_error(exc) from None
        except psycopg_pool.PoolTimeout:
            raise self._timed_out(wait) from None
        self._down = False
        return rows

    def _timed_out(self, wait: float) -> Unavailable:
        if self._probe():
            return Unavailable(
                f"every connection of the read pool of {self.where} is busy (waited "
                f"{wait:g} s; setting postgres_pool_size): nothing was changed; retry",
                detail={"cause": "pool_busy"},
            )
        return self._unreachable()

    def _unreachable(self) -> Unavailable:
        self._went_down()
        return Unavailable(
            f"{self.where} cannot be reached: nothing was changed; retry",
            detail={"cause": "database_unreachable"},
        )

    def _probe(self) -> bool:
        """Whether the server takes a new connection now (a refusal is known at once, a
        server that does not answer within 2 s at most is taken for down)."""
        try:
            connect(self.url, timeout=min(self._connect_timeout, 2)).close()
        except psycopg.Error:
            self._went_down()
            return False
        self._down = False
        return True

    def _went_down(self) -> None:
        if not self._down:
            self._down = True
            self._outages += 1

    def _drop_broken(self) -> None:
        """The pool's idle connections checked, broken ones replaced (one caller at a time;
        the others go on to their second try)."""
        if self._checking.acquire(blocking=False):
            try:
                self._pool.check()
            except psycopg.Error:  # pragma: no cover - check() handles its connections
                pass
            finally:
                self._checking.release()

    def _one(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    def token_store(self) -> TokenStore:
        if self._tokens is None:
            self._tokens = PostgresTokenStore(self._submit, self._query)
        return self._tokens

    def webhook_store(self) -> WebhookStore:
        return SQLWebhooks(self._submit, self._query, placeholder="%s")

    def sync(self) -> None:
        self._submit(lambda conn: None).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.stop()
        with self._vacuum_lock:
            vacuuming = self._vacuum_thread
        if vacuuming is not None:
            vacuuming.join(timeout=10)
        self._pool.close()

    # -- models and versions ----------------------------------------------------------------

    def create_model(self, model: ModelRecord, version: VersionRecord) -> Future[None]:
        row = (
            model.name,
            model.task,
            model.description,
            dump(model.tags),
            dump(model.metrics),
            model.created_at,
            model.updated_at,
            model.flavor,
            dump(model.options),
        )

        def op(conn: _Conn) -> None:
            try:
                with conn.transaction():
                    conn.execute(
                        f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES"
                        " (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        row,
                    )
            except pg_errors.UniqueViolation:
                raise ModelExists(f"a model named {model.name!r} already exists") from None
            _insert_version(conn, version)

        return self._submit(op)

    def delete_model(self, name: str) -> Future[None]:
        def op(conn: _Conn) -> None:
            for table, column in (
                ("predictions", "model"),
                ("learns", "model"),
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
                conn.execute(f"DELETE FROM {table} WHERE {column} = %s", (name,))

        return self._submit(_ordered(op, name, 0, reset=True))

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
        row = self._one(f"SELECT {_MODEL_COLUMNS} FROM models WHERE name = %s", (name,))
        return self._model(row) if row else None

    def list_models(self) -> list[ModelRecord]:
        return [
            self._model(r)
            for r in self._query(f"SELECT {_MODEL_COLUMNS} FROM models ORDER BY name")
        ]

    def get_version(self, name: str, version: int | None = None) -> VersionRecord | None:
        query = f"SELECT {_VERSION_COLUMNS}, artifact FROM versions WHERE model = %s"
        if version is None:
            row = self._one(query + " ORDER BY version DESC LIMIT 1", (name,))
        else:
            row = self._one(query + " AND version = %s", (name, version))
        return None if row is None else _version(row, bytes(row[9]))

    def update_model(
        self, name: str, *, description: str | None, tags: dict[str, str] | None, at: float
    ) -> Future[None]:
        params = (description, None if tags is None else dump(tags), at, name)

        def op(conn: _Conn) -> None:
            cursor = conn.execute(
                "UPDATE models SET description = COALESCE(%s, description),"
                " tags = COALESCE(%s, tags), updated_at = %s WHERE name = %s",
                params,
            )
            if cursor.rowcount == 0:
                raise ModelNotFound(f"no model named {name!r}")

        return self._submit(op)

    def add_version(self, version: VersionRecord) -> Future[None]:
        def op(conn: _Conn) -> None:
            found = conn.execute("SELECT 1 FROM models WHERE name = %s", (version.model,))
            if found.fetchone() is None:
                raise ModelNotFound(f"no model named {version.model!r}")
            _insert_version(conn, version)

        return self._submit(op)

    def list_versions(self, name: str | None = None) -> list[VersionRecord]:
        query = f"SELECT {_VERSION_COLUMNS} FROM versions"
        if name is None:
            rows = self._query(query + " ORDER BY model, version")
        else:
            rows = self._query(query + " WHERE model = %s ORDER BY version", (name,))
        return [_version(row, b"") for row in rows]

    def last_version(self, name: str) -> int:
        row = self._one(
            "SELECT GREATEST(COALESCE((SELECT last FROM version_numbers WHERE model = %s), 0),"
            " COALESCE((SELECT MAX(version) FROM versions WHERE model = %s), 0))",
            (name, name),
        )
        return int(row[0]) if row else 0

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

        def op(conn: _Conn) -> None:
            cursor = conn.execute(
                "UPDATE versions SET description = COALESCE(%s, description),"
                " tags = COALESCE(%s, tags), metadata = COALESCE(%s, metadata)"
                " WHERE model = %s AND version = %s",
                params,
            )
            if cursor.rowcount == 0:
                raise VersionNotFound(f"model {name!r} has no version {version}")

        return self._submit(op)

    def delete_version(self, name: str, version: int) -> Future[None]:
        def op(conn: _Conn) -> None:
            conn.execute("DELETE FROM versions WHERE model = %s AND version = %s", (name, version))

        return self._submit(op)

    def set_alias(
        self, name: str, alias: str, version: int | None, *, at: float, by: str = ""
    ) -> Future[None]:
        def op(conn: _Conn) -> None:
            if conn.execute("SELECT 1 FROM models WHERE name = %s", (name,)).fetchone() is None:
                raise ModelNotFound(f"no model named {name!r}")
            row = conn.execute(
                "SELECT version FROM aliases WHERE model = %s AND alias = %s", (name, alias)
            ).fetchone()
            if version is None:
                conn.execute("DELETE FROM aliases WHERE model = %s AND alias = %s", (name, alias))
            else:
                conn.execute(
                    "INSERT INTO aliases (model, alias, version, updated_at, updated_by)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (model, alias) DO UPDATE SET"
                    " version = excluded.version, updated_at = excluded.updated_at,"
                    " updated_by = excluded.updated_by",
                    (name, alias, version, at, by),
                )
            conn.execute(
                "INSERT INTO alias_history (model, alias, version, previous, at, by)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (name, alias, version, row[0] if row else None, at, by),
            )

        return self._submit(op)

    def list_aliases(self, name: str | None = None) -> list[AliasRecord]:
        query = "SELECT model, alias, version, updated_at, updated_by FROM aliases"
        if name is None:
            rows = self._query(query + " ORDER BY model, alias")
        else:
            rows = self._query(query + " WHERE model = %s ORDER BY alias", (name,))
        return [AliasRecord(*row) for row in rows]

    def alias_history(self, name: str) -> list[AliasChange]:
        rows = self._query(
            "SELECT model, alias, version, previous, at, by FROM alias_history"
            " WHERE model = %s ORDER BY n",
            (name,),
        )
        return [AliasChange(*row) for row in rows]

    # -- the log -------------------------------------------------------------------------

    def add_prediction(self, record: PredictionRecord) -> Future[None]:
        return self.add_predictions([record], one=True)

    def add_predictions(
        self, records: list[PredictionRecord], *, one: bool = False
    ) -> Future[None]:
        rows = [
            (r.id, r.model, r.seq, dump(r.features), dump(r.prediction), r.created_at)
            for r in records
        ]
        if len({r.id for r in records}) != len(records):
            from riverbed.stores.base import done

            return done(error=PredictionExists("a prediction id of the batch is taken"))

        def taken() -> Exception:
            if one:
                return PredictionExists(f"prediction id {records[0].id!r} is taken; use a new id")
            return PredictionExists("a prediction id of the batch is taken")

        return self._submit(Append("predictions", _PREDICTION_COLUMNS, rows, [], taken))

    def stored_prediction_ids(self, prediction_ids: Iterable[str]) -> set[str]:
        ids = list(prediction_ids)
        if not ids:
            return set()
        return {r[0] for r in self._query("SELECT id FROM predictions WHERE id = ANY(%s)", (ids,))}

    def get_prediction(self, prediction_id: str) -> PredictionRecord | None:
        row = self._one(
            "SELECT id, model, seq, features, prediction, created_at, labelled"
            " FROM predictions WHERE id = %s",
            (prediction_id,),
        )
        return None if row is None else _prediction(row)

    def predictions_after(self, name: str, seq: int) -> list[PredictionRecord]:
        rows = self._query(
            "SELECT id, model, seq, features, prediction, created_at, labelled"
            " FROM predictions WHERE model = %s AND seq > %s ORDER BY seq",
            (name, seq),
        )
        return [_prediction(row) for row in rows]

    def max_prediction_seq(self, name: str) -> int:
        row = self._one("SELECT MAX(seq) FROM predictions WHERE model = %s", (name,))
        return int(row[0] or 0) if row else 0

    def add_learn(self, record: LearnRecord) -> Future[None]:
        return self.add_learns([record])

    def add_learns(self, records: list[LearnRecord]) -> Future[None]:
        labels = [r.prediction_id for r in records if r.prediction_id is not None]
        learns = (records[0].model, records[0].seq, records[-1].seq) if records else None
        rows = learn_rows(records)
        return self._submit(Append("learns", _LEARN_COLUMNS, rows, labels, None, learns))

    def learns_after(self, name: str, seq: int) -> Iterator[LearnRecord]:
        """Pages of ``_LEARN_PAGE`` learns, each one query: a long log is never in memory."""
        while True:
            rows = self._query(
                "SELECT model, seq, features, target, prediction, prediction_id, created_at"
                " FROM learns WHERE model = %s AND seq > %s ORDER BY seq LIMIT %s",
                (name, seq, _LEARN_PAGE),
            )
            for row in rows:
                yield LearnRecord(
                    row[0], row[1], load(row[2]), load(row[3]), load(row[4]), row[5], row[6]
                )
            if len(rows) < _LEARN_PAGE:
                return
            seq = rows[-1][1]

    # -- metric history ------------------------------------------------------------------

    def add_metric_point(self, point: MetricPoint) -> Future[None]:
        params = (point.model, point.seq, point.time, dump(point.values), point.model)

        def op(conn: _Conn) -> None:
            conn.execute(
                'INSERT INTO metric_points (model, seq, time, "values")'
                " SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM models WHERE name = %s)"
                " ON CONFLICT (model, seq) DO NOTHING",
                params,
            )

        return self._submit(_ordered(op, point.model, point.seq))

    def metric_history(
        self, name: str, *, after: int = 0, since: float | None = None, limit: int = 1000
    ) -> list[MetricPoint]:
        rows = self._query(
            'SELECT model, seq, time, "values" FROM metric_points'
            " WHERE model = %s AND seq > %s AND time >= %s ORDER BY seq LIMIT %s",
            (name, after, -1.0 if since is None else since, limit),
        )
        return [MetricPoint(r[0], r[1], r[2], load(r[3])) for r in rows]

    # -- drift alarms --------------------------------------------------------------------

    def add_drift_alarm(self, alarm: DriftAlarm) -> Future[None]:
        params = (alarm.model, alarm.seq, alarm.detector, alarm.time, dump(alarm.data), alarm.model)

        def op(conn: _Conn) -> None:
            conn.execute(
                "INSERT INTO drift_alarms (model, seq, detector, time, data)"
                " SELECT %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM models WHERE name = %s)"
                " ON CONFLICT (model, seq, detector) DO NOTHING",
                params,
            )

        return self._submit(_ordered(op, alarm.model, alarm.seq))

    def drift_alarms(self, name: str, *, after: int = 0, limit: int = 1000) -> list[DriftAlarm]:
        rows = self._query(
            "SELECT model, seq, detector, time, data FROM drift_alarms"
            " WHERE model = %s AND seq > %s ORDER BY seq, detector LIMIT %s",
            (name, after, limit),
        )
        return [DriftAlarm(r[0], r[1], r[2], r[3], load(r[4])) for r in rows]

    # -- canary splits -------------------------------------------------------------------

    def add_canary_arm(self, arm: CanaryArm) -> Future[None]:
        params = (arm.model, arm.id, arm.seq, arm.run, arm.arm, arm.model)

        def op(conn: _Conn) -> None:
            conn.execute(
                "INSERT INTO canary_arms (model, id, seq, run, arm)"
                " SELECT %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM models WHERE name = %s)"
                " ON CONFLICT (model, id) DO NOTHING",
                params,
            )

        return self._submit(op)

    def canary_arm(self, name: str, prediction_id: str) -> CanaryArm | None:
        rows = self._query(
            "SELECT model, id, seq, run, arm FROM canary_arms WHERE model = %s AND id = %s",
            (name, prediction_id),
        )
        row = rows[0] if rows else None
        return CanaryArm(row[0], row[1], row[2], row[3], row[4]) if row else None

    def canary_arm_counts(self, name: str, *, after: int = 0) -> dict[tuple[str, str], int]:
        rows = self._query(
            "SELECT run, arm, COUNT(*) FROM canary_arms WHERE model = %s AND seq > %s"
            " GROUP BY run, arm",
            (name, after),
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    # -- retention -----------------------------------------------------------------------

    def prune(self, name: str, retention: Retention) -> Future[Pruned]:
        """One write per batch of at most ``_PRUNE_BATCH`` rows a table, oldest first, each
        queued once the last one committed, until nothing is left beyond the retention."""
        outcome: Future[Pruned] = Future()
        total = Pruned()

        def step(conn: _Conn) -> tuple[Pruned, bool]:
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
                self._submit(step).add_done_callback(after)
            else:
                outcome.set_result(total)
                if total.predictions or total.learns or total.metric_points:
                    self._vacuum_soon()

        self._submit(step).add_done_callback(after)
        return outcome

    def _vacuum_soon(self) -> None:
        """VACUUM the pruned tables on a thread of its own (never the writer's: it takes no
        lock that stops writes), unless one ran less than ``_VACUUM_SECONDS`` ago."""
        with self._vacuum_lock:
            busy = self._vacuum_thread is not None
            if busy or self._closed or time.monotonic() - self._vacuumed < _VACUUM_SECONDS:
                return
            self._vacuum_thread = threading.Thread(
                target=self._vacuum, name="riverbed-vacuum", daemon=True
            )
            self._vacuum_thread.start()

    def _vacuum(self) -> None:
        try:
            with self._pool.connection(timeout=self._pool_timeout) as conn:  # autocommit
                conn.execute(_VACUUM_SQL)
        except Exception as exc:  # the next prune tries again; nothing was lost
            log.info("VACUUM of the pruned tables did not run: %s", exc)
        finally:
            with self._vacuum_lock:
                self._vacuumed = time.monotonic()
                self._vacuum_thread = None

    # -- checkpoints ---------------------------------------------------------------------

    def save_checkpoint(self, checkpoint: Checkpoint) -> Future[None]:
        params = (
            checkpoint.model,
            checkpoint.seq,
            checkpoint.state,
            checkpoint.created_at,
            checkpoint.model,
        )

        def op(conn: _Conn) -> None:
            conn.execute(
                "INSERT INTO checkpoints (model, seq, state, created_at)"
                " SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM models WHERE name = %s)"
                " ON CONFLICT (model) DO UPDATE SET seq = excluded.seq,"
                " state = excluded.state, created_at = excluded.created_at",
                params,
            )

        return self._submit(_ordered(op, checkpoint.model, checkpoint.seq))

    def get_checkpoint(self, name: str) -> Checkpoint | None:
        row = self._one(
            "SELECT model, seq, state, created_at FROM checkpoints WHERE model = %s", (name,)
        )
        return Checkpoint(row[0], row[1], bytes(row[2]), row[3]) if row else None

    # -- the key-value cache -------------------------------------------------------------

    def kv_set(self, key: str, value: bytes, expires_at: float | None) -> Future[None]:
        def op(conn: _Conn) -> None:
            conn.execute("DELETE FROM cache_items WHERE key = %s", (key,))
            conn.execute(
                "INSERT INTO cache (key, is_list, value, expires_at) VALUES (%s, FALSE, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET is_list = FALSE, value = excluded.value,"
                " expires_at = excluded.expires_at",
                (key, value, expires_at),
            )

        return self._submit(op)

    def kv_get(self, key: str, now: float) -> bytes | None:
        row = _live(
            self._one("SELECT is_list, value, expires_at FROM cache WHERE key = %s", (key,)), now
        )
        if row is None:
            return None
        if row[0]:
            raise list_held(key)
        return bytes(row[1])

    def kv_delete(self, key: str, now: float) -> Future[bool]:
        def op(conn: _Conn) -> bool:
            existed = _cache_row(conn, key, now) is not None
            _drop(conn, key)
            return existed

        return self._submit(op)

    def kv_push(
        self, key: str, value: bytes, expires_at: float | None | _Keep, now: float
    ) -> Future[int]:
        def op(conn: _Conn) -> int:
            row = _cache_row(conn, key, now)
            if row is None:
                _drop(conn, key)
                conn.execute(
                    "INSERT INTO cache (key, is_list, value, expires_at)"
                    " VALUES (%s, TRUE, NULL, NULL)",
                    (key,),
                )
            elif not row[0]:
                raise value_held(key)
            if not isinstance(expires_at, _Keep):
                conn.execute("UPDATE cache SET expires_at = %s WHERE key = %s", (expires_at, key))
            front = conn.execute(
                "SELECT MIN(pos) FROM cache_items WHERE key = %s", (key,)
            ).fetchone()
            low = front[0] if front else None
            conn.execute(
                "INSERT INTO cache_items (key, pos, value) VALUES (%s, %s, %s)",
                (key, 0 if low is None else low - 1, value),
            )
            length = conn.execute(
                "SELECT COUNT(*) FROM cache_items WHERE key = %s", (key,)
            ).fetchone()
            return int(length[0]) if length else 0

        return self._submit(op)

    def _list_row(self, key: str, now: float) -> bool:
        row = _live(
            self._one("SELECT is_list, value, expires_at FROM cache WHERE key = %s", (key,)), now
        )
        if row is None:
            return False
        if not row[0]:
            raise value_held(key)
        return True

    def kv_index(self, key: str, position: int, now: float) -> bytes | None:
        if not self._list_row(key, now):
            return None
        order, offset = ("ASC", position) if position >= 0 else ("DESC", -position - 1)
        row = self._one(
            f"SELECT value FROM cache_items WHERE key = %s ORDER BY pos {order} LIMIT 1 OFFSET %s",
            (key, offset),
        )
        return None if row is None else bytes(row[0])

    def kv_pop(self, key: str, now: float) -> Future[bytes | None]:
        def op(conn: _Conn) -> bytes | None:
            row = _cache_row(conn, key, now)
            if row is None:
                return None
            if not row[0]:
                raise value_held(key)
            item = conn.execute(
                "SELECT pos, value FROM cache_items WHERE key = %s ORDER BY pos LIMIT 1", (key,)
            ).fetchone()
            if item is None:  # pragma: no cover - an empty list is always dropped
                _drop(conn, key)
                return None
            conn.execute("DELETE FROM cache_items WHERE key = %s AND pos = %s", (key, item[0]))
            left = conn.execute("SELECT 1 FROM cache_items WHERE key = %s LIMIT 1", (key,))
            if left.fetchone() is None:
                _drop(conn, key)
            return bytes(item[1])

        return self._submit(op)

    def kv_length(self, key: str, now: float) -> int:
        if not self._list_row(key, now):
            return 0
        row = self._one("SELECT COUNT(*) FROM cache_items WHERE key = %s", (key,))
        return int(row[0]) if row else 0

    def kv_expire(self, key: str, expires_at: float | None, now: float) -> Future[bool]:
        def op(conn: _Conn) -> bool:
            if _cache_row(conn, key, now) is None:
                return False
            conn.execute("UPDATE cache SET expires_at = %s WHERE key = %s", (expires_at, key))
            return True

        return self._submit(op)

    def kv_expiry(self, key: str, now: float) -> tuple[bool, float | None]:
        row = self._one("SELECT expires_at FROM cache WHERE key = %s", (key,))
        if row is None or (row[0] is not None and row[0] <= now):
            return False, None
        return True, row[0]

    def kv_purge(self, now: float) -> Future[int]:
        def op(conn: _Conn) -> int:
            conn.execute(
                "DELETE FROM cache_items WHERE key IN"
                " (SELECT key FROM cache WHERE expires_at IS NOT NULL AND expires_at <= %s)",
                (now,),
            )
            cursor = conn.execute(
                "DELETE FROM cache WHERE expires_at IS NOT NULL AND expires_at <= %s", (now,)
            )
            return int(cursor.rowcount)

        return self._submit(op)

    # -- training jobs -------------------------------------------------------------------

    def save_job(self, job: JobRecord) -> Future[None]:
        fields = (
            "request",
            "data",
            "progress",
            "started_at",
            "finished_at",
            "error",
            "result",
            "logs",
        )
        params = (
            job.id,
            job.model,
            job.status,
            job.created_at,
            dump({f: getattr(job, f) for f in fields}),
        )

        def op(conn: _Conn) -> None:
            conn.execute(
                "INSERT INTO jobs (id, model, status, created_at, record)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                " model = excluded.model, status = excluded.status,"
                " created_at = excluded.created_at, record = excluded.record",
                params,
            )

        return self._submit(op)

    def get_job(self, job_id: str) -> JobRecord | None:
        row = self._one(
            "SELECT id, model, status, created_at, record FROM jobs WHERE id = %s", (job_id,)
        )
        return JobRecord(row[0], row[1], row[2], row[3], **load(row[4])) if row else None

    def list_jobs(self, *, model: str | None = None, limit: int = 100) -> list[JobRecord]:
        query = "SELECT id, model, status, created_at, record FROM jobs"
        args: tuple[Any, ...] = ()
        if model is not None:
            query += " WHERE model = %s"
            args = (model,)
        rows = self._query(query + " ORDER BY created_at DESC, id DESC LIMIT %s", (*args, limit))
        return [JobRecord(r[0], r[1], r[2], r[3], **load(r[4])) for r in rows]

    def save_job_data(self, job_id: str, format: str, data: bytes) -> Future[None]:
        def op(conn: _Conn) -> None:
            conn.execute(
                "INSERT INTO job_data (id, format, data) VALUES (%s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET format = excluded.format, data = excluded.data",
                (job_id, format, data),
            )

        return self._submit(op)

    def get_job_data(self, job_id: str) -> tuple[str, bytes] | None:
        row = self._one("SELECT format, data FROM job_data WHERE id = %s", (job_id,))
        return (row[0], bytes(row[1])) if row else None


class PostgresTokenStore(TokenStore):
    """Tokens in the ``tokens`` table, written by the store's writer, read from its pool."""

    def __init__(
        self,
        submit: Callable[[Callable[[_Conn], Any]], Future[Any]],
        query: Callable[..., list[tuple[Any, ...]]],
    ) -> None:
        self._submit, self._query = submit, query

    def add_token(self, record: TokenRecord) -> Future[None]:
        row = (
            record.id,
            record.name,
            ",".join(record.scopes),
            record.digest,
            record.created_at,
            record.expires_at,
            record.revoked_at,
            record.created_by,
        )

        def op(conn: _Conn) -> None:
            try:
                with conn.transaction():
                    conn.execute(
                        f"INSERT INTO tokens ({_TOKEN_COLUMNS})"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        row,
                    )
            except pg_errors.UniqueViolation:
                raise Conflict(f"token id {record.id!r} is taken") from None

        return self._submit(op)

    def get_token(self, token_id: str) -> TokenRecord | None:
        rows = self._query(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id = %s", (token_id,))
        return token_record(rows[0]) if rows else None

    def list_tokens(self) -> list[TokenRecord]:
        rows = self._query(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id")
        return [token_record(row) for row in rows]

    def revoke_token(self, token_id: str, revoked_at: float) -> Future[bool]:
        def op(conn: _Conn) -> bool:
            cursor = conn.execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, %s) WHERE id = %s",
                (revoked_at, token_id),
            )
            return cursor.rowcount > 0

        return self._submit(op)


def _insert_version(conn: _Conn, version: VersionRecord) -> None:
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO versions (model, version, artifact, spec, source, created_at,"
                " metadata, format, description, tags)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
    except pg_errors.UniqueViolation:
        raise VersionExists(
            f"model {version.model!r} already has a version {version.version}"
        ) from None
    conn.execute(
        "INSERT INTO version_numbers (model, last) VALUES (%s, %s) ON CONFLICT (model)"
        " DO UPDATE SET last = GREATEST(version_numbers.last, excluded.last)",
        (version.model, version.version),
    )


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


def _live(row: tuple[Any, ...] | None, now: float) -> tuple[Any, ...] | None:
    if row is None or (row[2] is not None and row[2] <= now):
        return None
    return row


def _cache_row(conn: _Conn, key: str, now: float) -> tuple[Any, ...] | None:
    row = conn.execute(
        "SELECT is_list, value, expires_at FROM cache WHERE key = %s FOR UPDATE", (key,)
    ).fetchone()
    return _live(row, now)


def _drop(conn: _Conn, key: str) -> None:
    conn.execute("DELETE FROM cache_items WHERE key = %s", (key,))
    conn.execute("DELETE FROM cache WHERE key = %s", (key,))


def _prune_step(conn: _Conn, name: str, retention: Retention) -> tuple[Pruned, bool]:
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
        row = conn.execute("SELECT seq FROM checkpoints WHERE model = %s", (name,)).fetchone()
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


def _cutoff(conn: _Conn, table: str, name: str, keep: int) -> int:
    row = conn.execute(
        f"SELECT seq FROM {table} WHERE model = %s ORDER BY seq DESC LIMIT 1 OFFSET %s",
        (name, keep),
    ).fetchone()
    return int(row[0]) if row else 0


def _delete_through(conn: _Conn, table: str, name: str, through: int) -> tuple[int, int, bool]:
    row = conn.execute(
        f"SELECT seq FROM {table} WHERE model = %s AND seq <= %s ORDER BY seq LIMIT 1 OFFSET %s",
        (name, through, _PRUNE_BATCH - 1),
    ).fetchone()
    bound = through if row is None else min(through, int(row[0]))
    cursor = conn.execute(
        f"DELETE FROM {table} WHERE model = %s AND seq <= %s",
        (name, bound),
    )
    return cursor.rowcount, bound, bound < through


def _ordered(op: Callable[[_Conn], Any], model: str, seq: int, *, reset: bool = False) -> Ordered:
    """A write of a model's state at learn ``seq`` (see sqlite.writer.Ordered)."""
    return Ordered(op, model, seq, reset=reset)  # type: ignore[arg-type]


def _lock_key(conn: _Conn) -> int:
    """The writer lock's key for the connection's database (advisory locks are per server)."""
    return zlib.crc32(f"riverbed-writer:{conn.info.dbname}".encode())


def check_postgres(url: str, *, shared: bool = False) -> None:
    """Refuse, before a server starts on it, a database it cannot serve: one out of reach
    (:class:`~riverbed.exceptions.Unavailable`), one a newer riverbed wrote
    (NewerDatabase), one another riverbed process serves (DatabaseInUse; ``shared``: one a
    process serves alone, for a scale-out replica or learner). Changes nothing."""
    try:
        conn = connect(url)
    except psycopg.Error as exc:
        raise ValueError(str(store_error(exc))) from None
    try:
        check_schema(conn, f"the PostgreSQL database {redact(url)}")
        key = _lock_key(conn)
        take_writer_lock(conn, key, url, shared=shared)
        unlock = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
        conn.execute(f"SELECT {unlock}(%s)", (key,))
    finally:
        conn.close()


def postgres_schema(url: str) -> int | None:
    """The layout number of the database at ``url``; None when it has no riverbed tables.
    A server out of reach is a ValueError naming it. Changes nothing."""
    try:
        conn = connect(url)
    except psycopg.Error as exc:
        raise ValueError(str(store_error(exc))) from None
    try:
        return schema_version(conn)
    finally:
        conn.close()


def open_postgres_tokens(url: str) -> tuple[TokenStore, Callable[[], None]]:
    """The tokens of a PostgreSQL database and how to close them: a connection of its own,
    without the writer lock, so ``riverbed tokens`` works beside a running server."""
    try:
        conn = connect(url)
    except psycopg.Error as exc:
        raise store_error(exc) from None
    open_schema(conn, f"the PostgreSQL database {redact(url)}")

    def submit(op: Callable[[_Conn], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            with conn.transaction():
                result = op(conn)
        except Exception as exc:
            future.set_exception(store_error(exc))
        else:
            future.set_result(result)
        return future

    def query(sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        except psycopg.Error as exc:
            raise store_error(exc) from None

    return PostgresTokenStore(submit, query), conn.close
