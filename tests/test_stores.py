"""One contract suite, every store backend."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riverbed.exceptions import (
    ModelExists,
    ModelNotFound,
    PredictionExists,
    VersionExists,
    VersionNotFound,
)
from riverbed.stores import open_store
from riverbed.stores.base import (
    AliasChange,
    AliasRecord,
    Checkpoint,
    LearnRecord,
    ModelRecord,
    PredictionRecord,
    Store,
    VersionRecord,
    dump,
    load,
)
from riverbed.stores.sqlite import SQLiteStore
from riverbed.stores.sqlite_schema import SCHEMA_VERSION
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


def test_a_bad_write_among_many_in_flight_fails_alone(store: Store) -> None:
    """Writes submitted together share a commit; the one that fails takes none with it."""
    store.create_model(*model()).result()
    store.add_prediction(PredictionRecord("taken", "m", 1, {"a": 1}, 0.5, 1.0)).result()
    ids = [f"p{i}" for i in range(60)]
    ids[30] = "taken"
    futures = [
        store.add_prediction(PredictionRecord(i, "m", n + 2, {"a": n}, 0.5, 1.0))
        for n, i in enumerate(ids)
    ]
    failed = []
    for i, future in zip(ids, futures, strict=True):
        try:
            future.result()
        except PredictionExists:
            failed.append(i)
    assert failed == ["taken"]
    assert all(store.get_prediction(i) is not None for i in ids)
    assert store.get_prediction("taken").seq == 1  # type: ignore[union-attr]


def test_predictions_keep_their_key_types(store: Store) -> None:
    store.create_model(*model()).result()
    record = PredictionRecord("p1", "m", 1, {"a": 1.5, "b": "x"}, {True: 0.7, False: 0.3}, 2.0)
    store.add_prediction(record).result()
    assert store.get_prediction("p1") == record
    with pytest.raises(PredictionExists):
        store.add_prediction(record).result()
    assert store.max_prediction_seq("m") == 1
    assert store.max_prediction_seq("other") == 0


def test_predictions_after_a_seq_come_in_order(store: Store) -> None:
    store.create_model(*model()).result()
    records = [PredictionRecord(f"p{n}", "m", n, {"n": n}, 0.5, 0.0) for n in (3, 1, 2)]
    store.add_predictions(records).result()
    store.add_prediction(PredictionRecord("q", "other", 9, {}, 0.5, 0.0)).result()
    assert [p.id for p in store.predictions_after("m", 1)] == ["p2", "p3"]
    assert store.predictions_after("m", 3) == []


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


def version(name: str, number: int, **fields: object) -> VersionRecord:
    return VersionRecord(
        name,
        number,
        f"bytes-{number}".encode(),
        None,
        "upload",
        float(number),
        {"metrics": {"accuracy": number / 10}},
        format="skops",
        description=f"v{number}",
        tags={"stage": "dev"},
        **fields,  # type: ignore[arg-type]
    )


def test_versions_are_added_listed_and_numbered_forever(store: Store) -> None:
    store.create_model(*model()).result()
    store.add_version(version("m", 2)).result()
    store.add_version(version("m", 3)).result()
    with pytest.raises(VersionExists):
        store.add_version(version("m", 3)).result()
    with pytest.raises(ModelNotFound):
        store.add_version(version("nobody", 1)).result()
    assert store.get_version("m") == version("m", 3)
    assert store.get_version("m", 2) == version("m", 2)
    listed = store.list_versions("m")
    assert [v.version for v in listed] == [1, 2, 3]
    assert all(v.artifact == b"" for v in listed)
    assert listed[2].metadata == {"metrics": {"accuracy": 0.3}} and listed[2].tags == {
        "stage": "dev"
    }
    store.delete_version("m", 3).result()
    assert store.get_version("m", 3) is None
    assert store.get_version("m") == version("m", 2)
    assert store.last_version("m") == 3, "a deleted number is never given again"
    assert store.last_version("nobody") == 0


def test_versions_of_every_model_are_listed_in_order(store: Store) -> None:
    store.create_model(*model("b")).result()
    store.create_model(*model("a")).result()
    store.add_version(version("a", 2)).result()
    assert [(v.model, v.version) for v in store.list_versions()] == [("a", 1), ("a", 2), ("b", 1)]


def test_only_mutable_version_fields_change(store: Store) -> None:
    store.create_model(*model()).result()
    store.add_version(version("m", 2)).result()
    store.update_version("m", 2, description="better", tags={"stage": "prod"}).result()
    got = store.get_version("m", 2)
    assert got is not None
    assert (got.description, got.tags, got.metadata) == (
        "better",
        {"stage": "prod"},
        {"metrics": {"accuracy": 0.2}},
    )
    assert got.artifact == b"bytes-2"
    store.update_version("m", 2, metadata={"metrics": {"f1": 0.5}}).result()
    got = store.get_version("m", 2)
    assert got is not None and got.metadata == {"metrics": {"f1": 0.5}}
    assert got.description == "better"
    with pytest.raises(VersionNotFound):
        store.update_version("m", 9, description="x").result()


def test_model_description_and_tags_can_be_edited(store: Store) -> None:
    store.create_model(*model()).result()
    store.update_model("m", description="new", tags=None, at=5.0).result()
    got = store.get_model("m")
    assert got is not None
    assert (got.description, got.tags, got.updated_at) == ("new", {"k": "v"}, 5.0)
    store.update_model("m", description=None, tags={"a": "b"}, at=6.0).result()
    got = store.get_model("m")
    assert got is not None and (got.description, got.tags) == ("new", {"a": "b"})
    with pytest.raises(ModelNotFound):
        store.update_model("zz", description="x", tags=None, at=1.0).result()


def test_the_flavor_of_a_model_is_kept(store: Store) -> None:
    record, first = model("batch")
    record.flavor = "sklearn"
    store.create_model(record, first).result()
    got = store.get_model("batch")
    assert got is not None and got.flavor == "sklearn"
    assert store.list_models()[0].flavor == "sklearn"


def test_aliases_move_and_every_move_is_kept(store: Store) -> None:
    store.create_model(*model()).result()
    store.create_model(*model("other")).result()
    store.add_version(version("m", 2)).result()
    store.set_alias("m", "production", 2, at=10.0, by="ann").result()
    store.set_alias("m", "production", 1, at=11.0, by="bob").result()
    store.set_alias("m", "champion", 2, at=12.0).result()
    store.set_alias("other", "production", 1, at=13.0).result()
    assert store.list_aliases("m") == [
        AliasRecord("m", "champion", 2, 12.0, ""),
        AliasRecord("m", "production", 1, 11.0, "bob"),
    ]
    assert [(a.model, a.alias) for a in store.list_aliases()] == [
        ("m", "champion"),
        ("m", "production"),
        ("other", "production"),
    ]
    store.set_alias("m", "champion", None, at=14.0).result()
    assert [a.alias for a in store.list_aliases("m")] == ["production"]
    assert store.alias_history("m") == [
        AliasChange("m", "production", 2, None, 10.0, "ann"),
        AliasChange("m", "production", 1, 2, 11.0, "bob"),
        AliasChange("m", "champion", 2, None, 12.0, ""),
        AliasChange("m", "champion", None, 2, 14.0, ""),
    ]
    with pytest.raises(ModelNotFound):
        store.set_alias("zz", "production", 1, at=1.0).result()


def test_deleting_a_model_forgets_its_registry_entries(store: Store) -> None:
    store.create_model(*model()).result()
    store.add_version(version("m", 2)).result()
    store.set_alias("m", "production", 2, at=1.0).result()
    store.delete_model("m").result()
    assert store.list_versions("m") == [] and store.list_aliases("m") == []
    assert store.alias_history("m") == [] and store.last_version("m") == 0
    store.create_model(*model()).result()
    assert [v.version for v in store.list_versions("m")] == [1]


def test_sqlite_adds_new_columns_to_an_older_file(tmp_path: Path) -> None:
    """A database written before the registry columns existed opens and keeps its rows."""
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE models (name TEXT PRIMARY KEY, task TEXT NOT NULL, description TEXT"
        " NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '{}', metrics TEXT NOT NULL"
        " DEFAULT '[]', created_at REAL NOT NULL, updated_at REAL NOT NULL);"
        "CREATE TABLE versions (model TEXT NOT NULL, version INTEGER NOT NULL, artifact BLOB"
        " NOT NULL, spec TEXT, source TEXT NOT NULL, created_at REAL NOT NULL, metadata TEXT"
        " NOT NULL DEFAULT '{}', PRIMARY KEY (model, version));"
        "INSERT INTO models VALUES ('old', 'binary', '', '{}', '[]', 1.0, 1.0);"
        "INSERT INTO versions VALUES ('old', 1, x'00', NULL, 'spec', 1.0, '{}');"
    )
    conn.commit()
    conn.close()
    s = open_store(str(path))
    got = s.get_version("old", 1)
    assert got is not None and (got.format, got.tags) == ("riverbed", {})
    record = s.get_model("old")
    assert record is not None and record.flavor == "river"
    assert s.last_version("old") == 1
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_sqlite_refuses_a_file_a_newer_version_wrote_and_leaves_it_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new.db"
    s = open_store(str(path))
    s.create_model(*model()).result()
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("DROP TABLE learn_blocks")  # a newer layout, say
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"newer riverbed \(database schema 2; this version"):
        open_store(str(path))
    assert path.read_bytes() == before
    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "learn_blocks" not in tables and "models" in tables


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


def test_metric_points_are_kept_in_order_once_per_seq(store: Store) -> None:
    from riverbed.stores.base import MetricPoint

    store.create_model(*model())
    store.sync()
    for seq in (100, 200, 300):
        store.add_metric_point(MetricPoint("m", seq, float(seq), {"n": seq})).result()
    # a second point for the same learn keeps the first
    store.add_metric_point(MetricPoint("m", 200, 9.0, {"n": -1})).result()
    assert [p.seq for p in store.metric_history("m")] == [100, 200, 300]
    assert store.metric_history("m", after=100)[0] == MetricPoint("m", 200, 200.0, {"n": 200})
    assert [p.seq for p in store.metric_history("m", since=250.0)] == [300]
    assert [p.seq for p in store.metric_history("m", limit=1)] == [100]
    assert store.metric_history("other") == []
    store.delete_model("m").result()
    assert store.metric_history("m") == []


def test_batches_of_predictions_and_learns_are_all_or_nothing(store: Store) -> None:
    store.create_model(*model()).result()
    store.add_prediction(PredictionRecord("taken", "m", 1, {}, 1, 1.0)).result()
    batch = [PredictionRecord(f"b{i}", "m", i + 2, {"i": i}, i, 1.0) for i in range(3)]
    with pytest.raises(PredictionExists):
        store.add_predictions([*batch, PredictionRecord("taken", "m", 9, {}, 1, 1.0)]).result()
    assert store.get_prediction("b0") is None
    store.add_predictions(batch).result()
    assert store.get_prediction("b2") == batch[2]
    learns = [LearnRecord("m", i, {"a": i}, i, None, "b1" if i == 2 else None, 1.0) for i in (1, 2)]
    store.add_learns(learns).result()
    assert list(store.learns_after("m", 0)) == learns
    labelled = store.get_prediction("b1")
    assert labelled is not None and labelled.labelled


# -- retention ------------------------------------------------------------------------------


def fill(store: Store, name: str, n: int, *, step: int = 1) -> None:
    """``n`` predictions (ids ``{name}-p{seq}``), learns and metric points of a model, with
    sequence numbers ``step, 2 * step, ...`` (gaps when ``step`` > 1)."""
    from riverbed.stores.base import MetricPoint

    for seq in range(step, n * step + 1, step):
        store.add_prediction(PredictionRecord(f"{name}-p{seq}", name, seq, {"a": seq}, 1, 1.0))
        store.add_learn(LearnRecord(name, seq, {"a": seq}, 1, 1, None, 1.0))
        store.add_metric_point(MetricPoint(name, seq, float(seq), {"n": seq}))
    store.sync()


def kept_predictions(store: Store, name: str, seqs: range) -> list[int]:
    return [s for s in seqs if store.get_prediction(f"{name}-p{s}") is not None]


def test_prune_keeps_exactly_the_newest_n_of_each_kind(store: Store) -> None:
    """Sequence numbers with gaps (a failed write leaves one) still leave exactly N rows."""
    from riverbed.stores.base import Pruned, Retention

    store.create_model(*model()).result()
    fill(store, "m", 25, step=2)  # seqs 2, 4, ..., 50
    store.save_checkpoint(Checkpoint("m", 50, b"s", 1.0)).result()
    pruned = store.prune("m", Retention(predictions=10, learns=8, metric_points=6)).result()
    assert pruned == Pruned(predictions=15, learns=17, metric_points=19, predictions_through=30)
    assert kept_predictions(store, "m", range(1, 51)) == list(range(32, 51, 2))
    assert [r.seq for r in store.learns_after("m", 0)] == list(range(36, 51, 2))
    assert [p.seq for p in store.metric_history("m")] == list(range(40, 51, 2))
    assert store.max_prediction_seq("m") == 50
    # nothing is left to prune, so a second prune deletes nothing
    assert store.prune("m", Retention(10, 8, 6)).result() == Pruned()


def test_prune_never_deletes_a_learn_after_the_checkpoint(store: Store) -> None:
    from riverbed.stores.base import Retention

    store.create_model(*model()).result()
    fill(store, "m", 30)
    # no checkpoint: loading the model replays every learn from version 1, so all stay
    assert store.prune("m", Retention(learns=5)).result().learns == 0
    assert len(list(store.learns_after("m", 0))) == 30
    store.save_checkpoint(Checkpoint("m", 12, b"s", 1.0)).result()
    assert store.prune("m", Retention(learns=5)).result().learns == 12
    assert [r.seq for r in store.learns_after("m", 0)] == list(range(13, 31))
    store.save_checkpoint(Checkpoint("m", 30, b"s", 2.0)).result()
    assert store.prune("m", Retention(learns=5)).result().learns == 13
    assert [r.seq for r in store.learns_after("m", 0)] == list(range(26, 31))


def test_prune_leaves_kinds_without_a_retention_and_other_models_alone(store: Store) -> None:
    from riverbed.stores.base import Retention

    store.create_model(*model("a")).result()
    store.create_model(*model("b")).result()
    fill(store, "a", 10)
    fill(store, "b", 10)
    store.save_checkpoint(Checkpoint("a", 10, b"s", 1.0)).result()
    store.save_checkpoint(Checkpoint("b", 10, b"s", 1.0)).result()
    assert store.prune("a", Retention(predictions=3)).result().predictions == 7
    assert kept_predictions(store, "a", range(1, 11)) == [8, 9, 10]
    assert len(list(store.learns_after("a", 0))) == 10
    assert len(store.metric_history("a")) == 10
    assert kept_predictions(store, "b", range(1, 11)) == list(range(1, 11))
    assert len(list(store.learns_after("b", 0))) == 10


def test_a_long_backlog_is_pruned_in_batches_to_the_same_end(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite deletes a batch per write (here 7 rows) and queues the next until done."""
    from riverbed.stores import sqlite
    from riverbed.stores.base import Pruned, Retention

    monkeypatch.setattr(sqlite, "_PRUNE_BATCH", 7)
    store.create_model(*model()).result()
    fill(store, "m", 60)
    store.save_checkpoint(Checkpoint("m", 60, b"s", 1.0)).result()
    pruned = store.prune("m", Retention(predictions=5, learns=10, metric_points=20)).result()
    assert pruned == Pruned(predictions=55, learns=50, metric_points=40, predictions_through=55)
    assert kept_predictions(store, "m", range(1, 61)) == list(range(56, 61))
    assert [r.seq for r in store.learns_after("m", 0)] == list(range(51, 61))
    assert [p.seq for p in store.metric_history("m")] == list(range(41, 61))


