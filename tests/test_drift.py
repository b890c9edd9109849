"""Drift alarms (riverbed.drift): river's detectors on a model's errors and features.

Every test compares with river run directly: the same model predicting then learning the
same samples, the same detector class fed the same values; an alarm of riverbed's is at the
learn where river's detector says ``drift_detected``, on every store, across a kill -9 and
its restart, through the client, the CLI and GET /metrics.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from river import datasets, drift, linear_model, preprocessing, tree

from riverbed import Client, Engine, specs
from riverbed.cli import cli
from riverbed.exceptions import InvalidInput, NotServable
from tests.helpers import STORES, Server, database

DOCS = Path(__file__).resolve().parent.parent / "docs" / "drift.md"
N = 3000
SALARY = "feature:salary"


def drifting(n: int = N, position: int = N // 2) -> list[tuple[dict[str, Any], Any]]:
    """Agrawal's classification function 0, then (50 samples wide) function 2: a concept
    drift river makes, nothing downloaded."""
    stream = datasets.synth.ConceptDriftStream(
        stream=datasets.synth.Agrawal(classification_function=0, seed=42),
        drift_stream=datasets.synth.Agrawal(classification_function=2, seed=42),
        position=position,
        width=50,
        seed=1,
    )
    return list(itertools.islice(stream, n))


def regression(n: int = 2000) -> list[tuple[dict[str, Any], float]]:
    """Friedman's function, whose target shifts at n // 2 (river's FriedmanDrift, 'gra')."""
    stream = datasets.synth.FriedmanDrift(drift_type="gra", position=(n // 2, n), seed=7)
    return [({f"x{k}": v for k, v in x.items()}, y) for x, y in itertools.islice(stream, n)]


def reference(
    samples: list[tuple[dict[str, Any], Any]],
    model: Any,
    detectors: dict[str, tuple[Any, str]],
    *,
    errors: str = "mistake",
    reset: frozenset[str] = frozenset(),
) -> list[tuple[int, str]]:
    """river alone: predict, learn, feed each detector (name -> (detector, on)) its value;
    the alarms as (learn position, detector name). A detector in ``reset`` starts the model
    again (clone) after its alarm."""
    alarms = []
    for position, (x, y) in enumerate(samples, start=1):
        y_pred = model.predict_one(x)
        model.learn_one(x, y)
        if errors == "mistake":
            error = 0.0 if y_pred is not None and y_pred == y else 1.0
        else:
            error = abs(y - y_pred)
        fired = False
        for name, (detector, on) in detectors.items():
            value = error if on == "errors" else float(x[on.removeprefix("feature:")])
            detector.update(value)
            if detector.drift_detected:
                alarms.append((position, name))
                fired = fired or name in reset
        if fired:
            model = model.clone()
    return sorted(alarms)


def learn_all(face: Any, name: str, samples: list[tuple[dict[str, Any], Any]]) -> None:
    """In batches of learn_many, with every 7th sample predicted then labelled by id."""
    for start in range(0, len(samples), 250):
        chunk = samples[start : start + 250]
        batch = []
        for i, (x, y) in enumerate(chunk):
            if i % 7 == 3:  # flush the batch, then predict and label by id, in order
                if batch:
                    face.learn_many(name, batch)
                    batch = []
                p = face.predict(name, x)
                face.learn(name, ground_truth=y, id=p["id"])
            else:
                batch.append({"features": x, "ground_truth": y})
        if batch:
            face.learn_many(name, batch)


CLASSIFIER_DETECTORS = [
    {"detector": "ADWIN"},
    {"detector": "DDM"},
    {"detector": "HDDM_A", "params": {"drift_confidence": 0.0001}},
    {"detector": "KSWIN", "on": SALARY, "params": {"seed": 1, "alpha": 0.0001}},
]


def classifier_reference(samples: list[tuple[dict[str, Any], Any]]) -> list[tuple[int, str]]:
    return reference(
        samples,
        tree.HoeffdingTreeClassifier(),
        {
            "ADWIN": (drift.ADWIN(), "errors"),
            "DDM": (drift.binary.DDM(), "errors"),
            "HDDMA": (drift.binary.HDDMA(drift_confidence=0.0001), "errors"),
            "KSWIN:salary": (drift.KSWIN(seed=1, alpha=0.0001), SALARY),
        },
    )


def positions(alarms: list[dict[str, Any]]) -> list[tuple[int, str]]:
    return [(a["position"], a["name"]) for a in alarms]


@pytest.fixture(scope="module")
def samples() -> list[tuple[dict[str, Any], Any]]:
    return drifting()


@pytest.fixture(scope="module")
def expected(samples: list[tuple[dict[str, Any], Any]]) -> list[tuple[int, str]]:
    alarms = classifier_reference(samples)
    # The stream has real drift: every detector fires, the error detectors after the drift
    assert {name for _, name in alarms} == {"ADWIN", "DDM", "HDDMA", "KSWIN:salary"}
    assert any(p > N // 2 for p, name in alarms if name == "DDM")
    return alarms


@pytest.mark.parametrize("kind", STORES)
def test_alarms_are_where_rivers_own_detectors_raise_them_on_every_store(
    kind: str,
    tmp_path: Path,
    samples: list[tuple[dict[str, Any], Any]],
    expected: list[tuple[int, str]],
) -> None:
    with database(kind, tmp_path) as db, Engine(db) as engine:
        events: list[Any] = []
        engine.events.subscribe(lambda e: e.type == "model.drift" and events.append(e))
        engine.create_model("m", tree.HoeffdingTreeClassifier())
        shown = engine.set_drift("m", CLASSIFIER_DETECTORS)
        assert [d["name"] for d in shown["detectors"]] == ["ADWIN", "DDM", "HDDMA", "KSWIN:salary"]
        assert shown["errors"] == "mistake"
        learn_all(engine, "m", samples)
        alarms = engine.drift_alarms("m")["alarms"]
        assert positions(alarms) == expected
        # each alarm says what fired, on what, and where in the detector's own stream
        first = alarms[0]
        assert first["index"] == first["position"] - 1  # every learn fed every detector
        assert first["detector"] in {"ADWIN", "DDM", "HDDMA", "KSWIN"}
        assert isinstance(first["statistics"], dict) and first["action"] is None
        # published once written, one event an alarm, with the same data
        assert sorted((e.data["position"], e.data["name"]) for e in events) == expected
        assert all(e.model == "m" for e in events)
        state = {d["name"]: d for d in engine.drift("m")["detectors"]}
        for name in state:
            assert state[name]["n_alarms"] == sum(1 for _, n in expected if n == name)
            assert state[name]["n"] == N and state[name]["n_skipped"] == 0
        assert state["ADWIN"]["last_alarm"] == max(p for p, n in expected if n == "ADWIN")
        assert engine.drift_alarms("m", after=N // 2)["alarms"] == [
            a for a in alarms if a["position"] > N // 2
        ]
        assert len(engine.drift_alarms("m", limit=2)["alarms"]) == 2


def test_a_regressors_absolute_errors_feed_the_detectors(tmp_path: Path) -> None:
    data = regression()
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    want = reference(
        data,
        model.clone(),
        {
            "ADWIN": (drift.ADWIN(delta=0.01), "errors"),
            "PageHinkley": (drift.PageHinkley(threshold=20.0), "errors"),
        },
        errors="absolute",
    )
    assert want and any(p > 1000 for p, _ in want)
    with Engine(str(tmp_path / "r.db")) as engine:
        engine.create_model("r", model)
        shown = engine.set_drift(
            "r",
            [
                {"detector": "ADWIN", "params": {"delta": 0.01}},
                {"detector": "PageHinkley", "params": {"threshold": 20.0}},
            ],
        )
        assert shown["errors"] == "absolute error"
        learn_all(engine, "r", data)
        assert positions(engine.drift_alarms("r")["alarms"]) == want


def test_a_feature_a_sample_lacks_is_skipped_and_counted(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "f.db")) as engine:
        engine.create_model("m", tree.HoeffdingTreeClassifier())
        engine.learn("m", {"a": 1.0, "b": 2.0}, True)
        engine.set_drift("m", [{"detector": "ADWIN", "on": "feature:b"}])
        engine.learn("m", {"a": 1.0}, True)
        engine.learn("m", {"a": 2.0}, False)
        engine.learn("m", {"a": 1.0, "b": 3.0}, False)
        (state,) = engine.drift("m")["detectors"]
        assert (state["n"], state["n_skipped"]) == (1, 2)


def test_a_restart_after_kill_9_goes_on_where_the_acknowledged_learns_left_the_detectors(
    tmp_path: Path, samples: list[tuple[dict[str, Any], Any]], expected: list[tuple[int, str]]
) -> None:
    db = str(tmp_path / "kill.db")
    half = 1700  # past a checkpoint (every 500 learns) and past alarms after it
    assert any(1500 < p <= half for p, _ in expected), "an alarm only the replay raises again"
    server = Server(db, None, "--checkpoint-every", "500", "--checkpoint-seconds", "3600")
    server.start()
    try:
        with Client(server.url) as client:
            client.create_model("m", spec=specs.to_spec(tree.HoeffdingTreeClassifier()))
            client.set_drift("m", CLASSIFIER_DETECTORS)
            learn_all(client, "m", samples[:half])
            before = client.drift_alarms("m")["alarms"]
    finally:
        server.kill()
    assert positions(before) == [a for a in expected if a[0] <= half]
    server = Server(db, None, "--checkpoint-every", "500").start()
    try:
        with Client(server.url) as client:
            state = {d["name"]: d for d in client.drift("m")["detectors"]}
            assert state["ADWIN"]["n"] == half  # the checkpoint, then the log replayed
            learn_all(client, "m", samples[half:])
            after = client.drift_alarms("m")["alarms"]
            metrics = httpx.get(server.url + "/metrics").text
    finally:
        server.stop()
    assert positions(after) == expected  # none lost, none twice
    assert after[: len(before)] == before  # the alarms written before the kill, as they were
    for name in ("ADWIN", "DDM"):
        n = sum(1 for _, d in expected if d == name)
        line = f'riverbed_drift_alarms_total{{model="m",detector="{name}"}} {n}'
        assert line in metrics.splitlines()


def test_reset_starts_the_model_again_at_each_alarm_and_a_restart_replays_it(
    tmp_path: Path, samples: list[tuple[dict[str, Any], Any]]
) -> None:
    want = reference(
        samples,
        tree.HoeffdingTreeClassifier(),
        {"DDM": (drift.binary.DDM(), "errors")},
        reset=frozenset({"DDM"}),
    )
    assert want
    last = want[-1][0]
    fresh = tree.HoeffdingTreeClassifier()
    for x, y in samples[last:]:
        fresh.learn_one(x, y)
    db = str(tmp_path / "reset.db")
    with Engine(db, checkpoint_every=400) as engine:
        engine.create_model("m", tree.HoeffdingTreeClassifier())
        engine.set_drift("m", [{"detector": "DDM", "action": "reset"}])
        learn_all(engine, "m", samples)
        assert positions(engine.drift_alarms("m")["alarms"]) == want
        probes = [x for x, _ in samples[:50]]
        now = [engine.predict("m", x)["probabilities"] for x in probes]
        metrics = engine.metrics("m")
    # the model after the last reset learned only what came after it
    assert all(_close(p, fresh.predict_proba_one(x)) for p, x in zip(now, probes, strict=True))
    with Engine(db) as engine:  # the checkpoint and the log again: the same model
        again = [engine.predict("m", x)["probabilities"] for x in probes]
        assert engine.metrics("m")["metrics"] == metrics["metrics"]
    assert again == now


def _close(a: dict[Any, float], b: dict[Any, float]) -> bool:
    keys = set(a) | set(b)
    return all(math.isclose(a.get(k, 0.0), b.get(k, 0.0), abs_tol=1e-12) for k in keys)


def test_snapshot_saves_a_version_at_each_alarm(tmp_path: Path) -> None:
    data = drifting(2400, position=1200)
    want = reference(data, tree.HoeffdingTreeClassifier(), {"DDM": (drift.binary.DDM(), "errors")})
    assert want
    with Engine(str(tmp_path / "s.db")) as engine:
        engine.create_model("m", tree.HoeffdingTreeClassifier())
        engine.set_drift("m", [{"detector": "DDM", "action": "snapshot"}])
        learn_all(engine, "m", data)
        versions = engine.list_versions("m")
        snapshots = [v for v in versions if v["source"] == "snapshot"]
        assert [v["n_learns"] for v in snapshots] == [p for p, _ in want]
        assert all(v["tags"] == {"drift": "DDM"} for v in snapshots)


def test_setting_the_same_detectors_again_keeps_their_state(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "same.db")) as engine:
        engine.create_model("m", tree.HoeffdingTreeClassifier())
        engine.set_drift("m", [{"detector": "ADWIN"}, {"detector": "DDM"}])
        for x, y in drifting(200):
            engine.learn("m", x, y)
        kept = engine.set_drift("m", [{"detector": "ADWIN"}, {"detector": "EDDM"}])
        assert [(d["name"], d["n"]) for d in kept["detectors"]] == [("ADWIN", 200), ("EDDM", 0)]
        assert engine.drift_off("m")["detectors"] == []
        assert engine.drift("m")["detectors"] == []


# -- bad input: a clear 4xx, nothing changed -------------------------------------------------

BAD = [
    ({"detectors": [{"detector": "ADWINN"}]}, "unknown detector 'ADWINN'"),
    ({"detectors": [{"detector": "ADWIN", "params": {"delt": 0.1}}]}, "no parameter(s) ['delt']"),
    ({"detectors": [{"detector": "KSWIN", "params": {"window": 3}}]}, "no parameter(s) ['window']"),
    ({"detectors": [{"detector": "KSWIN", "params": {"alpha": 2}}]}, "refused by river"),
    ({"detectors": [{"detector": "ADWIN", "params": {"delta": [1]}}]}, "must be a number"),
    ({"detectors": [{"detector": "ADWIN", "on": "feature:nope"}]}, "has no feature 'nope'"),
    ({"detectors": [{"detector": "ADWIN", "on": "labels"}]}, "'errors' or 'feature:NAME'"),
    ({"detectors": [{"detector": "ADWIN", "action": "page"}]}, "action is one of"),
    ({"detectors": [{"detector": "ADWIN"}, {"detector": "ADWIN"}]}, "two detectors are named"),
    ({"detectors": [{"detector": "ADWIN", "size": 3}]}, "unknown field(s) ['size']"),
    ({"detectors": {"detector": "ADWIN"}}, "detectors is a list"),
    ({"detector": "ADWIN"}, "unknown field"),
]
REGRESSOR_BAD = [
    ({"detectors": [{"detector": "DDM"}]}, "DDM detects drift in 0/1 streams"),
    ({"detectors": [{"detector": "HDDM_W"}]}, "HDDMW detects drift in 0/1 streams"),
]


@pytest.mark.parametrize(("body", "message"), BAD + [(b, m) for b, m in REGRESSOR_BAD])
async def test_bad_detectors_are_refused_with_400_and_change_nothing(
    api: httpx.AsyncClient, body: Any, message: str
) -> None:
    regressor = any(body == b for b, _ in REGRESSOR_BAD)
    model = preprocessing.StandardScaler() | (
        linear_model.LinearRegression() if regressor else linear_model.LogisticRegression()
    )
    await api.post("/v1/models", json={"name": "m", "spec": specs.to_spec(model)})
    truth = 1.5 if regressor else True
    await api.post("/v1/models/m/learn", json={"features": {"x": 1.0}, "ground_truth": truth})
    kept = await api.put("/v1/models/m/drift", json={"detectors": [{"detector": "PageHinkley"}]})
    assert kept.status_code == 200
    before = (await api.get("/v1/models/m/drift")).json()
    response = await api.put("/v1/models/m/drift", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and message in error["message"]
    assert (await api.get("/v1/models/m/drift")).json() == before


async def test_models_without_errors_or_live_state_are_refused_clearly(
    api: httpx.AsyncClient,
) -> None:
    missing = await api.put("/v1/models/nope/drift", json={"detectors": []})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert (await api.get("/v1/models/nope/drift/alarms")).status_code == 404
    spec = {"class": "river.cluster.KMeans"}
    await api.post("/v1/models", json={"name": "k", "spec": spec})
    response = await api.put("/v1/models/k/drift", json={"detectors": [{"detector": "ADWIN"}]})
    assert response.status_code == 400
    assert "a clustering model has no error stream" in response.json()["error"]["message"]
    # A clustering model has no challengers, so an alarm has none to promote.
    promoting = {"detectors": [{"detector": "ADWIN", "on": "feature:x", "action": "promote"}]}
    refused = await api.put("/v1/models/k/drift", json=promoting)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_input"
    assert "no challengers to promote" in refused.json()["error"]["message"]
    assert (await api.get("/v1/models/k/drift")).json()["detectors"] == []
    on_feature = {"detectors": [{"detector": "ADWIN", "on": "feature:x"}]}
    assert (await api.put("/v1/models/k/drift", json=on_feature)).status_code == 200
    bad_query = await api.get("/v1/models/k/drift/alarms?after=-1")
    assert bad_query.status_code == 400
    assert (await api.get("/v1/models/k/drift/alarms?since=3")).status_code == 400


def test_metrics_off_and_batch_models_say_why(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "e.db")) as engine:
        engine.create_model("quiet", tree.HoeffdingTreeClassifier(), metrics=[])
        with pytest.raises(InvalidInput, match="has no metrics"):
            engine.set_drift("quiet", [{"detector": "ADWIN"}])
        from sklearn.linear_model import LogisticRegression

        engine.upload("sk", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
        with pytest.raises(NotServable, match="no live learning state to reset"):
            engine.set_drift("sk", [{"detector": "ADWIN", "action": "reset"}])
        assert engine.set_drift("sk", [{"detector": "ADWIN"}])["detectors"][0]["n"] == 0


# -- the OpenAPI document, the CLI -----------------------------------------------------------


async def test_the_routes_are_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/models/{name}/drift"]) >= {"put", "get", "delete"}
    assert "get" in paths["/v1/models/{name}/drift/alarms"]


def _run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def test_the_cli_sets_shows_lists_and_takes_off_detectors_on_a_database(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    data = drifting(2400, position=1200)
    with Engine(db) as engine:
        engine.create_model("m", tree.HoeffdingTreeClassifier())
    result = _run("drift", "set", "m", "DDM", "--database", db)
    assert result.exit_code == 0, result.output
    assert "DDM" in result.output and "errors" in result.output
    result = _run(
        "drift",
        "set",
        "m",
        "KSWIN",
        "--on",
        SALARY,
        "-p",
        "seed=1",
        "-p",
        "alpha=0.0001",
        "--add",
        "--database",
        db,
    )
    assert result.exit_code == 0, result.output
    with Engine(db) as engine:
        assert [d["name"] for d in engine.drift("m")["detectors"]] == ["DDM", "KSWIN:salary"]
        learn_all(engine, "m", data)
        alarms = engine.drift_alarms("m")["alarms"]
    assert alarms
    shown = _run("drift", "show", "m", "--database", db)
    assert re.search(r"KSWIN:salary\s+KSWIN\s+feature:salary\s+seed=1, alpha=0.0001", shown.output)
    listed = _run("drift", "alarms", "m", "--database", db)
    assert listed.exit_code == 0
    for alarm in alarms:  # the time as ISO-8601 UTC (tests/test_cli_tables.py)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(alarm["time"]))
        line = rf"^{alarm['position']}\s+{at}\s+{re.escape(alarm['name'])}\s"
        assert re.search(line, listed.output, re.M)
    as_json = _run("drift", "alarms", "m", "--json", "--after", "1", "--database", db)
    assert '"alarms"' in as_json.output
    bad = _run("drift", "set", "m", "DDM", "-p", "nope=1", "--database", db)
    assert bad.exit_code == 1 and "invalid_input: detectors[0]: DDM has no parameter" in bad.output
    off = _run("drift", "off", "m", "--database", db)
    assert off.exit_code == 0 and "no drift detectors" in off.output
    assert _run("drift", "alarms", "m", "--database", db).output == listed.output  # kept


def test_the_cli_talks_to_a_server_by_url(tmp_path: Path) -> None:
    with Server(str(tmp_path / "srv.db")) as server:
        with Client(server.url) as client:
            client.create_model("m", spec=specs.to_spec(tree.HoeffdingTreeClassifier()))
        result = _run("drift", "set", "m", "ADWIN", "--action", "snapshot", "--url", server.url)
        assert result.exit_code == 0, result.output
        shown = _run("drift", "show", "m", "--json", "--url", server.url)
        assert '"action": "snapshot"' in shown.output
        none = _run("drift", "alarms", "m", "--url", server.url)
        assert none.output.strip() == "no drift alarms for m"


# -- the worked example of docs/drift.md -----------------------------------------------------


def docs_example() -> Iterator[str]:
    """The numbers docs/drift.md quotes, made the way the page says."""
    data = drifting(4000, position=2000)
    for action in ("snapshot", "reset"):
        with Engine("memory://") as engine:
            engine.create_model(
                "agrawal",
                tree.HoeffdingTreeClassifier(),
                metrics=["Accuracy"],
                options={"windows": [{"size": 1000}]},
            )
            engine.set_drift(
                "agrawal",
                [
                    {"detector": "ADWIN"},
                    {"detector": "DDM", "action": action},
                    {"detector": "KSWIN", "on": SALARY, "params": {"seed": 1, "alpha": 0.0001}},
                ],
            )
            for x, y in data:
                engine.learn("agrawal", x, y)
            alarms = engine.drift_alarms("agrawal")["alarms"]
            if action == "snapshot":
                for alarm in alarms:
                    mean = alarm["mean_before"]
                    yield f"| {action} | {alarm['position']} | {alarm['name']} | {mean:.4g} |"
            else:
                yield "(alarms at " + ", ".join(str(a["position"]) for a in alarms) + ")"
            metrics = engine.metrics("agrawal")
            overall = metrics["metrics"]["Accuracy"]
            last = metrics["windows"][0]["metrics"]["Accuracy"]
            versions = len(engine.list_versions("agrawal"))
            yield f"| {action} | {overall:.4f} | {last:.4f} | {versions} |"


def test_the_docs_example_shows_the_numbers_it_makes() -> None:
    text = DOCS.read_text()
    for line in docs_example():
        assert line in text, line
