"""One contract suite, every store backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from riverbed.exceptions import ModelExists, PredictionExists
from riverbed.stores import open_store
from riverbed.stores.base import (
    Checkpoint,
    LearnRecord,
    ModelRecord,
    PredictionRecord,
    Store,
    VersionRecord,
    dump,
    load,
)
from tests.helpers import STORES, database_for


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = open_store(database_for(request.param, tmp_path))
    yield s
    s.close()


def model(name: str = "m") -> tuple[ModelRecord, VersionRecord]:
    return (
        ModelRecord(name, "binary", "d", {"k": "v"}, ["Accuracy"], 1.0, 1.0),
        VersionRecord(name, 1, b"artifact", {"class": "x.Y"}, "spec", 1.0, {}),
    )


def test_models_round_trip(store: Store) -> None:
    store.create_model(*model("b")).result()
    store.create_model(*model("a")).result()
    assert [m.name for m in store.list_models()] == ["a", "b"]
    assert store.get_model("a") == model("a")[0]
    assert store.get_version("a") == model("a")[1]
    assert store.get_version("a", 2) is None
    assert store.get_model("zz") is None


def test_a_duplicate_model_fails_alone(store: Store) -> None:
    store.create_model(*model()).result()
    with pytest.raises(ModelExists):
        store.create_model(*model()).result()
    assert len(store.list_models()) == 1


def test_predictions_keep_their_key_types(store: Store) -> None:
    store.create_model(*model()).result()
    record = PredictionRecord("p1", "m", 1, {"a": 1.5, "b": "x"}, {True: 0.7, False: 0.3}, 2.0)
    store.add_prediction(record).result()
    assert store.get_prediction("p1") == record
    with pytest.raises(PredictionExists):
        store.add_prediction(record).result()
    assert store.max_prediction_seq("m") == 1
    assert store.max_prediction_seq("other") == 0


def test_learns_are_replayed_in_order_and_mark_predictions(store: Store) -> None:
    store.create_model(*model()).result()
    store.add_prediction(PredictionRecord("p1", "m", 1, {"a": 1}, 0.5, 1.0)).result()
    futures = [
        store.add_learn(
            LearnRecord("m", i, {"a": i}, i * 2, None, "p1" if i == 2 else None, float(i))
        )
        for i in range(1, 6)
    ]
    for f in futures:
        f.result()
    assert [r.seq for r in store.learns_after("m", 2)] == [3, 4, 5]
    prediction = store.get_prediction("p1")
    assert prediction is not None and prediction.labelled


def test_checkpoints_replace_each_other(store: Store) -> None:
    store.create_model(*model()).result()
    store.save_checkpoint(Checkpoint("m", 3, b"three", 1.0)).result()
    store.save_checkpoint(Checkpoint("m", 7, b"seven", 2.0)).result()
    assert store.get_checkpoint("m") == Checkpoint("m", 7, b"seven", 2.0)


def test_delete_removes_everything_of_a_model(store: Store) -> None:
    store.create_model(*model()).result()
    store.add_prediction(PredictionRecord("p1", "m", 1, {}, 1, 1.0)).result()
    store.add_learn(LearnRecord("m", 1, {}, 1, None, None, 1.0)).result()
    store.save_checkpoint(Checkpoint("m", 1, b"s", 1.0)).result()
    store.delete_model("m").result()
    assert store.get_model("m") is None and store.get_version("m") is None
    assert store.get_prediction("p1") is None and store.get_checkpoint("m") is None
    assert list(store.learns_after("m", 0)) == []


def test_sqlite_is_one_file_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    s = open_store(str(tmp_path / "x.db"))
    s.create_model(*model()).result()
    s.close()
    conn = sqlite3.connect(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT name FROM models").fetchall() == [("m",)]
    conn.close()


def test_writes_from_many_threads_share_commits(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    s = open_store(str(tmp_path / "x.db"))
    s.create_model(*model()).result()

    def write(i: int) -> None:
        s.add_prediction(PredictionRecord(f"p{i}", "m", i, {"i": i}, i, 1.0)).result()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(1, 401)))
    assert s.max_prediction_seq("m") == 400
    s.close()


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1},
        {True: 0.2, False: 0.8},
        {1: 0.5, 2: 0.5},
        [1, "a", None],
        3.25,
        "x",
        {"nested": {1: "one"}},
    ],
)
def test_stored_values_round_trip(value: object) -> None:
    assert load(dump(value)) == value
