"""The model registry through the engine, on every store: versions, aliases, metadata,
artifacts, batch models, snapshots of live models."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from river import datasets, linear_model, preprocessing
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from riverbed import Engine
from riverbed.exceptions import (
    Conflict,
    Forbidden,
    InvalidArtifact,
    InvalidFeatures,
    InvalidInput,
    NotServable,
    PredictionNotFound,
    VersionNotFound,
)
from riverbed.provenance import git_info
from tests.helpers import phishing_model

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 5)
Y = np.array([0, 1, 1, 1] * 5)  # OR
Y_AND = np.array([0, 0, 0, 1] * 5)


def fitted(y: np.ndarray = Y) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)


def git_checkout(path: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=path, check=True, capture_output=True, text=True
        ).stdout.strip()

    path.mkdir()
    git("init", "-q", "-b", "experiment-7")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "T")
    git("remote", "add", "origin", "https://example.com/team/models.git")
    (path / "train.py").write_text("print('train')\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "train")
    return {"commit": git("rev-parse", "HEAD"), "branch": "experiment-7"}


def test_a_scikit_learn_upload_keeps_its_metadata_and_bytes(engine: Engine, tmp_path: Path) -> None:
    """The issue's check, in process: git info from a real checkout, identical bytes back,
    found by a metric threshold and by a tag."""
    expected = git_checkout(tmp_path / "repo")
    data = sio.dumps(fitted())
    version = engine.upload(
        "or-gate",
        data,
        format="skops",
        description="a tree",
        tags={"team": "risk"},
        params={"note": "first try"},
        metrics={"accuracy": 0.95},
        dataset={"name": "or", "description": "the OR truth table"},
        git=git_info(tmp_path / "repo"),
        created_by="ann",
    )
    assert version["version"] == 1 and version["flavor"] == "sklearn"
    assert version["task"] == "binary" and version["format"] == "skops"
    got = engine.get_version("or-gate", 1)
    assert got["git"]["commit"] == expected["commit"]
    assert got["git"]["branch"] == "experiment-7"
    assert got["git"]["remote"] == "https://example.com/team/models.git"
    assert got["hyperparameters"]["max_depth"] == 3
    assert got["dataset"] == {"name": "or", "description": "the OR truth table"}
    assert got["created_by"] == "ann" and got["params"] == {"note": "first try"}
    assert engine.download("or-gate", 1) == data
    assert engine.download("or-gate@1") == data
    found = engine.search_versions("metrics.accuracy > 0.9 and tags.team = 'risk'")
    assert [(v["model"], v["version"]) for v in found["versions"]] == [("or-gate", 1)]
    assert engine.search_versions("metrics.accuracy > 0.99")["versions"] == []
    assert engine.search_versions("tags.team = 'other'")["total"] == 0


def test_moving_an_alias_back_changes_what_predict_answers(engine: Engine) -> None:
    engine.upload("gate", sio.dumps(fitted(Y)), format="skops")
    engine.upload("gate", sio.dumps(fitted(Y_AND)), format="skops")
    engine.set_alias("gate", "production", 2)
    row = [0.0, 1.0]
    assert engine.predict_rows("gate@production", [row])["predictions"][0]["prediction"] == 0
    assert engine.predict_rows("gate", [row])["predictions"][0]["prediction"] == 0  # latest
    engine.set_alias("gate", "production", 1)
    answer = engine.predict_rows("gate@production", [row])
    assert answer["version"] == 1 and answer["predictions"][0]["prediction"] == 1
    assert engine.aliases("gate") == {"production": 1}
    history = engine.alias_history("gate")
    assert [(h["version"], h["previous"]) for h in history] == [(2, None), (1, 2)]


def test_alias_moves_are_events(engine: Engine) -> None:
    seen = []
    engine.events.subscribe(lambda e: seen.append((e.type, e.data)))
    engine.upload("gate", sio.dumps(fitted()), format="skops")
    engine.set_alias("gate", "champion", 1)
    engine.delete_alias("gate", "champion")
    moves = [data for kind, data in seen if kind == "alias.moved"]
    assert moves == [
        {"alias": "champion", "version": 1, "previous": None},
        {"alias": "champion", "version": None, "previous": 1},
    ]
    assert ("version.created", {"version": 1, "source": "upload", "format": "skops"}) in seen


def test_batch_models_predict_rows_with_probabilities(engine: Engine) -> None:
    model = LogisticRegression().fit(X, Y)
    engine.upload("lr", sio.dumps(model), format="skops", feature_names=["a", "b"])
    one = engine.predict("lr", {"a": 1.0, "b": 1.0})
    assert one["prediction"] == 1 and one["version"] == 1
    assert one["probabilities"][1] == pytest.approx(model.predict_proba([[1.0, 1.0]])[0][1])
    many = engine.predict_rows("lr@latest", [{"a": 0.0, "b": 0.0}, [1.0, 0.0]])
    assert [p["prediction"] for p in many["predictions"]] == model.predict(
        [[0.0, 0.0], [1.0, 0.0]]
    ).tolist()
    with pytest.raises(InvalidFeatures, match="missing feature"):
        engine.predict("lr", {"a": 1.0})
    with pytest.raises(InvalidFeatures, match="unknown feature"):
        engine.predict_rows("lr", [{"a": 1.0, "b": 2.0, "c": 3.0}])
    with pytest.raises(InvalidFeatures, match="has 3 values"):
        engine.predict_rows("lr", [[1.0, 2.0, 3.0]])
    # Evaluated online, not trained: the truth scores the prediction, the model stays.
    assert engine.learn("lr", {"a": 1.0, "b": 0.0}, 1)["n_learns"] == 1
    assert engine.predict("lr", {"a": 1.0, "b": 1.0})["probabilities"] == one["probabilities"]


def test_snapshot_answers_as_at_snapshot_time_while_the_live_model_learns(
    engine: Engine,
) -> None:
    """The issue's check: freeze an online model mid-stream."""
    engine.create_model("p", phishing_model())
    stream = list(datasets.Phishing().take(400))
    for x, y in stream[:200]:
        engine.learn("p", x, y)
    probe = stream[0][0]
    at_snapshot = engine.predict("p", probe)["probabilities"]
    version = engine.snapshot("p", description="after 200", tags={"stage": "frozen"})
    assert version["version"] == 2 and version["source"] == "snapshot"
    assert version["parent"] == 1 and version["n_learns"] == 200
    assert version["metrics"]["Accuracy"] == engine.metrics("p")["metrics"]["Accuracy"]
    for x, y in stream[200:]:
        engine.learn("p", x, y)
    assert engine.predict("p", probe)["probabilities"] != at_snapshot
    assert engine.predict("p@2", probe)["probabilities"] == at_snapshot
    engine.set_alias("p", "frozen", 2)
    assert engine.predict("p@frozen", probe)["probabilities"] == at_snapshot
    assert engine.predict("p", probe, version=2)["probabilities"] == at_snapshot
    assert engine.stats("p")["n_learns"] == 400


