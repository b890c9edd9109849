"""A learn is all or nothing: when any part of it fails (the model's learn, the metrics'
update, the store's commit) the model, its metrics and its counts are as they were, the
caller gets a clear error, and a restart gives the model the running process had."""

from __future__ import annotations

import asyncio
import copy
import errno
import functools
import random
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from river import datasets, linear_model, metrics, optim, preprocessing, reco

from riverbed import Engine, StorageFull, Unavailable
from riverbed.server import create_app
from riverbed.stores.base import Checkpoint, LearnRecord, MetricPoint
from tests.helpers import Server


def ratings(n: int, seed: int = 5) -> list[tuple[str, str, float]]:
    rng = random.Random(seed)
    return [
        (f"u{rng.randrange(20)}", f"i{rng.randrange(30)}", float(rng.randint(1, 5)))
        for _ in range(n)
    ]


def scores(metric_list: list[Any], y: float, y_pred: float) -> bool:
    """Whether river's metrics can score this prediction (RMSE overflows on a diverged one)."""
    try:
        for metric in copy.deepcopy(metric_list):
            metric.update(y, y_pred)
    except OverflowError:
        return False
    return True


async def test_a_diverged_funkmf_is_refused_with_409_and_its_metrics_stay_rivers(
    tmp_path: Path,
) -> None:
    """river's default FunkMF on 1-5 ratings diverges (predictions near 1e170): the label
    whose RMSE overflows is answered 409 model_diverged, and it changes neither the model,
    nor the metrics, nor the counts; the accepted labels equal river's own evaluation of
    the same stream without the refused ones, before and after a restart."""
    model = reco.FunkMF()
    reference = copy.deepcopy(model)
    expected = [metrics.MAE(), metrics.RMSE()]
    refused = 0
    database = str(tmp_path / "funk.db")
    with Engine(database) as engine:
        engine.create_model("funk", model)  # with its random state, as the reference's
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            for i, (user, item, rating) in enumerate(ratings(1500)):
                body = {"user": user, "item": item, "id": f"r{i}"}
                predicted = await api.post("/v1/models/funk/predict", json=body)
                y_pred = reference.predict_one(user, item)
                assert predicted.status_code == 200, predicted.text
                before = [
                    (await api.get(f"/v1/models/funk/{what}")).json()
                    for what in ("metrics", "stats")
                ]
                learned = await api.post(
                    "/v1/models/funk/learn", json={"id": f"r{i}", "ground_truth": rating}
                )
                if scores(expected, rating, y_pred):
                    assert learned.status_code == 200, learned.text
                    for metric in expected:
                        metric.update(rating, y_pred)
                    reference.learn_one(user, item, rating)
                    continue
                refused += 1
                assert learned.status_code == 409, learned.text
                error = learned.json()["error"]
                assert error["code"] == "model_diverged"
                assert "diverged" in error["message"] and "RMSE" not in error["message"]
                after = [
                    (await api.get(f"/v1/models/funk/{what}")).json()
                    for what in ("metrics", "stats")
                ]
                assert after == before
                again = await api.post("/v1/models/funk/predict", json={"user": user, "item": item})
                assert again.json()["prediction"] == reference.predict_one(user, item)
            assert refused > 10
            served = (await api.get("/v1/models/funk/metrics")).json()
            assert served["metrics"] == {"MAE": expected[0].get(), "RMSE": expected[1].get()}
            assert served["n_learns"] == 1500 - refused
    with Engine(database) as engine:
        assert engine.metrics("funk")["metrics"] == served["metrics"]
        assert engine.predict("funk", user="u1", item="i1")["prediction"] == (
            reference.predict_one("u1", "i1")
        )


