"""The SQLite store's write path: one writer thread, group commits, background checkpoints.

Every write is queued to the :class:`Writer`, which takes every write queued so far, applies
them in one transaction and commits once (in its own thread, or on a server's event loop:
see :class:`Writer`); the futures of the batch complete after that commit, so
many concurrent requests share one commit. When a write of the batch fails, the batch is
applied again with a savepoint per write, so that one bad write fails alone.
:class:`Append` writes (rows for one table) queued next to each other are merged into
multi-row statements. Checkpoints run beside the writer (stores/sqlite/checkpoints.py), so no
commit waits for one.

A model's learns are made each on top of the one before, so once a learn fails, every learn,
checkpoint and metric point of that model with a later seq queued after it fails too (they
were made from a state that holds the failed learn), until a learn takes up the seq that
failed (the engine rebuilt the model from what was written). A
failure of the disk or the file is answered as :class:`~riverbed.exceptions.StorageFull` or
:class:`~riverbed.exceptions.Unavailable`, naming the cause.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import pathlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import RiverbedError, ServerError, StorageFull, Unavailable
from riverbed.stores.sqlite.checkpoints import WAL_LIMIT, Checkpointer, CheckpointProcess

__all__ = [
    "WAL_LIMIT",
    "Append",
    "Ordered",
    "Checkpointer",
    "CheckpointProcess",
    "LoopFuture",
    "Writer",
    "chunks",
    "connect",
    "store_error",
]

log = logging.getLogger(__name__)

_STOP = object()
_MAX_BATCH = 4096
_Op = Callable[[sqlite3.Connection], Any]
# Rows per multi-row statement: 256s, 64s and 32s, then the rest (under 32) in one; so the
# writer makes at most 34 statements a table, which the connection's statement cache holds.
_CHUNKS = (256, 64, 32)
_STATEMENT_CACHE = 256
_WRITER_CACHE_KIB = 64 * 1024


def connect(path: str, synchronous: str, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to the file; ``read_only`` opens it so (``mode=ro``: it can change
    nothing, and never creates the file), beside the process that writes it."""
    conn = sqlite3.connect(
        f"{pathlib.Path(path).absolute().as_uri()}?mode=ro" if read_only else path,
        isolation_level=None,
        check_same_thread=False,
        timeout=30,
        cached_statements=_STATEMENT_CACHE,
        uri=read_only,
    )
    if read_only:  # the writer keeps the file in WAL mode: readers see its commits
        return conn
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


@functools.lru_cache(maxsize=128)
def _insert_sql(table: str, columns: tuple[str, ...], n: int) -> str:
    row = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row] * n)


@functools.lru_cache(maxsize=64)
def _label_sql(n: int) -> str:
    return f"UPDATE predictions SET labelled = 1 WHERE id IN ({', '.join('?' * n)})"


def chunks(items: list[Any]) -> Iterator[list[Any]]:
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
    for chunk in chunks(rows):
        conn.execute(_insert_sql(table, columns, len(chunk)), list(itertools.chain(*chunk)))


def _label(conn: sqlite3.Connection, prediction_ids: list[str]) -> None:
    for chunk in chunks(prediction_ids):
        conn.execute(_label_sql(len(chunk)), chunk)


# SQLite's primary result codes for a file that cannot take a write.
_FULL = 13  # SQLITE_FULL: the disk, or max_page_count
_UNAVAILABLE = {
    5: "the database is locked by another connection",  # SQLITE_BUSY
    8: "the database file is read-only",  # SQLITE_READONLY
    10: "the database file could not be written (an I/O error)",  # SQLITE_IOERR
    14: "the database file could not be opened",  # SQLITE_CANTOPEN
}


def store_error(exc: BaseException, path: str = "") -> BaseException:
    """The error a caller gets for a write that SQLite refused: :class:`StorageFull` and
    :class:`Unavailable` for a full disk or a file that cannot be written, naming the
    cause; other errors as they are."""
    if not isinstance(exc, sqlite3.Error) or isinstance(exc, sqlite3.IntegrityError):
        return exc
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", "") or ""
    where = f" ({path})" if path else ""
    if code is not None and code & 0xFF == _FULL:
        return StorageFull(
            f"the database{where} is full ({name}: {exc}): nothing was written; free space "
            "on its disk, then retry",
            detail={"cause": name or "SQLITE_FULL"},
        )
    if code is not None and code & 0xFF in _UNAVAILABLE:
        return Unavailable(
            f"{_UNAVAILABLE[code & 0xFF]}{where} ({name}: {exc}): nothing was written; "
            "retry once it is fixed",
            detail={"cause": name},
        )
    return exc


