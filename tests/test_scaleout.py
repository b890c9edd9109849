"""Scale-out with real processes (docs/scale-out.md): a redis-server of the test's own
(appendonly yes, appendfsync always) on a free port, a fresh PostgreSQL database, two
``riverbed serve --broker`` replicas and ``riverbed learner`` processes on loopback.

The main test is the docs' one-machine walkthrough under fire: concurrent clients split
across both replicas through the native and chantilly's routes (learns with features, and
predictions on one replica labelled on the other), ``kill -9`` of the learner and of a
replica mid-stream (restarted), a ``kill -9`` of the broker (restarted on its append-only
file); then both replicas serve a model that learned every acknowledged sample exactly once,
with metrics equal to river's progressive validation in the learner's order. Staleness is
measured and printed, not asserted tightly.
"""

from __future__ import annotations

import collections
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from river import datasets, linear_model, metrics, preprocessing

from riverbed.config import Settings
from riverbed.scaleout.broker import CLAIM_PREFIX, Broker
from riverbed.stores.base import load
from tests.helpers import PostgresDatabase, Server, free_port, riverbed

pytestmark = pytest.mark.slow

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}
LEASE = "2"  # seconds: a killed learner's models are taken over this soon


class _Process:
    process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()


class RedisBroker(_Process):
    """A redis-server of the test's own, durable as docs/scale-out.md says."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisBroker:
        output = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        output.close()  # the server has its own copy
        deadline = time.monotonic() + 20
        import redis

        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port).ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


class LearnerProcess(_Process):
    def __init__(self, database: str, broker: str, name: str, log: Path) -> None:
        self.args = [
            sys.executable, "-m", "riverbed", "learner",
            "--database", database, "--broker", broker, "--name", name,
            "--lease-seconds", LEASE, "--log-level", "info", "--checkpoint-every", "97",
        ]  # fmt: skip
        self.name = name
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LearnerProcess:
        output = self.log.open("ab")
        self.process = subprocess.Popen(
            self.args,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        output.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisBroker]:
    directory = tmp_path / "redis"
    directory.mkdir()
    started = RedisBroker(directory).start()
    yield started
    started.stop()


@pytest.fixture
def database() -> Iterator[str]:
    db = PostgresDatabase()
    yield db.url
    db.drop()


@pytest.fixture
def one(tmp_path: Path, broker: RedisBroker, database: str) -> Iterator[tuple[Server, redis.Redis]]:
    """One replica with model ``p`` and a running learner, and a client of the test's
    redis-server to act on the broker."""
    logs = tmp_path / "logs"
    logs.mkdir()
    a = replica(database, broker, logs / "a.log")
    learner = LearnerProcess(database, broker.url, "learner-1", logs / "learner-1.log").start()
    control = redis.Redis.from_url(broker.url)
    try:
        create_model(a)
        yield a, control
    finally:
        control.close()
        learner.stop()
        a.stop()


def replica(database: str, broker: RedisBroker, log: Path, port: int | None = None) -> Server:
    return Server(database, port, "--broker", broker.url, "--lease-seconds", LEASE, log=log).start()


def wait_for(check: Any, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def create_model(server: Server, name: str = "p") -> None:
    created = httpx.post(f"{server.url}/v1/models", json={"name": name, "spec": SPEC})
    assert created.status_code == 201, created.text


def learn_log(database: str, model: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT seq, features, target, prediction, prediction_id FROM learns"
            " WHERE model = %s ORDER BY seq",
            (model,),
        ).fetchall()
    return [(r[0], load(r[1]), load(r[2]), load(r[3]), r[4]) for r in rows]


def checkpoint_of(database: str, model: str) -> tuple[Any, ...] | None:
    with psycopg.connect(database) as conn:
        return conn.execute(
            "SELECT seq, md5(state), created_at FROM checkpoints WHERE model = %s", (model,)
        ).fetchone()


def n_learns(server: Server, model: str) -> int | None:
    try:
        return int(
            httpx.get(f"{server.url}/v1/models/{model}/metrics", timeout=5).json()["n_learns"]
        )
    except (httpx.HTTPError, KeyError, ValueError):
        return None


class Clients:
    """Concurrent clients over both replicas; what each sent and what was acknowledged."""

    def __init__(self, a: Server, b: Server) -> None:
        self.servers = {"a": a, "b": b}
        self.lock = threading.Lock()
        self.sent: collections.Counter[str] = collections.Counter()
        self.acked: collections.Counter[str] = collections.Counter()
        self.labels_sent: set[str] = set()
        self.labels_acked: set[str] = set()
        self.labels_taken_on_retry: set[str] = set()
        self.refused_503 = 0
        self.retry_after: set[str] = set()
        self.n_acked = 0
        self.errors: list[str] = []

    def _post(self, server: str, path: str, body: Any) -> tuple[httpx.Response | None, int]:
        """The answer, retried while the replica says 503, and how many times it was sent
        (a 503 of a hand-off whose broker's answer was lost may have been taken); None when
        the replica did not answer (killed: the request may or may not have been taken)."""
        tries = 0
        while True:
            tries += 1
            try:
                answer = httpx.post(self.servers[server].url + path, json=body, timeout=10)
            except httpx.TransportError:
                return None, tries
            if answer.status_code != 503:
                return answer, tries
            with self.lock:
                self.refused_503 += 1
                self.retry_after.add(answer.headers.get("retry-after", ""))
            time.sleep(0.05)

    def _up(self, server: str) -> None:
        wait_for(lambda: _health(self.servers[server]), 60, f"replica {server}")

    def learn_with_features(
        self, server: str, route: str, samples: list[tuple[dict, bool]]
    ) -> None:
        for x, y in samples:
            key = json.dumps([x, y], sort_keys=True)
            if route == "native":
                path, body = "/v1/models/p/learn", {"features": x, "ground_truth": y}
            else:  # chantilly's
                path, body = "/api/learn", {"model": "p", "features": x, "ground_truth": y}
            answer, tries = self._post(server, path, body)
            with self.lock:
                self.sent[key] += tries
            if answer is None:
                self._up(server)
                continue
            if answer.status_code not in (200, 201):
                self.errors.append(f"{path}: {answer.status_code} {answer.text}")
                continue
            with self.lock:
                self.acked[key] += 1
                self.n_acked += 1

    def predict_here_label_there(self, samples: list[tuple[dict, bool]], tag: str) -> None:
        for i, (x, y) in enumerate(samples):
            pid = f"{tag}-{i}"
            answer, _ = self._post("a", "/v1/models/p/predict", {"features": x, "id": pid})
            if answer is None or answer.status_code != 200:
                self._up("a")
                continue
            with self.lock:
                self.labels_sent.add(pid)
            answer, tries = self._post("b", "/v1/models/p/learn", {"id": pid, "ground_truth": y})
            if answer is None:
                self._up("b")
                continue
            if answer.status_code == 409 and tries > 1:
                # Refused as labelled on a retry: a try answered 503 was taken after all (its
                # broker's answer was lost). It must be learned, once (checked at the end).
                with self.lock:
                    self.labels_taken_on_retry.add(pid)
                continue
            if answer.status_code != 200:
                self.errors.append(f"label {pid}: {answer.status_code} {answer.text}")
                continue
            with self.lock:
                self.labels_acked.add(pid)
                self.n_acked += 1


def _health(server: Server) -> bool:
    try:
        return httpx.get(server.url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def progressive(log: list[tuple[Any, ...]]) -> tuple[dict[str, float], int]:
    """river's progressive validation over the learner's log, in its order: a learn with
    features is scored with the prediction the model makes then; a label with the
    prediction its id stored. Also how many logged predictions equal the replay's."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    metric = metrics.Accuracy() + metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
    same = 0
    for _, x, y, logged, pid in log:
        y_pred = logged if pid is not None else model.predict_proba_one(x)
        same += y_pred == logged
        metric.update(y, y_pred)
        model.learn_one(x, y)
    return {type(m).__name__: m.get() for m in metric}, same


def test_two_replicas_one_learner_every_acknowledged_learn_exactly_once(
    tmp_path: Path, broker: RedisBroker, database: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    a = replica(database, broker, logs / "a.log")
    b = replica(database, broker, logs / "b.log")
    learner = LearnerProcess(database, broker.url, "learner-1", logs / "learner-1.log").start()
    learners = [learner]
    try:
        create_model(a)
        samples = list(datasets.Phishing())
        clients = Clients(a, b)
        learns = clients.learn_with_features
        work = [
            threading.Thread(target=learns, args=("a", "native", samples[0:300])),
            threading.Thread(target=learns, args=("b", "chantilly", samples[300:600])),
            threading.Thread(target=learns, args=("a", "chantilly", samples[600:800])),
            threading.Thread(
                target=clients.predict_here_label_there, args=(samples[800:1100], "s")
            ),
        ]
        for thread in work:
            thread.start()

        def applied_by(name: str) -> int:
            found = httpx.get(f"{a.url}/v1/cluster", timeout=10).json()
            lease = next((x for x in found["leases"] if x["model"] == "p"), None)
            return lease["n_learns"] if lease and lease["holder"] == name else 0

        wait_for(lambda: clients.n_acked >= 150, 120, "150 acknowledged learns")
        wait_for(lambda: applied_by("learner-1") >= 100, 120, "learner-1 to apply 100 learns")
        learner.kill()  # mid-stream; another learner takes over once the lease expires
        learner = LearnerProcess(database, broker.url, "learner-2", logs / "learner-2.log")
        learners.append(learner.start())

        wait_for(lambda: clients.n_acked >= 350, 120, "350 acknowledged learns")
        b.kill()  # mid-stream; its clients see the connection drop, then it comes back
        b.start()

        wait_for(lambda: clients.n_acked >= 550, 120, "550 acknowledged learns")
        broker.kill()
        # Without the broker the replicas still predict, and refuse learns with 503.
        time.sleep(0.5)
        x, y = samples[1200]
        predicted = httpx.post(f"{a.url}/v1/models/p/predict", json={"features": x}, timeout=10)
        assert predicted.status_code == 200, predicted.text
        refused = httpx.post(
            f"{b.url}/v1/models/p/learn", json={"features": x, "ground_truth": y}, timeout=10
        )
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "unavailable"
        broker.start()  # the same directory: its append-only file

        for thread in work:
            thread.join(timeout=300)
        assert not clients.errors, clients.errors[:5]
        acked = sum(clients.acked.values()) + len(clients.labels_acked)
        assert acked >= 900

        # Both replicas come to serve every learn the learner committed, and the stream
        # is drained.
        def settled() -> bool:
            n = len(learn_log(database, "p"))
            status = json.loads(
                riverbed("cluster", "status", "--json", "--database", database,
                         "--broker", broker.url).stdout
            )  # fmt: skip
            lag = next(m["lag_learns"] for m in status["models"] if m["model"] == "p")
            return lag == 0 and n_learns(a, "p") == n and n_learns(b, "p") == n

        wait_for(settled, 120, "both replicas to serve every learn")
        log = learn_log(database, "p")
        assert [row[0] for row in log] == list(range(1, len(log) + 1))

        # Exactly once: every acknowledged sample once, an unacknowledged one (its
        # replica killed before it answered) at most once, nothing else.
        logged = collections.Counter(
            json.dumps([row[1], row[2]], sort_keys=True) for row in log if row[4] is None
        )
        for key, n in clients.acked.items():
            assert n <= logged[key] <= clients.sent[key], key
        assert set(logged) <= set(clients.sent)
        assert sum(logged.values()) <= sum(clients.sent.values())
        label_ids = [row[4] for row in log if row[4] is not None]
        assert len(label_ids) == len(set(label_ids))  # no label twice
        assert clients.labels_acked <= set(label_ids) <= clients.labels_sent
        assert clients.labels_taken_on_retry <= set(label_ids)

        # Metrics: river's progressive validation in the learner's order, on both replicas.
        expected, same = progressive(log)
        assert same == len(log)
        for server in (a, b):
            served = httpx.get(f"{server.url}/v1/models/p/metrics").json()
            assert served["n_learns"] == len(log)
            assert served["metrics"] == pytest.approx(expected, rel=1e-9)

        # A learner took over from the killed one at its last committed position.
        status = json.loads(
            riverbed("cluster", "status", "--json", "--database", database,
                     "--broker", broker.url).stdout
        )  # fmt: skip
        lease = next(lease for lease in status["leases"] if lease["model"] == "p")
        assert lease["holder"] == "learner-2" and lease["epoch"] >= 2
        assert lease["n_learns"] == len(log)
        assert {r["address"] for r in status["replicas"]} == {a.url, b.url}
        print(
            f"\nscale-out: {len(log)} learns logged, {acked} acknowledged, "
            f"{clients.refused_503} answers 503 (Retry-After {sorted(clients.retry_after)})"
        )

        # Staleness: a learn acknowledged by one replica, until the other serves it.
        delays = []
        with httpx.Client(timeout=10) as http:
            for x, y in samples[1100:1160]:
                before = n_learns(b, "p") or 0
                answer = http.post(
                    f"{a.url}/v1/models/p/learn", json={"features": x, "ground_truth": y}
                )
                assert answer.status_code == 200
                acked_at = time.perf_counter()
                wait_for(lambda before=before: (n_learns(b, "p") or 0) > before, 30, "staleness")
                delays.append(time.perf_counter() - acked_at)
        delays.sort()
        p50, p99 = statistics.median(delays), delays[int(len(delays) * 0.99) - 1]
        print(
            f"staleness (staleness_seconds 1.0): p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms"
        )
        metrics_text = httpx.get(f"{b.url}/metrics").text
        assert 'riverbed_replica_lag_learns{model="p"}' in metrics_text
        assert 'riverbed_replica_staleness_seconds{model="p"}' in metrics_text
    finally:
        for process in learners:
            process.stop()
        for server in (a, b):
            if server.process is not None and server.process.poll() is None:
                server.stop()


def test_a_label_cut_off_by_a_replica_kill_is_learned_once_when_retried(
    tmp_path: Path, broker: RedisBroker, database: str
) -> None:
    """A replica killed while its labels were on their way to the broker (the broker's
    writes paused, so the requests are in flight there): each label retried on the other
    replica is learned exactly once, none is left claimed with nothing learned; a label the
    broker took before the kill is refused when retried (409) and learned once too."""
    logs = tmp_path / "logs"
    logs.mkdir()
    a = replica(database, broker, logs / "a.log")
    b = replica(database, broker, logs / "b.log")
    learner = LearnerProcess(database, broker.url, "learner-1", logs / "learner-1.log").start()
    control = redis.Redis.from_url(broker.url)
    try:
        create_model(a)
        samples = list(datasets.Phishing().take(6))
        for i, (x, _) in enumerate(samples):
            answer = httpx.post(f"{a.url}/v1/models/p/predict", json={"features": x, "id": f"q{i}"})
            assert answer.status_code == 200, answer.text

        def label(server: Server, i: int) -> httpx.Response:
            body = {"id": f"q{i}", "ground_truth": samples[i][1]}
            return httpx.post(f"{server.url}/v1/models/p/learn", json=body, timeout=10)

        taken = label(b, 5)  # on the broker before the kill
        assert taken.status_code == 200, taken.text

        answers: dict[int, Any] = {}

        def send(i: int) -> None:
            try:
                answers[i] = label(b, i).status_code
            except httpx.HTTPError as exc:
                answers[i] = type(exc).__name__

        control.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
        senders = [threading.Thread(target=send, args=(i,)) for i in range(5)]
        for thread in senders:
            thread.start()
        time.sleep(1.0)  # the labels reach the paused broker (staging, not a measurement)
        b.kill()
        control.execute_command("CLIENT", "UNPAUSE")
        for thread in senders:
            thread.join(timeout=30)
        assert all(not isinstance(code, int) for code in answers.values()), answers

        for i in range(5):  # every label cut off is taken when retried
            retried = label(a, i)
            assert retried.status_code == 200, (i, retried.text)
        again = label(a, 5)
        assert again.status_code == 409 and again.json()["error"]["code"] == "already_labelled"
        # A batch naming a claimed prediction adds none of its items (all or nothing): 409
        # when the broker's claim refuses it, 400 invalid_batch when the replica already
        # reads the prediction labelled (the learner committed it).
        batch = [
            {"features": samples[0][0], "ground_truth": samples[0][1]},
            {"id": "q5", "ground_truth": samples[5][1]},
        ]
        refused = httpx.post(f"{a.url}/v1/models/p/learn/many", json={"items": batch})
        assert refused.status_code in (400, 409), refused.text
        assert "already_labelled" in refused.text

        wait_for(lambda: n_learns(a, "p") == 6, 60, "the six labels learned")
        log = learn_log(database, "p")
        assert sorted(row[4] for row in log) == [f"q{i}" for i in range(6)]
        assert {row[4]: row[2] for row in log} == {f"q{i}": y for i, (_, y) in enumerate(samples)}
        with psycopg.connect(database) as conn:
            labelled = conn.execute(
                "SELECT id FROM predictions WHERE model = 'p' AND labelled ORDER BY id"
            ).fetchall()
        assert [r[0] for r in labelled] == [f"q{i}" for i in range(6)]
        # A second label of any of them is refused, on either replica.
        b.start()
        for server, i in ((a, 0), (b, 3), (b, 5)):
            refused = label(server, i)
            assert refused.status_code == 409, (i, refused.text)
        assert [row[0] for row in learn_log(database, "p")] == list(range(1, 7))
    finally:
        control.close()
        learner.stop()
        a.stop()
        if b.process is not None and b.process.poll() is None:
            b.stop()


def test_the_broker_says_when_it_may_evict_keys(broker: RedisBroker) -> None:
    """Broker.eviction (a replica warns at start on it): None when Redis never evicts (no
    maxmemory, or noeviction), else the policy that could drop entries or claims."""
    client = Broker(broker.url)
    control = redis.Redis.from_url(broker.url)
    try:
        assert client.eviction() is None  # redis-server's defaults
        control.config_set("maxmemory-policy", "volatile-lru")
        assert client.eviction() is None  # no maxmemory: nothing is evicted
        control.config_set("maxmemory", "512mb")
        assert client.eviction() == "volatile-lru"
        control.config_set("maxmemory-policy", "noeviction")
        assert client.eviction() is None
    finally:
        control.close()
        client.close()


def test_a_label_answered_503_by_a_failed_hand_off_is_taken_when_retried(
    one: tuple[Server, redis.Redis], database: str
) -> None:
    """A label whose hand-off to the broker fails (the broker does not answer in time:
    its writes are paused, and the request is dropped with its connection) is answered 503
    and leaves its prediction unlabelled on the replica, so the client's retry on the same
    replica is taken (200) and learned once, not refused 409 as already labelled."""
    a, control = one
    ((x, y),) = datasets.Phishing().take(1)
    predicted = httpx.post(f"{a.url}/v1/models/p/predict", json={"features": x, "id": "q"})
    assert predicted.status_code == 200, predicted.text
    body = {"id": "q", "ground_truth": y}

    control.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
    try:
        failed = httpx.post(f"{a.url}/v1/models/p/learn", json=body, timeout=30)
    finally:
        control.execute_command("CLIENT", "UNPAUSE")
    assert failed.status_code == 503, failed.text
    assert failed.json()["error"]["code"] == "unavailable"

    def retried() -> httpx.Response | None:
        answer = httpx.post(f"{a.url}/v1/models/p/learn", json=body, timeout=10)
        return None if answer.status_code == 503 else answer

    answer = wait_for(retried, 30, "the replica to take learns again")
    assert answer.status_code == 200, answer.text
    wait_for(lambda: n_learns(a, "p") == 1, 60, "the label learned")
    assert [(row[2], row[4]) for row in learn_log(database, "p")] == [(y, "q")]


def test_a_broker_that_refuses_writes_gets_503_and_the_replica_goes_on(
    one: tuple[Server, redis.Redis], database: str
) -> None:
    """A broker that refuses the hand-off script (out of memory under noeviction: Redis
    answers an error, not a dropped connection) gets each learn answered 503 with
    Retry-After, nothing acknowledged and no request left waiting; once it takes writes
    again the same replica takes the retried label and learn, each learned once."""
    a, control = one
    (x, y), (x2, y2) = datasets.Phishing().take(2)
    predicted = httpx.post(f"{a.url}/v1/models/p/predict", json={"features": x, "id": "q"})
    assert predicted.status_code == 200, predicted.text
    bodies = [{"id": "q", "ground_truth": y}, {"features": x2, "ground_truth": y2}]
    control.config_set("maxmemory", "1")  # every write refused: OOM
    try:
        for body in bodies * 2:
            refused = httpx.post(f"{a.url}/v1/models/p/learn", json=body, timeout=30)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["detail"]["cause"] == "broker_refused"
    finally:
        control.config_set("maxmemory", "0")
    for body in bodies:
        taken = httpx.post(f"{a.url}/v1/models/p/learn", json=body, timeout=30)
        assert taken.status_code == 200, taken.text
    wait_for(lambda: n_learns(a, "p") == 2, 60, "the two learns")
    assert [(row[2], row[4]) for row in learn_log(database, "p")] == [(y, "q"), (y2, None)]


def test_a_second_label_after_its_claim_is_gone_is_learned_once(
    tmp_path: Path, broker: RedisBroker, database: str
) -> None:
    """The broker's claim of a label is gone before the learner committed the label (it
    expired: the learner was down longer than CLAIM_SECONDS; or Redis lost it): a second
    label sent to a replica that cached the prediction unlabelled is acknowledged, and the
    learner still learns the prediction once, from the first label, counting the second in
    ``refused``. Once the learner committed a label, both replicas refuse a second one
    themselves (409), claim or no claim: one that cached the prediction unlabelled marks
    it when it follows the learner's log."""
    logs = tmp_path / "logs"
    logs.mkdir()
    a = replica(database, broker, logs / "a.log")
    b = replica(database, broker, logs / "b.log")
    learner = LearnerProcess(database, broker.url, "learner-1", logs / "learner-1.log")
    control = redis.Redis.from_url(broker.url)
    try:
        create_model(a)
        (x, y), (x2, y2), (x3, y3) = datasets.Phishing().take(3)
        for id, features in (("q", x), ("r", x2)):  # b caches both, unlabelled
            predicted = httpx.post(
                f"{b.url}/v1/models/p/predict", json={"features": features, "id": id}
            )
            assert predicted.status_code == 200, predicted.text

        def label(server: Server, id: str, truth: Any) -> httpx.Response:
            body = {"id": id, "ground_truth": truth}
            return httpx.post(f"{server.url}/v1/models/p/learn", json=body, timeout=10)

        first = label(a, "q", y)
        assert first.status_code == 200, first.text
        assert control.delete(CLAIM_PREFIX + "q") == 1  # as its expiry would
        second = label(b, "q", not y)
        assert second.status_code == 200, second.text

        learner.start()
        wait_for(lambda: n_learns(b, "p") == 1, 60, "the label learned and followed")
        status = json.loads(
            riverbed("cluster", "status", "--json", "--database", database,
                     "--broker", broker.url).stdout
        )  # fmt: skip
        assert next(m for m in status["models"] if m["model"] == "p")["refused"] == 1
        control.delete(CLAIM_PREFIX + "q")
        for server in (a, b):
            again = label(server, "q", y)
            assert again.status_code == 409, again.text
            assert again.json()["error"]["code"] == "already_labelled"

        taken = label(a, "r", y2)
        assert taken.status_code == 200, taken.text
        wait_for(lambda: n_learns(b, "p") == 2, 60, "r learned and followed by b")
        assert control.delete(CLAIM_PREFIX + "r") == 1
        again = label(b, "r", y2)  # b's cached copy of r was marked by its follower
        assert again.status_code == 409, again.text

        learned = httpx.post(
            f"{b.url}/v1/models/p/learn", json={"features": x3, "ground_truth": y3}, timeout=10
        )
        assert learned.status_code == 200, learned.text
        wait_for(lambda: len(learn_log(database, "p")) == 3, 60, "the learn after them")
        log = learn_log(database, "p")
        assert [(row[0], row[2], row[4]) for row in log] == [
            (1, y, "q"),
            (2, y2, "r"),
            (3, y3, None),
        ]
    finally:
        control.close()
        learner.stop()
        a.stop()
        b.stop()


def test_learners_share_the_models_and_a_lease_moves_by_hand(
    tmp_path: Path, broker: RedisBroker, database: str
) -> None:
    """Two learners take one model each (their share); ``riverbed cluster move`` and
    POST /v1/cluster/leases/{model} hand a lease over; learns go on, each applied once."""
    logs = tmp_path / "logs"
    logs.mkdir()
    a = replica(database, broker, logs / "a.log")
    learners = [
        LearnerProcess(database, broker.url, f"l{i}", logs / f"l{i}.log").start() for i in (1, 2)
    ]
    try:
        for name in ("m1", "m2"):
            assert (
                httpx.post(f"{a.url}/v1/models", json={"name": name, "spec": SPEC}).status_code
                == 201
            )
        samples = list(datasets.Phishing().take(120))

        def learn(name: str, part: list[tuple[dict, bool]]) -> None:
            for x, y in part:
                answer = httpx.post(
                    f"{a.url}/v1/models/{name}/learn", json={"features": x, "ground_truth": y}
                )
                assert answer.status_code == 200, answer.text

        def holders() -> dict[str, str | None]:
            found = httpx.get(f"{a.url}/v1/cluster").json()
            return {m["model"]: m["learner"] for m in found["models"]}

        learn("m1", samples[:20])
        learn("m2", samples[:20])
        split = wait_for(
            lambda: (h := holders()) and set(h.values()) == {"l1", "l2"} and h, 30, "a lease each"
        )
        mover = split["m1"]
        other = "l2" if mover == "l1" else "l1"

        moved = riverbed(
            "cluster", "move", "m1", other, "--database", database, "--broker", broker.url
        )
        assert moved.returncode == 0, moved.stderr
        assert f"lease moved to {other}" in moved.stdout
        learn("m1", samples[20:60])
        wait_for(lambda: holders()["m1"] == other, 30, "the move")
        # and back, through the route
        answer = httpx.post(f"{a.url}/v1/cluster/leases/m1", json={"learner": mover})
        assert answer.status_code == 200, answer.text
        assert answer.json()["learner"] == mover
        learn("m1", samples[60:120])
        wait_for(lambda: n_learns(a, "m1") == 120, 30, "every learn of m1")

        log = learn_log(database, "m1")
        assert [row[0] for row in log] == list(range(1, 121))
        assert [(row[1], row[2]) for row in log] == [(x, y) for x, y in samples]
        expected, _ = progressive(log)
        assert httpx.get(f"{a.url}/v1/models/m1/metrics").json()["metrics"] == pytest.approx(
            expected
        )

        # Refusals: an unknown learner, an unknown model, a bad body; nothing moves.
        before = holders()
        assert (
            httpx.post(f"{a.url}/v1/cluster/leases/m1", json={"learner": "nobody"}).status_code
            == 404
        )
        assert (
            httpx.post(f"{a.url}/v1/cluster/leases/zz", json={"learner": mover}).status_code == 404
        )
        assert httpx.post(f"{a.url}/v1/cluster/leases/m1", json={"who": mover}).status_code == 400
        refused = riverbed(
            "cluster", "move", "m1", "nobody", "--database", database, "--broker", broker.url
        )
        assert refused.returncode == 1 and "no running learner 'nobody'" in refused.stderr
        assert holders() == before

        # A change of the live state by hand is refused on a replica (its learner alone
        # writes the model's state): 409 cluster_unsupported, nothing changed, on the
        # replica or in the database.
        drift_before = httpx.get(f"{a.url}/v1/models/m1/drift").json()
        checkpoint_before = checkpoint_of(database, "m1")
        detectors = {"detectors": [{"detector": "ADWIN", "on": "errors"}]}
        promoting = {"detectors": [{"detector": "ADWIN", "on": "errors", "action": "promote"}]}
        for method, path, body in [
            ("PUT", "/v1/models/m1/drift", detectors),
            ("PUT", "/v1/models/m1/drift", promoting),
            ("DELETE", "/v1/models/m1/drift", None),
            ("PUT", "/v1/models/m1/canary", {"arms": {"v1": 90, "v2": 10}}),
            ("PATCH", "/v1/models/m1/canary", {"weights": {"v1": 50, "v2": 50}}),
            ("DELETE", "/v1/models/m1/canary", None),
            ("POST", "/v1/models/m1/restore", {"version": 1}),
            ("POST", "/v1/models/m1/challengers", {"version": 1}),
            ("DELETE", "/v1/models/m1/challengers/v1", None),
            ("POST", "/v1/models/m1/challengers/v1/promote", {}),
            ("POST", "/v1/models/m1/rollback", {}),
            ("PUT", "/v1/models/m1/promotion-rule", {"metric": "LogLoss", "margin": 0.01}),
            ("DELETE", "/v1/models/m1/promotion-rule", None),
        ]:
            answer = httpx.request(method, a.url + path, json=body)
            assert answer.status_code == 409, (method, path, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "cluster_unsupported", (method, path, error)
            assert (
                "scale-out cluster" in error["message"]
                and "nothing was changed" in (error["message"])
            )
        assert httpx.get(f"{a.url}/v1/models/m1/drift").json() == drift_before
        assert httpx.get(f"{a.url}/v1/models/m1/canary").status_code == 404
        assert httpx.get(f"{a.url}/v1/models/m1/challengers").json()["challengers"] == []
        assert httpx.get(f"{a.url}/v1/models/m1/metrics").json()["n_learns"] == 120
        assert checkpoint_of(database, "m1") == checkpoint_before
        assert [row[0] for row in learn_log(database, "m1")] == list(range(1, 121))
    finally:
        for process in learners:
            process.stop()
        a.stop()


def test_nats_and_sqlite_are_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="NATS JetStream is not supported"):
        Settings.load({"database": "postgresql://x@h/db", "broker": "nats://127.0.0.1:4222"})
    with pytest.raises(ValueError, match="share a PostgreSQL database"):
        Settings.load({"database": "riverbed.db", "broker": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ValueError, match="must be a Redis URL"):
        Settings.load({"database": "postgresql://x@h/db", "broker": "redis://h:6379/x"})
    refused = riverbed(
        "serve", "--broker", "nats://127.0.0.1:4222", "--database", "postgresql://x@h/db"
    )
    assert refused.returncode == 2 and "NATS JetStream is not supported" in refused.stderr


def test_a_server_without_a_broker_is_no_cluster(tmp_path: Path) -> None:
    with Server(str(tmp_path / "one.db")) as server:
        answer = httpx.get(f"{server.url}/v1/cluster")
        assert answer.status_code == 404
        assert "not a scale-out replica" in answer.json()["error"]["message"]
        assert "riverbed_replica_lag_learns{" not in httpx.get(f"{server.url}/metrics").text
