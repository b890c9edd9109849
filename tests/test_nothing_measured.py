"""A metric with nothing to measure yet (no label, an empty window, a forecast step not
scored) is null on every surface of riverbed, not river's starting 0.0 or -0.0: the JSON API,
the metrics stream, the WebSocket and the Python client say null (None), ``riverbed models
show`` and the dashboard (in Debian's headless Chromium) show ``–``, and Prometheus has no
sample for it. The chantilly and django-river-ml layers keep answering 0.0, as those servers
did (their clients expect numbers)."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, expect
from prometheus_client.parser import text_string_to_metric_families
from river import anomaly, datasets, metrics, preprocessing, time_series

from riverbed import Client, Engine, specs
from riverbed.metrics import Tracker, Window
from tests import test_dashboard_browser
from tests.helpers import Server, riverbed

CLASSIFIER = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}
PHISHING = list(datasets.Phishing().take(5))
BINARY = ["Accuracy", "LogLoss", "F1", "ROCAUC"]
browser = test_dashboard_browser.browser  # the fixture: Debian's headless Chromium


def nothing(names: list[str]) -> dict[str, None]:
    return dict.fromkeys(names)


# The tracker, where the values come from.


def test_a_fresh_tracker_says_none_for_every_metric_and_window() -> None:
    tracker = Tracker(BINARY, windows=[Window(size=3)])
    values = tracker.values()
    assert values["metrics"] == nothing(BINARY)
    assert values["windows"][0]["metrics"] == nothing(BINARY)
    assert values["windows"][0]["n"] == 0
    tracker.update(True, {True: 0.7, False: 0.3}, t=0.0)
    after = tracker.values()
    assert None not in after["metrics"].values()
    assert None not in after["windows"][0]["metrics"].values()


def test_a_measured_zero_is_0_0_never_minus_0_0() -> None:
    """river's ROCAUC after one sample is -0.0; the wire says 0.0."""
    reference = metrics.ROCAUC()
    reference.update(True, {True: 0.7, False: 0.3})
    assert str(reference.get()) == "-0.0"  # what river says, so the next line can fail
    tracker = Tracker(["ROCAUC"], windows=[Window(size=3)])
    tracker.update(True, {True: 0.7, False: 0.3}, t=0.0)
    values = tracker.values()
    assert str(values["metrics"]["ROCAUC"]) == "0.0"
    assert str(values["windows"][0]["metrics"]["ROCAUC"]) == "0.0"


def test_a_metric_of_another_kind_waits_for_its_own_first_sample() -> None:
    """A clusterer's Silhouette scores an unlabelled learn; AdjustedRand needs a truth."""
    tracker = Tracker(["Silhouette", "AdjustedRand"])
    centers = {0: {"a": 0.0}, 1: {"a": 1.0}}
    assert tracker.update(None, 0, t=0.0, x={"a": 0.1}, centers=centers)
    values = tracker.values()
    assert values["n"] == 1 and values["metrics"]["AdjustedRand"] is None
    assert isinstance(values["metrics"]["Silhouette"], float)
    tracker.update(1, 0, t=0.0, x={"a": 0.2}, centers=centers)
    assert isinstance(tracker.values()["metrics"]["AdjustedRand"], float)


def test_a_tracker_pickled_before_it_knew_what_was_unscored() -> None:
    """A checkpoint written by an older riverbed has no ``unscored``: a tracker that had
    scored is taken as scored, one that had not as not."""
    for n_scored in (0, 2):
        tracker = Tracker(["MAE"])
        for y in range(n_scored):
            tracker.update(float(y), 0.5, t=0.0)
        state = dict(tracker.__dict__)
        del state["unscored"]
        old = Tracker.__new__(Tracker)
        old.__setstate__(state)
        assert (old.values()["metrics"]["MAE"] is None) == (n_scored == 0)


# The engine and the JSON API through ASGI.


