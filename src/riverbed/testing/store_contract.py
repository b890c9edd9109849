"""The store contract: one suite of tests that pins what every :class:`~riverbed.stores.base.Store`
method does, shipped with riverbed so that a third-party backend can run it.

Subclass :class:`StoreContract` in a test module and say how to open your store; pytest
collects the subclass (name it ``Test...``) and runs every test on it::

    from riverbed.testing import StoreContract

    class TestMyStore(StoreContract):
        def open_store(self, location):
            return MyStore(location / "data")

``location`` is what the ``location`` fixture gives (``tmp_path`` unless the subclass
overrides the fixture: a PostgreSQL suite gives a fresh database's URL and drops it after),
the same one each time within a test, so that :meth:`StoreContract.open_store` called twice
opens the same data (the reopen tests; a store that keeps nothing sets ``durable = False``).
The key-value cache (:class:`~riverbed.stores.kv.CacheStore`), the API tokens
(:meth:`~riverbed.stores.base.Store.token_store`) and the training jobs
(:class:`~riverbed.stores.jobstore.JobStore`) are part of the contract when the store has
them; a store without one skips those tests. :class:`CacheStoreContract` alone is the
contract of a cache-only backend (Redis).

The suite needs pytest (riverbed's ``test`` extra); nothing else imports this module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riverbed.exceptions import (
    Conflict,
    ModelExists,
    ModelNotFound,
    PredictionExists,
    VersionExists,
    VersionNotFound,
    WrongCacheKind,
)
from riverbed.stores.base import (
    AliasChange,
    AliasRecord,
    CanaryArm,
    Checkpoint,
    DriftAlarm,
    LearnRecord,
    MetricPoint,
    ModelRecord,
    PredictionRecord,
    Pruned,
    Retention,
    Store,
    VersionRecord,
)
from riverbed.stores.jobstore import JobRecord, JobStore
from riverbed.stores.kv import KEEP, CacheStore
from riverbed.stores.tokens import TokenRecord, TokenStore
from riverbed.stores.webhookstore import DeliveryRecord, WebhookRecord

__all__ = ["CacheStoreContract", "StoreContract"]


def model(name: str = "m") -> tuple[ModelRecord, VersionRecord]:
    return (
        ModelRecord(name, "binary", "d", {"k": "v"}, ["Accuracy"], 1.0, 1.0),
        VersionRecord(name, 1, b"artifact", {"class": "x.Y"}, "spec", 1.0, {}),
    )


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
        **fields,
    )


def fill(store: Store, name: str, n: int, *, step: int = 1) -> None:
    """``n`` predictions (ids ``{name}-p{seq}``), learns and metric points of a model, with
    sequence numbers ``step, 2 * step, ...`` (gaps when ``step`` > 1)."""

    for seq in range(step, n * step + 1, step):
        store.add_prediction(PredictionRecord(f"{name}-p{seq}", name, seq, {"a": seq}, 1, 1.0))
        store.add_learn(LearnRecord(name, seq, {"a": seq}, 1, 1, None, 1.0))
        store.add_metric_point(MetricPoint(name, seq, float(seq), {"n": seq}))
    store.sync()


def kept_predictions(store: Store, name: str, seqs: range) -> list[int]:
    return [s for s in seqs if store.get_prediction(f"{name}-p{s}") is not None]


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


def token(token_id: str = "aaaaaaaaaaaa", created_at: float = 1.0) -> TokenRecord:
    return TokenRecord(token_id, "ci", ("predict", "read"), "d" * 64, created_at, 99.0, None, "x")


def job(job_id: str, model: str = "m", created_at: float = 1.0, **fields: Any) -> JobRecord:
    return JobRecord(job_id, model, "queued", created_at, request={"kind": "fit"}, **fields)


NOW = 1_000_000.0


class CacheStoreContract:
    """The key-value operations of :class:`~riverbed.stores.kv.CacheStore`. Subclasses give
    the ``cache_store`` fixture. A backend that expires keys on its own clock (Redis) sets
    ``own_clock = True``: the tests that move the caller's clock past an expiry skip."""

    own_clock = False

    @pytest.fixture
    def cache_store(self) -> Iterator[CacheStore]:  # pragma: no cover - subclasses give it
        raise NotImplementedError

    def test_a_value_is_set_read_replaced_and_deleted(self, cache_store: CacheStore) -> None:
        cache_store.kv_set("k", b"one", None).result()
        assert cache_store.kv_get("k", NOW) == b"one"
        cache_store.kv_set("k", b"two", None).result()
        assert cache_store.kv_get("k", NOW) == b"two"
        assert cache_store.kv_expiry("k", NOW) == (True, None)
        assert cache_store.kv_delete("k", NOW).result() is True
        assert cache_store.kv_delete("k", NOW).result() is False
        assert cache_store.kv_get("k", NOW) is None
        assert cache_store.kv_expiry("k", NOW) == (False, None)

    def test_a_list_is_a_stack(self, cache_store: CacheStore) -> None:
        lengths = [cache_store.kv_push("s", b"%d" % i, None, NOW).result() for i in range(3)]
        assert lengths == [1, 2, 3] and cache_store.kv_length("s", NOW) == 3
        positions = [cache_store.kv_index("s", p, NOW) for p in (0, 1, 2, -1, -3, 3, -4)]
        assert positions == [b"2", b"1", b"0", b"0", b"2", None, None]
        assert [cache_store.kv_pop("s", NOW).result() for _ in range(4)] == [
            b"2",
            b"1",
            b"0",
            None,
        ]
        assert cache_store.kv_length("s", NOW) == 0
        assert cache_store.kv_expiry("s", NOW) == (False, None), "an emptied list is gone"

    def test_values_and_lists_do_not_mix(self, cache_store: CacheStore) -> None:
        cache_store.kv_set("v", b"1", None).result()
        cache_store.kv_push("l", b"1", None, NOW).result()
        with pytest.raises(WrongCacheKind):
            cache_store.kv_push("v", b"2", None, NOW).result()
        with pytest.raises(WrongCacheKind):
            cache_store.kv_pop("v", NOW).result()
        with pytest.raises(WrongCacheKind):
            cache_store.kv_index("v", 0, NOW)
        with pytest.raises(WrongCacheKind):
            cache_store.kv_get("l", NOW)
        assert cache_store.kv_get("v", NOW) == b"1" and cache_store.kv_length("l", NOW) == 1
        cache_store.kv_set("l", b"value", None).result()  # a set replaces a list
        assert cache_store.kv_get("l", NOW) == b"value"

    def test_expiry_is_set_kept_and_cleared(self, cache_store: CacheStore) -> None:
        now = time.time() if self.own_clock else NOW
        later = now + 3600
        # a backend on its own clock counts the time left from when it answers
        slack = 1.0 if self.own_clock else 0.001
        cache_store.kv_set("k", b"v", later).result()
        assert cache_store.kv_expiry("k", now) == (True, pytest.approx(later, abs=slack))
        assert cache_store.kv_expire("k", None, now).result() is True
        assert cache_store.kv_expiry("k", now) == (True, None)
        assert cache_store.kv_expire("missing", later, now).result() is False
        cache_store.kv_push("l", b"1", later, now).result()
        cache_store.kv_push("l", b"2", KEEP, now).result()  # KEEP leaves the expiry
        assert cache_store.kv_expiry("l", now) == (True, pytest.approx(later, abs=slack))
        cache_store.kv_push("l", b"3", None, now).result()  # None clears it
        assert cache_store.kv_expiry("l", now) == (True, None)

    def test_an_expired_key_is_gone_for_every_read_and_write(self, cache_store: CacheStore) -> None:
        if self.own_clock:
            pytest.skip("this backend expires keys on its own clock")
        cache_store.kv_set("a", b"1", NOW + 1).result()
        cache_store.kv_set("b", b"1", NOW + 1).result()
        cache_store.kv_push("l", b"old", NOW + 1, NOW).result()
        assert cache_store.kv_get("a", NOW + 0.999) == b"1"
        assert cache_store.kv_get("a", NOW + 1) is None
        assert cache_store.kv_expiry("a", NOW + 1) == (False, None)
        assert cache_store.kv_delete("a", NOW + 1).result() is False
        assert cache_store.kv_length("l", NOW + 1) == 0
        assert cache_store.kv_pop("l", NOW + 1).result() is None
        # an expired list starts afresh, without its old items or expiry
        assert cache_store.kv_push("l", b"new", KEEP, NOW + 1).result() == 1
        assert cache_store.kv_index("l", -1, NOW + 1) == b"new"
        assert cache_store.kv_expiry("l", NOW + 1) == (True, None)
        assert cache_store.kv_purge(NOW + 1).result() >= 1  # at least "b"
        assert cache_store.kv_purge(NOW + 1).result() == 0
        assert cache_store.kv_index("l", 0, NOW + 1) == b"new"


