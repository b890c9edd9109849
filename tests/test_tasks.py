"""Every task through the HTTP API: a data set river ships (or, for recommendation and
bandits, for which river ships none offline, a small synthetic one) is streamed through the
ASGI app, and the server's metrics equal river's own evaluation of the same model."""

from __future__ import annotations

import copy
import random
from typing import Any

import httpx
import pytest
from river import (
    anomaly,
    bandit,
    cluster,
    datasets,
    evaluate,
    linear_model,
    metrics,
    preprocessing,
    reco,
    stats,
    time_series,
    tree,
)

from riverbed import Engine, specs
from riverbed.exceptions import InvalidInput, InvalidSpec
from riverbed.tasks import TASKS, detect_task, get_task


async def create(api: httpx.AsyncClient, name: str, model: Any, **body: Any) -> dict[str, Any]:
    response = await api.post(
        "/v1/models", json={"name": name, "spec": specs.to_spec(model), **body}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def post(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def served(api: httpx.AsyncClient, name: str) -> dict[str, Any]:
    return (await api.get(f"/v1/models/{name}/metrics")).json()


def progressive(dataset: Any, model: Any, metric: Any) -> float:
    return evaluate.progressive_val_score(dataset, copy.deepcopy(model), metric).get()


async def test_regression_trump_approval_by_id(api: httpx.AsyncClient) -> None:
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    info = await create(api, "approval", model)
    assert info["task"] == "regression" and info["metrics"] == ["MAE", "RMSE", "R2"]
    for i, (x, y) in enumerate(datasets.TrumpApproval()):
        await post(api, "/v1/models/approval/predict", {"features": x, "id": f"t{i}"})
        await post(api, "/v1/models/approval/learn", {"id": f"t{i}", "ground_truth": y})
    got = await served(api, "approval")
    assert got["n"] == 1001
    for name in ("MAE", "RMSE", "R2"):
        expected = progressive(datasets.TrumpApproval(), model, getattr(metrics, name)())
        assert got["metrics"][name] == expected


async def test_multiclass_image_segments(api: httpx.AsyncClient) -> None:
    model = tree.HoeffdingTreeClassifier(grace_period=50)
    info = await create(api, "segments", model)
    assert info["task"] == "multiclass"
    data = list(datasets.ImageSegments().take(600))
    for x, y in data:
        await post(api, "/v1/models/segments/learn", {"features": x, "ground_truth": y})
    expected = metrics.Accuracy() + metrics.CrossEntropy() + metrics.MacroF1()
    evaluate.progressive_val_score(data, copy.deepcopy(model), expected)
    got = await served(api, "segments")
    assert got["metrics"] == {type(m).__name__: m.get() for m in expected}
    prediction = await post(api, "/v1/models/segments/predict", {"features": data[0][0]})
    assert prediction["prediction"] in prediction["probabilities"]


async def test_multioutput_solar_flare(api: httpx.AsyncClient) -> None:
    """Multi-target regression: the ground truth is an object of targets."""
    model = tree.ISOUPTreeRegressor(grace_period=50, leaf_prediction="mean")
    info = await create(api, "flares", model)
    assert info["task"] == "multioutput"
    assert info["metrics"] == ["MicroAverage(MAE)", "MacroAverage(RMSE)"]
    data = list(datasets.SolarFlare().take(500))
    for i, (x, y) in enumerate(data):
        answer = await post(api, "/v1/models/flares/predict", {"features": x, "id": f"f{i}"})
        assert set(answer["prediction"]) <= set(y)
        await post(api, "/v1/models/flares/learn", {"id": f"f{i}", "ground_truth": y})
    got = await served(api, "flares")
    micro = metrics.multioutput.MicroAverage(metrics.MAE())
    macro = metrics.multioutput.MacroAverage(metrics.RMSE())
    assert got["metrics"]["MicroAverage(MAE)"] == progressive(data, model, micro)
    assert got["metrics"]["MacroAverage(RMSE)"] == progressive(data, model, macro)


async def test_clustering_image_segments(api: httpx.AsyncClient) -> None:
    """learn_one(x) without a target; Silhouette needs none, AdjustedRand uses the truth
    when it is given."""
    model = cluster.KMeans(n_clusters=7, halflife=0.5, seed=42)
    info = await create(api, "clusters", model, metrics=["Silhouette", "AdjustedRand"])
    assert info["task"] == "clustering"
    data = list(datasets.ImageSegments().take(400))
    for x, y in data:
        await post(api, "/v1/models/clusters/learn", {"features": x, "ground_truth": y})
    got = await served(api, "clusters")
    assert got["metrics"]["Silhouette"] == progressive(data, model, metrics.Silhouette())
    assert got["metrics"]["AdjustedRand"] == progressive(data, model, metrics.AdjustedRand())
    answer = await post(api, "/v1/models/clusters/predict", {"features": data[0][0]})
    assert answer["cluster"] == answer["prediction"] and 0 <= answer["cluster"] < 7
    # without a ground truth it still learns, and Silhouette still scores
    await post(api, "/v1/models/clusters/learn", {"features": data[1][0]})
    after = await served(api, "clusters")
    assert after["n_learns"] == 401 and after["n"] == 401


async def test_anomaly_detection_with_and_without_labels(api: httpx.AsyncClient) -> None:
    model = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
    info = await create(api, "hst", model)
    assert info["task"] == "anomaly" and info["metrics"] == ["ROCAUC"]
    data = list(datasets.Phishing().take(500))
    for i, (x, y) in enumerate(data):
        answer = await post(api, "/v1/models/hst/predict", {"features": x, "id": f"a{i}"})
        assert 0 <= answer["score"] <= 1 and answer["prediction"] == answer["score"]
        await post(api, "/v1/models/hst/learn", {"id": f"a{i}", "ground_truth": y})
    got = await served(api, "hst")
    assert got["metrics"]["ROCAUC"] == progressive(data, model, metrics.ROCAUC())
    # an unlabelled learn: learn_one(x), nothing to score
    await post(api, "/v1/models/hst/learn", {"features": data[0][0]})
    assert (await served(api, "hst"))["n"] == 500


async def test_anomaly_quantile_filter_flags(api: httpx.AsyncClient) -> None:
    """The quantile option wraps the detector in river's QuantileFilter: answers carry the
    flag, and the metrics score it as progressive_val_score scores a filter."""
    detector = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42)
    await create(api, "flagged", detector, task="anomaly", options={"quantile": 0.9})
    data = list(datasets.Phishing().take(400))
    flags = []
    for x, y in data:
        answer = await post(api, "/v1/models/flagged/predict", {"features": x})
        flags.append(answer["anomaly"])
        assert answer["prediction"] is answer["anomaly"]
        await post(api, "/v1/models/flagged/learn", {"features": x, "ground_truth": y})
    assert any(flags) and not all(flags)
    # progressive_val_score refuses label metrics for a filter (their works_with knows
    # classifiers only), so this is its loop for an anomaly filter, written out
    reference = anomaly.QuantileFilter(copy.deepcopy(detector), q=0.9)
    expected = [metrics.Precision(), metrics.Recall(), metrics.F1()]
    for x, y in data:
        flag = reference.classify(reference.score_one(x))
        for metric in expected:
            metric.update(y, flag)
        reference.learn_one(x)
    got = await served(api, "flagged")
    assert got["metrics"] == {type(m).__name__: m.get() for m in expected}


async def test_forecasting_airline_passengers(api: httpx.AsyncClient) -> None:
    """learn_one(y, x) per month; the horizon metrics equal evaluate.iter_evaluate's, and a
    forecast equals the same model's own forecast."""
    model = time_series.HoltWinters(
        alpha=0.3, beta=0.1, gamma=0.6, seasonality=12, multiplicative=True
    )
    info = await create(api, "airline", model, options={"horizon": 12})
    assert info["task"] == "forecasting"
    for _, y in datasets.AirlinePassengers():
        await post(api, "/v1/models/airline/learn", {"ground_truth": y})
    steps = list(
        evaluate.iter_evaluate(
            datasets.AirlinePassengers(), copy.deepcopy(model), metrics.MAE(), horizon=12
        )
    )
    horizon_metric = steps[-1][-1]
    got = await served(api, "airline")
    expected = {f"+{k + 1} MAE": m.get() for k, m in enumerate(horizon_metric.metrics)}
    assert got["metrics"] == expected
    reference = copy.deepcopy(model)
    for _, y in datasets.AirlinePassengers():
        reference.learn_one(y)
    forecast = await post(api, "/v1/models/airline/forecast", {"horizon": 12})
    assert forecast["forecast"] == pytest.approx(reference.forecast(horizon=12), rel=1e-12)
    one = await post(api, "/v1/models/airline/predict", {"features": {}})
    assert one["prediction"] == pytest.approx(forecast["forecast"][0], rel=1e-12)


def ratings(n: int, seed: int = 7) -> list[tuple[str, str, float]]:
    """A synthetic rating stream (river ships no recommendation set offline)."""
    rng = random.Random(seed)
    user_bias = {f"u{u}": rng.gauss(0, 1) for u in range(15)}
    item_bias = {f"i{i}": rng.gauss(0, 1) for i in range(25)}
    rows = []
    for _ in range(n):
        user, item = rng.choice(list(user_bias)), rng.choice(list(item_bias))
        rows.append((user, item, 3 + user_bias[user] + item_bias[item] + rng.gauss(0, 0.3)))
    return rows


async def test_recommendation_synthetic_ratings(api: httpx.AsyncClient) -> None:
    model = reco.Baseline()
    info = await create(api, "reco", model)
    assert info["task"] == "recommendation"
    reference = copy.deepcopy(model)
    mae, rmse = metrics.MAE(), metrics.RMSE()
    for i, (user, item, rating) in enumerate(ratings(500)):
        if i % 2:  # delayed ground truth by id, and learns with their own sample
            body = {"user": user, "item": item, "id": f"r{i}"}
            await post(api, "/v1/models/reco/predict", body)
            await post(api, "/v1/models/reco/learn", {"id": f"r{i}", "ground_truth": rating})
        else:
            await post(
                api, "/v1/models/reco/learn", {"user": user, "item": item, "ground_truth": rating}
            )
        y_pred = reference.predict_one(user, item, x={})
        mae.update(rating, y_pred)
        rmse.update(rating, y_pred)
        reference.learn_one(user, item, rating, x={})
    got = await served(api, "reco")
    assert got["metrics"] == {"MAE": mae.get(), "RMSE": rmse.get()}
    items = [f"i{i}" for i in range(25)]
    ranked = await post(api, "/v1/models/reco/rank", {"user": "u3", "items": items})
    assert ranked["ranking"] == reference.rank("u3", items, x={})


async def test_bandit_rewards_by_id(api: httpx.AsyncClient) -> None:
    """A pull is a predict; its reward arrives later by id. Pulls and rewards equal a local
    policy's on the same synthetic environment."""
    policy = bandit.EpsilonGreedy(epsilon=0.2, seed=3)
    info = await create(api, "arms", policy)
    assert info["task"] == "bandit" and info["metrics"] == ["Mean", "Sum"]
    odds = {"a": 0.2, "b": 0.5, "c": 0.8}
    rng_server, rng_local = random.Random(11), random.Random(11)
    reference = copy.deepcopy(policy)
    mean, total = stats.Mean(), stats.Sum()
    pending = []
    for i in range(300):
        pull = await post(api, "/v1/models/arms/predict", {"arms": list(odds), "id": f"p{i}"})
        pending.append((pull["id"], float(rng_server.random() < odds[pull["arm"]])))
        if len(pending) == 3:  # rewards come late
            for pid, reward in pending:
                await post(api, "/v1/models/arms/learn", {"id": pid, "ground_truth": reward})
            pending = []
    local_pending = []
    for _ in range(300):
        arm = reference.pull(list(odds))
        local_pending.append((arm, float(rng_local.random() < odds[arm])))
        if len(local_pending) == 3:
            for arm, reward in local_pending:
                reference.update(arm, reward)
                mean.update(reward)
                total.update(reward)
            local_pending = []
    got = await served(api, "arms")
    assert got["metrics"] == {"Mean": mean.get(), "Sum": total.get()}
    refused = await api.post("/v1/models/arms/learn", json={"ground_truth": 1.0})
    assert refused.status_code == 400 and "pull" in refused.json()["error"]["message"]


async def test_custom_models_call_the_declared_methods(api: httpx.AsyncClient) -> None:
    scaler = preprocessing.StandardScaler()
    await create(
        api,
        "scaler",
        scaler,
        task="custom",
        options={"predict": "transform_one", "learn": "learn_one", "learn_with": "x"},
    )
    reference = copy.deepcopy(scaler)
    for x, _ in datasets.TrumpApproval().take(50):
        await post(api, "/v1/models/scaler/learn", {"features": x})
        reference.learn_one(x)
    x = next(iter(datasets.TrumpApproval()))[0]
    answer = await post(api, "/v1/models/scaler/predict", {"features": x})
    assert answer["prediction"] == pytest.approx(reference.transform_one(x), rel=1e-12)
    # a custom regressor, with a metric chosen: progressive validation as usual
    model = linear_model.LinearRegression()
    await create(api, "lin", model, task="custom", metrics=["MAE"])
    data = list(datasets.TrumpApproval().take(200))
    for x, y in data:
        await post(api, "/v1/models/lin/learn", {"features": x, "ground_truth": y})
    assert (await served(api, "lin"))["metrics"]["MAE"] == progressive(data, model, metrics.MAE())


BAD_TASK_REQUESTS = [
    # (model, create options, path suffix, body, code)
    (reco.Baseline(), {}, "predict", {"user": "u"}, "invalid_input"),
    (reco.Baseline(), {}, "predict", {"user": [1], "item": "i"}, "invalid_input"),
    (
        reco.Baseline(),
        {},
        "learn",
        {"user": "u", "item": "i", "ground_truth": "x"},
        "invalid_target",
    ),
    (reco.Baseline(), {}, "rank", {"user": "u", "items": []}, "invalid_input"),
    (bandit.EpsilonGreedy(epsilon=0.1, seed=1), {}, "predict", {"arms": []}, "invalid_input"),
    (bandit.EpsilonGreedy(epsilon=0.1, seed=1), {}, "predict", {"arms": [[1]]}, "invalid_input"),
    (
        linear_model.LinearRegression(),
        {},
        "predict",
        {"features": {}, "arms": ["a"]},
        "invalid_input",
    ),
    (linear_model.LinearRegression(), {}, "forecast", {"horizon": 2}, "invalid_input"),
    (time_series.HoltWinters(alpha=0.3), {}, "forecast", {"horizon": 0}, "invalid_input"),
    (
        time_series.HoltWinters(alpha=0.3),
        {},
        "forecast",
        {"horizon": 2, "xs": [{}]},
        "invalid_input",
    ),
    (time_series.HoltWinters(alpha=0.3), {}, "learn", {"ground_truth": "x"}, "invalid_target"),
    (
        anomaly.HalfSpaceTrees(),
        {},
        "learn",
        {"features": {"a": 1}, "ground_truth": 3},
        "invalid_target",
    ),
    (
        tree.ISOUPTreeRegressor(),
        {},
        "learn",
        {"features": {"a": 1}, "ground_truth": 3},
        "invalid_target",
    ),
    (  # a string label passes the binary task's check, and only the model refuses it
        preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        {},
        "learn",
        {"features": {"a": 1}, "ground_truth": "maybe"},
        "invalid_target",
    ),
]


@pytest.mark.parametrize("model, options, suffix, body, code", BAD_TASK_REQUESTS)
async def test_bad_task_input_is_a_clear_4xx_and_changes_nothing(
    api: httpx.AsyncClient, model: Any, options: dict, suffix: str, body: dict, code: str
) -> None:
    await create(api, "m", model, options=options)
    before = (await api.get("/v1/models/m")).json()
    response = await api.post(f"/v1/models/m/{suffix}", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert (await api.get("/v1/models/m")).json() == before


async def test_a_label_the_model_refuses_is_a_bad_target_after_learning_too(
    api: httpx.AsyncClient,
) -> None:
    await create(api, "m", preprocessing.StandardScaler() | linear_model.LogisticRegression())
    await create(api, "t", tree.HoeffdingTreeClassifier())
    for x, y in datasets.Phishing().take(20):
        await post(api, "/v1/models/m/learn", {"features": x, "ground_truth": y})
        # String labels are legitimate where the model takes them.
        await post(api, "/v1/models/t/learn", {"features": x, "ground_truth": "yes" if y else "no"})
    before = (await api.get("/v1/models/m")).json()
    response = await api.post("/v1/models/m/learn", json={"features": x, "ground_truth": "maybe"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_target"
    assert "'maybe'" in error["message"]
    assert (await api.get("/v1/models/m")).json() == before
    assert (await served(api, "t"))["n_learns"] == 20


@pytest.mark.parametrize(
    "model, task, options",
    [
        (linear_model.LinearRegression(), "nope", None),
        (linear_model.LinearRegression(), "clustering", None),
        (linear_model.LinearRegression(), None, {"horizon": 3}),
        (time_series.HoltWinters(alpha=0.3), None, {"horizon": 0}),
        (anomaly.HalfSpaceTrees(), None, {"quantile": 2}),
        (anomaly.HalfSpaceTrees(), None, {"quantile": 0.9, "threshold": 0.5}),
        (preprocessing.StandardScaler(), None, None),
        (preprocessing.StandardScaler(), "custom", {"predict": "_secret"}),
        (preprocessing.StandardScaler(), "custom", {"predict": "nothing_here"}),
    ],
)
def test_bad_task_choices_are_refused(
    engine: Engine, model: Any, task: str | None, options: dict | None
) -> None:
    with pytest.raises((InvalidInput, InvalidSpec)):
        engine.create_model("m", model, task=task, options=options)
    assert engine.list_models() == []


@pytest.mark.parametrize(
    "model, task",
    [
        (linear_model.LinearRegression(), "regression"),
        (preprocessing.StandardScaler() | linear_model.LogisticRegression(), "binary"),
        (tree.HoeffdingTreeClassifier(), "multiclass"),
        (tree.ISOUPTreeRegressor(), "multioutput"),
        (preprocessing.StandardScaler() | cluster.KMeans(), "clustering"),
        (anomaly.HalfSpaceTrees(), "anomaly"),
        (anomaly.GaussianScorer(), "anomaly"),
        (anomaly.QuantileFilter(anomaly.HalfSpaceTrees(), q=0.9), "anomaly"),
        (time_series.SNARIMAX(p=1, d=0, q=0), "forecasting"),
        (reco.BiasedMF(), "recommendation"),
        (bandit.UCB(delta=1), "bandit"),
    ],
)
def test_tasks_are_detected_with_isinstance(model: Any, task: str) -> None:
    assert detect_task(model).name == task
    assert get_task(task).matches(model)


def test_every_task_has_an_adapter_and_documented_defaults() -> None:
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "tasks.md").read_text()
    for name, cls in TASKS.items():
        assert f"`{name}`" in doc, name
        for metric in cls.default_metrics:
            assert metric in doc, (name, metric)


def test_a_supervised_anomaly_detector_scores_a_value(engine: Engine) -> None:
    engine.create_model("g", anomaly.GaussianScorer())
    reference = anomaly.GaussianScorer()
    rng = random.Random(1)
    for _ in range(50):
        value = rng.gauss(0, 1)
        engine.learn("g", {}, value)
        reference.learn_one(None, value)
    answer = engine.predict("g", {}, value=3.0)
    assert answer["score"] == reference.score_one(None, 3.0)
    with pytest.raises(InvalidInput):
        engine.predict("g", {})
