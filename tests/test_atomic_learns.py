"""A learn is all or nothing: when any part of it fails (the model's learn, the metrics'
update, the store's commit) the model, its metrics and its counts are as they were, the
caller gets a clear error, and a restart gives the model the running process had."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import httpx
from river import linear_model, metrics, optim, reco

from riverbed import Engine
from riverbed.server import create_app


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
