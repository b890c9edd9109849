"""Crash safety with a real server process and a real SIGKILL."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing

from riverbed import Engine
from tests.helpers import Server

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}

pytestmark = pytest.mark.slow


def reference(n: int) -> tuple[object, dict[str, float]]:
    """The model and metrics river gives after progressive validation on n samples."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    metric = metrics.Accuracy() + metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
    evaluate.progressive_val_score(datasets.Phishing().take(n), model, metric)
    return model, {type(m).__name__: m.get() for m in metric}


def stream_until_killed(server: Server, at: Callable[[int], None] = lambda n: None) -> int:
    """Create model ``p`` on ``server``, then predict with an id and learn by that id along
    river's Phishing stream; after 600 acknowledged pairs a thread kills the server while the
    stream goes on (a request may be in flight). ``at(n)`` runs before each pair. Returns the
    number of pairs acknowledged."""
    http = httpx.Client(base_url=server.url, timeout=10)
    assert http.post("/v1/models", json={"name": "p", "spec": SPEC}).status_code == 201
    acknowledged = 0
    killer_armed = threading.Event()
    killer = threading.Thread(target=lambda: (killer_armed.wait(), server.kill()))
    killer.start()
    try:
        for i, (x, y) in enumerate(datasets.Phishing()):
            at(acknowledged)
            if acknowledged == 600:
                killer_armed.set()
            try:
                http.post(
                    "/v1/models/p/predict", json={"features": x, "id": f"s{i}"}
                ).raise_for_status()
                http.post(
                    "/v1/models/p/learn", json={"id": f"s{i}", "ground_truth": y}
                ).raise_for_status()
            except httpx.TransportError:
                break
            acknowledged += 1
    finally:
        killer_armed.set()
        killer.join()
        http.close()
    return acknowledged


def test_sigkill_mid_stream_loses_no_acknowledged_learn(tmp_path: Path) -> None:
    database = str(tmp_path / "crash.db")
    server = Server(
        database, None, "--checkpoint-every", "97", "--checkpoint-seconds", "3600"
    ).start()
    acknowledged = stream_until_killed(server)
    assert acknowledged >= 600
    # There were checkpoints before the kill, and learns after the last one to replay.
    conn = sqlite3.connect(database)
    checkpoint_seq = conn.execute("SELECT seq FROM checkpoints").fetchone()[0]
    conn.close()
    assert 0 < checkpoint_seq < acknowledged

    restarted = Server(database).start()
    try:
        with httpx.Client(base_url=restarted.url) as http:
            stats = http.get("/v1/models/p/stats").json()
            served = http.get("/v1/models/p/metrics").json()
            n = stats["n_learns"]
            assert n in (acknowledged, acknowledged + 1)  # +1: committed, reply lost in the kill
            model, expected = reference(n)
            assert served["metrics"] == expected
            for x, _ in datasets.Phishing().take(20):
                answer = http.post("/v1/models/p/predict", json={"features": x}).json()
                probabilities = model.predict_proba_one(x)  # type: ignore[attr-defined]
                assert answer["probabilities"] == {
                    str(k).lower(): v for k, v in probabilities.items()
                }
    finally:
        restarted.stop()


def learn_over_http(server: Server, n: int) -> None:
    """Model ``p`` created on ``server`` and taught the first ``n`` Phishing samples."""
    with httpx.Client(base_url=server.url) as http:
        http.post("/v1/models", json={"name": "p", "spec": SPEC}).raise_for_status()
        for x, y in datasets.Phishing().take(n):
            http.post(
                "/v1/models/p/learn", json={"features": x, "ground_truth": y}
            ).raise_for_status()


def checkpointed_seq(database: str) -> int | None:
    conn = sqlite3.connect(database)
    try:
        row = conn.execute("SELECT seq FROM checkpoints WHERE model = 'p'").fetchone()
    finally:
        conn.close()
    return None if row is None else int(row[0])


