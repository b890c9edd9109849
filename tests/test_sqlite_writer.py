"""The SQLite store's writer: appends merged into multi-row statements within a group
commit (one bad write still fails alone), and the write-ahead log moved into the database
file in the background, so that no group commit waits for a checkpoint."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from riverbed.exceptions import PredictionExists
from riverbed.stores.base import LearnRecord, PredictionRecord
from riverbed.stores.sqlite.checkpoints import Checkpointer, CheckpointProcess, open_checkpointer
from riverbed.stores.sqlite.store import SQLiteStore


def test_commits_do_not_checkpoint_but_the_background_does(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    store = SQLiteStore(path)
    try:
        writer = store._writer.conn
        assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        # A group commit's scratch pages stay in memory (2), not in a temporary file.
        assert writer.execute("PRAGMA temp_store").fetchone()[0] == 2
        before = os.path.getsize(path)
        features = {f"f{i}": float(i) for i in range(50)}
        futures = [
            store.add_prediction(PredictionRecord(f"p{n}", "m", n, features, 0.5, 0.0))
            for n in range(5000)
        ]
        for future in futures:
            future.result()
        # The rows reach the database file only through a checkpoint; the writer runs none,
        # so the file grows only once the checkpointer has copied the log.
        deadline = time.monotonic() + 30
        while os.path.getsize(path) <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(path) > before
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 5000


def test_appends_of_one_commit_merge_and_a_taken_id_fails_alone(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "r.db"))
    try:
        gate = threading.Event()
        held = store._writer.submit(lambda conn: gate.wait(10))  # holds the writer
        first = store.add_predictions(
            [
                PredictionRecord(f"p{n}", "m", n, {"x": float(n)}, {True: 0.5}, 0.0)
                for n in range(300)
            ]
        )
        learns = store.add_learns(
            [
                LearnRecord("m", n + 1, {"x": float(n)}, True, {True: 0.5}, f"p{n}", 0.0)
                for n in range(5)
            ]
        )
        taken = store.add_prediction(PredictionRecord("p7", "m", 301, {"x": 1.0}, 0.5, 0.0))
        last = store.add_prediction(PredictionRecord("q", "m", 302, {"x": 1.0}, 0.5, 0.0))
        gate.set()  # the five writes above are now drained into one group commit
        held.result()
        first.result()
        learns.result()
        with pytest.raises(PredictionExists, match="p7"):
            taken.result()
        last.result()
        assert store.get_prediction("q") is not None
        assert store.get_prediction("p7").seq == 7  # type: ignore[union-attr]
        assert [store.get_prediction(f"p{n}").labelled for n in (0, 4, 5)] == [True, True, False]  # type: ignore[union-attr]
        assert store.get_prediction("p299").prediction == {True: 0.5}  # type: ignore[union-attr]
        assert [(r.seq, r.prediction_id) for r in store.learns_after("m", 0)] == [
            (n + 1, f"p{n}") for n in range(5)
        ]
    finally:
        store.close()


def test_a_wal_past_its_limit_is_made_to_start_over(tmp_path: Path) -> None:
    """Under steady writes a passive checkpoint never catches the writer up, so the log
    would never start over and would grow without end: past ``wal_limit`` the checkpointer
    also runs a RESTART checkpoint (the soak benchmark measures the effect under load)."""
    path = str(tmp_path / "r.db")
    store = SQLiteStore(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        store.add_prediction(PredictionRecord("p", "m", 1, {"a": 1.0}, 0.5, 0.0)).result()
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        checkpointer = store._checkpointer
        checkpointer.wal_limit = os.path.getsize(path + "-wal")
        checkpointer.checkpoint(conn)
        assert statements == ["PRAGMA wal_checkpoint(PASSIVE)"]
        checkpointer.wal_limit = 0
        checkpointer.checkpoint(conn)
        assert statements[1:] == [
            "PRAGMA wal_checkpoint(PASSIVE)",
            "PRAGMA wal_checkpoint(RESTART)",
        ]
    finally:
        conn.close()
        store.close()


# -- group commits on a server's event loop ------------------------------------------------


@pytest.fixture
async def on_loop(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """A store whose writes from this test's event loop are committed on it."""
    store = SQLiteStore(str(tmp_path / "r.db"))
    store.serve_on(asyncio.get_running_loop())
    yield store
    store.serve_on(None)
    store.close()


def _committer(threads: list[int]) -> Any:
    def op(conn: sqlite3.Connection) -> int:
        threads.append(threading.get_ident())
        return len(threads)

    return op


async def _passes(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)  # one pass of the loop: a poll, then the ready callbacks


