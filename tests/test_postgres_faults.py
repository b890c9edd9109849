"""Faults on PostgreSQL with real processes: a real ``riverbed serve --database
postgresql://...`` under 8 concurrent learners over HTTP, killed with SIGKILL, its database
connections terminated (``pg_terminate_backend``), and PostgreSQL itself stopped (``-m fast``
and ``-m immediate``) and started again on a cluster of the test's own (initdb).

What every test pins: only 2xx answers or 503 JSON errors with ``Retry-After`` (never a 500,
never a request left hanging), the server back by itself, every acknowledged prediction and
learn stored once (none missing, none doubled), and the model's state equal to a replay of
its stored learns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from river import datasets

from riverbed.stores.base import load
from tests.helpers import POSTGRES_SERVER, Server, database, free_port, phishing_model

pytestmark = pytest.mark.slow

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}
ROWS = list(datasets.Phishing())
LEARNERS = 8
TIMEOUT = 20.0  # seconds a request may take; more is a hang


@dataclass
class Tally:
    """What the learners were answered, and what was acknowledged."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: dict[int, int] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)  # answers no fault may cause
    predicted: set[str] = field(default_factory=set)  # acknowledged (or found stored)
    learned: set[str] = field(default_factory=set)
    in_doubt: int = 0  # 409s on a retry after a 503: the write was stored after all

    def count(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500 and (
                response.status_code != 503
                or "Retry-After" not in response.headers
                or "error" not in response.json()
            ):
                self.bad.append(f"{response.status_code} {response.text[:300]}")

    @property
    def unavailable(self) -> int:
        return self.statuses.get(503, 0)


def send(
    http: httpx.Client, tally: Tally, path: str, body: dict[str, Any], stored: str
) -> bool | None:
    """POST ``body`` until it is acknowledged (True) or found stored by an earlier try whose
    answer was a 503 (a 409 with code ``stored``: True); None when the server went away.
    Any other answer is recorded as bad."""
    retried = False
    while True:
        try:
            response = http.post(path, json=body)
        except httpx.TimeoutException:
            with tally.lock:
                tally.bad.append(f"no answer to {path} within {TIMEOUT} s")
            return None
        except httpx.TransportError:
            return None
        tally.count(response)
        if response.is_success:
            return True
        if response.status_code == 503:
            retried = True
            time.sleep(min(float(response.headers.get("Retry-After", 1)), 0.2))
            continue
        if retried and response.status_code == 409 and response.json()["error"]["code"] == stored:
            with tally.lock:
                tally.in_doubt += 1
            return True
        with tally.lock:
            tally.bad.append(f"{path}: {response.status_code} {response.text[:300]}")
        return False


def learners(
    url: str, tally: Tally, stop: threading.Event, prefix: str, n: int = LEARNERS
) -> list[threading.Thread]:
    """``n`` threads, each with a connection of its own, predicting with an id and learning
    by that id along the Phishing stream until ``stop`` (or the server is gone)."""

    def learner(k: int) -> None:
        with httpx.Client(base_url=url, timeout=TIMEOUT) as http:
            i = k
            while not stop.is_set():
                x, y = ROWS[i % len(ROWS)]
                pid = f"{prefix}{k}-{i}"
                i += n
                steps = (
                    ("predict", {"features": x, "id": pid}, "prediction_exists", tally.predicted),
                    ("learn", {"id": pid, "ground_truth": y}, "already_labelled", tally.learned),
                )
                for route, body, stored, acknowledged in steps:
                    if not send(http, tally, f"/v1/models/p/{route}", body, stored):
                        return
                    with tally.lock:
                        acknowledged.add(pid)

    threads = [threading.Thread(target=learner, args=(k,), daemon=True) for k in range(n)]
    for thread in threads:
        thread.start()
    return threads


def finish(threads: list[threading.Thread], stop: threading.Event, tally: Tally) -> None:
    """Stop the learners: none hangs, and each was answered only 2xx, 503 with
    Retry-After, or on a retry the 409 of its write stored after all."""
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a learner hangs"
    assert not tally.bad, tally.bad[:5]
    # 409s only where a retry found the write stored by a try answered 503 (commit_in_doubt)
    assert set(tally.statuses) <= {200, 201, 409, 503}, tally.statuses
    assert tally.statuses.get(409, 0) == tally.in_doubt, tally.statuses


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {seconds} s")
        time.sleep(0.05)


def create_model(url: str) -> None:
    response = httpx.post(f"{url}/v1/models", json={"name": "p", "spec": SPEC}, timeout=30)
    assert response.status_code == 201, response.text


def check_stored(database: str, tally: Tally) -> list[tuple[Any, Any]]:
    """Every acknowledged prediction and learn is in the database, each learn once and
    labelling its prediction; the learns' seqs run 1..n without a gap. Returns the learns'
    (features, target) in seq order."""
    with psycopg.connect(database) as conn:
        predictions = {
            row[0]: row[1] for row in conn.execute("SELECT id, labelled FROM predictions")
        }
        learns = conn.execute(
            "SELECT seq, prediction_id, features, target FROM learns WHERE model = 'p' ORDER BY seq"
        ).fetchall()
    missing = tally.predicted - predictions.keys()
    assert not missing, f"{len(missing)} acknowledged predictions missing: {sorted(missing)[:5]}"
    by_id: dict[str, int] = {}
    for _, pid, _, _ in learns:
        by_id[pid] = by_id.get(pid, 0) + 1
    doubled = [pid for pid, n in by_id.items() if n > 1]
    assert not doubled, f"learned twice: {doubled[:5]}"
    lost = tally.learned - by_id.keys()
    assert not lost, f"{len(lost)} acknowledged learns missing: {sorted(lost)[:5]}"
    assert [row[0] for row in learns] == list(range(1, len(learns) + 1))
    assert all(predictions[pid] for pid in by_id), "a learned prediction is not labelled"
    unlabelled_learned = [
        pid for pid, labelled in predictions.items() if labelled and pid not in by_id
    ]
    assert not unlabelled_learned, f"labelled without a learn: {unlabelled_learned[:5]}"
    return [(load(row[2]), load(row[3])) for row in learns]


def check_replay(url: str, learns: list[tuple[Any, Any]]) -> None:
    """The served model equals river's model taught the stored learns in seq order."""
    model = phishing_model()
    for x, y in learns:
        model.learn_one(x, y)  # type: ignore[attr-defined]
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/v1/models/p/stats").json()["n_learns"] == len(learns)
        for x, _ in ROWS[-20:]:
            answer = http.post("/v1/models/p/predict", json={"features": x})
            assert answer.status_code == 200, answer.text
            expected = model.predict_proba_one(x)  # type: ignore[attr-defined]
            assert answer.json()["probabilities"] == {
                str(k).lower(): v for k, v in expected.items()
            }


@pytest.fixture
def pg_database(tmp_path: Path) -> Iterator[str]:
    with database("postgresql", tmp_path) as url:
        yield url


def test_sigkill_under_8_learners_loses_nothing_acknowledged(
    pg_database: str, tmp_path: Path
) -> None:
    server = Server(
        pg_database,
        None,
        "--checkpoint-every",
        "97",
        "--checkpoint-seconds",
        "3600",
        log=tmp_path / "server.log",
    ).start()
    create_model(server.url)
    tally, stop = Tally(), threading.Event()
    threads = learners(server.url, tally, stop, "k")
    try:
        wait_for(lambda: len(tally.learned) >= 600, 120, "600 learns acknowledged")
        server.kill()  # mid-stream: requests of the 8 learners are in flight
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not tally.bad, tally.bad[:5]
    with psycopg.connect(pg_database) as conn:
        checkpoint = conn.execute("SELECT seq FROM checkpoints WHERE model = 'p'").fetchone()
    assert checkpoint is not None and 0 < checkpoint[0] < len(tally.learned)
    learns = check_stored(pg_database, tally)

    restarted = Server(pg_database, None, log=tmp_path / "restarted.log").start()
    try:
        check_replay(restarted.url, learns)
        # and it goes on learning where it stopped
        x, y = ROWS[0]
        with httpx.Client(base_url=restarted.url, timeout=30) as http:
            assert (
                http.post("/v1/models/p/learn", json={"features": x, "ground_truth": y}).json()[
                    "n_learns"
                ]
                == len(learns) + 1
            )
    finally:
        restarted.stop()


def terminate_backends(database: str) -> int:
    """End every session on ``database`` but this one's: how many were ended."""
    name = database.rsplit("/", 1)[1]
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return sum(1 for row in rows if row[0])


def test_terminated_connections_under_load_answer_503_and_lose_nothing(
    pg_database: str, tmp_path: Path
) -> None:
    server = Server(pg_database, None, log=tmp_path / "server.log").start()
    try:
        create_model(server.url)
        tally, stop = Tally(), threading.Event()
        threads = learners(server.url, tally, stop, "t")
        wait_for(lambda: len(tally.learned) >= 100, 60, "100 learns acknowledged")
        ended = 0
        for _ in range(15):
            ended += terminate_backends(pg_database)
            before = len(tally.learned)
            wait_for(lambda b=before: len(tally.learned) > b + 20, 60, "learning resumed")
        finish(threads, stop, tally)
        assert ended >= 15  # the writer's connection at least, each time
        check_replay(server.url, check_stored(pg_database, tally))
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


class Cluster:
    """A PostgreSQL cluster of the test's own (initdb, pg_ctl) on a free port, owned by the
    ``postgres`` user when the test runs as root (initdb refuses root)."""

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="riverbed-pg-"))
        self.data = self.dir / "data"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            shutil.chown(self.dir, self.user)
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.BIN / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on"
        self.run(
            "pg_ctl",
            "start",
            "-w",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-o",
            options,
        )

    def stop(self, mode: str) -> None:
        self.run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not (Cluster.BIN / "initdb").exists():
        pytest.skip(f"no {Cluster.BIN / 'initdb'}: PostgreSQL 15's server binaries are needed")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: initdb refuses root")
    made = Cluster()
    try:
        made.start()
        yield made
    finally:
        made.remove()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_restarted_under_load_answers_503_then_recovers(
    cluster: Cluster, mode: str, tmp_path: Path
) -> None:
    server = Server(cluster.url, None, log=tmp_path / "server.log").start()
    try:
        create_model(server.url)
        tally, stop = Tally(), threading.Event()
        threads = learners(server.url, tally, stop, "r")
        for _ in range(2):
            wait_for(lambda: len(tally.learned) >= 100, 60, "100 learns acknowledged")
            cluster.stop(mode)
            before = tally.unavailable
            wait_for(lambda b=before: tally.unavailable > b + LEARNERS, 30, "503s in the outage")
            time.sleep(1)
            cluster.start()
            after = len(tally.learned)
            wait_for(lambda a=after: len(tally.learned) > a + 50, 60, "learning resumed")
        finish(threads, stop, tally)
        check_replay(server.url, check_stored(cluster.url, tally))
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_the_pool_settings_reach_the_store(pg_database: str) -> None:
    from riverbed import Engine

    with Engine(pg_database, postgres_pool_size=3, postgres_pool_timeout=2.5) as engine:
        pool = engine.store._pool  # type: ignore[attr-defined]
        assert (pool.max_size, pool.timeout) == (3, 2.5)


