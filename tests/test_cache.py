"""The key-value cache: one contract suite over every backend (memory, SQLite, Redis), expiry,
and a cache that survives a restart on SQLite."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from riverbed import CacheKeyNotFound, Engine, InvalidInput, WrongCacheKind
from riverbed.cache import Cache, open_cache
from riverbed.stores import open_store
from riverbed.stores.redis import RedisCacheStore
from tests.helpers import database

# Where .ci/services (run by `make test`) checked for Redis.
REDIS_URL = (
    f"redis://{os.environ.get('REDIS_HOST', '127.0.0.1')}:{os.environ.get('REDIS_PORT', '6379')}/0"
)
BACKENDS = ["memory", "sqlite", "postgresql", "redis"]


class Clock:
    """A clock the test moves by hand (memory and SQLite expire by the cache's clock)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cache]:
    if request.param == "redis":
        store = RedisCacheStore(REDIS_URL, prefix=f"riverbed-test:{uuid.uuid4().hex}:")
        try:
            yield Cache(store)
        finally:
            store.clear()
            store.close()
        return
    with database(request.param, tmp_path, "c.db") as db:
        backend = open_store(db)
        try:
            yield open_cache(backend)
        finally:
            backend.close()


def test_put_get_delete_round_trip_json(cache: Cache) -> None:
    value = {"a": 1, "b": [1.5, "x", None, True], "c": {"d": "é"}}
    assert cache.put("k", value) == {"key": "k", "expires_at": None}
    assert cache.get("k") == value
    cache.put("k", [1, 2])  # replaces
    assert cache.get("k") == [1, 2]
    cache.put("n", None)  # null is a value, not an absence
    assert cache.get("n") is None
    assert cache.delete("k") == {"key": "k", "deleted": True}
    assert cache.delete("k") == {"key": "k", "deleted": False}
    with pytest.raises(CacheKeyNotFound):
        cache.get("k")
    assert cache.ttl("n")["ttl"] is None


def test_lists_are_stacks_as_lrnstak_has(cache: Cache) -> None:
    assert [cache.push("s", {"i": i})["length"] for i in range(3)] == [1, 2, 3]
    assert cache.length("s") == 3
    assert [cache.peek("s", p) for p in (0, 1, 2, -1, -3)] == [
        {"i": 2},
        {"i": 1},
        {"i": 0},
        {"i": 0},
        {"i": 2},
    ]
    with pytest.raises(CacheKeyNotFound):
        cache.peek("s", 3)
    with pytest.raises(CacheKeyNotFound):
        cache.peek("s", -4)
    assert [cache.pop("s") for _ in range(3)] == [{"i": 2}, {"i": 1}, {"i": 0}]
    with pytest.raises(CacheKeyNotFound):
        cache.pop("s")
    assert cache.length("s") == 0
    with pytest.raises(CacheKeyNotFound):
        cache.ttl("s")  # an emptied list is gone


def test_values_and_lists_do_not_mix(cache: Cache) -> None:
    cache.put("v", 1)
    cache.push("l", 1)
    with pytest.raises(WrongCacheKind):
        cache.push("v", 2)
    with pytest.raises(WrongCacheKind):
        cache.pop("v")
    with pytest.raises(WrongCacheKind):
        cache.peek("v")
    with pytest.raises(WrongCacheKind):
        cache.get("l")
    assert cache.get("v") == 1 and cache.length("l") == 1  # nothing changed
    cache.put("l", "now a value")  # put replaces a list, as Redis SET does
    assert cache.get("l") == "now a value"


def test_bad_input_is_refused_and_changes_nothing(cache: Cache) -> None:
    for key in ("", 5, None, "x" * 1025):
        with pytest.raises(InvalidInput):
            cache.put(key, 1)  # type: ignore[arg-type]
    for ttl in (-1, float("inf"), float("nan"), "10", True):
        with pytest.raises(InvalidInput):
            cache.put("k", 1, ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        cache.put("k", {1, 2})
    with pytest.raises(InvalidInput):
        cache.peek("k", "0")  # type: ignore[arg-type]
    with pytest.raises(CacheKeyNotFound):
        cache.get("k")


def test_expiry_is_enforced(cache: Cache) -> None:
    """A short time to live on a value and a list: readable before, gone after."""
    cache.put("short", "v", ttl=1.0)
    cache.push("queue", 1, ttl=1.0)
    cache.put("long", "v", ttl=60)
    assert cache.get("short") == "v" and cache.peek("queue") == 1
    left = cache.ttl("long")["ttl"]
    # Redis keeps expiry in whole milliseconds of its own clock: allow that granularity.
    assert left is not None and 59 < left <= 60.01
    time.sleep(1.2)
    with pytest.raises(CacheKeyNotFound):
        cache.get("short")
    with pytest.raises(CacheKeyNotFound):
        cache.pop("queue")
    assert cache.length("queue") == 0
    assert cache.delete("short")["deleted"] is False
    assert cache.get("long") == "v"
    cache.purge()
    assert cache.get("long") == "v"


def test_expire_sets_and_clears_a_time_to_live(cache: Cache) -> None:
    cache.put("k", 1, ttl=1.0)
    cache.expire("k", None)  # never expires now
    cache.push("l", 1)
    cache.push("l", 2, ttl=1.0)  # a ttl on push sets the list's expiry
    cache.push("l", 3)  # and a push without one keeps it
    time.sleep(1.2)
    assert cache.get("k") == 1
    assert cache.length("l") == 0
    with pytest.raises(CacheKeyNotFound):
        cache.expire("missing", 10)
    assert cache.expire("k", 0)["expires_at"] is None


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_expiry_follows_the_cache_clock(kind: str, tmp_path: Path) -> None:
    store = open_store(":memory:" if kind == "memory" else str(tmp_path / "c.db"))
    clock = Clock()
    cache = Cache(store, clock=clock)  # type: ignore[arg-type]
    cache.put("a", 1, ttl=1)
    cache.put("b", 1, ttl=1)
    cache.push("l", 1, ttl=1)
    clock.now += 0.999
    assert cache.get("a") == 1 and cache.ttl("a")["ttl"] == pytest.approx(0.001)
    clock.now += 0.001
    with pytest.raises(CacheKeyNotFound):
        cache.get("a")
    assert cache.length("l") == 0
    cache.push("l", 2)  # an expired list starts afresh, without the old expiry
    assert cache.peek("l", -1) == 2 and cache.ttl("l")["ttl"] is None
    assert cache.purge() >= 1  # at least "b", which no read has touched
    assert cache.purge() == 0
    assert cache.peek("l") == 2
    store.close()


def test_a_cache_value_survives_a_restart_on_sqlite_until_it_expires(tmp_path: Path) -> None:
    """The issue's check: a value with a 1-second TTL is still there after a restart before
    it expires (reopening the engine on the same file), and gone once it has expired."""
    database = str(tmp_path / "restart.db")
    clock = Clock()
    with Engine(database) as engine:
        engine.cache.clock = clock
        engine.cache.put("session", {"user": 42}, ttl=1)
        engine.cache.push("recent", "a", ttl=1)
    clock.now += 0.5
    with Engine(database) as engine:
        engine.cache.clock = clock
        assert engine.cache.get("session") == {"user": 42}
        assert engine.cache.peek("recent") == "a"
        assert engine.cache.ttl("session")["ttl"] == pytest.approx(0.5)
        clock.now += 0.5
        with pytest.raises(CacheKeyNotFound):
            engine.cache.get("session")
    with Engine(database) as engine:  # on the real clock, long expired
        with pytest.raises(CacheKeyNotFound):
            engine.cache.get("session")


def test_a_redis_cache_is_shared_across_engines(tmp_path: Path) -> None:
    """Two engines (two replicas) naming the same Redis see one cache."""
    prefix = f"riverbed-test:{uuid.uuid4().hex}:"
    one = Engine(str(tmp_path / "one.db"), cache_url=REDIS_URL, cache_prefix=prefix)
    two = Engine(":memory:", cache_url=REDIS_URL, cache_prefix=prefix)
    try:
        one.cache.put("k", {"v": 1}, ttl=30)
        two.cache.push("q", "x")
        assert two.cache.get("k") == {"v": 1}
        assert one.cache.pop("q") == "x"
        assert isinstance(one.cache.store, RedisCacheStore)
    finally:
        assert isinstance(one.cache.store, RedisCacheStore)
        one.cache.store.clear()
        one.close()
        two.close()


def test_a_bad_cache_url_is_refused() -> None:
    with pytest.raises(InvalidInput, match="redis://"):
        Engine(":memory:", cache_url="http://nope")


def test_predict_takes_its_features_from_a_cache_key(tmp_path: Path) -> None:
    from tests.helpers import phishing_model

    with Engine(str(tmp_path / "p.db")) as engine:
        engine.create_model("p", phishing_model())
        x = {"empty_server_form_handler": 0.0, "popup_window": 0.5}
        engine.cache.put("user:1", x)
        by_key = engine.predict("p", features_key="user:1", id="a")
        direct = engine.predict("p", x)
        assert by_key["probabilities"] == direct["probabilities"]
        # the stored prediction keeps the resolved features, so learning by id works
        assert engine.learn("p", ground_truth=True, id="a")["n_learns"] == 1
        merged = engine.predict("p", {"popup_window": 1.0}, features_key="user:1")
        assert (
            merged["probabilities"]
            == engine.predict("p", {**x, "popup_window": 1.0})["probabilities"]
        )
        with pytest.raises(CacheKeyNotFound):
            engine.predict("p", features_key="user:2")
        engine.cache.put("scalar", 3)
        with pytest.raises(InvalidInput, match="not an object"):
            engine.predict("p", features_key="scalar")
        with pytest.raises(InvalidInput):
            engine.predict("p")
