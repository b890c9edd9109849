"""scikit-learn models are evaluated online: their predictions get ids, ground truths come
later by id (or with the features), the task's metrics score each prediction as river
models' do, and stats (with latency percentiles) and Prometheus cover them too. They do not
learn online: a label never changes what the model answers."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io as sio
from river import datasets, metrics
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression, Ridge

from riverbed import Engine
from riverbed.exceptions import NotServable
from tests.test_prometheus import parse

STREAM = list(datasets.Phishing().take(500))
NAMES = sorted(STREAM[0][0])


def fitted_classifier() -> LogisticRegression:
    X = np.array([[x[n] for n in NAMES] for x, _ in STREAM[:300]])
    return LogisticRegression().fit(X, [y for _, y in STREAM[:300]])


async def test_delayed_labels_by_id_give_the_tasks_metrics_over_http(
    api: httpx.AsyncClient,
) -> None:
    model = fitted_classifier()
    uploaded = await api.post(
        "/v1/models/clf/versions",
        json={
            "artifact": __import__("base64").b64encode(sio.dumps(model)).decode(),
            "format": "skops",
            "feature_names": NAMES,
        },
    )
    assert uploaded.status_code == 201, uploaded.text
    answers = []
    for x, _ in STREAM[300:]:
        response = await api.post("/v1/models/clf/predict", json={"features": x})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert len({a["id"] for a in answers}) == 200 and all(a["version"] == 1 for a in answers)
    # The ground truths come later, by id, in another order.
    for answer, (_, y) in reversed(list(zip(answers, STREAM[300:], strict=True))):
        learned = await api.post(
            "/v1/models/clf/learn", json={"id": answer["id"], "ground_truth": y}
        )
        assert learned.status_code == 200, learned.text
    again = await api.post(
        "/v1/models/clf/learn", json={"id": answers[0]["id"], "ground_truth": True}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_labelled"

    # River's metrics over the same predictions, in the order the truths came.
    expected = {"Accuracy": metrics.Accuracy(), "LogLoss": metrics.LogLoss()}
    for answer, (_, y) in reversed(list(zip(answers, STREAM[300:], strict=True))):
        proba = {k == "true": v for k, v in answer["probabilities"].items()}
        expected["Accuracy"].update(y, max(proba, key=proba.__getitem__))
        expected["LogLoss"].update(y, proba)
    served = (await api.get("/v1/models/clf/metrics")).json()
    assert served["n"] == 200 and served["n_learns"] == 200
    for name, metric in expected.items():
        assert math.isclose(served["metrics"][name], metric.get()), name
    truth = [y for _, y in STREAM[300:]]
    X = np.array([[x[n] for n in NAMES] for x, _ in STREAM[300:]])
    assert math.isclose(served["metrics"]["Accuracy"], float(np.mean(model.predict(X) == truth)))

    stats = (await api.get("/v1/models/clf/stats")).json()
    assert stats["n_predictions"] == 200 and stats["predict"]["n_calls"] == 200
    p50, p99 = stats["predict"]["p50_duration"], stats["predict"]["p99_duration"]
    assert 0 < p50 <= p99
    described = (await api.get("/v1/models/clf")).json()
    assert described["n_predictions"] == 200 and described["n_learns"] == 200

    samples = parse((await api.get("/metrics")).text)
    labels = (("model", "clf"),)
    assert samples[("riverbed_predictions_total", labels)] == 200
    assert samples[("riverbed_learns_total", labels)] == 200
    accuracy = samples[("riverbed_metric", (("model", "clf"), ("metric", "Accuracy")))]
    assert math.isclose(accuracy, served["metrics"]["Accuracy"])
    assert ("riverbed_predict_seconds", (("model", "clf"), ("quantile", "0.99"))) in samples


def test_a_label_never_changes_the_model_and_the_evaluation_survives_a_restart(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "riverbed.db")
    model = fitted_classifier()
    with Engine(database) as engine:
        engine.upload("clf", model, feature_names=NAMES)
        probe = STREAM[300][0]
        before = engine.predict("clf", probe)["probabilities"]
        ids = [engine.predict("clf", x)["id"] for x, _ in STREAM[300:400]]
        for id, (_, y) in zip(ids[:60], STREAM[300:360], strict=True):
            engine.learn("clf", ground_truth=not y, id=id)  # wrong on purpose: no harm done
        # A truth given with the features scores a prediction made now.
        engine.learn("clf", STREAM[450][0], STREAM[450][1])
        assert engine.predict("clf", probe)["probabilities"] == before
        metrics_before, stats_before = engine.metrics("clf"), engine.stats("clf")
    with Engine(database) as engine:
        assert engine.metrics("clf") == metrics_before
        stats = engine.stats("clf")
        assert stats["n_predictions"] == stats_before["n_predictions"] == 102
        assert stats["n_learns"] == 61
        # The rest of the labels arrive after the restart, for predictions made before it.
        for id, (_, y) in zip(ids[60:], STREAM[360:400], strict=True):
            engine.learn("clf", ground_truth=y, id=id)
        assert engine.metrics("clf")["n"] == 101
        assert engine.predict("clf", probe)["probabilities"] == before


def test_a_new_version_answers_and_is_scored_in_the_same_metrics(engine: Engine) -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    engine.upload("reg", Ridge().fit(X, [0.0, 1.0, 2.0, 3.0]), feature_names=["a"])
    first = engine.predict("reg", {"a": 1.0})
    engine.upload("reg", Ridge().fit(X, [0.0, 2.0, 4.0, 6.0]), feature_names=["a"])
    second = engine.predict("reg", {"a": 1.0})
    pinned = engine.predict("reg@1", {"a": 1.0})
    assert (first["version"], second["version"], pinned["version"]) == (1, 2, 1)
    assert second["prediction"] > first["prediction"] == pinned["prediction"]
    for answer in (first, second, pinned):
        engine.learn("reg", ground_truth=2.0, id=answer["id"])
    mae = engine.metrics("reg")["metrics"]["MAE"]
    errors = [abs(2.0 - a["prediction"]) for a in (first, second, pinned)]
    assert math.isclose(mae, sum(errors) / 3)


def test_a_model_of_a_task_that_is_not_evaluated_is_still_only_served(engine: Engine) -> None:
    X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    engine.upload(
        "km", KMeans(n_clusters=2, n_init=1, random_state=0).fit(X), feature_names=["a", "b"]
    )
    answer = engine.predict("km", {"a": 0.0, "b": 0.0})
    assert "id" not in answer and answer["version"] == 1
    with pytest.raises(NotServable, match="not evaluated online"):
        engine.learn("km", {"a": 0.0, "b": 0.0}, 1)
    with pytest.raises(NotServable):
        engine.stats("km")