async def test_the_api_says_null_until_a_label_then_0_0(api: httpx.AsyncClient) -> None:
    body = {"name": "p", "spec": CLASSIFIER, "options": {"windows": [{"size": 10}]}}
    assert (await api.post("/v1/models", json=body)).status_code == 201
    raw = (await api.get("/v1/models/p/metrics")).text
    assert "-0.0" not in raw and "0.0" not in raw
    shown = json.loads(raw)
    assert shown["n"] == 0 and shown["metrics"] == nothing(BINARY)
    assert shown["windows"][0]["metrics"] == nothing(BINARY)
    # A prediction is not a label: still nothing measured.
    x, y = PHISHING[0]
    predicted = await api.post("/v1/models/p/predict", json={"features": x, "id": "a"})
    assert predicted.status_code == 200
    assert (await api.get("/v1/models/p/metrics")).json()["metrics"] == nothing(BINARY)
    learned = await api.post("/v1/models/p/learn", json={"id": "a", "ground_truth": y})
    assert learned.status_code == 200
    raw = (await api.get("/v1/models/p/metrics")).text
    assert "-0.0" not in raw  # ROCAUC of one sample, -0.0 in river
    after = json.loads(raw)
    assert after["n"] == 1 and None not in after["metrics"].values()
    assert None not in after["windows"][0]["metrics"].values()


async def test_an_unlabelled_anomaly_learn_measures_nothing(api: httpx.AsyncClient) -> None:
    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
    body = {"name": "hst", "spec": specs.to_spec(model)}
    assert (await api.post("/v1/models", json=body)).status_code == 201
    for x, _ in PHISHING:
        assert (await api.post("/v1/models/hst/learn", json={"features": x})).status_code == 200
    shown = (await api.get("/v1/models/hst/metrics")).json()
    assert (shown["n_learns"], shown["n"], shown["metrics"]) == (5, 0, {"ROCAUC": None})


async def test_a_forecasters_steps_are_null_until_a_forecast_is_scored(
    api: httpx.AsyncClient,
) -> None:
    model = time_series.HoltWinters(alpha=0.3)
    body = {"name": "air", "spec": specs.to_spec(model), "options": {"horizon": 3}}
    assert (await api.post("/v1/models", json=body)).status_code == 201
    steps = ["+1 MAE", "+2 MAE", "+3 MAE"]
    passengers = [y for _, y in datasets.AirlinePassengers()]
    # The first forecast is made before the 4th learn and scored at the 7th (as river's
    # iter_evaluate scores it; tests/test_tasks.py checks the values).
    for y in passengers[:7]:
        shown = (await api.get("/v1/models/air/metrics")).json()
        assert shown["metrics"] == nothing(steps), shown
        learned = await api.post("/v1/models/air/learn", json={"ground_truth": y})
        assert learned.status_code == 200
    shown = (await api.get("/v1/models/air/metrics")).json()
    assert shown["n"] == 1 and all(isinstance(shown["metrics"][s], float) for s in steps)


def test_nothing_measured_survives_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    with Engine(db) as engine:
        engine.create_model("p", spec=CLASSIFIER)
        engine.predict("p", PHISHING[0][0], id="a")
        engine.checkpoint("p")
    with Engine(db) as engine:
        assert engine.metrics("p")["metrics"] == nothing(BINARY)
        engine.learn("p", None, PHISHING[0][1], id="a")
        engine.checkpoint("p")
    with Engine(db) as engine:
        assert None not in engine.metrics("p")["metrics"].values()


# Against a real riverbed serve: the client, the streams, the CLI, Prometheus, compat.


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(str(tmp_path_factory.mktemp("measured") / "server.db")) as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url) as c:
        c.create_model("fresh", spec=CLASSIFIER)
        yield c
        for model in c.list_models():
            c.delete_model(model["name"])


def label_one(client: Client) -> None:
    x, y = PHISHING[0]
    client.predict("fresh", x, id="one")
    client.learn("fresh", ground_truth=y, id="one")


def test_the_client_and_the_metrics_stream_carry_none(client: Client) -> None:
    assert client.metrics("fresh")["metrics"] == nothing(BINARY)
    stream = client.metrics_stream("fresh", interval=0.05)
    first = next(stream)
    assert first["event"] == "metrics" and first["data"]["metrics"] == nothing(BINARY)
    label_one(client)
    seen = first
    while seen["data"]["n"] < 1:
        seen = next(stream)
    assert None not in seen["data"]["metrics"].values()
    assert None not in client.metrics("fresh")["metrics"].values()


