"""The embedded engine: models, predict, learn by id, metrics, stats, events, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing, tree

from riverbed import (
    AlreadyLabelled,
    Engine,
    InvalidFeatures,
    InvalidInput,
    InvalidSpec,
    InvalidTarget,
    ModelExists,
    ModelNotFound,
    PredictionExists,
    PredictionNotFound,
)
from tests.helpers import phishing_model

LOGREG_SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


def test_task_is_detected_from_the_object(engine: Engine) -> None:
    assert engine.create_model("b", phishing_model())["task"] == "binary"
    assert engine.create_model("r", linear_model.LinearRegression())["task"] == "regression"
    assert engine.create_model("m", tree.HoeffdingTreeClassifier())["task"] == "multiclass"
    assert (
        engine.create_model("mb", tree.HoeffdingTreeClassifier(), task="binary")["task"] == "binary"
    )


def test_default_metrics_follow_the_task(engine: Engine) -> None:
    assert engine.create_model("r", linear_model.LinearRegression())["metrics"] == [
        "MAE",
        "RMSE",
        "R2",
    ]
    assert engine.create_model("b", phishing_model())["metrics"] == [
        "Accuracy",
        "LogLoss",
        "F1",
        "ROCAUC",
    ]
    assert engine.create_model("m", tree.HoeffdingTreeClassifier())["metrics"] == [
        "Accuracy",
        "CrossEntropy",
        "MacroF1",
    ]


def test_a_regressor_cannot_serve_a_classification_task(engine: Engine) -> None:
    with pytest.raises(InvalidSpec, match="cannot serve"):
        engine.create_model("x", linear_model.LinearRegression(), task="binary")
    assert engine.list_models() == []


def test_create_from_spec_and_from_object_agree(engine: Engine) -> None:
    engine.create_model("from-spec", spec=LOGREG_SPEC)
    engine.create_model("from-object", phishing_model())
    for x, y in datasets.Phishing().take(50):
        a = engine.predict("from-spec", x)
        b = engine.predict("from-object", x)
        assert a["probabilities"] == b["probabilities"]
        engine.learn("from-spec", x, y)
        engine.learn("from-object", x, y)
    assert engine.metrics("from-spec")["metrics"] == engine.metrics("from-object")["metrics"]


def test_the_callers_object_is_not_mutated(engine: Engine) -> None:
    model = phishing_model()
    engine.create_model("p", model)
    for x, y in datasets.Phishing().take(20):
        engine.learn("p", x, y)
    assert model["LogisticRegression"].weights == {}


def test_learning_by_prediction_id_matches_progressive_validation(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    for x, y in datasets.Phishing():
        prediction = engine.predict("p", x)
        engine.learn("p", ground_truth=y, id=prediction["id"])
    metric = metrics.Accuracy() + metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
    evaluate.progressive_val_score(datasets.Phishing(), phishing_model(), metric)
    expected = {type(m).__name__: m.get() for m in metric}
    assert engine.metrics("p")["metrics"] == expected
    assert engine.metrics("p")["n"] == 1250


def test_learning_with_features_matches_progressive_validation_for_regression(
    engine: Engine,
) -> None:
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    engine.create_model("r", model)
    for x, y in datasets.TrumpApproval():
        engine.learn("r", x, y)
    metric = metrics.MAE() + metrics.RMSE() + metrics.R2()
    evaluate.progressive_val_score(datasets.TrumpApproval(), model.clone(), metric)
    assert engine.metrics("r")["metrics"] == {type(m).__name__: m.get() for m in metric}


def test_multiclass_metrics_get_probabilities(engine: Engine) -> None:
    model = preprocessing.StandardScaler() | tree.HoeffdingTreeClassifier()
    engine.create_model("seg", model)
    stream = list(datasets.ImageSegments().take(300))
    for x, y in stream:
        p = engine.predict("seg", x)
        engine.learn("seg", ground_truth=y, id=p["id"])
    metric = metrics.Accuracy() + metrics.CrossEntropy() + metrics.MacroF1()
    evaluate.progressive_val_score(stream, model.clone(), metric)
    assert engine.metrics("seg")["metrics"] == {type(m).__name__: m.get() for m in metric}


def test_a_prediction_id_can_be_given_and_is_returned(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    assert engine.predict("p", {"a": 1.0}, id="mine")["id"] == "mine"
    with pytest.raises(PredictionExists):
        engine.predict("p", {"a": 1.0}, id="mine")
    generated = engine.predict("p", {"a": 1.0})["id"]
    assert generated and generated != "mine"


def test_an_id_is_learned_from_once(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    engine.predict("p", {"a": 1.0}, id="x1")
    engine.learn("p", ground_truth=True, id="x1")
    with pytest.raises(AlreadyLabelled):
        engine.learn("p", ground_truth=True, id="x1")
    assert engine.stats("p")["n_learns"] == 1


def test_unknown_ids_and_models_are_not_found(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    engine.create_model("q", phishing_model())
    engine.predict("q", {"a": 1.0}, id="of-q")
    with pytest.raises(PredictionNotFound):
        engine.learn("p", ground_truth=True, id="nope")
    with pytest.raises(PredictionNotFound):
        engine.learn("p", ground_truth=True, id="of-q")
    with pytest.raises(ModelNotFound):
        engine.predict("zzz", {"a": 1.0})


@pytest.mark.parametrize(
    "features, message",
    [
        ([1, 2], "must be an object"),
        ({"a": float("nan")}, "finite"),
        ({"a": float("inf")}, "finite"),
        ({"a": None}, "null"),
        ({"a": [1]}, "list"),
        ({1: 2.0}, "feature names"),
    ],
)
def test_bad_features_are_refused_and_change_nothing(
    engine: Engine, features: object, message: str
) -> None:
    engine.create_model("p", phishing_model())
    with pytest.raises(InvalidFeatures, match=message):
        engine.predict("p", features)  # type: ignore[arg-type]
    with pytest.raises(InvalidFeatures, match=message):
        engine.learn("p", features, True)  # type: ignore[arg-type]
    assert engine.stats("p")["n_predictions"] == 0
    assert engine.stats("p")["n_learns"] == 0


def test_numeric_features_take_the_quick_checks_with_the_same_outcome(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    # finite numbers whose sum overflows to infinity: each one is checked, and they pass
    engine.learn("p", {"a": 1e308, "b": 1e308}, True)
    with pytest.raises(InvalidFeatures, match="an integer of 401 digits"):
        engine.predict("p", {"a": 10**400})  # too large for a float: refused, not a crash
    with pytest.raises(InvalidFeatures, match="finite"):
        engine.predict("p", {"a": 1.0, "b": float("-inf")})
    with pytest.raises(InvalidFeatures, match="feature names"):
        engine.predict("p", {"a": 1.0, 2: 1.0})  # type: ignore[dict-item]
    assert engine.stats("p")["n_learns"] == 1


def test_known_feature_names_still_meet_each_engines_length_limit(tmp_path: Path) -> None:
    x = {"short": 1.0, "a_longer_name": 2.0}
    with Engine(str(tmp_path / "a.db")) as loose:
        loose.create_model("p", phishing_model())
        loose.predict("p", x)  # the names are now known good, at most 13 characters
        with Engine(str(tmp_path / "b.db"), max_string_length=8) as strict:
            strict.create_model("p", phishing_model())
            with pytest.raises(InvalidFeatures, match="at most 8 characters"):
                strict.predict("p", x)
            strict.predict("p", {"short": 1.0})
        loose.predict("p", x)


def test_names_of_a_str_subclass_are_taken_whether_known_or_not(engine: Engine) -> None:
    """numpy's str_ (a data frame's column names) names a feature as its str does, before
    the names have been seen (the full checks) and after (the quick check by equality)."""
    engine.create_model("p", phishing_model())
    fresh = {np.str_("never_seen"): 1.0, np.str_("nor_this"): 2.0}
    engine.learn("p", fresh, True)
    engine.learn("p", {"never_seen": 1.0, "nor_this": 2.0}, False)
    engine.learn("p", fresh, True)  # now known: the quick check
    with pytest.raises(InvalidFeatures, match="feature names"):
        engine.predict("p", {np.float64(1.0): 1.0})  # not a str at all
    assert engine.stats("p")["n_learns"] == 3
    with Engine(":memory:", max_string_length=4) as strict:
        strict.create_model("p", phishing_model())
        with pytest.raises(InvalidFeatures, match="at most 4 characters"):
            strict.predict("p", {np.str_("longer"): 1.0})


@pytest.mark.parametrize("target", [None, "x" * 10, [1], True, float("nan")])
def test_bad_regression_targets_are_refused(engine: Engine, target: object) -> None:
    engine.create_model("r", linear_model.LinearRegression())
    with pytest.raises(InvalidTarget):
        engine.learn("r", {"a": 1.0}, target)
    assert engine.metrics("r")["n"] == 0


def test_a_binary_label_must_be_boolean_like(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    with pytest.raises(InvalidTarget):
        engine.learn("p", {"a": 1.0}, 7)
    engine.learn("p", {"a": 1.0}, 1)  # 0/1 are taken as false/true
    assert engine.stats("p")["n_learns"] == 1


def test_a_sample_the_model_cannot_learn_from_leaves_it_unchanged(engine: Engine) -> None:
    engine.create_model("r", preprocessing.StandardScaler() | linear_model.LinearRegression())
    for x, y in datasets.TrumpApproval().take(30):
        engine.learn("r", x, y)
    before = engine.metrics("r")
    probe = next(iter(datasets.TrumpApproval()))[0]
    prediction_before = engine.predict("r", probe)["prediction"]
    with pytest.raises(InvalidInput, match="could not"):
        engine.learn("r", {**probe, "gallup": "not a number"}, 40.0)
    assert engine.metrics("r") == before
    assert engine.predict("r", probe)["prediction"] == prediction_before


def test_names_are_checked_and_unique(engine: Engine) -> None:
    with pytest.raises(InvalidInput, match="invalid model name"):
        engine.create_model("has space", phishing_model())
    engine.create_model("p", phishing_model())
    with pytest.raises(ModelExists):
        engine.create_model("p", phishing_model())


def test_delete_forgets_the_model_and_its_history(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    engine.predict("p", {"a": 1.0}, id="old")
    engine.learn("p", {"a": 1.0}, True)
    engine.delete_model("p")
    with pytest.raises(ModelNotFound):
        engine.metrics("p")
    engine.create_model("p", phishing_model())
    assert engine.stats("p")["n_learns"] == 0
    with pytest.raises(PredictionNotFound):
        engine.learn("p", ground_truth=True, id="old")


def test_stats_count_calls_and_time(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    for x, y in datasets.Phishing().take(10):
        engine.predict("p", x)
        engine.learn("p", x, y)
    stats = engine.stats("p")
    assert stats["n_predictions"] == 10
    assert stats["predict"]["n_calls"] == 10 and stats["learn"]["n_calls"] == 10
    assert stats["predict"]["mean_duration"] > 0 and stats["learn"]["ewm_duration"] > 0


def test_events_are_published_after_each_change(engine: Engine) -> None:
    seen: list[tuple[str, str | None]] = []
    engine.events.subscribe(lambda e: seen.append((e.type, e.model)))
    engine.create_model("p", phishing_model())
    p = engine.predict("p", {"a": 1.0})
    engine.learn("p", ground_truth=True, id=p["id"])
    engine.learn("p", {"a": 2.0}, False)
    engine.delete_model("p")
    assert seen == [
        ("model.created", "p"),
        ("predict", "p"),
        ("label", "p"),  # ground truth for a prediction id
        ("learn", "p"),  # a learn with its own features
        ("model.deleted", "p"),
    ]
    assert [e.type for e in engine.events.recent(model="p")][-1] == "model.deleted"


def test_metrics_can_be_chosen(engine: Engine) -> None:
    engine.create_model("p", phishing_model(), metrics=["Accuracy", "Precision"])
    assert list(engine.metrics("p")["metrics"]) == ["Accuracy", "Precision"]
    with pytest.raises(InvalidInput, match="unknown metric"):
        engine.create_model("q", phishing_model(), metrics=["NotAMetric"])
    with pytest.raises(InvalidInput, match="does not fit"):
        engine.create_model("r", phishing_model(), metrics=["MAE"])