def test_a_clean_shutdown_checkpoints_everything(tmp_path: Path) -> None:
    database = str(tmp_path / "clean.db")
    server = Server(
        database, None, "--checkpoint-every", "100000", "--checkpoint-seconds", "3600"
    ).start()
    learn_over_http(server, 50)
    assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert checkpointed_seq(database) == 50


def test_ctrl_c_stops_the_server_quietly(tmp_path: Path) -> None:
    # A terminal's Ctrl-C signals the whole process group. The WAL checkpoint process runs in
    # a session of its own, so the server alone handles it: no traceback from the child, no
    # "ended; starting another" while shutting down, and the child ends with the server.
    database = str(tmp_path / "interrupted.db")
    server = Server(database, None, "--log-level", "info").start()
    learn_over_http(server, 20)
    code, output = server.interrupt()
    assert code in (0, -signal.SIGINT), output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert "checkpoint process ended" not in output, output
    assert "Application shutdown complete" in output, output
    assert checkpointed_seq(database) == 20


STREAMS = (
    "/v1/events",
    "/v1/models/p/metrics/stream?interval=0.5",
    "/api/stream/events",  # chantilly's
    "/api/stream/metrics/",  # django-river-ml's
)


def test_sigterm_ends_open_event_streams_and_stops_the_server(tmp_path: Path) -> None:
    """Server-sent event streams never end by themselves (a browser with the dashboard open
    keeps one): SIGTERM ends each with a complete response instead of waiting for its client
    to leave, and the server shuts down as it does with none open."""
    database = str(tmp_path / "streamed.db")
    server = Server(
        database, None, "--checkpoint-every", "100000", "--checkpoint-seconds", "3600"
    ).start()
    learn_over_http(server, 10)
    opened = threading.Barrier(len(STREAMS) + 1, timeout=60)
    ended: dict[str, str] = {}

    def follow(path: str) -> None:
        try:
            with httpx.stream("GET", server.url + path, timeout=httpx.Timeout(60)) as response:
                assert response.status_code == 200, path
                chunks = response.iter_bytes()
                next(chunks)  # the stream's first message: it is open
                opened.wait()
                for _ in chunks:
                    pass
            ended[path] = "complete"
        except Exception as exc:  # a cut stream raises (httpx.RemoteProtocolError)
            ended[path] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=follow, args=(path,), daemon=True) for path in STREAMS]
    for thread in threads:
        thread.start()
    opened.wait()
    with httpx.Client(base_url=server.url) as http:  # the streams have something to carry
        x, y = next(iter(datasets.Phishing()))
        http.post("/v1/models/p/learn", json={"features": x, "ground_truth": y}).raise_for_status()
    code = server.stop()  # SIGTERM, then SIGKILL after 30 s
    for thread in threads:
        thread.join(timeout=60)
    assert code in (0, -signal.SIGTERM), f"the server had to be killed ({code})"
    assert ended == dict.fromkeys(STREAMS, "complete")
    assert checkpointed_seq(database) == 11  # the shutdown hook ran


def test_reopening_an_engine_replays_the_log_after_the_checkpoint(tmp_path: Path) -> None:
    database = str(tmp_path / "e.db")
    engine = Engine(database, checkpoint_every=40, checkpoint_seconds=3600)
    engine.create_model("p", preprocessing.StandardScaler() | linear_model.LogisticRegression())
    for x, y in datasets.Phishing().take(130):
        engine.learn("p", x, y)
    expected = engine.metrics("p")
    engine.store.close()  # as if the process died: no final checkpoint
    engine._stop.set()

    with Engine(database) as again:
        assert again.metrics("p") == expected
        assert again.stats("p")["n_learns"] == 130