def test_the_websocket_answers_null(server: Server, client: Client) -> None:
    from websockets.sync.client import connect

    with connect(server.url.replace("http://", "ws://") + "/v1/ws") as ws:
        ws.send(orjson.dumps({"id": 1, "op": "metrics", "model": "fresh"}))
        raw = ws.recv(timeout=30)
    assert "-0.0" not in str(raw)
    answer = orjson.loads(raw)
    assert answer["id"] == 1 and answer["result"]["metrics"] == nothing(BINARY)


def test_the_cli_shows_a_dash_until_a_label(server: Server, client: Client) -> None:
    done = riverbed("models", "show", "fresh", "--url", server.url)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("live_metrics"))
    assert line.split(None, 1)[1] == "Accuracy=–, LogLoss=–, F1=–, ROCAUC=– (0 scored)"
    label_one(client)
    done = riverbed("models", "show", "fresh", "--url", server.url)
    line = next(x for x in done.stdout.splitlines() if x.startswith("live_metrics"))
    assert "–" not in line and "-0" not in line and line.endswith("(1 scored)"), line
    values = client.metrics("fresh")["metrics"]
    assert f"Accuracy={values['Accuracy']:.4g}," in line


def prometheus_metrics(server: Server) -> set[tuple[str, str]]:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    return {
        (s.labels["model"], s.labels["metric"])
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ("riverbed_metric", "riverbed_metric_window")
    }


def test_prometheus_has_no_sample_for_an_unscored_metric(server: Server, client: Client) -> None:
    assert not any(model == "fresh" for model, _ in prometheus_metrics(server))
    assert "NaN" not in httpx.get(server.url + "/metrics", timeout=30).text
    label_one(client)
    assert {m for model, m in prometheus_metrics(server) if model == "fresh"} == set(BINARY)


def test_chantilly_and_django_river_ml_still_answer_numbers(server: Server, client: Client) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        chantilly = http.get("/api/metrics", params={"model": "fresh"})
        django = http.get("/api/metrics/", params={"model": "fresh"})
    assert chantilly.status_code == 200 and django.status_code == 200
    assert chantilly.json() == dict.fromkeys(BINARY, 0.0)
    assert django.json() == dict.fromkeys(BINARY, 0.0)
    assert "-0.0" not in chantilly.text + django.text


def test_the_legacy_metric_streams_send_numbers(server: Server, client: Client) -> None:
    """chantilly's and django-river-ml's metric streams after an unlabelled learn (nothing
    scored): numbers, as their dashboards expect."""
    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
    client.create_model("hst", spec=specs.to_spec(copy.deepcopy(model)))
    for path in ("/api/stream/metrics?model=hst", "/api/stream/metrics/"):
        with (
            httpx.Client(base_url=server.url, timeout=30) as http,
            http.stream("GET", path) as response,
        ):
            assert response.status_code == 200
            lines = response.iter_lines()
            assert ": connected" in itertools.islice(lines, 5)  # subscribed from here on
            client.learn("hst", PHISHING[0][0])
            data = next(x for x in itertools.islice(lines, 50) if x.startswith("data: "))
        assert "-0.0" not in data, path
        assert json.loads(data.removeprefix("data: ")) == {"ROCAUC": 0.0}, path


@pytest.mark.slow
def test_the_dashboard_shows_a_dash_until_a_label(
    server: Server, client: Client, browser: Browser, request: pytest.FixtureRequest
) -> None:
    """In Debian's headless Chromium: the overview card of a model with no label shows "–"
    for each metric, and numbers once one is scored (the console stays free of errors)."""
    page = test_dashboard_browser.open_page(
        browser, request, viewport={"width": 1280, "height": 900}
    )
    page.goto(server.url + "/")
    card = page.locator('[data-model="fresh"]')
    expect(card.locator(".primary .label")).to_have_text("Accuracy")
    expect(card.locator(".primary .value")).to_have_text("–")
    expect(card.locator(".mini dd")).to_have_text(["–", "–", "–"])
    label_one(client)
    expect(card.locator(".primary .value")).not_to_have_text("–", timeout=30_000)
    shown = float(card.locator(".primary .value").inner_text())
    assert shown == pytest.approx(client.metrics("fresh")["metrics"]["Accuracy"], abs=1e-4)
    for value in card.locator(".mini dd").all_inner_texts():
        float(value)  # a number, not "–"
