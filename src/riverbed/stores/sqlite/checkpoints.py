"""Moving an SQLite file's write-ahead log into the database file, beside the writer.

The writer runs no checkpoint of its own (``wal_autocheckpoint=0``): SQLite's automatic one
would copy and fsync inside the commit that crosses 1,000 pages, stalling every request of
that group commit. Here a connection of its own runs ``PRAGMA wal_checkpoint(PASSIVE)``
every ``period`` seconds when there were commits, which takes no lock that writers need;
and, past ``wal_limit`` bytes of log, a RESTART checkpoint, without which the log never
starts over under steady writes (a passive checkpoint never catches up with the writer) and
its file grows without end. A RESTART holds writers back while it copies the last frames, so
it raises ``restarting`` meanwhile: a server's event loop then leaves its commits to the
writer thread rather than wait itself (``Writer._loop_flush``).

Two ways to run it, the same checkpoints:

- :class:`Checkpointer`, a thread: for the embedded engine and every store by default;
- :class:`CheckpointProcess`, a process of its own, for ``riverbed serve``: a thread must
  take Python's GIL back after each of its SQLite calls, and with the event loop busy that
  takes a forced switch, which holds the loop until the other thread has run (measured in
  docs/benchmarks.md: p99 at 16 connections about 1 ms lower without it). The process shares
  one byte with the server for ``restarting`` (``memfd``, Linux) and ends when its standard
  input closes, including when the server dies.

This module imports nothing of riverbed: the process runs it as a script (``python -I
<this file>``), which is quick to start.
"""

from __future__ import annotations

import logging
import mmap
import os
import select
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["WAL_LIMIT", "CheckpointProcess", "Checkpointer", "checkpoint", "open_checkpointer"]

log = logging.getLogger("riverbed.stores.sqlite.checkpoints")

WAL_LIMIT = 64 * 1024 * 1024  # the WAL file's size past which it is made to start over
PERIOD = 0.2