def test_a_read_with_every_pooled_connection_busy_is_pool_busy(pg_database: str) -> None:
    from riverbed.exceptions import Unavailable
    from riverbed.stores.postgres.store import PostgresStore

    store = PostgresStore(pg_database, pool_size=1, pool_timeout=0.2)
    try:
        with store._pool.connection():  # the only connection, held
            with pytest.raises(Unavailable) as caught:
                store.list_models()
        assert caught.value.detail == {"cause": "pool_busy"}
        assert "postgres_pool_size" in caught.value.message
        assert store.list_models() == []  # given back: reads again
    finally:
        store.close()


def test_reads_and_writes_of_a_stopped_server_are_unavailable_then_recover(
    cluster: Cluster,
) -> None:
    from riverbed.exceptions import Unavailable
    from riverbed.stores.base import ModelRecord, VersionRecord
    from riverbed.stores.postgres.store import PostgresStore

    store = PostgresStore(cluster.url, pool_size=2, pool_timeout=30)
    try:
        assert store.list_models() == []
        cluster.stop("immediate")
        for _ in range(3):  # the first finds the pool's connection broken, then probes
            with pytest.raises(Unavailable) as caught:
                store.list_models()
            assert caught.value.detail["cause"] == "database_unreachable", caught.value.detail
        record = ModelRecord("m", "binary", created_at=1.0, updated_at=1.0)
        version = VersionRecord("m", 1, b"x", created_at=1.0)
        with pytest.raises(Unavailable):
            store.create_model(record, version).result()
        cluster.start()
        store.create_model(record, version).result()  # the writer reconnects, lock and all
        assert [m.name for m in store.list_models()] == ["m"]
    finally:
        store.close()


def test_a_writer_lock_still_held_after_a_reconnection_is_writer_lock_held(
    pg_database: str,
) -> None:
    from riverbed.exceptions import Unavailable
    from riverbed.stores.postgres.store import PostgresStore

    store = PostgresStore(pg_database)
    key = store._lock_key
    try:
        store.kv_set("a", b"1", None).result()
        writer_pid = store._writer.conn.info.backend_pid  # type: ignore[union-attr]
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (writer_pid,))
            # Another session takes the lock before the writer's new connection can (as a
            # terminated backend that has not ended yet still holds it).
            with psycopg.connect(pg_database, autocommit=True) as other:
                deadline = time.monotonic() + 30
                while not other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                    assert time.monotonic() < deadline, "the terminated session kept the lock"
                    time.sleep(0.02)
                with pytest.raises(Unavailable) as caught:
                    store.kv_set("b", b"2", None).result()
                assert caught.value.detail == {"cause": "writer_lock_held"}
            # the other session ended: its lock went with it
        store.kv_set("b", b"2", None).result()
        assert store.kv_get("b", 0.0) == b"2" and store.kv_get("a", 0.0) == b"1"
    finally:
        store.close()
