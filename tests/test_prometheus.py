"""``GET /metrics``: Prometheus' text format with per-model counters and metric gauges."""

from __future__ import annotations

import math

import httpx
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from river import datasets

from riverbed.live import _OpStats
from riverbed.server.app import endpoints
from riverbed.server.prometheus import BOUNDS, _label, exposition, wants_openmetrics

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
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Samples by (name, labels), read by prometheus-client's own parser of the text format
    (which refuses a sample before its family's TYPE, bad escapes and bad numbers)."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.type in {"counter", "gauge", "histogram"}, family
        assert family.documentation, f"{family.name} has no HELP"
        for s in family.samples:
            samples[(s.name, tuple(s.labels.items()))] = s.value
    return samples


def parse_openmetrics(text: str) -> Samples:
    """The same from prometheus-client's OpenMetrics parser (strict: # EOF, counters'
    names, histogram buckets in order with +Inf and a count)."""
    samples: Samples = {}
    for family in openmetrics_families(text):
        for s in family.samples:
            samples[(s.name, tuple(s.labels.items()))] = s.value
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


async def test_openmetrics_when_the_scraper_asks_for_it(api: httpx.AsyncClient) -> None:
    """Prometheus' own Accept header: OpenMetrics first, the text format as a fallback."""
    await api.post("/v1/models", json={"name": "p", "spec": SPEC})
    for i, (x, y) in enumerate(datasets.Phishing().take(8)):
        await api.post("/v1/models/p/predict", json={"features": x, "id": f"s{i}"})
        await api.post("/v1/models/p/learn", json={"id": f"s{i}", "ground_truth": y})
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    response = await api.get("/metrics", headers={"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    om = parse_openmetrics(response.text)
    text = parse((await api.get("/metrics")).text)
    assert om[("riverbed_learns_total", (("model", "p"),))] == 8
    # The same samples in both formats.
    assert set(om) == set(text)
    for key, value in text.items():
        assert om[key] == value or (math.isnan(om[key]) and math.isnan(value)), key


def test_accept_negotiation() -> None:
    assert wants_openmetrics("application/openmetrics-text; version=1.0.0")
    assert not wants_openmetrics("")
    assert not wants_openmetrics("text/plain;version=0.0.4")
    assert not wants_openmetrics("*/*, application/openmetrics-text")


async def test_latency_histograms_count_every_timed_call(api: httpx.AsyncClient) -> None:
    await api.post("/v1/models", json={"name": "h", "spec": SPEC})
    for i, (x, y) in enumerate(datasets.Phishing().take(25)):
        await api.post("/v1/models/h/predict", json={"features": x, "id": f"s{i}"})
        if i % 5 == 0:
            await api.post("/v1/models/h/learn", json={"id": f"s{i}", "ground_truth": y})
    samples = parse((await api.get("/metrics")).text)
    stats = (await api.get("/v1/models/h/stats")).json()
    h = (("model", "h"),)
    for op, n in (("predict", 25), ("learn", 5)):
        family = f"riverbed_{op}_duration_seconds"
        buckets = [samples[(f"{family}_bucket", (("model", "h"), ("le", le)))] for le in LES]
        assert buckets == sorted(buckets), "cumulative"
        assert buckets[-1] == samples[(f"{family}_count", h)] == n == stats[op]["n_calls"]
        mean = samples[(f"{family}_sum", h)] / n
        assert math.isclose(mean, stats[op]["mean_duration"], rel_tol=1e-9)


LES = [repr(b) for b in BOUNDS] + ["+Inf"]


def test_a_histogram_bucket_counts_under_the_bound_above_it() -> None:
    stats = _OpStats()
    for seconds in (3e-6, 3e-6, 2e-4, 0.7, 42.0):
        stats.add(seconds)
    cumulative, count, total = stats.cumulative(BOUNDS)
    at = dict(zip(BOUNDS, cumulative, strict=True))
    assert at[2.5e-6] == 0 and at[5e-6] == 2  # 3 µs is above 2.5 µs, below 5 µs
    assert at[1e-4] == 2 and at[2.5e-4] == 3
    assert at[0.5] == 3 and at[1.0] == 4
    assert at[10.0] == 4 and count == 5  # 42 s is only in +Inf
    assert math.isclose(total, 3e-6 + 3e-6 + 2e-4 + 0.7 + 42.0)
