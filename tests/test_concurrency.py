"""Concurrent clients against a real server: no errors, no lost learns, one order."""

from __future__ import annotations

import json
import sqlite3
import threading

import httpx
import pytest
from river import datasets, linear_model, metrics, preprocessing

from riverbed.stores.base import load
from tests.helpers import Server

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}

pytestmark = pytest.mark.slow


def test_eight_threads_mixing_predict_and_learn(server: Server) -> None:
    httpx.post(server.url + "/v1/models", json={"name": "p", "spec": SPEC}).raise_for_status()
    samples = list(datasets.Phishing())
    errors: list[str] = []
    learned = [0] * 8

    def worker(k: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i in range(k, len(samples), 8):
                x, y = samples[i]
                try:
                    if i % 3 == 0:  # a delayed label by id
                        p = http.post("/v1/models/p/predict", json={"features": x, "id": f"t{i}"})
                        p.raise_for_status()
                        r = http.post("/v1/models/p/learn", json={"id": f"t{i}", "ground_truth": y})
                    else:  # predict, then learn with features
                        http.post("/v1/models/p/predict", json={"features": x}).raise_for_status()
                        r = http.post("/v1/models/p/learn", json={"features": x, "ground_truth": y})
                    r.raise_for_status()
                    learned[k] += 1
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(learned) == len(samples)
    stats = httpx.get(server.url + "/v1/models/p/stats").json()
    assert stats["n_learns"] == len(samples)
    served = httpx.get(server.url + "/v1/models/p/metrics").json()["metrics"]
    probes = [x for x, _ in samples[:25]]
    answers = [
        httpx.post(server.url + "/v1/models/p/predict", json={"features": x}).json() for x in probes
    ]
    server.stop()

    # Replay the log in the server's commit order into a fresh model: same state, same metrics.
    conn = sqlite3.connect(server.database)
    rows = conn.execute(
        "SELECT seq, features, target, prediction, prediction_id FROM learns "
        "WHERE model = 'p' ORDER BY seq"
    ).fetchall()
    conn.close()
    assert [r[0] for r in rows] == list(range(1, len(samples) + 1))
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    metric = metrics.Accuracy() + metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
    for _, features, target, prediction, prediction_id in rows:
        x, y = json.loads(features), json.loads(target)
        if prediction_id is None:  # applied in commit order: the replay predicts the same
            assert load(prediction) == model.predict_proba_one(x)
        # Learns by id are scored with the prediction made at predict time, the others with
        # the prediction made just before learning; both are in the log.
        metric.update(y, load(prediction))
        model.learn_one(x, y)
    assert served == {type(m).__name__: m.get() for m in metric}
    for x, answer in zip(probes, answers, strict=True):
        assert answer["probabilities"] == {
            str(k).lower(): v for k, v in model.predict_proba_one(x).items()
        }