def test_a_prediction_that_is_not_finite_is_reported_as_such_and_not_counted(
    tmp_path: Path,
) -> None:
    """A model whose weights overflowed predicts inf, then nan: predict and learn answer
    ModelDiverged (409) naming the value, and nothing is stored or counted."""
    with Engine(str(tmp_path / "lin.db")) as engine:
        model = linear_model.LinearRegression(optimizer=optim.SGD(1e300), intercept_lr=0)
        engine.create_model("lin", model)
        engine.learn("lin", {"x": 1e10}, 1.0)  # predicted 0.0; the weight is now inf
        before = engine.stats("lin"), engine.metrics("lin")
        for call in (
            lambda: engine.predict("lin", {"x": 1e10}),
            lambda: engine.predict("lin", {"x": 1e10}, id="p1"),
            lambda: engine.learn("lin", {"x": 1e10}, 2.0),
            lambda: engine.learn_many("lin", [{"features": {"x": 1.0}, "ground_truth": 2.0}]),
        ):
            try:
                call()
            except Exception as exc:
                assert type(exc).__name__ in {"ModelDiverged", "InvalidBatch"}, exc
                assert "inf" in str(exc) and "not a finite number" in str(exc)
            else:
                raise AssertionError("a non-finite prediction was answered")
        assert (engine.stats("lin"), engine.metrics("lin")) == before
        assert engine.store.get_prediction("p1") is None


# -- a store that cannot take the write -----------------------------------------------------


class Disk:
    """A database on a disk that can be filled up and freed: a real tmpfs of a few MB when
    this process may mount one (root), else SQLite's own ``max_page_count`` on the real
    file, which makes SQLite answer SQLITE_FULL exactly as on a full disk."""

    def __init__(self, tmp_path: Path, kind: str) -> None:
        self.kind = kind
        self.dir = tmp_path / "disk"
        self.dir.mkdir()
        self.mounted = False
        if kind == "tmpfs":
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(self.dir)],
                capture_output=True,
            )
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
            self.mounted = True
        self.path = str(self.dir / "riverbed.db")
        self.engine: Engine | None = None

    def fill(self) -> None:
        if self.engine is not None:
            self.engine.store.sync()
        if self.kind == "tmpfs":
            try:  # creating the file can itself meet a full disk (seen in CI)
                with open(self.dir / "filler", "wb") as f:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        else:  # the writer's connection may not grow the file, whose free pages are filled
            conn = self.engine.store._writer.conn  # type: ignore[attr-defined]
            conn.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")
            for size in (4096, 512, 64, 8, 1):
                try:
                    while True:
                        conn.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
                except sqlite3.OperationalError as exc:
                    assert exc.sqlite_errorname == "SQLITE_FULL"

    def free(self) -> None:
        if self.kind == "tmpfs":
            (self.dir / "filler").unlink(missing_ok=True)
        else:
            assert self.engine is not None
            conn = self.engine.store._writer.conn  # type: ignore[attr-defined]
            conn.execute("PRAGMA max_page_count = 1073741823")
            conn.execute("DROP TABLE filler")

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.dir)], check=False)


