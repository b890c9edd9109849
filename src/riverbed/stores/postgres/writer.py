"""The PostgreSQL store's write path: one writer thread, group commits over one connection.

The SQLite writer's idea carried over (stores/sqlite/writer.py, whose fencing of a model's
writes after a failed learn this class inherits): every write is queued, the writer thread
takes every write queued so far, applies them in one transaction and commits once, and the
futures of the batch complete after that commit, so many concurrent requests share one
commit (one WAL flush of the server). Consecutive :class:`Append` writes are merged into one
pipelined ``executemany`` a table. When a write of the batch fails, the batch is applied
again with a savepoint per write, so that one bad write fails alone.

A connection that breaks (the server restarted, the backend was terminated) fails the
batch it was committing with :class:`~riverbed.exceptions.Unavailable` (503, nothing of the
batch was written) and is opened again for the next batch; while the server cannot be
reached, every batch fails the same way, fast (``connect_timeout``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from riverbed.exceptions import RiverbedError, ServerError, StorageFull, Unavailable
from riverbed.stores.sqlite.writer import _MAX_BATCH, _STOP, Append, Ordered, Writer

__all__ = ["Append", "Ordered", "PostgresWriter", "connect", "store_error"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5  # seconds a (re)connection may take before the batch fails with 503


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT)


def store_error(exc: BaseException) -> BaseException:
    """The error a caller gets for a write or read PostgreSQL refused: :class:`Unavailable`
    for a server that cannot be reached or a connection that broke, :class:`StorageFull` for
    a full disk; other errors as they are."""
    if isinstance(exc, pg_errors.DiskFull):
        return StorageFull(
            f"the PostgreSQL server's disk is full ({exc}): nothing was written; free space, "
            "then retry",
            detail={"cause": "disk_full"},
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return Unavailable(
            f"the PostgreSQL server cannot be reached ({str(exc).strip() or type(exc).__name__})"
            ": nothing was written; retry",
            detail={"cause": "database_unreachable"},
        )
    return exc


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def _label(conn: psycopg.Connection[Any], prediction_ids: list[str]) -> None:
    if prediction_ids:
        conn.execute("UPDATE predictions SET labelled = TRUE WHERE id = ANY(%s)", (prediction_ids,))


def _apply_appends(conn: psycopg.Connection[Any], appends: list[Append]) -> None:
    """Consecutive appends as one: every table's rows together, then the labels."""
    tables: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
    labels: list[str] = []
    for append in appends:
        tables.setdefault((append.table, append.columns), []).extend(append.rows)
        labels.extend(append.labels)
    with conn.cursor() as cursor:
        for (table, columns), rows in tables.items():
            cursor.executemany(_insert_sql(table, columns), rows)
    _label(conn, labels)


def _apply_one(conn: psycopg.Connection[Any], op: Any) -> Any:
    if type(op) is Append:
        try:
            _apply_appends(conn, [op])
        except pg_errors.UniqueViolation:
            if op.conflict is None:
                raise
            raise op.conflict() from None
        return None
    return op(conn)