def _learn(seq: int) -> LearnRecord:
    """Learns of every shape the log holds: labels as keys, nested objects, lists, None."""
    shapes: list[tuple[dict[str, Any], Any, Any]] = [
        ({"a": seq * 0.5, "b": "x", "c": True}, True, {False: 0.25, True: 0.75}),
        ({"v": [1, 2.5]}, {"out": 1.0, "flag": False}, {"out": 0.5, "flag": True}),
        ({"a": 1.0}, 3.5, {"nested": {1: 2.0}}),  # a non-string key inside: encoded in full
        ({}, None, None),
    ]
    features, target, prediction = shapes[seq % len(shapes)]
    return LearnRecord("m", seq, features, target, prediction, None, 1000.0 + seq)


def test_batches_of_learns_read_back_as_written_between_single_learns(store: Store) -> None:
    """A batch is one row of the SQLite log: read back in order, from any seq, with each
    value's types, merged with the learns written one at a time around it."""
    store.create_model(*model()).result()
    learns = [_learn(seq) for seq in range(1, 66)]
    for record in learns[:3]:
        store.add_learn(record)
    store.add_learns(learns[3:43]).result()
    store.add_learns(learns[43:45]).result()  # too few for a batch row
    store.add_learns(learns[45:]).result()
    assert list(store.learns_after("m", 0)) == learns
    assert [r.seq for r in store.learns_after("m", 10)] == list(range(11, 66))
    assert list(store.learns_after("m", 50)) == learns[50:]
    if isinstance(store, SQLiteStore):  # the two batches are a row each
        with sqlite3.connect(store.path) as conn:
            blocks = conn.execute("SELECT first, last FROM learn_blocks ORDER BY first")
            assert blocks.fetchall() == [(4, 43), (46, 65)]
    gapped = [_learn(seq) for seq in range(70, 110, 2)]  # seqs with gaps: kept one a row
    store.add_learns(gapped).result()
    assert [r.seq for r in store.learns_after("m", 64)] == [65, *range(70, 110, 2)]
    store.delete_model("m").result()
    assert list(store.learns_after("m", 0)) == []


def test_retention_cuts_through_a_batch_of_learns(store: Store) -> None:
    from riverbed.stores.base import Pruned, Retention

    store.create_model(*model()).result()
    learns = [_learn(seq) for seq in range(1, 86)]
    store.add_learns(learns[:40]).result()
    for record in learns[40:45]:
        store.add_learn(record)
    store.add_learns(learns[45:]).result()
    store.save_checkpoint(Checkpoint("m", 85, b"s", 1.0)).result()
    assert store.prune("m", Retention(learns=50)).result() == Pruned(learns=35)
    assert list(store.learns_after("m", 0)) == learns[35:]
    assert store.prune("m", Retention(learns=50)).result() == Pruned()
    assert store.prune("m", Retention(learns=3)).result() == Pruned(learns=47)
    assert list(store.learns_after("m", 0)) == learns[82:]
