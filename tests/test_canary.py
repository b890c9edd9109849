"""Canary splits (riverbed.canary): a route answered by arms by percentage, each arm's metrics
apart, a guard that stops a worse arm.

The per-arm metrics are compared with river run directly: the same frozen pipelines (trained
on the same samples as the versions were) and the live one (learning every label in order)
predicting the samples each arm answered, river's metrics updated with them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from river import datasets, metrics

from riverbed import Client, Engine
from riverbed.exceptions import InvalidInput, NotFound, VersionNotFound
from riverbed.server import create_app
from tests.helpers import STORES, Server, database, phishing_model, riverbed

METRICS = ["Accuracy", "LogLoss"]
DATA = list(datasets.Phishing())  # 1,250 samples
V2, V3 = 100, 300  # the versions are the live model after this many learns


def prepared(engine: Engine, name: str = "m") -> None:
    """A model whose version 2 learned DATA[:100] and version 3 DATA[:300] (version 1 is
    the untrained pipeline); the live model has learned DATA[:300]; alias production -> 2."""
    engine.create_model(name, phishing_model(), metrics=METRICS)
    for x, y in DATA[:V2]:
        engine.learn(name, x, y)
    engine.snapshot(name)
    for x, y in DATA[V2:V3]:
        engine.learn(name, x, y)
    engine.snapshot(name)
    engine.set_alias(name, "production", 2)


def trained(n: int) -> Any:
    model = phishing_model()
    for x, y in DATA[:n]:
        model.learn_one(x, y)  # type: ignore[attr-defined]
    return model


class Reference:
    """river alone: per arm, its model's prediction before the label, river's metrics."""

    def __init__(self, models: dict[str, Any], live_learns: bool = True) -> None:
        self.models = models
        self.metrics = {arm: [metrics.Accuracy(), metrics.LogLoss()] for arm in models}
        self.n = dict.fromkeys(models, 0)
        self.live_learns = live_learns
        self.seen: dict[str, list[dict[str, float]]] = {arm: [] for arm in models}

    def label(self, arm: str, x: dict[str, Any], y: Any) -> None:
        model = self.models[arm]
        for metric in self.metrics[arm]:
            y_pred = model.predict_one(x) if metric.requires_labels else model.predict_proba_one(x)
            metric.update(y, y_pred)
        self.n[arm] += 1
        self.seen[arm].append(self.values(arm))
        if "live" in self.models and self.live_learns:
            self.models["live"].learn_one(x, y)

    def values(self, arm: str) -> dict[str, float]:
        return {type(m).__name__: m.get() for m in self.metrics[arm]}


def close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=1e-12) for k in a)


def arm_of(view: dict[str, Any], arm: str) -> dict[str, Any]:
    return next(a for a in view["arms"] if a["arm"] == arm)


@pytest.fixture(params=STORES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine(kind: str, tmp_path: Path) -> Iterator[Engine]:
    with database(kind, tmp_path) as db, Engine(db) as eng:
        yield eng


# -- traffic -----------------------------------------------------------------------------------


def test_a_10_percent_canary_gets_10_percent_of_the_traffic_sticky_by_id(tmp_path: Path) -> None:
    """5,000 predictions with ids of their own: the canary's share is within five standard
    deviations of 10% (binomial), and the same ids land on the same arms in another engine."""
    n, p = 5000, 0.10
    answered = []
    for _ in range(2):
        with Engine(":memory:") as engine:
            prepared(engine)
            engine.set_canary("m@production", {"v2": 90, "v3": 10})
            arms = [
                engine.predict("m@production", DATA[i % len(DATA)][0], id=f"p{i}")["arm"]
                for i in range(n)
            ]
            answered.append(arms)
            view = engine.canary("m@production")
            assert arm_of(view, "v3")["n_predictions"] == arms.count("v3")
            assert arm_of(view, "v2")["n_predictions"] == arms.count("v2")
            assert engine.canary_arm_of("m", "p7") == {
                "model": "m",
                "id": "p7",
                "run": view["run"],
                "arm": arms[7],
            }
    assert answered[0] == answered[1]
    share = answered[0].count("v3")
    assert abs(share - n * p) < 5 * math.sqrt(n * p * (1 - p)), share


def test_moving_weight_onto_an_arm_keeps_its_keys_there() -> None:
    """The arms share [0, 1) in order: growing the canary from 10% to 30% keeps every key the
    10% sent to it (and sends others)."""
    with Engine(":memory:") as engine:
        prepared(engine)
        customers = [f"c{i}" for i in range(400)]
        engine.set_canary("m", {"live": 90, "v3": 10}, sticky="key:customer")

        def arms() -> dict[str, str]:
            return {c: engine.predict("m", {**DATA[0][0], "customer": c})["arm"] for c in customers}

        first = arms()
        engine.update_canary("m", {"live": 70, "v3": 30})
        second = arms()
        on_canary = {c for c, a in first.items() if a == "v3"}
        assert on_canary and all(second[c] == "v3" for c in on_canary)
        assert len([c for c, a in second.items() if a == "v3"]) > len(on_canary)


def test_sticky_by_key_sends_a_customer_always_to_the_same_arm() -> None:
    with Engine(":memory:") as engine:
        prepared(engine)
        view = engine.set_canary("m", {"live": 80, "v2": 20}, sticky="key:customer")
        assert view["route"] == "m" and view["alias"] is None and view["baseline"] == "live"
        seen: dict[int, set[str]] = {}
        for i in range(3000):
            x, _ = DATA[i % len(DATA)]
            customer = i % 300
            answer = engine.predict("m", {**x, "customer": customer})
            assert answer["version"] == (2 if answer["arm"] == "v2" else None)
            seen.setdefault(customer, set()).add(answer["arm"])
        assert all(len(arms) == 1 for arms in seen.values())
        share = sum(arms == {"v2"} for arms in seen.values()) / len(seen)
        assert abs(share - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 300)
        # No such feature: the baseline answers.
        assert all(engine.predict("m", DATA[i][0])["arm"] == "live" for i in range(50))


# -- per-arm metrics ---------------------------------------------------------------------------


def test_each_arms_metrics_equal_river_on_the_samples_it_answered(engine: Engine) -> None:
    """live 60% / v2 20% / v3 20% on the live route, each prediction labelled by id: each
    arm's metrics equal river's over its own samples, and the live model learned every label
    (so the model's metrics are river's over all the predictions answered)."""
    prepared(engine)
    engine.set_canary("m", {"live": 60, "v2": 20, "v3": 20})
    reference = Reference({"live": trained(V3), "v2": trained(V2), "v3": trained(V3)})
    everyone = [metrics.Accuracy(), metrics.LogLoss()]
    base = engine.metrics("m")
    for x, y in DATA[V3:]:
        answer = engine.predict("m", x)
        arm = answer["arm"]
        model = reference.models[arm]
        assert answer["probabilities"] == pytest.approx(model.predict_proba_one(x), rel=1e-12)
        for metric in everyone:
            y_pred = model.predict_one(x) if metric.requires_labels else model.predict_proba_one(x)
            metric.update(y, y_pred)
        reference.label(arm, x, y)
        engine.learn("m", ground_truth=y, id=answer["id"])
    view = engine.canary("m")
    for arm in ("live", "v2", "v3"):
        got = arm_of(view, arm)
        assert got["n"] == got["n_labels"] == got["n_predictions"] == reference.n[arm] > 100
        assert close(got["metrics"], reference.values(arm)), arm
    # The model's own metrics: the labels before the split, then every answered prediction.
    assert engine.metrics("m")["n"] == base["n"] + len(DATA) - V3
    # Each arm's history: its metrics as river had them after that many labels.
    history = engine.canary_history("m")["arms"]
    for arm, points in history.items():
        assert points and [p["n"] for p in points] == sorted({p["n"] for p in points})
        for point in points:
            assert close(point["metrics"], reference.seen[arm][point["n"] - 1]), (arm, point)


def test_the_guard_stops_a_worse_arm_at_the_label_the_numbers_imply(engine: Engine) -> None:
    """v3 (trained) 70% / v1 (untrained) 30%, guard Accuracy by more than 0.1 after 40
    labels each: the split stops at the first label where river's numbers say so, v1 goes to
    0% and answers nothing after; a model.canary_stopped event carries those numbers."""
    prepared(engine)
    events: list[Any] = []
    engine.events.subscribe(lambda e: e.type.startswith("model.canary") and events.append(e))
    guard = {"metric": "Accuracy", "margin": 0.1, "min_samples": 40}
    engine.set_canary("m@production", {"v3": 70, "v1": 30}, guard=guard)
    reference = Reference({"v3": trained(V3), "v1": trained(0)})
    stop_at = None
    arms = []
    for i, (x, y) in enumerate(DATA[V3 : V3 + 600]):
        answer = engine.predict("m@production", x)
        arms.append(answer["arm"])
        engine.learn("m", ground_truth=y, id=answer["id"])
        if stop_at is None:
            reference.label(answer["arm"], x, y)
            n3, n1 = reference.n["v3"], reference.n["v1"]
            gap = reference.values("v3")["Accuracy"] - reference.values("v1")["Accuracy"]
            if n3 >= 40 and n1 >= 40 and gap > 0.1:
                stop_at = i
                expected = {
                    "value": reference.values("v1")["Accuracy"],
                    "baseline_value": reference.values("v3")["Accuracy"],
                    "n_labels": n1,
                    "baseline_n_labels": n3,
                }
    assert stop_at is not None
    assert "v1" in arms[:stop_at] and set(arms[stop_at + 1 :]) == {"v3"}
    view = engine.canary("m@production")
    assert view["status"] == "stopped" and view["weights"] == {"v3": 100.0, "v1": 0.0}
    (numbers,) = view["stopped"]["numbers"]
    assert numbers["arm"] == "v1" and numbers["n_labels"] == expected["n_labels"]
    assert numbers["baseline_n_labels"] == expected["baseline_n_labels"]
    assert math.isclose(numbers["value"], expected["value"], rel_tol=1e-12)
    assert math.isclose(numbers["baseline_value"], expected["baseline_value"], rel_tol=1e-12)
    assert view["stopped"]["n_learns"] == V3 + stop_at + 1
    assert [e.type for e in events] == ["model.canary_set", "model.canary_stopped"]
    assert events[1].data["stopped"]["numbers"] == view["stopped"]["numbers"]
    # Moving it again runs it again.
    moved = engine.update_canary("m@production", {"v3": 50, "v1": 50})
    assert moved["status"] == "running" and moved["stopped"] is None
    assert events[-1].type == "model.canary_moved"


# -- durability --------------------------------------------------------------------------------


def test_a_restart_keeps_the_split_its_arms_and_their_metrics(tmp_path: Path) -> None:
    """On SQLite: half the labels, close, open again (the split and the arms' metrics from
    the checkpoint), then labels of predictions made before the restart still score their
    arm; a second engine with checkpoints far apart replays the log to the same numbers."""
    db = str(tmp_path / "canary.db")
    reference = Reference({"v2": trained(V2), "v3": trained(V3)})
    pending = []
    with Engine(db, checkpoint_every=100_000, checkpoint_seconds=100_000) as engine:
        prepared(engine)
        engine.set_canary("m@production", {"v2": 50, "v3": 50})
        for i, (x, y) in enumerate(DATA[V3:900]):
            answer = engine.predict("m@production", x)
            if i % 2:
                engine.learn("m", ground_truth=y, id=answer["id"])
                reference.label(answer["arm"], x, y)
            else:
                pending.append((answer["id"], answer["arm"], x, y))
        before = engine.canary("m@production")
        # not closed cleanly: its store is closed without the checkpoint on close
        engine._closed = True
        engine._stop.set()
        engine.store.close()
    with Engine(db) as engine:
        after = engine.canary("m@production")
        assert after == before
        for prediction_id, arm, x, y in pending:
            engine.learn("m", ground_truth=y, id=prediction_id)
            reference.label(arm, x, y)
        view = engine.canary("m@production")
    with Engine(db) as engine:
        assert engine.canary("m@production") == view
    for arm in ("v2", "v3"):
        assert close(arm_of(view, arm)["metrics"], reference.values(arm))
        assert arm_of(view, arm)["n_labels"] == reference.n[arm]


# -- bad input ---------------------------------------------------------------------------------


def test_bad_splits_are_refused_and_change_nothing(engine: Engine) -> None:
    prepared(engine)
    engine.set_canary("m@production", {"v2": 90, "v3": 10})
    before = engine.canary("m@production")
    bad: list[tuple[Any, dict[str, Any], type[Exception]]] = [
        ({"v2": 90, "v9": 10}, {}, VersionNotFound),
        ({"v2": 90, "v3": 20}, {}, InvalidInput),
        ({"v2": 100}, {}, InvalidInput),
        ({"v2": 90, "v3": "10"}, {}, InvalidInput),
        ({"v2": 110, "v3": -10}, {}, InvalidInput),
        ({"vx": 90, "v3": 10}, {}, InvalidInput),
        ({"v2": 90, "2": 10}, {}, InvalidInput),
        ({"v2": 90, "v3": 10}, {"guard": {"metric": "MAE"}}, InvalidInput),
        ({"v2": 90, "v3": 10}, {"guard": {"metric": "Accuracy", "margin": -1}}, InvalidInput),
        ({"v2": 90, "v3": 10}, {"guard": {"metric": "Accuracy", "min_samples": 0}}, InvalidInput),
        ({"v2": 90, "v3": 10}, {"guard": {"metric": "Accuracy", "window": 5}}, InvalidInput),
        ({"v2": 90, "v3": 10}, {"sticky": "customer"}, InvalidInput),
        ({"v2": 90, "v3": 10}, {"baseline": "v1"}, InvalidInput),
    ]
    for arms, options, error in bad:
        with pytest.raises(error):
            engine.set_canary("m@production", arms, **options)
    with pytest.raises(InvalidInput):
        engine.update_canary("m@production", {"v2": 50, "v1": 50})
    with pytest.raises(InvalidInput):
        engine.update_canary("m@production", {"v2": 50})
    with pytest.raises(InvalidInput):
        engine.set_canary("m@2", {"v2": 50, "v3": 50})
    with pytest.raises(VersionNotFound):
        engine.set_canary("m@staging", {"v2": 50, "v3": 50})
    with pytest.raises(NotFound):
        engine.canary("m")
    with pytest.raises(NotFound):
        engine.stop_canary("m")
    assert engine.canary("m@production") == before


# -- HTTP, client, CLI, Prometheus -------------------------------------------------------------


async def test_the_routes_answer_and_refuse_with_4xx(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "api.db")) as engine:
        prepared(engine)
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            url = "/v1/models/m@production/canary"
            assert (await api.get(url)).status_code == 404
            body = {"arms": {"v2": 90, "v3": 10}, "guard": {"metric": "Accuracy"}}
            response = await api.put(url, json=body)
            assert response.status_code == 200, response.text
            assert response.json()["weights"] == {"v2": 90.0, "v3": 10.0}
            refusals = [
                ("PUT", url, {"arms": {"v2": 90, "v9": 10}}, 404),
                ("PUT", url, {"arms": {"v2": 90, "v3": 11}}, 400),
                ("PUT", url, {"arms": {"v2": 90, "v3": 10}, "guard": {"metric": "nope"}}, 400),
                ("PUT", url, {"arms": {"v2": 90, "v3": 10}, "extra": 1}, 400),
                ("PUT", url, {"weights": {"v2": 90, "v3": 10}}, 400),
                ("PATCH", url, {"weights": {"v2": 90}}, 400),
                ("PATCH", url, {"weights": {"v2": 90, "v7": 10}}, 400),
                ("PUT", "/v1/models/nope/canary", {"arms": {"v2": 90, "v3": 10}}, 404),
                ("DELETE", url + "?remove=maybe", None, 400),
            ]
            for method, path, payload, status in refusals:
                answer = await api.request(method, path, json=payload)
                assert answer.status_code == status, (method, path, payload, answer.text)
                assert answer.json()["error"]["code"]
            assert (await api.get(url)).json() == response.json()
            for i in range(200):
                answer = await api.post(
                    "/v1/models/m@production/predict", json={"features": DATA[i][0]}
                )
                assert answer.json()["arm"] in ("v2", "v3")
            moved = await api.patch(url, json={"weights": {"v2": 50, "v3": 50}})
            assert moved.json()["weights"] == {"v2": 50.0, "v3": 50.0}
            metrics_text = (await api.get("/metrics")).text
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics_text.splitlines()
                if line.startswith("riverbed_canary_predictions_total{")
            )
            assert counted == 200
            assert 'riverbed_canary_weight{model="m",route="m@production",arm="v3"} 50.0' in (
                metrics_text
            )
            assert (await api.get(url + "/history")).status_code == 200
            assert len((await api.get("/v1/models/m/canaries")).json()["canaries"]) == 1
            stopped = await api.delete(url)
            assert stopped.json()["status"] == "stopped"
            assert (await api.delete(url + "?remove=true")).status_code == 200
            assert (await api.get(url)).status_code == 404


def test_the_client_against_a_server_killed_and_restarted(tmp_path: Path) -> None:
    """A real riverbed serve: the split set, traffic and labels through the client, kill -9,
    a restart: the same split, counts and per-arm metrics (the log replayed)."""
    db = str(tmp_path / "server.db")
    with Engine(db) as engine:
        prepared(engine)
    reference = Reference({"live": trained(V3), "v3": trained(V3)})
    server = Server(db).start()
    try:
        with Client(server.url) as client:
            client.set_canary("m", {"live": 70, "v3": 30}, sticky="key:customer")
            for i, (x, y) in enumerate(DATA[V3:700]):
                answer = client.predict("m", {**x, "customer": i % 97})
                reference.label(answer["arm"], {**x, "customer": i % 97}, y)
                client.learn("m", ground_truth=y, id=answer["id"])
            before = client.canary("m")
        server.kill()
        server = Server(db).start()
        with Client(server.url) as client:
            assert client.canary("m") == before
    finally:
        server.stop()
    for arm in ("live", "v3"):
        assert close(arm_of(before, arm)["metrics"], reference.values(arm)), arm


def test_the_cli_sets_shows_moves_and_stops(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    with Engine(db) as engine:
        prepared(engine)
    done = riverbed(
        "canary", "set", "m@production", "v2=90", "v3=10", "--guard-metric", "Accuracy",
        "--guard-margin", "0.05", "--guard-min-samples", "50", "--database", db,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "m@production: running, baseline v2" in done.stdout
    shown = riverbed("canary", "show", "m@production", "--json", "--database", db)
    view = json.loads(shown.stdout)
    assert view["guard"] == {"metric": "Accuracy", "margin": 0.05, "min_samples": 50}
    moved = riverbed("canary", "move", "m@production", "v2=60", "v3=40", "--database", db)
    assert moved.returncode == 0 and "40%" in moved.stdout, moved.stderr
    bad = riverbed("canary", "move", "m@production", "v2=60", "v3=50", "--database", db)
    assert bad.returncode != 0 and "sum to 100" in bad.stderr
    stopped = riverbed("canary", "stop", "m@production", "--json", "--database", db)
    assert json.loads(stopped.stdout)["weights"] == {"v2": 100.0, "v3": 0.0}
    removed = riverbed("canary", "stop", "m@production", "--remove", "--database", db)
    assert removed.returncode == 0 and "removed" in removed.stdout
    gone = riverbed("canary", "show", "m@production", "--database", db)
    assert gone.returncode != 0 and "no canary split" in gone.stderr