def test_checkpoints_by_count_keep_to_their_share_of_the_time(tmp_path: Path) -> None:
    rows = list(datasets.Phishing().take(100))

    def checkpointed(share: float) -> tuple[list[int], Engine]:
        engine = Engine(
            str(tmp_path / f"{share}.db"),
            checkpoint_every=10,
            checkpoint_seconds=3600,
            checkpoint_share=share,
        )
        engine.create_model("p", preprocessing.StandardScaler() | linear_model.LogisticRegression())
        seqs = []
        for x, y in rows:
            engine.learn("p", x, y)
            seqs.append(engine._live["p"].checkpoint_seq)
        return sorted(set(seqs)), engine

    every, engine = checkpointed(1.0)  # no bound: every 10 learns
    engine.close()
    assert every == list(range(0, 101, 10))
    # A share no checkpoint can keep to: after the first, the next by count would wait
    # (its cost) * 10^9 seconds, far longer than this test.
    held, engine = checkpointed(1e-9)
    assert held == [0, 10]
    expected = engine.metrics("p")
    engine.store.close()  # as if the process died: the learns after 10 are in the log only
    engine._stop.set()
    with Engine(str(tmp_path / "1e-09.db"), checkpoint_share=1e-9) as again:
        assert again.metrics("p") == expected
        assert again.checkpoint("p") == 1  # asked for, it runs whatever the share
        assert again._live["p"].checkpoint_seq == 100


def test_timed_checkpoints_keep_to_the_share_too(tmp_path: Path) -> None:
    rows = list(datasets.Phishing().take(10))
    with Engine(
        str(tmp_path / "timed.db"),
        checkpoint_every=1_000_000,
        checkpoint_seconds=0.05,
        checkpoint_share=1e-9,
    ) as engine:
        engine.create_model("p", preprocessing.StandardScaler() | linear_model.LogisticRegression())
        for x, y in rows[:5]:
            engine.learn("p", x, y)
        live = engine._live["p"]
        deadline = time.monotonic() + 30
        while live.checkpoint_seq < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert live.checkpoint_seq == 5  # the first timed checkpoint
        for x, y in rows[5:]:
            engine.learn("p", x, y)
        time.sleep(0.5)  # ten periods of the ticker: none may checkpoint within the share
        assert live.checkpoint_seq == 5


def test_sigkill_with_retention_replays_to_the_acknowledged_state(tmp_path: Path) -> None:
    """Retention on (50 predictions, 50 learns): old rows go, the learns after the last
    checkpoint stay, and a killed server comes back with river's own state."""
    database = str(tmp_path / "retention.db")
    flags = ("--retention-predictions", "50", "--retention-learns", "50")
    server = Server(
        database, None, "--checkpoint-every", "97", "--checkpoint-seconds", "3600", *flags
    ).start()

    def count(table: str) -> int:
        conn = sqlite3.connect(database)
        try:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        finally:
            conn.close()

    def at(acknowledged: int) -> None:
        if acknowledged == 300:  # let the server's once-a-second prune happen
            deadline = time.monotonic() + 30
            while count("predictions") > 50 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert count("predictions") == 50

    acknowledged = stream_until_killed(server, at)
    assert acknowledged >= 600
    conn = sqlite3.connect(database)
    checkpoint_seq = conn.execute("SELECT seq FROM checkpoints").fetchone()[0]
    seqs = [r[0] for r in conn.execute("SELECT seq FROM learns ORDER BY seq")]
    conn.close()
    assert 1 < seqs[0] <= checkpoint_seq + 1  # pruned, yet the replay log is whole
    assert seqs == list(range(seqs[0], seqs[-1] + 1))

    restarted = Server(database, None, *flags).start()
    try:
        with httpx.Client(base_url=restarted.url) as http:
            n = http.get("/v1/models/p/stats").json()["n_learns"]
            assert n in (acknowledged, acknowledged + 1)
            _, expected = reference(n)
            assert http.get("/v1/models/p/metrics").json()["metrics"] == expected
            gone = http.post("/v1/models/p/learn", json={"id": "s0", "ground_truth": True})
            assert gone.status_code == 404
            assert "retention" in gone.json()["error"]["message"]
    finally:
        restarted.stop()
