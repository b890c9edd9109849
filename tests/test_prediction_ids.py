"""Writes in flight: a caller's prediction id costs no store read (the store's key refuses
a taken id at commit, a label sent before its prediction's commit still finds it, a batch
looks its ids up in one query), and a model read while its deletion commits stays deleted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from river import linear_model, preprocessing

from riverbed import Engine
from riverbed.exceptions import InvalidBatch, PredictionExists


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine(str(tmp_path / "ids.db"), prediction_cache_size=2) as eng:
        eng.create_model("m", preprocessing.StandardScaler() | linear_model.LogisticRegression())
        yield eng


def hold_writer(engine: Engine) -> threading.Event:
    """Keep the store's writer busy until the returned event is set: writes queue up."""
    gate = threading.Event()
    engine.store._writer.submit(lambda conn: gate.wait(10))  # type: ignore[attr-defined]
    return gate


def evict(engine: Engine) -> None:
    for _ in range(4):  # the cache holds at most 2
        engine.predict("m", {"x": 0.0})


def test_a_label_sent_before_its_prediction_commits_finds_it(engine: Engine) -> None:
    gate = hold_writer(engine)
    predicted = engine.submit_predict("m", {"x": 2.0}, id="early")
    learned = engine.submit_learn("m", ground_truth=True, id="early")
    gate.set()
    assert predicted.wait()["id"] == "early"
    assert learned.wait()["id"] == "early"
    assert engine.store.get_prediction("early").labelled  # type: ignore[union-attr]
    (record,) = list(engine.store.learns_after("m", 0))
    assert record.features == {"x": 2.0}


def test_a_taken_id_is_refused_at_commit_and_the_first_prediction_keeps_it(
    engine: Engine,
) -> None:
    engine.predict("m", {"x": 1.0}, id="mine")
    evict(engine)
    assert "mine" not in engine._cache
    gate = hold_writer(engine)
    again = engine.submit_predict("m", {"x": 9.0}, id="mine")
    # a label now means the stored prediction, not the one that will be refused
    label = engine.submit_learn("m", ground_truth=False, id="mine")
    gate.set()
    with pytest.raises(PredictionExists):
        again.wait()
    label.wait()
    (record,) = list(engine.store.learns_after("m", 0))
    assert record.features == {"x": 1.0}
    assert engine.store.get_prediction("mine").features == {"x": 1.0}  # type: ignore[union-attr]
    with pytest.raises(PredictionExists):
        engine.predict("m", {"x": 9.0}, id="mine")


def test_a_batch_finds_stored_ids_in_one_query(engine: Engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine.predict("m", {"x": 1.0}, id="old")
    evict(engine)
    reads = []
    original = engine.store.stored_prediction_ids
    monkeypatch.setattr(
        engine.store, "stored_prediction_ids", lambda ids: reads.append(set(ids)) or original(ids)
    )
    monkeypatch.setattr(engine.store, "get_prediction", lambda i: pytest.fail("a read per id"))
    with pytest.raises(InvalidBatch) as info:
        engine.predict_many("m", [{"features": {"x": 1.0}, "id": i} for i in ("a", "old", "b")])
    assert [(e["index"], e["code"]) for e in info.value.detail["errors"]] == [
        (1, "prediction_exists")
    ]
    assert reads == [{"a", "old", "b"}]
    assert [p["id"] for p in engine.predict_many("m", [{"features": {}, "id": "a"}])] == ["a"]


def test_a_model_read_while_its_deletion_commits_does_not_come_back(engine: Engine) -> None:
    from riverbed.exceptions import ModelNotFound

    gate = hold_writer(engine)
    deleted = engine.submit_delete_model("m")
    with pytest.raises(ModelNotFound):
        engine.stats("m")  # the store still holds it: it must not be loaded back
    gate.set()
    deleted.wait()
    with pytest.raises(ModelNotFound):
        engine.stats("m")
    assert "m" not in engine._live