async def test_writes_from_the_loop_commit_on_the_loop_two_passes_later(
    on_loop: SQLiteStore,
) -> None:
    store = on_loop
    threads: list[int] = []
    futures = [store._writer.submit(_committer(threads)) for _ in range(5)]
    assert not any(f.done() for f in futures)  # queued: the commit waits for one more poll
    await _passes(1)
    assert not any(f.done() for f in futures)
    await _passes(1)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [1, 2, 3, 4, 5]
    assert set(threads) == {threading.get_ident()}  # the loop's thread, no hand-over


async def test_a_request_read_in_the_next_poll_shares_the_commit(
    on_loop: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that arrives while the loop handles the requests of a pass is read in the
    next poll; its write joins theirs in one commit rather than waiting for a commit of its
    own a whole pass later."""
    store = on_loop
    commits: list[int] = []
    committed = store._writer._committed
    monkeypatch.setattr(store._writer, "_committed", lambda: (commits.append(1), committed()))
    loop = asyncio.get_running_loop()
    threads: list[int] = []
    ours, theirs = socket.socketpair()
    late: list[Any] = []

    def readable() -> None:  # the straggler's request, read by the next poll
        ours.recv(1)
        loop.remove_reader(ours.fileno())
        late.append(store._writer.submit(_committer(threads)))

    loop.add_reader(ours.fileno(), readable)
    try:
        first = store._writer.submit(_committer(threads))  # a request of this pass
        theirs.send(b"x")  # the straggler arrives while this pass runs
        while not first.done():
            await asyncio.sleep(0)
        assert late and late[0].done()
        assert [first.result(), late[0].result()] == [1, 2]
        assert commits == [1]
    finally:
        loop.remove_reader(ours.fileno())
        ours.close()
        theirs.close()


async def test_a_blocking_wait_on_the_loop_commits_rather_than_deadlocks(
    on_loop: SQLiteStore,
) -> None:
    store = on_loop
    record = PredictionRecord("p1", "m", 1, {"x": 1.0}, 0.5, 0.0)
    store.add_prediction(record).result(timeout=5)  # the loop cannot flush while we wait
    duplicate = store.add_prediction(PredictionRecord("p1", "m", 2, {}, 0.5, 0.0))
    with pytest.raises(PredictionExists):
        duplicate.result(timeout=5)
    assert store.get_prediction("p1") is not None


async def test_writes_from_threads_and_the_loop_commit_in_submission_order(
    on_loop: SQLiteStore,
) -> None:
    store = on_loop
    order: list[str] = []

    def op(name: str) -> Any:
        return lambda conn: order.append(name)

    loop_first = store._writer.submit(op("loop-1"))
    holder: list[Any] = []
    # submitted from another thread while the loop is held here, before its pass
    other = threading.Thread(target=lambda: holder.append(store._writer.submit(op("thread"))))
    other.start()
    other.join()
    holder[0].result(timeout=5)
    assert loop_first.done()  # the writer thread's flush took the loop's write first
    loop_second = store._writer.submit(op("loop-2"))
    await _passes(2)
    assert loop_first.done() and loop_second.done()
    assert order == ["loop-1", "thread", "loop-2"]


async def test_a_loop_write_waited_on_from_another_thread(on_loop: SQLiteStore) -> None:
    store = on_loop
    future = store._writer.submit(lambda conn: 42)
    seen: list[Any] = []
    waiter = threading.Thread(target=lambda: seen.append(future.result(timeout=5)))
    waiter.start()
    await asyncio.sleep(0.05)  # the waiter is blocked; the loop's pass commits
    await asyncio.to_thread(waiter.join, 5)
    assert seen == [42]
    called: list[Any] = []
    future.add_done_callback(called.append)  # already done: called at once
    assert called == [future] and future.exception() is None and not future.cancel()


def test_leaving_the_loop_commits_what_it_had_queued(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "r.db"))
    loop = asyncio.new_event_loop()
    try:

        async def queue_one() -> Any:
            store.serve_on(asyncio.get_running_loop())
            future = store._writer.submit(lambda conn: "kept")
            store.serve_on(None)  # the server stops before its next pass
            return future

        future = loop.run_until_complete(queue_one())
        assert future.done() and future.result() == "kept"
        # back to the writer thread: a write from this thread is no longer the loop's
        assert store._writer.submit(lambda conn: 1).result(timeout=5) == 1
    finally:
        loop.close()
        store.close()


async def test_the_loop_leaves_its_commits_to_the_writer_thread_during_a_restart(
    on_loop: SQLiteStore,
) -> None:
    checkpointer = on_loop._writer.checkpointer
    assert checkpointer is not None
    threads: list[int] = []
    checkpointer.restarting = True  # as while a RESTART checkpoint holds writers back
    try:
        future = on_loop._writer.submit(_committer(threads))
        await asyncio.sleep(0)  # the loop's pass hands the commit over
        assert await asyncio.wrap_future(future) == 1
    finally:
        checkpointer.restarting = False
    assert threads and threads[0] != threading.get_ident()


# -- checkpoints in a process of their own, while a server's loop commits --------------------


def _wal_sequence(path: str) -> bytes:
    """The WAL header's checkpoint sequence number: it changes each time the log restarts."""
    with open(path + "-wal", "rb") as f:
        return f.read(16)[12:16]


def _ended(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.split()[1] in ("Z", "X") for line in f if line.startswith("State:"))
    except FileNotFoundError:
        return True


linux_only = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd_create: Linux")


@linux_only
async def test_a_serving_store_checkpoints_in_a_process_and_back_in_a_thread(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "r.db")
    store = SQLiteStore(path)
    try:
        assert isinstance(store._checkpointer, Checkpointer)
        store.serve_on(asyncio.get_running_loop())
        process = store._checkpointer
        assert isinstance(process, CheckpointProcess) and process.process.poll() is None
        assert store._writer.checkpointer is process
        before = os.path.getsize(path)
        features = {f"f{i}": float(i) for i in range(50)}
        futures = [
            store.add_prediction(PredictionRecord(f"p{n}", "m", n, features, 0.5, 0.0))
            for n in range(3000)
        ]
        await asyncio.wrap_future(futures[-1])
        # only a checkpoint copies rows into the database file, and only the process runs one
        deadline = time.monotonic() + 30
        while os.path.getsize(path) <= before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert os.path.getsize(path) > before
        store.serve_on(None)
        assert process.process.returncode == 0
        assert isinstance(store._checkpointer, Checkpointer) and store._checkpointer.is_alive()
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 3000


@linux_only
def test_the_checkpoint_process_restarts_a_wal_past_its_limit(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    store = SQLiteStore(path)
    process = CheckpointProcess(path, "NORMAL", period=0.02, wal_limit=0)
    try:
        store.add_prediction(PredictionRecord("p0", "m", 0, {"a": 1.0}, 0.5, 0.0)).result()
        first = _wal_sequence(path)
        deadline = time.monotonic() + 30
        n = 0
        while _wal_sequence(path) == first and time.monotonic() < deadline:
            n += 1  # the log starts over at the first commit after a RESTART checkpoint
            store.add_prediction(PredictionRecord(f"p{n}", "m", n, {"a": 1.0}, 0.5, 0.0)).result()
            time.sleep(0.01)
        assert _wal_sequence(path) != first
        assert not process.restarting  # set only while a RESTART holds the writers back
    finally:
        process.stop()
        store.close()
    assert process.process.returncode == 0


@linux_only
def test_the_checkpoint_process_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    SQLiteStore(path).close()
    code = (
        "import sys, time\n"
        "from riverbed.stores.sqlite.checkpoints import CheckpointProcess\n"
        f"p = CheckpointProcess({path!r}, 'NORMAL')\n"
        "print(p.process.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _ended(child)
    finally:
        parent.kill()  # no stop(): as when a server is killed
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()
    deadline = time.monotonic() + 10
    while not _ended(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ended(child)


@linux_only
def test_the_server_sees_the_process_hold_writers_back(tmp_path: Path) -> None:
    """A RESTART checkpoint waits (up to its busy timeout) for a reader of an older snapshot:
    meanwhile the process's byte says so, and the server's loop reads it there."""
    path = str(tmp_path / "r.db")
    store = SQLiteStore(path)
    reader = sqlite3.connect(path, isolation_level=None)
    process = None
    try:
        store.add_prediction(PredictionRecord("p0", "m", 0, {"a": 1.0}, 0.5, 0.0)).result()
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM predictions").fetchone()  # holds its snapshot
        store.add_prediction(PredictionRecord("p1", "m", 1, {"a": 1.0}, 0.5, 0.0)).result()
        process = CheckpointProcess(path, "NORMAL", period=0.02, wal_limit=0)
        deadline = time.monotonic() + 10
        while not process.restarting and time.monotonic() < deadline:
            time.sleep(0.001)
        assert process.restarting
    finally:
        reader.close()
        if process is not None:
            process.stop()
        store.close()


@linux_only
def test_a_checkpoint_process_that_dies_is_started_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "r.db")
    SQLiteStore(path).close()
    process = CheckpointProcess(path, "NORMAL")
    try:
        first = process.process
        process.restarting = True  # as if it died in the middle of a RESTART
        first.kill()
        deadline = time.monotonic() + 10
        while process.process is first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.process is not first and process.process.poll() is None
        assert not process.restarting
        assert "the WAL checkpoint process ended" in caplog.text
    finally:
        process.stop()
    assert process.process.returncode == 0


@linux_only
def test_a_checkpoint_process_that_cannot_start_leaves_the_work_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "r.db")
    SQLiteStore(path).close()
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    checkpointer = open_checkpointer(path, "NORMAL", process=True)
    try:
        assert isinstance(checkpointer, Checkpointer) and checkpointer.is_alive()
    finally:
        checkpointer.stop()