class Ordered:
    """A write of one model's state at learn ``seq`` (a checkpoint, a metric point), which
    must not commit unless the model's learns up to ``seq`` did; or, with ``reset``, a
    write after which the model's learns start again (its deletion)."""

    __slots__ = ("op", "model", "seq", "reset")

    def __init__(self, op: _Op, model: str, seq: int, *, reset: bool = False) -> None:
        self.op, self.model, self.seq, self.reset = op, model, seq, reset

    def __call__(self, conn: sqlite3.Connection) -> Any:
        return self.op(conn)


_CLEARED = -1  # in a batch's view of the failed learns: none (any more) for that model


class Append:
    """Rows for one table, and the predictions they label: a write that the writer merges
    with the appends queued next to it. A group commit of hundreds of predictions and learns
    is then a few multi-row statements rather than one statement a write -- and each
    statement also hands Python's GIL over and back, which made the writer wait on the
    event loop once per row. Applied alone (after a failed merge), it raises its own error.
    """

    __slots__ = ("table", "columns", "rows", "labels", "conflict", "learns")

    def __init__(
        self,
        table: str,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        labels: list[str],
        conflict: Callable[[], Exception] | None = None,
        learns: tuple[str, int, int] | None = None,
    ) -> None:
        self.table, self.columns, self.rows = table, columns, rows
        self.labels, self.conflict = labels, conflict
        self.learns = learns  # (model, first seq, last seq) of the learns it writes

    def __call__(self, conn: sqlite3.Connection) -> None:
        try:
            _insert(conn, self.table, self.columns, self.rows)
        except sqlite3.IntegrityError:
            if self.conflict is None:
                raise
            raise self.conflict() from None
        _label(conn, self.labels)


def _apply_appends(conn: sqlite3.Connection, appends: list[Append]) -> None:
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
    if type(first) is not Append:
        return False
    rows = 0
    for op, _ in batch:
        if (
            type(op) is not Append
            or op.labels
            or (op.table, op.columns)
            != (
                first.table,
                first.columns,
            )
        ):
            return False
        rows += len(op.rows)
    return rows < _CHUNKS[-1] or rows in _CHUNKS  # what chunks() sends as one statement


# A LoopFuture's completion against its waiters and callbacks: the writer thread completes
# loop writes too, when a write from another thread made it flush them first.
_slow_waits = threading.Lock()


class LoopFuture(Future[Any]):
    """The future of a write queued from a server's event loop thread: a
    :class:`concurrent.futures.Future` without its per-future condition variable (making one
    per request cost as much as the request's INSERT). Waited on from the loop's thread
    before the loop's flush ran, it flushes first: the loop cannot flush while it waits.
    From another thread it waits on an event made for that wait. It cannot be cancelled."""

    __slots__ = ("writer", "_done", "_value", "_error", "_callbacks", "_event")

    def __init__(self, writer: Writer) -> None:  # no super().__init__(): no condition
        self.writer = writer
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Future[Any]], Any]] | None = None
        self._event: threading.Event | None = None

    def __repr__(self) -> str:
        return f"<LoopFuture {'finished' if self._done else 'pending'}>"

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return not self._done

    def done(self) -> bool:
        return self._done

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def add_done_callback(self, fn: Callable[[Future[Any]], Any]) -> None:
        with _slow_waits:  # the writer thread may be completing it (a large batch)
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        fn(self)

    def _wait(self, timeout: float | None) -> None:
        if self._done:
            return
        if threading.get_ident() == self.writer.loop_thread:
            self.writer.flush()
            if self._done:
                return
        with _slow_waits:
            if self._done:
                return
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if not event.wait(timeout):
            raise TimeoutError()

    def result(self, timeout: float | None = None) -> Any:
        self._wait(timeout)
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._wait(timeout)
        return self._error

    def set_result(self, result: Any) -> None:
        self._value = result
        self._finish()

    def set_exception(self, exception: BaseException | None) -> None:
        self._error = exception
        self._finish()

    def _finish(self) -> None:
        with _slow_waits:
            self._done = True
            event = self._event
            callbacks, self._callbacks = self._callbacks, None
        if event is not None:
            event.set()
        for fn in callbacks or ():
            try:
                fn(self)
            except Exception:
                log.exception("exception calling callback for %r", self)