@pytest.fixture(params=["tmpfs", "page_count"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    d = Disk(tmp_path, request.param)
    try:
        yield d
    finally:
        d.close()


def approval() -> list[tuple[dict[str, float], float]]:
    return [(x, y) for x, y in datasets.TrumpApproval()]


def state(engine: Engine, probe: dict[str, float]) -> tuple[Any, ...]:
    """What must not move when a write fails: metrics, counts, and the live model."""
    return (
        engine.metrics("m"),
        engine.stats("m")["n_predictions"],
        engine.stats("m")["n_learns"],
        engine.stats("m")["predict"]["n_calls"],
        engine.stats("m")["learn"]["n_calls"],
        engine.live_model("m").predict_one(probe),
    )


def test_a_full_disk_refuses_learns_and_predicts_with_storage_full_and_changes_nothing(
    disk: Disk,
) -> None:
    """Learns, labels and predicts on a full disk are refused with StorageFull naming the
    cause, and leave the model, metrics and counts exactly as they were -- also in a group
    of learns queued together, where the first that fails fails those after it (each was
    made on top of it); once the disk has room the retries learn each sample once, so the
    model is river's own on the stream as it was committed, before and after a restart."""
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    data = approval()
    probe = data[0][0]
    reference = copy.deepcopy(model)
    mae = metrics.MAE()
    n_predictions = 1
    refusals = 0

    def learned(i: int, y_pred: Any = None) -> None:
        x, y = data[i]
        mae.update(y, reference.predict_one(x) if y_pred is None else y_pred)
        reference.learn_one(x, y)

    def attempt(call: Any) -> bool:
        """Whether the call went through; a refusal must have changed nothing."""
        nonlocal refusals
        before = state(engine, probe)
        try:
            call()
        except StorageFull as exc:
            assert "full" in exc.message and "SQLITE_FULL" in exc.message
        else:
            return True
        refusals += 1
        assert state(engine, probe) == before
        return False

    disk.engine = engine = Engine(disk.path)
    try:
        engine.create_model("m", model)
        for i in range(200):
            engine.learn("m", *data[i])
            learned(i)
        stored = engine.predict("m", data[200][0], id="p200")
        disk.fill()
        for i in range(201, 400):  # the file's last free bytes may still take a few
            if not attempt(functools.partial(engine.predict, "m", data[i][0], id=f"p{i}")):
                break
            n_predictions += 1
        assert refusals == 1
        label = lambda: engine.learn("m", ground_truth=data[200][1], id="p200")  # noqa: E731
        labelled = attempt(label)
        if labelled:
            learned(200, stored["prediction"])
        # learns queued before any of them commits: those that fit commit, none after the
        # first that failed
        start = 201
        receipts = [engine.submit_learn("m", *data[i]) for i in range(start, start + 200)]
        outcomes = []
        for receipt in receipts:
            try:
                receipt.wait()
                outcomes.append(True)
            except (StorageFull, Unavailable) as exc:
                assert "full" in exc.message or "was not written" in exc.message
                outcomes.append(False)
        committed = outcomes.index(False)
        assert not any(outcomes[committed:])
        for i in range(start, start + committed):
            learned(i)
        assert engine.stats("m")["n_learns"] == 200 + labelled + committed
        disk.free()
        if not labelled:
            engine.learn("m", ground_truth=data[200][1], id="p200")  # the retry
            learned(200, stored["prediction"])
        for i in range(start + committed, len(data)):
            engine.learn("m", *data[i])
            learned(i)
        assert engine.metrics("m")["metrics"]["MAE"] == mae.get()
        assert engine.stats("m")["n_learns"] == len(data)
        assert engine.stats("m")["n_predictions"] == n_predictions
        running = state(engine, probe)
        assert running[-1] == reference.predict_one(probe)
    finally:
        engine.close()
    with Engine(disk.path) as again:
        assert state(again, probe) == running


async def test_http_answers_507_for_a_full_disk_and_503_for_a_read_only_one(disk: Disk) -> None:
    """Over HTTP a full disk is 507 storage_full and a read-only database 503 unavailable,
    each naming its cause; refused predicts and learns are not counted."""
    disk.engine = engine = Engine(disk.path)
    try:
        engine.create_model("m", linear_model.LinearRegression())
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            disk.fill()
            for i in range(500):
                before = (await api.get("/v1/models/m/stats")).json()
                answer = await api.post("/v1/models/m/predict", json={"features": {"x": i}})
                if answer.status_code != 200:
                    break
            assert answer.status_code == 507, answer.text
            error = answer.json()["error"]
            assert error["code"] == "storage_full" and "SQLITE_FULL" in error["message"]
            assert (await api.get("/v1/models/m/stats")).json() == before
            learn = {"features": {"x": 1.0}, "ground_truth": 2.0}
            n_learns = 0
            for _ in range(500):  # the learns' own pages may take a few more
                before = (await api.get("/v1/models/m/stats")).json()
                answer = await api.post("/v1/models/m/learn", json=learn)
                if answer.status_code != 200:
                    break
                n_learns += 1
            assert answer.status_code == 507, answer.text
            assert (await api.get("/v1/models/m/stats")).json() == before
            disk.free()
            assert (await api.post("/v1/models/m/learn", json=learn)).status_code == 200
            # the writer's connection made read-only (a remount of the disk read-only is
            # refused while the file is open for writing): SQLite answers SQLITE_READONLY
            engine.store.sync()
            conn = engine.store._writer.conn  # type: ignore[attr-defined]
            conn.execute("PRAGMA query_only = ON")
            try:
                before = (await api.get("/v1/models/m/stats")).json()
                answer = await api.post("/v1/models/m/learn", json=learn)
                assert answer.status_code == 503, answer.text
                error = answer.json()["error"]
                assert error["code"] == "unavailable", error
                assert "read-only" in error["message"] and "SQLITE_READONLY" in error["message"]
                assert (await api.get("/v1/models/m/stats")).json() == before
            finally:
                conn.execute("PRAGMA query_only = OFF")
            assert (await api.post("/v1/models/m/learn", json=learn)).status_code == 200
            stats = (await api.get("/v1/models/m/stats")).json()
            assert stats["n_learns"] == n_learns + 2
    finally:
        engine.close()


def test_the_writes_made_on_top_of_a_learn_that_failed_fail_too(tmp_path: Path) -> None:
    """The SQLite writer refuses a model's learns, checkpoints and metric points with a
    seq after a learn of it that failed (they were made on a state holding that learn),
    whether they share its commit or come later, until a learn takes up the failed seq.
    The learn fails here on its key: another connection wrote a learn of that seq."""
    path = str(tmp_path / "r.db")
    with Engine(path) as engine:
        engine.create_model("m", linear_model.LinearRegression())
        store = engine.store

        def learn(seq: int) -> LearnRecord:
            return LearnRecord("m", seq, {"x": float(seq)}, 1.0, 0.0, None, 0.0)

        store.add_learn(learn(1)).result()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute(
            "INSERT INTO learns (model, seq, features, target, created_at)"
            " VALUES ('m', 2, '{}', '1.0', 0.0)"
        )
        futures = [
            store.add_learn(learn(2)),
            store.add_learn(learn(3)),
            store.add_metric_point(MetricPoint("m", 3, 0.0, {})),
            store.save_checkpoint(Checkpoint("m", 3, b"state", 0.0)),
        ]
        assert isinstance(futures[0].exception(), sqlite3.IntegrityError)
        for future in futures[1:]:
            error = future.exception()
            assert isinstance(error, Unavailable), error
            assert "learn 2 of model 'm' was not written" in error.message
        later = store.add_learn(learn(4)).exception()
        assert isinstance(later, Unavailable)
        assert store.get_checkpoint("m") is None
        assert store.metric_history("m") == []
        assert [r.features for r in store.learns_after("m", 0)] == [{"x": 1.0}, {}]
        other.execute("DELETE FROM learns WHERE seq = 2")
        other.close()
        for seq in (2, 3):
            store.add_learn(learn(seq)).result()
        store.save_checkpoint(Checkpoint("m", 3, b"state", 0.0)).result()
        assert [r.seq for r in store.learns_after("m", 0)] == [1, 2, 3]
        assert store.get_checkpoint("m") is not None


async def test_a_server_under_load_on_a_disk_that_fills_acknowledges_exactly_what_it_keeps(
    tmp_path: Path,
) -> None:
    """A real server, eight clients learning at once, the disk (a real tmpfs) filled up
    mid-stream and freed again: every answer is 200 or 507, and after a SIGKILL and a
    restart the model has exactly the acknowledged learns, none lost or doubled, with the
    metrics and predictions the running server had."""
    disk = Disk(tmp_path, "tmpfs")
    server: Server | None = None
    try:
        server = Server(disk.path).start()
        data = approval()
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as api:
            spec = {"class": "river.linear_model.LinearRegression"}
            created = await api.post("/v1/models", json={"name": "m", "spec": spec})
            assert created.status_code == 201, created.text

            async def client(k: int) -> None:
                for i in range(k, len(data), 8):
                    x, y = data[i]
                    body = {"features": x, "ground_truth": y}
                    answer = await api.post("/v1/models/m/learn", json=body)
                    statuses.append(answer.status_code)
                    assert answer.status_code in (200, 507), answer.text

            async def filled() -> None:
                while len(statuses) < 200:
                    await asyncio.sleep(0.01)
                disk.fill()
                while statuses.count(507) < 20 and len(statuses) < len(data):
                    await asyncio.sleep(0.01)
                disk.free()

            await asyncio.gather(filled(), *[client(k) for k in range(8)])
            assert statuses.count(507) >= 20 and statuses[-1] == 200
            running = [
                (await api.get(f"/v1/models/m/{what}")).json() for what in ("metrics", "stats")
            ]
            assert running[1]["n_learns"] == statuses.count(200)
            probe = {"features": data[0][0]}
            predicted = (await api.post("/v1/models/m/predict", json=probe)).json()
        server.kill()
        server = Server(disk.path).start()
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as api:
            metrics_again = (await api.get("/v1/models/m/metrics")).json()
            stats_again = (await api.get("/v1/models/m/stats")).json()
            again = (await api.post("/v1/models/m/predict", json=probe)).json()
        assert metrics_again == running[0]
        assert stats_again["n_learns"] == statuses.count(200)
        assert again["prediction"] == predicted["prediction"]
    finally:
        if server is not None and server.process is not None and server.process.poll() is None:
            server.kill()
        disk.close()
