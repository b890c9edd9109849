"""The PostgreSQL store's write path: one writer thread, group commits over one connection.

The SQLite writer's idea carried over (stores/sqlite/writer.py, whose fencing of a model's
writes after a failed learn this class inherits): every write is queued, the writer thread
takes every write queued so far, applies them in one transaction and commits once, and the
futures of the batch complete after that commit, so many concurrent requests share one
commit (one WAL flush of the server). Consecutive :class:`Append` writes are merged into one
``INSERT ... unnest`` a table; a batch of appends only is one round trip, its rows and its
COMMIT pipelined (see ``PostgresWriter._appended``). When a write of the batch fails, the
batch is applied again with a savepoint per write, so that one bad write fails alone.

Faults. Every transaction begins with ``BEGIN; SELECT txid_current()``, so the writer knows
its id before it sends the COMMIT: in a round trip of its own, or in the one of the commit
before it when writes were waiting then. A connection that breaks before the COMMIT was
sent (the backend was terminated, the server restarted) is opened again and the batch
applied once more on the new one: nothing of it was written. A connection that breaks while
the COMMIT is on its way (for a batch of appends: anywhere in its one round trip) leaves
its outcome unknown; the writer opens a new connection and asks the server
(``txid_status``): committed, the batch is acknowledged; aborted, it is applied once more;
still unknown (the server cannot be reached, or the transaction is still ending), every
write of the batch fails with :class:`~riverbed.exceptions.CommitInDoubt` (503): riverbed
never acknowledges what may not be stored, and never applies a write twice. Such a batch's
learns fence their model's later writes (see stores/sqlite/writer.py) only once the server
says it was aborted: the writer asks again before its next transaction. While the server
cannot be reached, every batch fails with :class:`~riverbed.exceptions.Unavailable` as soon
as a connection is refused (``connect_timeout`` at most). A reconnection that finds the
database's writer lock held (the terminated backend has not ended yet) tries again for a
few seconds, then fails the batch with Unavailable, cause ``writer_lock_held``.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from riverbed.exceptions import (
    CommitInDoubt,
    RiverbedError,
    ServerError,
    StorageFull,
    Unavailable,
)
from riverbed.stores.sqlite.writer import (
    _CLEARED,
    _MAX_BATCH,
    _STOP,
    Append,
    LoopFuture,
    Ordered,
    Writer,
)

__all__ = ["Append", "Ordered", "PostgresWriter", "connect", "store_error"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5  # seconds a (re)connection may take (setting postgres_connect_timeout)
LOCK_WAIT = 5.0  # seconds a reconnection waits for the writer lock the old session held
STATUS_WAIT = 3.0  # seconds a lost commit's transaction may stay 'in progress' (ending)
_LOST = (psycopg.OperationalError, psycopg.InterfaceError)
_Batch = list[tuple[Callable[[Any], Any], Future[Any]]]
_Outcomes = list[tuple[Future[Any], Any, BaseException | None]]


def connect(
    url: str, *, autocommit: bool = True, timeout: float = CONNECT_TIMEOUT
) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=autocommit, connect_timeout=max(1, round(timeout)))


class _CommitLost(Exception):
    """The connection broke while the COMMIT of transaction ``txid`` was on its way."""

    def __init__(self, txid: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.txid, self.cause = txid, cause


def _begin(conn: psycopg.Connection[Any]) -> int:
    """Begin a transaction and return its id, in one round trip."""
    cursor = conn.execute("BEGIN; SELECT txid_current()")
    cursor.nextset()
    return _txid(cursor)


def _txid(cursor: psycopg.Cursor[Any]) -> int:
    row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def _commit(conn: psycopg.Connection[Any], txid: int, *, then_begin: bool) -> int | None:
    """Commit transaction ``txid``; with ``then_begin``, begin the next one in the same
    round trip and return its id."""
    try:
        if not then_begin:
            conn.execute("COMMIT")
            return None
        cursor = conn.execute("COMMIT; BEGIN; SELECT txid_current()")
        cursor.nextset()
        cursor.nextset()
        return _txid(cursor)
    except _LOST as exc:
        raise _CommitLost(txid, exc) from exc


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
        said = " ".join(str(exc).split()) or type(exc).__name__
        return Unavailable(
            f"the PostgreSQL server cannot be reached ({said}): nothing was written; retry",
            detail={"cause": "database_unreachable"},
        )
    return exc


# The type of each column an Append writes: a table's rows go as one array a column.
_ARRAY_TYPES = {
    "id": "text[]",
    "model": "text[]",
    "seq": "bigint[]",
    "features": "bytea[]",
    "target": "bytea[]",
    "prediction": "bytea[]",
    "prediction_id": "text[]",
    "created_at": "float8[]",
}
_LABEL_SQL = "UPDATE predictions SET labelled = TRUE WHERE id = ANY(%s)"


@functools.lru_cache(maxsize=16)
def _unnest_sql(table: str, columns: tuple[str, ...]) -> str:
    """One INSERT of any number of rows, its text the same for every count (so the server
    keeps it prepared): the rows' columns as arrays, unnested."""
    arrays = ", ".join(f"%s::{_ARRAY_TYPES[c]}" for c in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"


def _merged(appends: list[Append]) -> tuple[list[tuple[str, list[list[Any]]]], list[str]]:
    """Consecutive appends as one: each table's INSERT and its columns' arrays, then the
    labels (which may name predictions inserted here)."""
    tables: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
    labels: list[str] = []
    for append in appends:
        tables.setdefault((append.table, append.columns), []).extend(append.rows)
        labels.extend(append.labels)
    inserts = [
        (_unnest_sql(table, columns), [list(column) for column in zip(*rows, strict=True)])
        for (table, columns), rows in tables.items()
        if rows
    ]
    return inserts, labels


def _apply_appends(conn: psycopg.Connection[Any], appends: list[Append]) -> None:
    inserts, labels = _merged(appends)
    for sql, arrays in inserts:
        conn.execute(sql, arrays)
    if labels:
        conn.execute(_LABEL_SQL, (labels,))


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

    def __init__(
        self,
        url: str,
        conn: psycopg.Connection[Any] | None,
        *,
        lock: int,
        connect_timeout: float = CONNECT_TIMEOUT,
        shared: bool = False,
    ) -> None:
        threading.Thread.__init__(self, name="riverbed-postgres-writer", daemon=True)
        self.path = url
        self.url = url
        self._lock_key = lock
        self._connect_timeout = connect_timeout
        self._shared = shared
        self._failed_at: dict[str, int] = {}
        # Transactions whose COMMIT's outcome is unknown, with the fences they clear once
        # the server says they were committed, and those they set once it says aborted
        # (see _settle_doubts).
        self._doubts: list[tuple[int, dict[str, int], dict[str, int]]] = []
        # The outcomes and fences of the transaction whose COMMIT is on its way.
        self._lost_outcomes: _Outcomes | None = None
        self._lost_view: dict[str, int] = {}
        # The transaction the last commit began for the writes already waiting, and its id
        # (see _finish): the next batch's first round trip is its work and its COMMIT.
        self._open: tuple[psycopg.Connection[Any], int] | None = None
        self.conn: psycopg.Connection[Any] | None = conn  # type: ignore[assignment]
        self.checkpointer = None
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: _Batch = []
        self._pending_lock = threading.Lock()
        self._conn_lock = threading.RLock()
        self.loop = None
        self.loop_thread = None
        self._flush_scheduled = False

    def submit(self, op: Any) -> Future[Any]:
        """Queue ``op`` and wake the writer thread. Its future has no condition variable of
        its own (a LoopFuture: waited on, it makes an event then), one less lock a write."""
        future: Future[Any] = LoopFuture(self)
        with self._pending_lock:
            self._pending.append((op, future))
        self.queue.put(None)
        return future

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
                    unlock = "pg_advisory_unlock_shared" if self._shared else "pg_advisory_unlock"
                    self.conn.execute(f"SELECT {unlock}(%s)", (self._lock_key,))
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

    # -- the connection --------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        """The writer's connection, opened again (with the database's writer lock taken
        again, and the outcomes of lost commits asked for) when the last one broke."""
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        conn = connect(self.url, timeout=self._connect_timeout)
        try:
            self._relock(conn)
            self._settle_doubts(conn)
        except BaseException:
            conn.close()
            raise
        log.warning("the PostgreSQL writer connection is open again")
        self.conn = conn
        return conn

    def _drop_connection(self) -> None:
        self._open = None
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:  # pragma: no cover - closing a broken connection
                pass
            self.conn = None

    def _relock(self, conn: psycopg.Connection[Any]) -> None:
        """Take the writer lock again on a new connection. The session that held it may not
        have ended yet (a terminated backend ends a moment later): try for ``LOCK_WAIT``."""
        from riverbed.stores.sqlite.lock import DatabaseInUse

        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                take_writer_lock(conn, self._lock_key, self.url, shared=self._shared)
                return
            except DatabaseInUse as exc:
                if time.monotonic() >= deadline:
                    raise Unavailable(
                        f"the writer lock of {redact(self.url)} is still held by another "
                        "session after the writer's connection broke (another riverbed "
                        f"process, or the old session not ended yet): {exc}; nothing was "
                        "written; retry",
                        detail={"cause": "writer_lock_held"},
                    ) from None
            time.sleep(0.05)

    def _status(self, conn: psycopg.Connection[Any], txid: int) -> str | None:
        """What became of transaction ``txid``: committed, aborted (also one the server no
        longer knows of after a crash: an id "in the future"), or None when the server still
        has it in progress after ``STATUS_WAIT`` (its session still ending)."""
        deadline = time.monotonic() + STATUS_WAIT
        while True:
            try:
                row = conn.execute("SELECT txid_status(%s)", (txid,)).fetchone()
            except pg_errors.InvalidParameterValue:
                # "transaction ID ... is in the future": the server crashed and came back
                # without a trace of it (its id was never written to the WAL), so it did
                # not commit
                return "aborted"
            status = row[0] if row else None
            if status in ("committed", "aborted"):
                return str(status)
            if status is None or time.monotonic() >= deadline:  # None: too old to know
                return None
            time.sleep(0.02)

    def _settle_doubts(self, conn: psycopg.Connection[Any]) -> None:
        """Ask what became of the transactions whose COMMIT was lost: the learns of an
        aborted one fence their models' later writes now (a committed one's are stored, and
        the engine rebuilt its model from the log). One still unknown fails the batch."""
        while self._doubts:
            txid, cleared, fences = self._doubts[0]
            status = self._status(conn, txid)
            if status is None:
                raise Unavailable(
                    f"the outcome of an earlier commit (transaction {txid}) is not known yet: "
                    "nothing was written; retry",
                    detail={"cause": "commit_in_doubt"},
                )
            self._doubts.pop(0)
            log.warning("the lost commit of transaction %d was %s", txid, status)
            if status == "committed":
                self._keep(cleared)
            else:
                for model, seq in fences.items():
                    failed = self._failed_at.get(model, _CLEARED)
                    if failed == _CLEARED or seq < failed:
                        self._failed_at[model] = seq

    def _outcome(self, txid: int) -> str | None:
        """After a lost COMMIT: a new connection, and what became of ``txid`` (None when
        the server cannot be reached or does not know yet)."""
        self._drop_connection()
        try:
            conn = self._connection()
            return self._status(conn, txid)
        except (*_LOST, RiverbedError):
            return None

    # -- a batch ---------------------------------------------------------------------------

    def _apply(self, batch: _Batch) -> None:
        outcomes: _Outcomes | None = None
        doubt: dict[str, int] = {}
        try:
            for attempt in (1, 2):
                try:
                    outcomes = self._attempt(batch)
                    break
                except _CommitLost as lost:
                    status = self._outcome(lost.txid)
                    if status == "committed":
                        outcomes, self._lost_outcomes = self._lost_outcomes, None
                        self._keep(self._lost_view)
                        log.warning("a lost commit of %d writes was committed", len(batch))
                        break
                    self._lost_outcomes = None
                    if status is None:
                        doubt = self._lost_view
                        raise CommitInDoubt(
                            "the connection to PostgreSQL broke while the commit was on its "
                            f"way (transaction {lost.txid}), and its outcome is not known: "
                            "the writes may or may not be stored; read before retrying",
                            detail={"cause": "commit_in_doubt", "txid": lost.txid},
                        ) from None
                    if attempt == 2:
                        raise lost.cause from None
                except _LOST:
                    # Before the COMMIT: nothing was written. The connection may be broken,
                    # or left unusable without saying so (stuck in pipeline mode after a
                    # break in an executemany): a new one, and the batch once more.
                    opened = self.conn is not None  # else the new connection was refused
                    self._drop_connection()
                    if attempt == 2 or not opened:
                        raise
                    log.warning("the PostgreSQL writer connection broke; applying again")
        except Exception as exc:  # the commit failed: nothing in the batch is acknowledged
            self._open = None
            if isinstance(exc, _LOST):
                self._drop_connection()
            elif self.conn is not None and not self.conn.broken:
                try:
                    self.conn.rollback()
                except psycopg.Error:  # pragma: no cover - the connection broke meanwhile
                    pass
            failure = exc if isinstance(exc, RiverbedError) else store_error(exc)
            if isinstance(failure, RiverbedError):
                log.error("PostgreSQL commit of %d writes failed: %s", len(batch), failure)
            else:
                log.exception("PostgreSQL commit failed")
                failure = ServerError(f"the database could not commit: {exc}")
            view: dict[str, int] = {}
            for op, _ in batch:
                self._failed(op, view)
            if isinstance(failure, CommitInDoubt):
                self._doubts.append((failure.detail["txid"], doubt, view))
            else:
                self._keep(view)
            outcomes = [(future, None, failure) for _, future in batch]
        assert outcomes is not None
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def _attempt(self, batch: _Batch) -> _Outcomes:
        conn = self._connection()
        outcomes = self._together(conn, batch)
        if outcomes is None:
            outcomes = self._one_by_one(conn, batch)
        return outcomes

    def _begin(self, conn: psycopg.Connection[Any]) -> int:
        """The id of a transaction begun on ``conn``: the one the last commit began, else
        a new one (a round trip)."""
        begun, self._open = self._open, None
        if (
            begun is not None
            and begun[0] is conn
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        ):
            return begun[1]
        return _begin(conn)

    def _waiting(self) -> bool:
        """Whether writes are queued for the next batch (this flush takes them next)."""
        with self._pending_lock:
            return bool(self._pending)

    def _finish(
        self, conn: psycopg.Connection[Any], txid: int, outcomes: _Outcomes, view: dict[str, int]
    ) -> _Outcomes:
        """Commit, then keep the batch's fences; a lost commit keeps its outcomes aside for
        :meth:`_apply`, which asks what became of it. When writes are already waiting, the
        COMMIT's round trip also begins their transaction (see _appended)."""
        self._lost_outcomes, self._lost_view = outcomes, view
        begun = _commit(conn, txid, then_begin=self._waiting())
        self._lost_outcomes = None
        if begun is not None:
            self._open = (conn, begun)
        self._keep(view)
        return outcomes

    def _appended(
        self, conn: psycopg.Connection[Any], batch: _Batch, view: dict[str, int]
    ) -> _Outcomes | None:
        """A batch of appends only (the predictions and learns under load) in one round
        trip: one INSERT a table, the labels and the COMMIT pipelined, and, when writes are
        already waiting, the BEGIN of their transaction and its id too. So a commit under
        load is one round trip, where BEGIN, the INSERTs and COMMIT were three, each a
        hand-over from this thread to the server's backend and back for the GIL. None when
        a write failed (rolled back: the batch is applied again one by one).

        The transaction's id is known before its COMMIT is sent (the BEGIN was an earlier
        round trip), so a connection that breaks in this round trip leaves a commit whose
        outcome :meth:`_apply` asks the server for, as a lost COMMIT: the server may have
        committed it before the break."""
        txid = self._begin(conn)
        inserts, labels = _merged([op for op, _ in batch])  # type: ignore[misc]
        outcomes: _Outcomes = [(future, None, None) for _, future in batch]
        self._lost_outcomes, self._lost_view = outcomes, view
        then_begin = self._waiting()
        commit: psycopg.Cursor[Any] | None = None
        begun: psycopg.Cursor[Any] | None = None
        try:
            with conn.pipeline():
                for sql, arrays in inserts:
                    conn.execute(sql, arrays)
                if labels:
                    conn.execute(_LABEL_SQL, (labels,))
                commit = conn.execute("COMMIT")
                if then_begin:
                    conn.execute("BEGIN")
                    begun = conn.execute("SELECT txid_current()")
        except _LOST as exc:
            raise _CommitLost(txid, exc) from exc
        except Exception:
            # A write failed (a taken id): the server skipped the rest of the pipeline,
            # COMMIT included, and holds the transaction aborted until the ROLLBACK. (Or,
            # never seen, the COMMIT went through and the next transaction's BEGIN failed.)
            self._lost_outcomes = None
            result = commit.pgresult if commit is not None else None
            committed = result is not None and result.status == psycopg.pq.ExecStatus.COMMAND_OK
            idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            if not committed:
                if not idle:
                    conn.execute("ROLLBACK")  # a break here: nothing committed, applied again
                return None
            begun = None
            if not idle:
                try:
                    conn.execute("ROLLBACK")
                except _LOST:  # the batch is committed all the same
                    self._drop_connection()
        self._lost_outcomes = None
        if begun is not None:
            self._open = (conn, _txid(begun))
        self._keep(view)
        return outcomes

    def _together(  # type: ignore[override]
        self, conn: psycopg.Connection[Any], batch: _Batch
    ) -> _Outcomes | None:
        view: dict[str, int] = {}
        for op, _ in batch:
            if self._fenced(op, view) is not None:
                return None
            self._advance(op, view)
        if all(type(op) is Append for op, _ in batch):
            return self._appended(conn, batch, view)
        results: list[Any] = []
        txid = self._begin(conn)
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
        except _LOST:
            raise
        except Exception:
            conn.execute("ROLLBACK")
            return None
        outcomes: _Outcomes = [
            (future, result, None) for (_, future), result in zip(batch, results, strict=True)
        ]
        return self._finish(conn, txid, outcomes, view)

    def _one_by_one(  # type: ignore[override]
        self, conn: psycopg.Connection[Any], batch: _Batch
    ) -> _Outcomes:
        outcomes: _Outcomes = []
        view: dict[str, int] = {}
        txid = self._begin(conn)
        for op, future in batch:
            fenced = self._fenced(op, view)
            if fenced is not None:
                outcomes.append((future, None, fenced))
                continue
            conn.execute("SAVEPOINT op")
            try:
                result = _apply_one(conn, op)
            except _LOST:
                raise
            except Exception as exc:
                conn.execute("ROLLBACK TO SAVEPOINT op")
                outcomes.append((future, None, store_error(exc)))
                self._failed(op, view)
            else:
                outcomes.append((future, result, None))
                self._advance(op, view)
            conn.execute("RELEASE SAVEPOINT op")
        return self._finish(conn, txid, outcomes, view)


def take_writer_lock(
    conn: psycopg.Connection[Any], key: int, url: str, *, shared: bool = False
) -> None:
    """Hold the database's writer lock (a session advisory lock) on ``conn``: one riverbed
    process writes a database, as one holds an SQLite file (its live models are in memory).

    ``shared``: the processes of a scale-out cluster (replicas and learners, which order
    their learns through a broker: riverbed/scaleout) hold it shared, so any number of them
    write the database together while a process serving it alone is refused, and the other
    way round."""
    from riverbed.stores.sqlite.lock import DatabaseInUse

    if shared:
        row = conn.execute("SELECT pg_try_advisory_lock_shared(%s)", (key,)).fetchone()
        if not row or not row[0]:
            raise DatabaseInUse(
                f"a riverbed process serves the PostgreSQL database {redact(url)} alone "
                "(without --broker); stop it before starting replicas or learners on it"
            )
        return
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