def checkpoint(
    conn: sqlite3.Connection, path: str, wal_limit: int, restarting: Callable[[bool], None]
) -> None:
    """A passive checkpoint, then a RESTART one if the WAL file has outgrown ``wal_limit``
    (RESTART waits for the commit in progress, copies the few frames left and makes the next
    commit write the log from its start, the file cut back to ``journal_size_limit``)."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        if os.path.getsize(path + "-wal") > wal_limit:
            restarting(True)
            try:
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                restarting(False)
    except (sqlite3.Error, OSError):  # pragma: no cover - busy or closing; next period
        log.debug("background WAL checkpoint failed", exc_info=True)


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    # A RESTART checkpoint holds the writers back while it waits: never for long.
    conn.execute("PRAGMA busy_timeout=100")
    return conn


class Checkpointer(threading.Thread):
    """The checkpoints in a thread of this process."""

    def __init__(
        self, path: str, synchronous: str, period: float = PERIOD, wal_limit: int = WAL_LIMIT
    ) -> None:
        super().__init__(name="riverbed-sqlite-checkpointer", daemon=True)
        self.path, self.synchronous, self.period = path, synchronous, period
        self.wal_limit = wal_limit
        self.commits = 0  # bumped by the writer; read here without a lock (a hint only)
        self.restarting = False
        self._halt = threading.Event()
        self.start()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def run(self) -> None:
        conn = _connect(self.path, self.synchronous)
        seen = 0
        try:
            while not self._halt.wait(self.period):
                if self.commits != seen:
                    seen = self.commits
                    self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        checkpoint(conn, self.path, self.wal_limit, self._set_restarting)

    def _set_restarting(self, value: bool) -> None:
        self.restarting = value


class CheckpointProcess:
    """The checkpoints in a process of their own (Linux: the shared byte is a ``memfd``).

    A thread waits on the process (in ``waitpid``, without the GIL) and starts another if it
    ends before :meth:`stop`, a second later: without checkpoints the log would grow without
    end."""

    def __init__(
        self, path: str, synchronous: str, period: float = PERIOD, wal_limit: int = WAL_LIMIT
    ) -> None:
        self.commits = 0  # the writer bumps it for the thread's sake; the process looks at the log
        args = [path, synchronous, repr(period), str(wal_limit)]
        self._argv = [sys.executable, "-I", __file__, *args]
        self._lock = threading.Lock()
        self._stopping = False
        self.process, self._flag = self._start()
        self._watcher = threading.Thread(
            target=self._watch, name="riverbed-checkpoint-watch", daemon=True
        )
        self._watcher.start()

    def _start(self) -> tuple[subprocess.Popen[bytes], mmap.mmap]:
        """A process and the byte it shares: a new memfd each time, whose descriptor this
        process closes at once (the mapping keeps its own), so none is held open here."""
        fd = os.memfd_create("riverbed-checkpoint")
        try:
            os.ftruncate(fd, 1)
            flag = mmap.mmap(fd, 1)
            try:
                # A session of its own: Ctrl-C in a terminal, or a signal to the server's
                # process group, is the server's to handle. The process ends when its input
                # closes, which the server's end does, however it ends.
                process = subprocess.Popen(
                    [*self._argv, str(fd)],
                    stdin=subprocess.PIPE,
                    pass_fds=(fd,),
                    start_new_session=True,
                )
            except OSError:
                flag.close()
                raise
        finally:
            os.close(fd)
        return process, flag

    def _watch(self) -> None:
        while True:
            process = self.process
            code = process.wait()
            with self._lock:
                if self._stopping:
                    return
                assert process.stdin is not None
                process.stdin.close()
            log.error("the WAL checkpoint process ended (exit status %s); starting another", code)
            time.sleep(1)
            with self._lock:
                if self._stopping:
                    return
                # A new byte, at 0 (a RESTART the dead one was running is over). The old
                # mapping is not closed here: the loop may be reading it; it goes with its
                # last reference.
                try:
                    self.process, self._flag = self._start()
                except OSError:
                    log.exception("cannot start the WAL checkpoint process again")
                    self._flag[0] = 0
                    return

    @property
    def restarting(self) -> bool:
        return self._flag[0] == 1

    @restarting.setter
    def restarting(self, value: bool) -> None:  # the process sets it; tests too
        self._flag[0] = 1 if value else 0

    def stop(self) -> None:
        """Close the process's input, which ends it after the checkpoint it is running."""
        with self._lock:
            self._stopping = True
            process = self.process
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a checkpoint stuck on I/O
            process.kill()
            process.wait()
        self._watcher.join()


def open_checkpointer(
    path: str, synchronous: str, *, process: bool
) -> Checkpointer | CheckpointProcess:
    """A checkpointer for the file at ``path``: a process if asked and the system has
    ``memfd_create`` (Linux) and it starts, a thread otherwise."""
    if process and hasattr(os, "memfd_create"):
        try:
            return CheckpointProcess(path, synchronous)
        except OSError:  # no interpreter to start, no memfd: the thread does the same work
            log.warning("cannot start the WAL checkpoint process; checkpointing in a thread")
    return Checkpointer(path, synchronous)


def _main(argv: list[str]) -> None:
    """The process: checkpoint every period while the log changed, until stdin closes."""
    path, synchronous, period, wal_limit, fd = argv
    flag = mmap.mmap(int(fd), 1)
    os.close(int(fd))

    def restarting(value: bool) -> None:
        flag[0] = 1 if value else 0

    conn = _connect(path, synchronous)
    seen = None
    try:
        while not select.select([sys.stdin], [], [], float(period))[0]:
            try:
                stat = os.stat(path + "-wal")
            except OSError:
                continue
            if (stat.st_size, stat.st_mtime_ns) != seen:
                seen = (stat.st_size, stat.st_mtime_ns)
                checkpoint(conn, path, int(wal_limit), restarting)
    finally:
        conn.close()
        flag[0] = 0


if __name__ == "__main__":
    _main(sys.argv[1:])