class PostgresWriter(Writer):
    """Applies queued writes in batches, one transaction and one commit per batch, in its own
    thread (psycopg waits on the network without the GIL). A write is a function of the
    connection, or an :class:`Append`."""

    def __init__(self, url: str, conn: psycopg.Connection[Any] | None, *, lock: int) -> None:
        threading.Thread.__init__(self, name="riverbed-postgres-writer", daemon=True)
        self.path = url
        self.url = url
        self._lock_key = lock
        self._failed_at: dict[str, int] = {}
        self.conn: psycopg.Connection[Any] | None = conn  # type: ignore[assignment]
        self.checkpointer = None
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: list[tuple[Callable[[Any], Any], Future[Any]]] = []
        self._pending_lock = threading.Lock()
        self._conn_lock = threading.RLock()
        self.loop = None
        self.loop_thread = None
        self._flush_scheduled = False

    def run(self) -> None:
        stopping = False
        while not stopping:
            stopping = self.queue.get() is _STOP
            try:
                while not stopping:
                    stopping = self.queue.get_nowait() is _STOP
            except queue.Empty:
                pass
            self.flush()
        if self.conn is not None:
            # Let go of the writer lock before closing: the server ends a closed session a
            # moment later, and a store opened at once on the database would find it held.
            if not self.conn.broken:
                try:
                    self.conn.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))
                except psycopg.Error:  # pragma: no cover - the connection broke meanwhile
                    pass
            self.conn.close()

    def flush(self) -> None:
        with self._conn_lock:
            while True:
                with self._pending_lock:
                    batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                if not batch:
                    return
                self._apply(batch)

    def _connection(self) -> psycopg.Connection[Any]:
        """The writer's connection, opened again (with the database's writer lock taken
        again) when the last one broke."""
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        conn = connect(self.url)
        try:
            take_writer_lock(conn, self._lock_key, self.url)
        except BaseException:
            conn.close()
            raise
        log.warning("the PostgreSQL writer connection is open again")
        self.conn = conn
        return conn

    def _apply(self, batch: list[tuple[Callable[[Any], Any], Future[Any]]]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] | None
        try:
            conn = self._connection()
            outcomes = self._together(conn, batch)
            if outcomes is None:
                outcomes = self._one_by_one(conn, batch)
        except Exception as exc:  # the commit itself failed: nothing in the batch is durable
            if self.conn is not None and not self.conn.broken:
                try:
                    self.conn.rollback()
                except psycopg.Error:  # pragma: no cover - the connection broke meanwhile
                    pass
            failure = store_error(exc)
            if isinstance(failure, RiverbedError):
                log.error("PostgreSQL commit of %d writes failed: %s", len(batch), failure)
            else:
                log.exception("PostgreSQL commit failed")
                failure = ServerError(f"the database could not commit: {exc}")
            view: dict[str, int] = {}
            for op, _ in batch:
                self._failed(op, view)
            self._keep(view)
            outcomes = [(future, None, failure) for _, future in batch]
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def _together(  # type: ignore[override]
        self, conn: psycopg.Connection[Any], batch: list[tuple[Callable[[Any], Any], Future[Any]]]
    ) -> list[tuple[Future[Any], Any, BaseException | None]] | None:
        view: dict[str, int] = {}
        for op, _ in batch:
            if self._fenced(op, view) is not None:
                return None
            self._advance(op, view)
        results: list[Any] = []
        conn.execute("BEGIN")
        try:
            i = 0
            while i < len(batch):
                op = batch[i][0]
                if type(op) is Append:
                    j = i + 1
                    while j < len(batch) and type(batch[j][0]) is Append:
                        j += 1
                    _apply_appends(conn, [a for a, _ in batch[i:j]])  # type: ignore[misc]
                    results.extend([None] * (j - i))
                    i = j
                else:
                    results.append(op(conn))
                    i += 1
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except Exception:
            conn.execute("ROLLBACK")
            return None
        conn.execute("COMMIT")
        self._keep(view)
        return [(future, result, None) for (_, future), result in zip(batch, results, strict=True)]

    def _one_by_one(  # type: ignore[override]
        self, conn: psycopg.Connection[Any], batch: list[tuple[Callable[[Any], Any], Future[Any]]]
    ) -> list[tuple[Future[Any], Any, BaseException | None]]:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        view: dict[str, int] = {}
        conn.execute("BEGIN")
        for op, future in batch:
            fenced = self._fenced(op, view)
            if fenced is not None:
                outcomes.append((future, None, fenced))
                continue
            conn.execute("SAVEPOINT op")
            try:
                result = _apply_one(conn, op)
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except Exception as exc:
                conn.execute("ROLLBACK TO SAVEPOINT op")
                outcomes.append((future, None, store_error(exc)))
                self._failed(op, view)
            else:
                outcomes.append((future, result, None))
                self._advance(op, view)
            conn.execute("RELEASE SAVEPOINT op")
        conn.execute("COMMIT")
        self._keep(view)
        return outcomes


def take_writer_lock(conn: psycopg.Connection[Any], key: int, url: str) -> None:
    """Hold the database's writer lock (a session advisory lock) on ``conn``: one riverbed
    process writes a database, as one holds an SQLite file (its live models are in memory)."""
    from riverbed.stores.sqlite.lock import DatabaseInUse

    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    if not row or not row[0]:
        raise DatabaseInUse(
            f"another riverbed process is serving the PostgreSQL database {redact(url)}; "
            "stop it first (one process writes a database)"
        )


def redact(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://..."
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"