def test_a_prediction_of_a_version_can_be_learned_by_id(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    engine.snapshot("p")
    x, y = next(iter(datasets.Phishing()))
    p = engine.predict("p@2", x)
    engine.learn("p@2", ground_truth=y, id=p["id"])
    assert engine.stats("p")["n_learns"] == 1
    assert engine.get_version("p@2")["n_learns"] == 0, "the version did not change"


def test_snapshots_survive_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    stream = list(datasets.Phishing().take(60))
    with Engine(db) as engine:
        engine.create_model("p", phishing_model())
        for x, y in stream[:30]:
            engine.learn("p", x, y)
        engine.snapshot("p")
        frozen = engine.predict("p@2", stream[0][0])["probabilities"]
        for x, y in stream[30:]:
            engine.learn("p", x, y)
    with Engine(db) as engine:
        assert engine.predict("p@2", stream[0][0])["probabilities"] == frozen
        assert engine.stats("p")["n_learns"] == 60


def test_river_models_can_be_uploaded_and_learn(engine: Engine) -> None:
    model = phishing_model()
    for x, y in datasets.Phishing().take(50):
        model.learn_one(x, y)
    engine.upload("trained", pickle.dumps(model), format="pickle", allow_pickle=True)
    x = next(iter(datasets.Phishing()))[0]
    assert engine.predict("trained", x)["probabilities"] == model.predict_proba_one(x)
    engine.learn("trained", x, True)
    info = engine.get_model("trained")
    assert info["flavor"] == "river" and info["n_learns"] == 1 and info["latest_version"] == 1
    assert info["aliases"] == {}


def test_pickles_are_refused_unless_allowed(engine: Engine) -> None:
    with pytest.raises(Forbidden, match="runs its code"):
        engine.upload("x", pickle.dumps(fitted()), format="pickle", allow_pickle=False)
    with pytest.raises(Forbidden):
        engine.upload("x", pickle.dumps(fitted()), allow_pickle=False)  # format guessed
    assert engine.list_models() == []


def test_pickles_follow_the_setting_by_default(tmp_path: Path) -> None:
    with Engine(":memory:", host="0.0.0.0") as engine:
        with pytest.raises(Forbidden):
            engine.upload("x", pickle.dumps(fitted()), format="pickle")
    with Engine(":memory:", host="0.0.0.0", allow_pickle_uploads="true") as engine:
        assert engine.upload("x", pickle.dumps(fitted()), format="pickle")["version"] == 1
    with Engine(":memory:") as engine:  # loopback
        assert engine.upload("x", pickle.dumps(fitted()), format="joblib")["version"] == 1
    with pytest.raises(ValueError, match="allow_pickle_uploads"):
        Engine(":memory:", allow_pickle_uploads="maybe")


def test_opaque_files_are_kept_not_served(engine: Engine) -> None:
    data = b"\x00weights of some other framework\xff"
    v = engine.upload("onnx-thing", data, filename="model.onnx", task="custom")
    assert v["format"] == "file" and v["flavor"] == "file" and v["served"] is False
    assert engine.download("onnx-thing") == data
    with pytest.raises(NotServable):
        engine.predict("onnx-thing", {"a": 1.0})
    with pytest.raises(Conflict, match="file versions"):
        engine.upload("onnx-thing", sio.dumps(fitted()), format="skops")


def test_in_process_objects_are_registered(engine: Engine) -> None:
    v = engine.upload("tree", fitted())
    assert v["format"] == "skops" and v["flavor"] == "sklearn"
    v = engine.upload("river-model", linear_model.LinearRegression())
    assert v["format"] == "riverbed" and v["task"] == "regression"
    assert v["hyperparameters"]["l2"] == 0.0


def test_bad_artifacts_change_nothing(engine: Engine) -> None:
    with pytest.raises(InvalidArtifact):
        engine.upload("x", b"not a skops file", format="skops")
    with pytest.raises(InvalidInput, match="unknown artifact format"):
        engine.upload("x", b"...", format="onnx")
    with pytest.raises(InvalidInput, match="metric"):
        engine.upload("x", sio.dumps(fitted()), metrics={"accuracy": "high"})
    assert engine.list_models() == []


def test_versions_are_numbered_and_never_renumbered(engine: Engine) -> None:
    for _ in range(3):
        engine.upload("m", sio.dumps(fitted()), format="skops")
    engine.set_alias("m", "production", 3)
    with pytest.raises(Conflict, match="production"):
        engine.delete_version("m", 3)
    engine.set_alias("m", "production", 2)
    engine.delete_version("m", 3)
    assert engine.upload("m", sio.dumps(fitted()), format="skops")["version"] == 4
    assert [v["version"] for v in engine.list_versions("m")] == [1, 2, 4]
    with pytest.raises(VersionNotFound):
        engine.get_version("m", 3)
    with pytest.raises(VersionNotFound, match="no alias"):
        engine.predict("m@staging", {"a": 1.0})


def test_deleting_the_first_version_keeps_the_live_model(engine: Engine) -> None:
    engine.create_model("p", phishing_model())
    x, y = next(iter(datasets.Phishing()))
    engine.learn("p", x, y)
    engine.snapshot("p")
    before = engine.predict("p", x)["probabilities"]
    engine.delete_version("p", 1)
    engine._live.clear()  # force a reload from the store
    assert engine.predict("p", x)["probabilities"] == before


def test_descriptions_tags_and_metrics_are_editable(engine: Engine) -> None:
    engine.upload("m", sio.dumps(fitted()), format="skops", tags={"a": "1", "b": "2"})
    v = engine.update_version(
        "m", 1, description="now", tags={"c": "3"}, remove_tags=["a"], metrics={"f1": 0.5}
    )
    assert v["description"] == "now" and v["tags"] == {"b": "2", "c": "3"}
    assert engine.get_version("m@latest")["metrics"] == {"f1": 0.5}
    engine.update_model("m", description="model", tags={"team": "x"})
    assert engine.get_model("m")["tags"] == {"a": "1", "b": "2", "team": "x"}
    assert engine.search_versions("tags.team = 'x'")["total"] == 1, "model tags apply too"


def test_aliases_are_checked(engine: Engine) -> None:
    engine.upload("m", sio.dumps(fitted()), format="skops")
    for bad in ("latest", "9lives", "has space"):
        with pytest.raises(InvalidInput):
            engine.set_alias("m", bad, 1)
    with pytest.raises(VersionNotFound):
        engine.set_alias("m", "production", 7)
    with pytest.raises(VersionNotFound):
        engine.delete_alias("m", "never")


def test_the_json_view_shows_spec_and_params(engine: Engine) -> None:
    engine.create_model(
        "p", preprocessing.StandardScaler() | linear_model.LogisticRegression(l2=0.1)
    )
    view = engine.model_json("p@1")
    assert view["spec"]["pipeline"][1]["class"] == "river.linear_model.LogisticRegression"
    assert view["hyperparameters"]["LogisticRegression.l2"] == 0.1


def test_search_orders_and_pages(engine: Engine) -> None:
    for i, accuracy in enumerate([0.7, 0.9, 0.8]):
        engine.upload(f"m{i}", sio.dumps(fitted()), format="skops", metrics={"accuracy": accuracy})
    page = engine.search_versions(order_by="metrics.accuracy desc", page_size=2)
    assert [v["model"] for v in page["versions"]] == ["m1", "m2"]
    assert page["total"] == 3 and page["next_page_token"]
    rest = engine.search_versions(
        order_by="metrics.accuracy desc", page_size=2, page_token=page["next_page_token"]
    )
    assert [v["model"] for v in rest["versions"]] == ["m0"] and rest["next_page_token"] is None
    models = engine.search_models("name ~ 'M' and hyperparameters.max_depth = 3")
    assert [m["name"] for m in models["models"]] == ["m0", "m1", "m2"]
    assert engine.search_models("task = 'regression'")["models"] == []


def test_a_batch_model_is_deleted_with_its_versions(engine: Engine) -> None:
    engine.upload("m", sio.dumps(fitted()), format="skops", feature_names=["a", "b"])
    engine.set_alias("m", "production", 1)
    p = engine.predict("m", {"a": 1.0, "b": 0.0})
    engine.learn("m", ground_truth=1, id=p["id"])
    engine.delete_model("m")
    assert engine.list_models() == [] and engine.search_versions()["total"] == 0
    assert engine.upload("m", sio.dumps(fitted()), format="skops")["version"] == 1
    # Its online evaluation went with it: the new model starts from nothing.
    assert engine.metrics("m")["n"] == 0 and engine.stats("m")["n_predictions"] == 0
    with pytest.raises(PredictionNotFound):
        engine.learn("m", ground_truth=1, id=p["id"])


def test_a_skops_file_with_foreign_types_is_refused(engine: Engine) -> None:
    from fractions import Fraction

    data = sio.dumps(DecisionTreeClassifier(ccp_alpha=Fraction(1, 3)))  # type: ignore[arg-type]
    with pytest.raises(InvalidArtifact, match="fractions.Fraction"):
        engine.upload("m", data, format="skops")