class StoreContract(CacheStoreContract):
    """Every method of :class:`~riverbed.stores.base.Store` (and of the cache, token and job
    stores it has). Subclasses define :meth:`open_store`."""

    durable = True  # what was written is there when the store is opened again

    def open_store(self, location: Any) -> Store:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def small_prune_batches(self, monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
        """Make the store prune at most ``rows`` rows a table per write, if it prunes in
        batches (the SQLite and PostgreSQL stores do)."""

    @pytest.fixture
    def location(self, tmp_path: Path) -> Any:
        return tmp_path

    @pytest.fixture
    def store(self, location: Any) -> Iterator[Store]:
        opened = self.open_store(location)
        try:
            yield opened
        finally:
            opened.close()

    @pytest.fixture
    def cache_store(self, store: Store) -> CacheStore:
        if not isinstance(store, CacheStore):
            pytest.skip(f"{type(store).__name__} has no key-value cache")
        return store

    @pytest.fixture
    def token_store(self, store: Store) -> TokenStore:
        try:
            return store.token_store()
        except NotImplementedError:
            pytest.skip(f"{type(store).__name__} keeps no tokens")

    @pytest.fixture
    def job_store(self, store: Store) -> JobStore:
        if not isinstance(store, JobStore):
            pytest.skip(f"{type(store).__name__} keeps no training jobs")
        return store

    # -- models, versions, aliases ----------------------------------------------------------

    def test_models_round_trip(self, store: Store) -> None:
        store.create_model(*model("b")).result()
        store.create_model(*model("a")).result()
        assert [m.name for m in store.list_models()] == ["a", "b"]
        assert store.get_model("a") == model("a")[0]
        assert store.get_version("a") == model("a")[1]
        assert store.get_version("a", 2) is None
        assert store.get_model("zz") is None

    def test_a_duplicate_model_fails_alone(self, store: Store) -> None:
        store.create_model(*model()).result()
        with pytest.raises(ModelExists):
            store.create_model(*model()).result()
        assert len(store.list_models()) == 1

    def test_a_bad_write_among_many_in_flight_fails_alone(self, store: Store) -> None:
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

    def test_predictions_keep_their_key_types(self, store: Store) -> None:
        store.create_model(*model()).result()
        record = PredictionRecord("p1", "m", 1, {"a": 1.5, "b": "x"}, {True: 0.7, False: 0.3}, 2.0)
        store.add_prediction(record).result()
        assert store.get_prediction("p1") == record
        with pytest.raises(PredictionExists):
            store.add_prediction(record).result()
        assert store.max_prediction_seq("m") == 1
        assert store.max_prediction_seq("other") == 0

    def test_predictions_after_a_seq_come_in_order(self, store: Store) -> None:
        store.create_model(*model()).result()
        records = [PredictionRecord(f"p{n}", "m", n, {"n": n}, 0.5, 0.0) for n in (3, 1, 2)]
        store.add_predictions(records).result()
        store.add_prediction(PredictionRecord("q", "other", 9, {}, 0.5, 0.0)).result()
        assert [p.id for p in store.predictions_after("m", 1)] == ["p2", "p3"]
        assert store.predictions_after("m", 3) == []

    def test_learns_are_replayed_in_order_and_mark_predictions(self, store: Store) -> None:
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

    def test_checkpoints_replace_each_other(self, store: Store) -> None:
        store.create_model(*model()).result()
        store.save_checkpoint(Checkpoint("m", 3, b"three", 1.0)).result()
        store.save_checkpoint(Checkpoint("m", 7, b"seven", 2.0)).result()
        assert store.get_checkpoint("m") == Checkpoint("m", 7, b"seven", 2.0)

    def test_delete_removes_everything_of_a_model(self, store: Store) -> None:
        store.create_model(*model()).result()
        store.add_prediction(PredictionRecord("p1", "m", 1, {}, 1, 1.0)).result()
        store.add_learn(LearnRecord("m", 1, {}, 1, None, None, 1.0)).result()
        store.save_checkpoint(Checkpoint("m", 1, b"s", 1.0)).result()
        store.delete_model("m").result()
        assert store.get_model("m") is None and store.get_version("m") is None
        assert store.get_prediction("p1") is None and store.get_checkpoint("m") is None
        assert list(store.learns_after("m", 0)) == []

    def test_versions_are_added_listed_and_numbered_forever(self, store: Store) -> None:
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

    def test_versions_of_every_model_are_listed_in_order(self, store: Store) -> None:
        store.create_model(*model("b")).result()
        store.create_model(*model("a")).result()
        store.add_version(version("a", 2)).result()
        assert [(v.model, v.version) for v in store.list_versions()] == [
            ("a", 1),
            ("a", 2),
            ("b", 1),
        ]

    def test_only_mutable_version_fields_change(self, store: Store) -> None:
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

    def test_model_description_and_tags_can_be_edited(self, store: Store) -> None:
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

    def test_the_flavor_of_a_model_is_kept(self, store: Store) -> None:
        record, first = model("batch")
        record.flavor = "sklearn"
        store.create_model(record, first).result()
        got = store.get_model("batch")
        assert got is not None and got.flavor == "sklearn"
        assert store.list_models()[0].flavor == "sklearn"

    def test_aliases_move_and_every_move_is_kept(self, store: Store) -> None:
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

    def test_deleting_a_model_forgets_its_registry_entries(self, store: Store) -> None:
        store.create_model(*model()).result()
        store.add_version(version("m", 2)).result()
        store.set_alias("m", "production", 2, at=1.0).result()
        store.delete_model("m").result()
        assert store.list_versions("m") == [] and store.list_aliases("m") == []
        assert store.alias_history("m") == [] and store.last_version("m") == 0
        store.create_model(*model()).result()
        assert [v.version for v in store.list_versions("m")] == [1]

    def test_metric_points_are_kept_in_order_once_per_seq(self, store: Store) -> None:

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

    def test_drift_alarms_are_kept_once_per_learn_and_detector(self, store: Store) -> None:
        store.create_model(*model()).result()
        data = {"kind": "ADWIN", "values": {"estimation": 0.25, "labels": {True: 1}}}
        for seq, detector in ((300, "a"), (100, "b"), (100, "a"), (200, "a")):
            store.add_drift_alarm(DriftAlarm("m", seq, detector, float(seq), data)).result()
        # the same alarm again (a replay of the log) keeps the first
        store.add_drift_alarm(DriftAlarm("m", 200, "a", 9.0, {"kind": "other"})).result()
        alarms = store.drift_alarms("m")
        assert [(a.seq, a.detector) for a in alarms] == [
            (100, "a"),
            (100, "b"),
            (200, "a"),
            (300, "a"),
        ]
        assert alarms[2] == DriftAlarm("m", 200, "a", 200.0, data)
        assert [a.seq for a in store.drift_alarms("m", after=100)] == [200, 300]
        assert [a.detector for a in store.drift_alarms("m", limit=2)] == ["a", "b"]
        assert store.drift_alarms("other") == []
        # none for a model that is not there, and none left by a deleted one
        store.add_drift_alarm(DriftAlarm("nope", 1, "a", 1.0, data)).result()
        assert store.drift_alarms("nope") == []
        store.delete_model("m").result()
        assert store.drift_alarms("m") == []

    def test_canary_arms_are_kept_once_per_prediction(self, store: Store) -> None:
        store.create_model(*model()).result()
        for seq, (pid, run, arm) in enumerate(
            (("a", "r1", "v2"), ("b", "r1", "v3"), ("c", "r1", "v2"), ("d", "r2", "live")), 1
        ):
            store.add_canary_arm(CanaryArm("m", pid, seq, run, arm)).result()
        # the same prediction again keeps the first
        store.add_canary_arm(CanaryArm("m", "a", 9, "r1", "v3")).result()
        assert store.canary_arm("m", "a") == CanaryArm("m", "a", 1, "r1", "v2")
        assert store.canary_arm("m", "nope") is None
        assert store.canary_arm("other", "a") is None
        assert store.canary_arm_counts("m") == {("r1", "v2"): 2, ("r1", "v3"): 1, ("r2", "live"): 1}
        assert store.canary_arm_counts("m", after=2) == {("r1", "v2"): 1, ("r2", "live"): 1}
        # none for a model that is not there, and none left by a deleted one
        store.add_canary_arm(CanaryArm("nope", "x", 1, "r", "v1")).result()
        assert store.canary_arm("nope", "x") is None
        store.delete_model("m").result()
        assert store.canary_arm("m", "a") is None
        assert store.canary_arm_counts("m") == {}

    def test_webhooks_and_their_deliveries_round_trip(self, store: Store) -> None:
        hooks = store.webhook_store()
        first = WebhookRecord("wh_a", "http://127.0.0.1:9/a", ["model.*"], "s" * 20, 2.0, "one")
        second = WebhookRecord("wh_b", "https://example.com/b", ["*"], "t" * 20, 1.0)
        hooks.add_webhook(first).result()
        hooks.add_webhook(second).result()
        assert hooks.get_webhook("wh_a") == first
        assert hooks.get_webhook("wh_nope") is None
        assert [w.id for w in hooks.list_webhooks()] == ["wh_b", "wh_a"]  # oldest first
        body = b'{"delivery": "d1", "event": {"data": {"x": 1}}}'
        made = [
            DeliveryRecord(f"d{i}", "wh_a", "model.created", "pending", float(i), body, float(i))
            for i in range(1, 4)
        ]
        for delivery in made:
            hooks.save_delivery(delivery).result()
        hooks.save_delivery(DeliveryRecord("e1", "wh_b", "ping", "pending", 5.0, b"{}")).result()
        attempt = {"at": 7.0, "status_code": 500, "error": "HTTP 500", "duration": 0.5}
        made[0].status, made[0].tries, made[0].attempts = "failed", 3, [attempt] * 3
        made[0].next_at = None
        made[1].status, made[1].tries, made[1].attempts = "delivered", 1, [attempt]
        made[1].next_at = None
        hooks.save_delivery(made[0]).result()  # an upsert
        hooks.save_delivery(made[1]).result()
        assert hooks.get_delivery("d1") == made[0]
        assert hooks.get_delivery("nope") is None
        assert [d.id for d in hooks.list_deliveries("wh_a")] == ["d3", "d2", "d1"]
        assert [d.id for d in hooks.list_deliveries("wh_a", limit=2)] == ["d3", "d2"]
        assert [d.id for d in hooks.list_deliveries("wh_a", status="failed")] == ["d1"]
        assert [d.id for d in hooks.pending_deliveries()] == ["d3", "e1"]
        assert hooks.count_deliveries("wh_a") == {"pending": 1, "delivered": 1, "failed": 1}
        assert hooks.count_deliveries("wh_nope") == {"pending": 0, "delivered": 0, "failed": 0}
        assert hooks.delete_webhook("wh_a").result() is True
        assert hooks.delete_webhook("wh_a").result() is False
        assert hooks.get_webhook("wh_a") is None
        assert hooks.list_deliveries("wh_a") == [] and hooks.get_delivery("d3") is None
        assert [d.id for d in hooks.pending_deliveries()] == ["e1"]
        assert store.webhook_store().get_webhook("wh_b") == second

    def test_batches_of_predictions_and_learns_are_all_or_nothing(self, store: Store) -> None:
        store.create_model(*model()).result()
        store.add_prediction(PredictionRecord("taken", "m", 1, {}, 1, 1.0)).result()
        batch = [PredictionRecord(f"b{i}", "m", i + 2, {"i": i}, i, 1.0) for i in range(3)]
        with pytest.raises(PredictionExists):
            store.add_predictions([*batch, PredictionRecord("taken", "m", 9, {}, 1, 1.0)]).result()
        assert store.get_prediction("b0") is None
        store.add_predictions(batch).result()
        assert store.get_prediction("b2") == batch[2]
        learns = [
            LearnRecord("m", i, {"a": i}, i, None, "b1" if i == 2 else None, 1.0) for i in (1, 2)
        ]
        store.add_learns(learns).result()
        assert list(store.learns_after("m", 0)) == learns
        labelled = store.get_prediction("b1")
        assert labelled is not None and labelled.labelled

    # -- retention ------------------------------------------------------------------------------

    def test_prune_keeps_exactly_the_newest_n_of_each_kind(self, store: Store) -> None:
        """Sequence numbers with gaps (a failed write leaves one) still leave exactly N rows."""

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

    def test_prune_never_deletes_a_learn_after_the_checkpoint(self, store: Store) -> None:

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

    def test_prune_leaves_kinds_without_a_retention_and_other_models_alone(
        self, store: Store
    ) -> None:

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
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A store that prunes in batches (here of 7 rows, see small_prune_batches) goes on
        until nothing is left beyond the retention."""
        self.small_prune_batches(monkeypatch, 7)
        store.create_model(*model()).result()
        fill(store, "m", 60)
        store.save_checkpoint(Checkpoint("m", 60, b"s", 1.0)).result()
        pruned = store.prune("m", Retention(predictions=5, learns=10, metric_points=20)).result()
        assert pruned == Pruned(predictions=55, learns=50, metric_points=40, predictions_through=55)
        assert kept_predictions(store, "m", range(1, 61)) == list(range(56, 61))
        assert [r.seq for r in store.learns_after("m", 0)] == list(range(51, 61))
        assert [p.seq for p in store.metric_history("m")] == list(range(41, 61))

    def test_batches_of_learns_read_back_as_written_between_single_learns(
        self, store: Store
    ) -> None:
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
        gapped = [_learn(seq) for seq in range(70, 110, 2)]  # seqs with gaps: kept one a row
        store.add_learns(gapped).result()
        assert [r.seq for r in store.learns_after("m", 64)] == [65, *range(70, 110, 2)]
        store.delete_model("m").result()
        assert list(store.learns_after("m", 0)) == []

    def test_retention_cuts_through_a_batch_of_learns(self, store: Store) -> None:

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

    # -- order, threads, reopening ----------------------------------------------------------

    def test_writes_of_one_thread_apply_in_order_without_waiting(self, store: Store) -> None:
        """Nothing waited for between the writes: each still sees the ones before it."""
        futures = [
            store.create_model(*model()),
            store.add_prediction(PredictionRecord("p1", "m", 1, {"a": 1}, 0.5, 1.0)),
            store.add_learn(LearnRecord("m", 1, {"a": 1}, 1, 0.5, "p1", 1.0)),
            store.save_checkpoint(Checkpoint("m", 1, b"one", 1.0)),
            store.delete_model("m"),
            store.create_model(*model()),
            store.add_learn(LearnRecord("m", 1, {"a": 2}, 2, None, None, 2.0)),
        ]
        for future in futures:
            future.result()
        assert store.get_prediction("p1") is None and store.get_checkpoint("m") is None
        assert [r.features for r in store.learns_after("m", 0)] == [{"a": 2}]

    def test_writes_from_many_threads_all_land(self, store: Store) -> None:
        store.create_model(*model()).result()
        errors: list[BaseException] = []

        def write(first: int) -> None:
            try:
                futures = [
                    store.add_prediction(PredictionRecord(f"p{i}", "m", i, {"i": i}, i, 1.0))
                    for i in range(first, first + 50)
                ]
                for future in futures:
                    future.result()
            except BaseException as exc:  # pragma: no cover - the assertion shows it
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(1 + 50 * t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert store.max_prediction_seq("m") == 400
        assert store.stored_prediction_ids(["p1", "p400", "p401"]) == {"p1", "p400"}
        assert [p.seq for p in store.predictions_after("m", 0)] == list(range(1, 401))

    def test_writes_for_a_model_that_is_gone_are_dropped(self, store: Store) -> None:
        store.add_metric_point(MetricPoint("gone", 1, 1.0, {"n": 1})).result()
        store.save_checkpoint(Checkpoint("gone", 1, b"s", 1.0)).result()
        assert store.metric_history("gone") == [] and store.get_checkpoint("gone") is None

    def test_everything_is_there_after_a_reopen(self, store: Store, location: Any) -> None:
        if not self.durable:
            pytest.skip(f"{type(store).__name__} keeps nothing across a reopen")
        store.create_model(*model()).result()
        store.add_version(version("m", 2)).result()
        store.set_alias("m", "production", 2, at=3.0, by="ann").result()
        store.add_prediction(PredictionRecord("p1", "m", 1, {"a": 1}, {True: 0.5}, 1.0)).result()
        store.add_learns([_learn(1), _learn(2)]).result()
        store.save_checkpoint(Checkpoint("m", 2, b"state", 2.0)).result()
        store.add_metric_point(MetricPoint("m", 2, 2.0, {"n": 2})).result()
        hook = WebhookRecord("wh_a", "http://127.0.0.1:9/a", ["job.finished"], "s" * 20, 1.0)
        delivery = DeliveryRecord("d1", "wh_a", "job.failed", "pending", 2.0, b"{}", 9.0, 1)
        store.webhook_store().add_webhook(hook).result()
        store.webhook_store().save_delivery(delivery).result()
        store.close()
        again = self.open_store(location)
        try:
            assert again.get_model("m") == model()[0]
            assert again.get_version("m", 2) == version("m", 2)
            assert again.list_aliases("m") == [AliasRecord("m", "production", 2, 3.0, "ann")]
            assert again.get_prediction("p1") == PredictionRecord(
                "p1", "m", 1, {"a": 1}, {True: 0.5}, 1.0
            )
            assert list(again.learns_after("m", 0)) == [_learn(1), _learn(2)]
            assert again.get_checkpoint("m") == Checkpoint("m", 2, b"state", 2.0)
            assert again.metric_history("m") == [MetricPoint("m", 2, 2.0, {"n": 2})]
            assert again.last_version("m") == 2
            assert again.webhook_store().list_webhooks() == [hook]
            assert again.webhook_store().pending_deliveries() == [delivery]
        finally:
            again.close()

    # -- tokens --------------------------------------------------------------------------

    def test_a_token_round_trips(self, token_store: TokenStore) -> None:
        token_store.add_token(token()).result()
        assert token_store.get_token("aaaaaaaaaaaa") == token()
        assert token_store.get_token("bbbbbbbbbbbb") is None

    def test_a_taken_token_id_is_a_conflict_and_changes_nothing(
        self, token_store: TokenStore
    ) -> None:
        token_store.add_token(token()).result()
        other = token()
        other.name = "other"
        with pytest.raises(Conflict):
            token_store.add_token(other).result()
        assert token_store.get_token("aaaaaaaaaaaa") == token()

    def test_tokens_are_listed_oldest_first(self, token_store: TokenStore) -> None:
        token_store.add_token(token("bbbbbbbbbbbb", 2.0)).result()
        token_store.add_token(token("aaaaaaaaaaaa", 3.0)).result()
        token_store.add_token(token("cccccccccccc", 1.0)).result()
        listed = [t.id for t in token_store.list_tokens()]
        assert listed == ["cccccccccccc", "bbbbbbbbbbbb", "aaaaaaaaaaaa"]

    def test_revoking_keeps_the_first_time_and_says_whether_the_token_exists(
        self, token_store: TokenStore
    ) -> None:
        token_store.add_token(token()).result()
        assert token_store.revoke_token("aaaaaaaaaaaa", 5.0).result() is True
        assert token_store.revoke_token("aaaaaaaaaaaa", 9.0).result() is True
        revoked = token_store.get_token("aaaaaaaaaaaa")
        assert revoked is not None and revoked.revoked_at == 5.0
        assert token_store.revoke_token("zzzzzzzzzzzz", 5.0).result() is False

    # -- training jobs --------------------------------------------------------------------

    def test_a_job_is_saved_whole_and_replaced(self, job_store: JobStore) -> None:
        first = job("j1", logs=[{"at": 1.0, "message": "queued"}], data={"format": "csv"})
        job_store.save_job(first).result()
        assert job_store.get_job("j1") == first
        first.status, first.progress, first.result = "succeeded", 1.0, {"version": 2}
        first.error = None
        job_store.save_job(first).result()
        assert job_store.get_job("j1") == first
        assert job_store.get_job("nope") is None

    def test_jobs_are_listed_newest_first_by_model(self, job_store: JobStore) -> None:
        for i, model_name in enumerate(["a", "b", "a", "a"]):
            job_store.save_job(job(f"j{i}", model_name, float(i))).result()
        assert [j.id for j in job_store.list_jobs()] == ["j3", "j2", "j1", "j0"]
        assert [j.id for j in job_store.list_jobs(model="a")] == ["j3", "j2", "j0"]
        assert [j.id for j in job_store.list_jobs(model="a", limit=2)] == ["j3", "j2"]
        assert job_store.list_jobs(model="zz") == []

    def test_a_jobs_data_is_kept_as_bytes(self, job_store: JobStore) -> None:
        job_store.save_job_data("j1", "csv", b"a,b\n1,2\n").result()
        assert job_store.get_job_data("j1") == ("csv", b"a,b\n1,2\n")
        job_store.save_job_data("j1", "parquet", b"\x00\x01").result()
        assert job_store.get_job_data("j1") == ("parquet", b"\x00\x01")
        assert job_store.get_job_data("nope") is None
