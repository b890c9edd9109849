"""Metrics: running values, rolling windows by count and by time, history, metrics off."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing, utils

from riverbed import Engine
from riverbed.exceptions import InvalidInput
from riverbed.metrics import Tracker, Window, build_metric
from tests.helpers import phishing_model


def test_running_and_rolling_metrics_equal_river(engine: Engine) -> None:
    """The running values are progressive_val_score's; a window of 100 equals river's
    utils.Rolling over the same predictions."""
    engine.create_model(
        "p", phishing_model(), metrics=["Accuracy", "LogLoss"], options={"windows": [{"size": 100}]}
    )
    model = phishing_model()
    rolling_acc = utils.Rolling(metrics.Accuracy, window_size=100)
    rolling_loss = utils.Rolling(metrics.LogLoss, window_size=100)
    for x, y in datasets.Phishing().take(400):
        engine.learn("p", x, y)
        proba = model.predict_proba_one(x)
        rolling_acc.update(y, max(proba, key=proba.__getitem__))
        rolling_loss.update(y, proba)
        model.learn_one(x, y)
    metric = metrics.Accuracy() + metrics.LogLoss()
    evaluate.progressive_val_score(datasets.Phishing().take(400), phishing_model(), metric)
    served = engine.metrics("p")
    assert served["n"] == 400 and served["n_learns"] == 400
    assert served["metrics"] == {"Accuracy": metric[0].get(), "LogLoss": metric[1].get()}
    [window] = served["windows"]
    assert window["window"] == "100" and window["size"] == 100 and window["n"] == 100
    assert window["metrics"] == {"Accuracy": rolling_acc.get(), "LogLoss": rolling_loss.get()}


def test_a_time_window_forgets_old_samples() -> None:
    tracker = Tracker(["MAE"], windows=[Window(seconds=10)])
    reference = utils.TimeRolling(metrics.MAE, period=dt.timedelta(seconds=10))
    for t, (y, y_pred) in enumerate([(1.0, 3.0), (2.0, 2.0), (5.0, 1.0), (0.0, 0.5)] * 5):
        tracker.update(y, y_pred, t=float(t * 4))
        reference.update(
            y, y_pred, t=dt.datetime.fromtimestamp(t * 4, tz=dt.UTC).replace(tzinfo=None)
        )
    values = tracker.values()
    assert values["windows"][0]["metrics"]["MAE"] == reference.get()
    assert values["windows"][0]["n"] == 3  # samples at t=68, 72, 76 are within 10 s of 76
    assert values["metrics"]["MAE"] != reference.get()


def test_history_points_survive_a_restart(tmp_path: Path) -> None:
    database = str(tmp_path / "h.db")
    with Engine(database) as engine:
        engine.create_model(
            "p",
            phishing_model(),
            options={"history_every": 100, "history_seconds": 1e9},
        )
        for x, y in datasets.Phishing().take(250):
            engine.learn("p", x, y)
        live = engine.metrics("p")
    with Engine(database) as engine:
        history = engine.metrics_history("p")["points"]
        assert [p["seq"] for p in history] == [100, 200]
        assert history[-1]["n"] == 200 and set(history[-1]["metrics"]) == set(live["metrics"])
        assert engine.metrics_history("p", after=100)["points"][0]["seq"] == 200
        assert engine.metrics("p") == live  # checkpoint + log give the same running values


class LearnOnly(linear_model.LinearRegression):
    def predict_one(self, x: dict) -> float:  # type: ignore[override]
        raise AssertionError("metrics are off: learning must not predict")


def test_metrics_can_be_turned_off(engine: Engine) -> None:
    """With no metrics nothing is scored, no history is kept, and learning skips the
    prediction (a model that cannot predict still learns)."""

    engine.create_model("r", LearnOnly(), metrics=[], options={"history_every": 1})
    for i in range(5):
        engine.learn("r", {"a": float(i)}, float(i))
    served = engine.metrics("r")
    assert served == {"model": "r", "n_learns": 5, "n": 0, "metrics": {}, "windows": []}
    assert engine.metrics_history("r")["points"] == []


@pytest.mark.parametrize(
    "name, expected",
    [("MAE", "MAE"), ("MicroAverage(F1)", "MicroAverage"), ("Mean", "Mean")],
)
def test_metric_names(name: str, expected: str) -> None:
    assert type(build_metric(name)).__name__ == expected


@pytest.mark.parametrize(
    "metrics_, options",
    [
        (["Nope"], None),
        (["os.system"], None),
        (["FBeta"], None),  # needs a parameter
        (["MAE"], {"windows": [{"size": 0}]}),
        (["MAE"], {"windows": [{"size": 5, "seconds": 3}]}),
        (["MAE"], {"windows": "big"}),
        (["MAE"], {"history_every": 0}),
        (["MAE"], {"colour": "red"}),
        (["Accuracy"], None),  # does not fit a regressor
    ],
)
def test_bad_metric_choices_are_refused(engine: Engine, metrics_: list, options: dict) -> None:
    with pytest.raises(InvalidInput):
        engine.create_model(
            "r",
            preprocessing.StandardScaler() | linear_model.LinearRegression(),
            metrics=metrics_,
            options=options,
        )
    assert engine.list_models() == []


def test_a_tracker_pickled_without_its_derived_fields_gets_them_back() -> None:
    import pickle

    labels = Tracker(["Accuracy"])
    probabilities = Tracker(["Accuracy", "LogLoss"])
    forecast = Tracker(["MAE"], horizon=3)
    assert (labels.takes_probabilities, probabilities.takes_probabilities) == (False, True)
    assert labels.active and forecast.active and not Tracker([]).active
    for tracker in (labels, probabilities, forecast):
        # as a checkpoint of an older riverbed holds it: none of the fields made from the rest
        state = {
            k: v
            for k, v in tracker.__dict__.items()
            if k not in ("active", "takes_probabilities", "_labelled_only", "_probabilities")
        }
        old = Tracker.__new__(Tracker)
        old.__dict__.update(state)
        loaded = pickle.loads(pickle.dumps(old))
        for field in ("active", "takes_probabilities", "_labelled_only"):
            assert getattr(loaded, field) == getattr(tracker, field)
    labels_again = pickle.loads(pickle.dumps(labels))
    assert labels_again.update(True, True, t=0.0)
    assert labels_again.values()["metrics"]["Accuracy"] == 1.0
