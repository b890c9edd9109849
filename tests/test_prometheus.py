"""``GET /metrics``: Prometheus' text format with per-model counters and metric gauges."""

from __future__ import annotations

import math
import re

import httpx
import pytest
from river import datasets

from riverbed.server.app import endpoints
from riverbed.server.prometheus import _label, exposition

# Rolling windows come with the metrics history (issue 4); until then this test waits.
WINDOWS = pytest.mark.skipif(
    not any(e.path == "/v1/models/{name}/metrics/history" for e in endpoints()),
    reason="this server has no rolling windows yet",
)

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}
SAMPLE = re.compile(r'^([a-z_]+)(?:\{((?:[a-z]+="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$')


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples by (name, labels); also checks each family has HELP and TYPE before it."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in {"counter", "gauge"}
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        assert name in typed, f"{name} has no TYPE line before it"
        pairs = tuple(re.findall(r'([a-z]+)="((?:[^"\\]|\\.)*)"', labels or ""))
        samples[(name, pairs)] = float(value)
    return samples


async def test_counters_and_gauges_follow_the_model(api: httpx.AsyncClient) -> None:
    await api.post("/v1/models", json={"name": "p", "spec": SPEC})
    await api.post("/v1/models", json={"name": "idle", "spec": SPEC})
    for i, (x, y) in enumerate(datasets.Phishing().take(30)):
        await api.post("/v1/models/p/predict", json={"features": x, "id": f"s{i}"})
        if i < 20:
            await api.post("/v1/models/p/learn", json={"id": f"s{i}", "ground_truth": y})
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(response.text)
    assert samples[("riverbed_models", ())] == 2
    p = (("model", "p"),)
    assert samples[("riverbed_predictions_total", p)] == 30
    assert samples[("riverbed_learns_total", p)] == 20
    assert samples[("riverbed_scored_total", p)] == 20
    assert samples[("riverbed_learns_total", (("model", "idle"),))] == 0
    assert samples[("riverbed_predict_seconds_mean", p)] > 0
    served = (await api.get("/v1/models/p/metrics")).json()["metrics"]
    assert set(served) == {"Accuracy", "LogLoss", "F1", "ROCAUC"}
    for metric, value in served.items():
        gauge = samples[("riverbed_metric", (("model", "p"), ("metric", metric)))]
        assert math.isclose(gauge, value)


async def test_an_empty_server_exposes_zero_models(api: httpx.AsyncClient) -> None:
    samples = parse((await api.get("/metrics")).text)
    assert samples == {("riverbed_models", ()): 0.0}


async def test_a_deleted_model_disappears(api: httpx.AsyncClient) -> None:
    await api.post("/v1/models", json={"name": "gone", "spec": SPEC})
    await api.delete("/v1/models/gone")
    assert "gone" not in (await api.get("/metrics")).text


def test_label_values_are_escaped() -> None:
    assert _label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_exposition_of_an_engine_in_process(sqlite_engine: object) -> None:
    text = exposition(sqlite_engine)  # type: ignore[arg-type]
    assert text.endswith("\n") and "# TYPE riverbed_learns_total counter" in text


@WINDOWS
async def test_rolling_windows_are_gauges_too(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/v1/models", json={"name": "w", "spec": SPEC, "options": {"windows": [{"size": 5}]}}
    )
    assert created.status_code == 201, created.text
    for x, y in datasets.Phishing().take(12):
        await api.post("/v1/models/w/learn", json={"features": x, "ground_truth": y})
    windows = (await api.get("/v1/models/w/metrics")).json()["windows"]
    assert [w["window"] for w in windows] == ["5"]
    samples = parse((await api.get("/metrics")).text)
    for metric, value in windows[0]["metrics"].items():
        labels = (("model", "w"), ("metric", metric), ("window", "5"))
        assert math.isclose(samples[("riverbed_metric_window", labels)], value)


async def test_a_model_served_from_its_versions_does_not_fail_the_scrape(
    api: httpx.AsyncClient,
) -> None:
    """The README's registry example (a scikit-learn tree beside a river model), and a model
    holding an opaque file: the scrape answers, with the river model's samples."""
    from sklearn.tree import DecisionTreeClassifier

    engine = api.engine  # type: ignore[attr-defined]
    await api.post("/v1/models", json={"name": "p", "spec": SPEC})
    for x, y in datasets.Phishing().take(10):
        await api.post("/v1/models/p/learn", json={"features": x, "ground_truth": y})
    tree = DecisionTreeClassifier(max_depth=2).fit([[0, 0], [1, 1]], [0, 1])
    engine.upload("tree", tree, metrics={"accuracy": 0.98})
    engine.upload("notes", b"an opaque file", format="file", filename="notes.txt")
    response = await api.get("/metrics")
    assert response.status_code == 200, response.text
    samples = parse(response.text)
    assert samples[("riverbed_models", ())] == 3
    assert samples[("riverbed_learns_total", (("model", "p"),))] == 10
    # The tree is evaluated online (its counts are there, zero so far); the file is only kept.
    assert samples[("riverbed_predictions_total", (("model", "tree"),))] == 0
    assert not any(dict(labels).get("model") == "notes" for _, labels in samples)