class Writer(threading.Thread):
    """Applies queued writes in batches, one commit per batch.

    A write is a function of the connection and must not change anything else: when one
    write of a batch fails, the batch is rolled back and applied again with a savepoint per
    write, so that the others still commit.

    Writes wait in one list, in the order they were submitted, and whoever flushes takes
    them all. Writes from other threads wake this thread, which flushes. Once a server has
    called :meth:`serve_on`, writes from its event loop's thread are flushed by the loop
    itself, once per loop pass (``call_soon``): with ``synchronous=NORMAL`` a commit is a
    write to the WAL file, shorter than handing the batch to this thread and the GIL back
    and forth (measured: handing batches of 256 learns to this thread instead, where SQLite
    runs without the GIL, gained nothing). Flushes hold the connection's lock, so the two
    never interleave and batches commit in the order of their writes.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        checkpointer: Checkpointer | CheckpointProcess | None = None,
        *,
        path: str = "",
    ) -> None:
        super().__init__(name="riverbed-sqlite-writer", daemon=True)
        self.path = path
        # The seq of each model's learn that failed, until a learn takes it up: the model's
        # writes made on top of it are refused (see _fenced).
        self._failed_at: dict[str, int] = {}
        # Checkpoints run beside the writer (see Checkpointer), not inside its commits; the
        # WAL file is cut back to 64 MiB whenever a checkpoint lets it restart.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        # The writer's page cache holds the indexes' hot pages (2 MB by default: a store of
        # some million rows then read index pages back from the OS on every commit).
        conn.execute(f"PRAGMA cache_size=-{_WRITER_CACHE_KIB}")
        # A group commit's multi-row INSERT spilled its scratch pages to a temporary file
        # (created, unlinked, written, closed: about 30 times a second under load, on the
        # event loop's thread). The writer's statements are bounded (inserts of at most 256
        # rows, prunes of at most 2,000), so their scratch space stays in memory. Readers
        # keep the default: their sorts may be large.
        conn.execute("PRAGMA temp_store=MEMORY")
        self.conn = conn
        self.checkpointer = checkpointer
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # wake-ups of this thread
        self._pending: list[tuple[_Op, Future[Any]]] = []
        self._pending_lock = threading.Lock()
        self._conn_lock = threading.RLock()  # a commit's callbacks may ask for a result
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None
        self._flush_scheduled = False

    def serve_on(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Flush the writes submitted from ``loop``'s thread on that loop (call it from the
        loop's thread); None goes back to flushing every write in this thread."""
        if loop is None:
            self.loop = self.loop_thread = None
            self.flush()
            self._flush_scheduled = False  # a flush the old loop never ran is done here
            return
        self.loop, self.loop_thread = loop, threading.get_ident()

    def submit(self, op: _Op) -> Future[Any]:
        loop = self.loop
        if loop is not None and threading.get_ident() == self.loop_thread and loop.is_running():
            future: Future[Any] = LoopFuture(self)
            with self._pending_lock:
                self._pending.append((op, future))
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._after_one_more_poll, loop)
            return future
        future = Future()
        with self._pending_lock:
            self._pending.append((op, future))
        self.queue.put(None)
        return future

    def _after_one_more_poll(self, loop: asyncio.AbstractEventLoop) -> None:
        # The commit waits one more pass of the loop (a poll for sockets that became ready,
        # then their callbacks), so that a request that arrived while this pass was being
        # handled shares this commit instead of waiting for the whole next pass: under load
        # those stragglers were the latency's tail (p99 at 16 connections down 10-20%, the
        # same throughput). When nothing arrived, the wait is one poll that returns at once.
        loop.call_soon(self._loop_flush)

    def _loop_flush(self) -> None:
        self._flush_scheduled = False
        if self.checkpointer is not None and self.checkpointer.restarting:
            self.queue.put(None)  # the writer thread waits for the checkpoint, not the loop
            return
        self.flush()

    def flush(self) -> None:
        """Apply and commit every write submitted so far, in this thread."""
        with self._conn_lock:
            while True:
                with self._pending_lock:
                    batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                if not batch:
                    return
                self._apply(batch)

    def stop(self) -> None:
        self.queue.put(_STOP)
        self.join()

    def run(self) -> None:
        stopping = False
        while not stopping:
            stopping = self.queue.get() is _STOP
            try:
                while not stopping:  # one flush takes every write these wake-ups announce
                    stopping = self.queue.get_nowait() is _STOP
            except queue.Empty:
                pass
            self.flush()
        self.conn.close()

    # -- a model's writes after a failed learn ----------------------------------------------

    def _fenced(self, op: Any, view: dict[str, int]) -> RiverbedError | None:
        """Why ``op`` must not be applied: a learn, checkpoint or metric point of a model
        beyond the seq of a learn of that model that failed (``view`` over ``_failed_at``),
        made on top of that learn. None: apply it."""
        if not self._failed_at and not view:
            return None
        kind = type(op)
        if kind is Append:
            if op.learns is None:
                return None
            model, seq = op.learns[0], op.learns[1]
            failed = view.get(model, self._failed_at.get(model, _CLEARED))
            if failed == _CLEARED or seq <= failed:
                return None
        elif kind is Ordered:
            if op.reset:
                return None
            model, seq = op.model, op.seq
            failed = view.get(model, self._failed_at.get(model, _CLEARED))
            if failed == _CLEARED or seq < failed:
                return None
        else:
            return None
        return Unavailable(
            f"learn {failed} of model {model!r} was not written, and this write (seq {seq}) "
            "was made on top of it: nothing was written; retry",
            detail={"cause": "an earlier write failed", "model": model, "seq": seq},
        )

    def _advance(self, op: Any, view: dict[str, int]) -> None:
        """Record in ``view`` what ``op``, applied, changes: a learn at (or before) the seq
        that failed takes it up, a deletion forgets the model."""
        kind = type(op)
        if kind is Append and op.learns is not None:
            if self._failed_at or view:
                model = op.learns[0]
                if view.get(model, self._failed_at.get(model, _CLEARED)) != _CLEARED:
                    view[model] = _CLEARED
        elif kind is Ordered and op.reset and (self._failed_at or view):
            view[op.model] = _CLEARED

    def _failed(self, op: Any, view: dict[str, int]) -> None:
        """A learn that failed: the writes of its model beyond it must fail too."""
        if type(op) is Append and op.learns is not None:
            model, seq = op.learns[0], op.learns[1]
            failed = view.get(model, self._failed_at.get(model, _CLEARED))
            if failed == _CLEARED or seq < failed:
                view[model] = seq

    def _keep(self, view: dict[str, int]) -> None:
        for model, seq in view.items():
            if seq == _CLEARED:
                self._failed_at.pop(model, None)
            else:
                self._failed_at[model] = seq

    def _apply(self, batch: list[tuple[_Op, Future[Any]]]) -> None:
        conn = self.conn
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] | None
        try:
            outcomes = self._together(batch)
            if outcomes is None:
                outcomes = self._one_by_one(batch)
        except Exception as exc:  # the commit itself failed: nothing in the batch is durable
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = store_error(exc, self.path)
            if isinstance(failure, RiverbedError):  # a cause it names: no traceback
                log.error("SQLite commit of %d writes failed: %s", len(batch), failure)
            else:
                log.exception("SQLite commit failed")
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

    def _together(
        self, batch: list[tuple[_Op, Future[Any]]]
    ) -> list[tuple[Future[Any], Any, BaseException | None]] | None:
        """The batch in one transaction, no savepoints: the common case, where every write
        succeeds. If one fails, everything is rolled back and None says to apply the batch
        again one savepoint per write (writes only touch the connection, so they can)."""
        conn = self.conn
        view: dict[str, int] = {}
        for op, _ in batch:
            if self._fenced(op, view) is not None:
                return None  # one by one: that write fails alone
            self._advance(op, view)
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
            self._keep(view)
            return [(future, None, None) for _, future in batch]
        conn.execute("BEGIN IMMEDIATE")
        results: list[Any] = []
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
        except Exception:
            if conn.in_transaction:  # SQLite may have rolled it back itself (a full disk)
                conn.execute("ROLLBACK")
            return None
        conn.execute("COMMIT")
        self._committed()
        self._keep(view)
        return [(future, result, None) for (_, future), result in zip(batch, results, strict=True)]

    def _one_by_one(
        self, batch: list[tuple[_Op, Future[Any]]]
    ) -> list[tuple[Future[Any], Any, BaseException | None]]:
        """The batch in one transaction, each write in its own savepoint: one bad write
        fails alone."""
        conn = self.conn
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        view: dict[str, int] = {}
        conn.execute("BEGIN IMMEDIATE")
        for op, future in batch:
            fenced = self._fenced(op, view)
            if fenced is not None:
                outcomes.append((future, None, fenced))
                continue
            conn.execute("SAVEPOINT op")
            try:
                result = op(conn)
            except Exception as exc:
                if not conn.in_transaction:
                    # SQLite rolled the whole transaction back (a full disk, an I/O error):
                    # the writes before this one are gone too
                    raise store_error(exc, self.path) from exc
                conn.execute("ROLLBACK TO op")
                outcomes.append((future, None, store_error(exc, self.path)))
                self._failed(op, view)
            else:
                outcomes.append((future, result, None))
                self._advance(op, view)
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
        self._committed()
        self._keep(view)
        return outcomes

    def _committed(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.commits += 1
