"""The engine's cache of recent predictions: bounded, exact types back, invisible to the
cyclic garbage collector (whose full collections walked every cached record before)."""

from __future__ import annotations

import gc

import numpy as np

from riverbed.prediction_cache import PredictionCache
from riverbed.stores.base import PredictionRecord


def record(n: int, **changes: object) -> PredictionRecord:
    fields: dict[str, object] = {
        "id": f"p{n}",
        "model": "m",
        "seq": n,
        "features": {"x": float(n), "colour": "red", "ok": True},
        "prediction": {False: 0.25, True: 0.75},
        "created_at": 1.5,
    }
    fields.update(changes)
    return PredictionRecord(**fields)  # type: ignore[arg-type]


def test_holds_between_half_and_all_of_its_size_of_the_newest() -> None:
    cache = PredictionCache(size=100)
    for n in range(1, 1001):
        cache.put(record(n))
    held = [n for n in range(1, 1001) if f"p{n}" in cache]
    assert 50 <= len(held) <= 100 and len(cache) == len(held)
    assert held == list(range(1001 - len(held), 1001))  # the newest, none missing


def test_records_come_back_equal_with_their_types() -> None:
    cache = PredictionCache(size=10)
    original = record(1)
    cache.put(original)
    back = cache.get("p1")
    assert back == original and back is not original
    assert list(back.prediction) == [False, True]  # bool keys, not "false"/"true"
    odd = record(2, features={"x": np.float64(0.5)}, prediction=np.int64(1))
    cache.put(odd)
    assert cache.get("p2") == odd and type(cache.get("p2").features["x"]) is np.float64


def test_a_label_mark_is_kept_by_marking_the_record() -> None:
    cache = PredictionCache(size=10)
    cache.put(record(1))
    got = cache.get("p1")
    got.labelled = True
    assert cache.get("p1").labelled is False
    cache.mark(got)
    assert cache.get("p1") == got and cache.get("p1").labelled is True
    got.labelled = False
    cache.mark(got)
    assert cache.get("p1").labelled is False
    odd = record(2, features={"x": np.float64(1.0)})
    odd.labelled = True
    cache.mark(odd)  # not held: put whole
    assert cache.get("p2") == odd


def test_discard_spares_a_newer_prediction_under_the_same_id() -> None:
    cache = PredictionCache(size=10)
    first, second = record(1), record(2, id="p1")
    cache.put(first)
    cache.put(second)
    cache.discard([first])
    assert cache.get("p1") == second
    cache.discard([second])
    assert "p1" not in cache


def test_drop_model_forgets_only_that_model() -> None:
    cache = PredictionCache(size=10)
    cache.put(record(1))
    cache.put(record(2, model="other"))
    cache.drop_model("m")
    assert "p1" not in cache and "p2" in cache


def test_the_garbage_collector_does_not_walk_the_cache() -> None:
    cache = PredictionCache(size=1000)
    for n in range(2000):
        cache.put(record(n))
    gc.collect()
    assert not gc.is_tracked(cache._young) and not gc.is_tracked(cache._old)
