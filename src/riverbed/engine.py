"""The engine: every operation a user can do is a method here first.

The engine owns the live models (one writer per model), the prediction-id join, progressive
metrics, stats and the event feed. It imports no web framework. Each operation comes in two
forms written once: ``submit_<op>`` does the work in memory, queues the durable write and
returns a :class:`Receipt`; ``<op>`` waits for the write and returns the value. The server
awaits receipts so that many requests share one group commit::

    with Engine("riverbed.db") as engine:
        model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
        engine.create_model("phishing", model)
        p = engine.predict("phishing", {"x": 1.0})
        engine.learn("phishing", ground_truth=True, id=p["id"])

Durability: a prediction and a learn are committed before they are acknowledged. Live models
are checkpointed every ``checkpoint_every`` learns and every ``checkpoint_seconds`` (spending
at most ``checkpoint_share`` of the time on it) and on close; opening the engine again loads
the last checkpoint and replays the learns after it, so a killed process comes back with
exactly the state it acknowledged.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Container, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from riverbed import validation
from riverbed.bulk import BulkOps
from riverbed.canary import CanaryMonitor
from riverbed.challengers import Challengers
from riverbed.config import Settings
from riverbed.drift import DriftMonitor
from riverbed.events import EventBus, packed
from riverbed.exceptions import (
    AlreadyLabelled,
    InvalidFeatures,
    InvalidInput,
    InvalidTarget,
    ModelDiverged,
    PredictionExists,
    PredictionNotFound,
)
from riverbed.live import LiveModels, _Live
from riverbed.prediction_cache import PredictionCache
from riverbed.receipts import Receipt
from riverbed.registry import Registry
from riverbed.signature import Signatures
from riverbed.stores import open_store
from riverbed.stores.base import (
    LearnRecord,
    MetricPoint,
    PredictionRecord,
    Store,
)
from riverbed.tasks import MISSING
from riverbed.tokens import Tokens

if TYPE_CHECKING:
    from riverbed.cache import Cache
    from riverbed.jobs import JobRunner

__all__ = ["Engine", "Receipt", "ScaleOut"]

_MISSING: Any = MISSING
log = logging.getLogger(__name__)


class ScaleOut(Protocol):
    """What takes over an engine's learns in a scale-out cluster (riverbed/scaleout, set as
    ``engine.scaleout``): a replica hands them to the broker instead of applying them, and
    neither a replica nor a learner checkpoints through the engine (a learner writes its
    checkpoints in its own fenced transactions)."""

    def submit_learn(
        self, name: str, features: Any, ground_truth: Any, id: str | None, inputs: Any
    ) -> Receipt[dict[str, Any]]: ...

    def submit_learn_many(self, name: str, items: Any) -> Receipt[dict[str, Any]]: ...


class Engine(LiveModels, Registry, BulkOps, Signatures, DriftMonitor, CanaryMonitor, Challengers):
    """riverbed's core, usable in-process. Thread-safe; close it (or use ``with``).

    The model registry's operations (versions, aliases, search, artifacts) are the methods
    of :class:`riverbed.registry.Registry`.

    ``read_only=True`` opens an existing database to read only, beside the process that
    writes it (stores/readonly.py): reads answer as on any engine, writes are refused with
    :class:`~riverbed.exceptions.Unavailable`, and the engine writes nothing of its own.
    """

    def __init__(
        self,
        database: str | None = None,
        *,
        store: Store | None = None,
        settings: Settings | None = None,
        read_only: bool = False,
        **overrides: Any,
    ) -> None:
        self.settings = settings or Settings.load({"database": database, **overrides})
        self.store = store or open_store(
            self.settings.database,
            synchronous=self.settings.sqlite_synchronous,
            read_only=read_only,
            pool_size=self.settings.postgres_pool_size,
            pool_timeout=self.settings.postgres_pool_timeout,
            connect_timeout=self.settings.postgres_connect_timeout,
        )
        self.events = EventBus()
        from riverbed.cache import open_cache

        self.cache: Cache = open_cache(
            self.store, url=self.settings.cache_url, prefix=self.settings.cache_prefix
        )
        from riverbed.webhooks import Webhooks, open_webhooks

        # before the job runner, whose start may publish (interrupted jobs)
        self.webhooks: Webhooks = open_webhooks(
            self.store.webhook_store(),
            self.events,
            self.settings,
            read_only=self.store.read_only,
        )
        self._allowed = self.settings.allowed_module_prefixes
        self._live: dict[str, _Live] = {}
        self._lock = threading.RLock()
        self._cache = PredictionCache(self.settings.prediction_cache_size)
        # Predictions with a caller's id whose write is not committed yet, by id.
        self._pending: dict[str, PredictionRecord] = {}
        self._deleting: set[str] = set()  # models whose deletion is not committed yet
        # The highest predictions count shown of each model (LiveModels._n_predictions).
        self._shown: dict[str, int] = {}
        self._shown_lock = threading.Lock()
        self._closed = False
        # A scale-out replica's or learner's hook (ScaleOut); None on one machine.
        self.scaleout: ScaleOut | None = None
        self._init_registry()
        self._init_canaries()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="riverbed-checkpoints", daemon=True)
        if not self.store.read_only:  # a read-only engine checkpoints and prunes nothing
            self._ticker.start()
        from riverbed.jobs import JobRunner

        self.jobs: JobRunner = JobRunner(self, workers=self.settings.job_workers)

    @functools.cached_property
    def tokens(self) -> Tokens:
        """API tokens kept in this engine's store (see :mod:`riverbed.tokens`)."""
        return Tokens(self.store.token_store())

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Checkpoint every model that learned since its last checkpoint, then close the store."""
        if self._closed:
            return
        self._closed = True
        self.jobs.close()
        self._stop.set()
        if self._ticker.ident is not None:  # started
            self._ticker.join()
        self._close_challengers()
        try:
            if not self.store.read_only:
                self.checkpoint()
        except Exception:  # a full disk, say: the log holds every acknowledged learn
            log.exception("the checkpoints on close failed")
        self.webhooks.close()  # what is still pending is sent by the next engine on the store
        if self.cache.store is not self.store:
            getattr(self.cache.store, "close", lambda: None)()
        self.store.close()

    # -- predict and learn ------------------------------------------------------------------

    def predict(
        self,
        name: str,
        features: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        features_key: str | None = None,
        version: int | None = None,
        **inputs: Any,
    ) -> dict[str, Any]:
        """Predict for one sample; the prediction is stored under ``id`` (generated if None)
        so that its ground truth can be given later with ``learn(name, ..., id=id)``.

        ``features_key`` names a cache entry holding the features (an entity's), so that a
        caller can send a key instead; ``features`` given beside it override those values.

        ``name`` may be ``name@alias`` or ``name@3`` (or give ``version``): a version
        answers as it was frozen; a bare name is the live model (a batch model's latest).

        ``inputs`` are the task's other fields: ``user`` and ``item`` for a recommender,
        ``arms`` for a bandit, ``value`` for a supervised anomaly detector.
        """
        return self.submit_predict(
            name, features, id=id, features_key=features_key, version=version, **inputs
        ).wait()

    def submit_predict(
        self,
        name: str,
        features: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        features_key: str | None = None,
        version: int | None = None,
        **inputs: Any,
    ) -> Receipt[dict[str, Any]]:
        live = self._live.get(name)
        if live is None or version is not None or live.evaluated or live.canary is not None:
            split = self._canary_split(name, version, live)
            if split is not None:  # a canary split answers (riverbed.canary)
                return self._submit_canary_predict(*split, features, id, features_key, inputs)
            target = self._serving_target(name, version)
            if target is not None:
                features = self._cached_features(features, features_key)
                return self._submit_predict_version(target, features, id)
            live = self._get_live(name)
        elif live.unsettled:
            self._settle(live)
        return self._submit_predict_live(live, name, features, id, features_key, inputs)

    def _submit_predict_live(
        self,
        live: _Live,
        name: str,
        features: Any,
        id: str | None,
        features_key: str | None,
        inputs: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> Receipt[dict[str, Any]]:
        """Predict with the live model (``extra``: fields added to the answer)."""
        if features_key is not None:
            features = self._cached_features(features, features_key)
        with live.lock:
            # A caller's id is not looked up in the store: the store's key refuses it at
            # commit if an older prediction holds it (see _find_prediction for a label that
            # comes before that commit).
            record = self._predict_one(live, features, id, inputs, stored_ids=None)
            if live.arena is not None:
                live.arena.offer(record.id, record.features)
            unverified = id is not None
            if unverified:
                self._pending[record.id] = record
            else:
                self._remember(record)
            future = self.store.add_prediction(record)
            stats = live.predict_stats
            failed = self._predictions_failed(live, [record], stats.last, stats.ewm_before)
        result = {"id": record.id, "model": name, **live.task.wire(record.prediction)}
        if extra:
            result.update(extra)

        def stored(f: Future[None]) -> None:
            if f.exception() is not None:
                failed()
                return
            if unverified:
                self._cache.put(record)  # with any label mark it got while pending
                if self._pending.get(record.id) is record:
                    del self._pending[record.id]
            self.events.publish("predict", name, lambda: {"features": record.features, **result})

        future.add_done_callback(stored)
        return Receipt(result, future, failed)

    def _predict_one(
        self,
        live: _Live,
        features: Any,
        id: str | None,
        inputs: Mapping[str, Any],
        *,
        stored_ids: Container[str] | None,
    ) -> PredictionRecord:
        """A prediction's record (the caller holds live.lock; nothing is stored or
        remembered here). A given ``id`` must not be held by a cached or pending prediction,
        nor be among ``stored_ids`` (the ids the caller found in the store); None leaves
        the store's check to the store's key, at commit."""
        if features is None and not live.task.features_optional:
            raise InvalidInput("missing field 'features'", detail={"field": "features"})
        sample = live.task.sample(
            self._check_features({} if features is None else features), inputs
        )
        if id is None:
            id = _new_id()
        else:
            id = self._check_id(id)
            if self._id_taken(id) or (stored_ids and id in stored_ids):
                raise PredictionExists(f"prediction id {id!r} is taken; use a new id")
        start = time.perf_counter()
        try:
            y_pred = live.task.predict(live.model, sample, live.metric)
        except InvalidInput:
            raise
        except Exception as exc:
            raise InvalidFeatures(
                f"the model could not predict from these features: {type(exc).__name__}: {exc}"
            ) from None
        validation.check_prediction(live.record.name, y_pred)
        if live.task.replays_predictions:  # where it falls among the learns, for _load
            sample["n_learns"] = live.n_learns
        live.predict_stats.add(time.perf_counter() - start)
        live.n_predictions += 1
        return PredictionRecord(
            id, live.record.name, live.n_predictions, sample, y_pred, time.time()
        )

    def learn(
        self,
        name: str,
        features: Mapping[str, Any] | None = None,
        ground_truth: Any = _MISSING,
        *,
        id: str | None = None,
        **inputs: Any,
    ) -> dict[str, Any]:
        """Learn from a sample: from ``features`` and ``ground_truth``, or from the stored
        features and prediction of the prediction ``id`` and its ``ground_truth``.

        The metrics are updated with the prediction made before learning (progressive
        validation), exactly as ``river.evaluate.progressive_val_score`` does. Tasks that
        learn without a target (clustering, anomaly detection) take no ``ground_truth``; when
        one is given it feeds the metrics.
        """
        return self.submit_learn(name, features, ground_truth, id=id, **inputs).wait()

    def submit_learn(
        self,
        name: str,
        features: Mapping[str, Any] | None = None,
        ground_truth: Any = _MISSING,
        *,
        id: str | None = None,
        **inputs: Any,
    ) -> Receipt[dict[str, Any]]:
        if self.scaleout is not None:
            return self.scaleout.submit_learn(name, features, ground_truth, id, inputs)
        if name not in self._live:
            name = self._learner_of(name)
        live = self._get_live(name)
        with live.lock:
            record, labelled = self._learn_one(live, features, ground_truth, id, inputs)
            try:
                self._apply(live, record)
            except BaseException:
                if labelled is not None:
                    labelled.labelled = False
                    self._mark(labelled)
                raise
            future = self.store.add_learn(record)
            self._after_learn(live, record)
            stats = live.learn_stats
            marked = [labelled] if labelled is not None else []
            failed = self._learn_failed(live, marked, 1, stats.last, stats.ewm_before)
        future.add_done_callback(self._publisher(*self._learn_event(live, record), failed))
        result = {"model": name, "id": record.prediction_id, "n_learns": record.seq}
        return Receipt(result, future, failed)

    def _learn_one(
        self,
        live: _Live,
        features: Any,
        ground_truth: Any,
        id: str | None,
        inputs: Mapping[str, Any],
    ) -> tuple[LearnRecord, PredictionRecord | None]:
        """Check a learn and make its record (the caller holds live.lock; nothing changes
        but the prediction's ``labelled`` mark, returned so that it can be undone)."""
        sample, y, prediction, stored = self._check_learn(live, features, ground_truth, id, inputs)
        return self._make_learn(live, sample, y, prediction, stored), prediction

    def _check_learn(
        self,
        live: _Live,
        features: Any,
        ground_truth: Any,
        id: str | None,
        inputs: Mapping[str, Any],
    ) -> tuple[Any, Any, PredictionRecord | None, Any]:
        """Validate a learn without changing anything: ``(sample, y, prediction, stored)``."""
        task = live.task
        if ground_truth is _MISSING or ground_truth is None:
            if task.requires_target and ground_truth is None:
                raise InvalidTarget(f"a {task.name} model cannot learn from a null ground truth")
            if task.requires_target:
                raise InvalidInput(
                    f"missing field 'ground_truth': a {task.name} model learns from one",
                    detail={"field": "ground_truth"},
                )
            y = None
        else:
            y = task.check_target(ground_truth)
            if isinstance(y, str):
                self._check_text("ground_truth", y)
        name = live.record.name
        if id is not None:
            id = self._check_id(id)
            prediction = self._find_prediction(id)
            if (
                prediction is None
                or prediction.model != name
                or prediction.seq <= live.pruned_through  # still cached, gone from the store
            ):
                raise PredictionNotFound(self._no_prediction(id, name))
            if prediction.labelled:
                raise AlreadyLabelled(f"prediction {id!r} has already been learned from")
            return prediction.features, y, prediction, prediction.prediction
        if task.learns_by_id_only:
            raise InvalidInput(
                f"a {task.name} model learns the reward of a pull: predict (pull) first, then "
                "learn with the pull's id"
            )
        if features is None and not task.features_optional:
            raise InvalidFeatures("give the features to learn from, or the id of a prediction")
        sample = task.sample(self._check_features({} if features is None else features), inputs)
        return sample, y, None, _MISSING

    def _make_learn(
        self, live: _Live, sample: Any, y: Any, prediction: PredictionRecord | None, stored: Any
    ) -> LearnRecord:
        """The record of a checked learn, with the prediction its metrics score (made now
        unless stored); marks the prediction labelled."""
        try:
            y_pred = live.task.learn_prediction(live.model, sample, live.metric, stored)
        except InvalidInput:
            raise
        except Exception as exc:
            raise InvalidFeatures(
                f"the model could not predict from these features: {type(exc).__name__}: {exc}"
            ) from None
        validation.check_prediction(live.record.name, y_pred)
        if prediction is not None and live.arena is not None:
            with live.arena.lock:  # a promotion since the prediction: the champion's own
                y_pred = live.arena.champion_prediction(prediction.id, y_pred)
        if prediction is not None:
            prediction.labelled = True
            self._mark(prediction)
        prediction_id = prediction.id if prediction is not None else None
        return LearnRecord(
            live.record.name, live.n_learns + 1, sample, y, y_pred, prediction_id, time.time()
        )

    def _apply(self, live: _Live, record: LearnRecord) -> None:
        """Score and learn one record (the caller holds live.lock), all or nothing: a sample
        that makes the metrics fail rebuilds them from the checkpoint and the log, which do
        not hold it (the model is untouched yet); one that makes the model fail rebuilds the
        model and the metrics."""
        start = time.perf_counter()
        task = live.task
        try:
            scored = task.score(
                live.metric,
                live.model,
                record.features,
                record.target,
                record.prediction,
                record.created_at,
            )
        except Exception as exc:
            self._rescore(live)
            raise _unscored(live.record.name, record.prediction, exc) from None
        try:
            task.learn(live.model, record.features, record.target, record.prediction)
        except Exception as exc:
            self._reload(live)
            if task.blames_target(live.model, record.features, record.target, record.prediction):
                raise InvalidTarget(
                    f"a {type(live.model).__name__} cannot learn the ground truth "
                    f"{record.target!r}: {type(exc).__name__}: {exc}"
                ) from None
            raise InvalidInput(
                f"the model could not learn from this sample: {type(exc).__name__}: {exc}"
            ) from None
        live.learn_stats.add(time.perf_counter() - start)
        live.n_scored += scored
        live.n_learns = record.seq
        if live.drift is not None:
            self._drift_feed(live, record)
        if live.canary is not None:
            self._canary_label(live, record)
        if live.arena is not None:
            self._arena_learn(live, record)

    def _after_learn(self, live: _Live, record: LearnRecord) -> None:
        # The caller holds live.lock and has queued the learn(s): their drift alarms, history
        # point, checkpoint.
        if live.drift_fired:
            self._drift_flush(live)
        if self._canary_fired:
            self._canary_flush(live)
        tracker = live.metric
        if tracker.point_due(record.created_at):
            values = tracker.values()
            self.store.add_metric_point(
                MetricPoint(live.record.name, record.seq, record.created_at, values)
            )
        if (
            live.n_learns - live.checkpoint_seq >= self.settings.checkpoint_every
            and time.monotonic() >= live.checkpoint_next
        ):
            self._checkpoint(live)

    def _learn_event(
        self, live: _Live, record: LearnRecord
    ) -> tuple[str, str, dict[str, Any] | bytes]:
        # Packed now: the event waits for the learn's commit, and its data as objects (the
        # record's features and prediction) would outlive the collector's young generation.
        data = {
            "features": record.features,
            "ground_truth": record.target,
            "prediction_id": record.prediction_id,
            "n_learns": record.seq,
            **live.task.wire(record.prediction),
        }
        kind = "label" if record.prediction_id is not None else "learn"
        return kind, live.record.name, packed(data)

    # -- task-specific reads -----------------------------------------------------------------

    def forecast(
        self, name: str, horizon: int = 1, xs: list[Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Forecast the next ``horizon`` values of a forecasting model (``xs``: the features
        of each future step, when the model uses some)."""
        live = self._get_live(name)
        if live.task.name != "forecasting":
            raise InvalidInput(f"model {name!r} is a {live.task.name} model, not a forecaster")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= 10_000:
            raise InvalidInput(f"horizon must be an integer from 1 to 10000, got {horizon!r}")
        checked = None
        if xs is not None:
            if not isinstance(xs, list) or len(xs) != horizon:
                raise InvalidInput(f"xs must be a list of {horizon} feature objects, one a step")
            checked = [self._check_features(x) for x in xs]
        with live.lock:
            try:
                values = live.task.forecast(live.model, horizon, checked)  # type: ignore[attr-defined]
            except Exception as exc:
                raise InvalidFeatures(
                    f"the model could not forecast: {type(exc).__name__}: {exc}"
                ) from None
        return {"model": name, "horizon": horizon, "forecast": [_finite(v) for v in values]}

    def rank(
        self,
        name: str,
        user: Any,
        items: list[Any],
        features: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Order ``items`` by the preference a recommender predicts for ``user``."""
        live = self._get_live(name)
        if live.task.name != "recommendation":
            raise InvalidInput(f"model {name!r} is a {live.task.name} model, not a recommender")
        if isinstance(items, list) and len(items) > self.settings.max_batch_size:
            raise InvalidInput(f"at most {self.settings.max_batch_size} items can be ranked")
        x = self._check_features({} if features is None else features)
        with live.lock:
            ranking = live.task.rank(live.model, user, items, x)  # type: ignore[attr-defined]
        return {"model": name, "user": user, "ranking": ranking}

    # -- training jobs ----------------------------------------------------------------------

    def train(self, model: str, data: Any, **options: Any) -> dict[str, Any]:
        """Queue a training job (see :meth:`riverbed.jobs.JobRunner.submit`) and return it;
        ``engine.jobs.wait(job["id"])`` waits for its end."""
        return self.submit_train(model, data, **options).wait()

    def submit_train(self, model: str, data: Any, **options: Any) -> Receipt[dict[str, Any]]:
        return self.jobs.submit(model, data, **options)

    # -- metrics and stats ------------------------------------------------------------------

    def metrics(self, name: str) -> dict[str, Any]:
        """Progressive-validation metrics: every prediction scored before learning.

        ``metrics`` holds the running values, ``windows`` the same metrics over each rolling
        window; ``n`` counts the scored samples and ``n_learns`` the learns.
        """
        live = self._get_live(name)
        with live.lock:
            return {"model": name, "n_learns": live.n_learns, **live.metric.values()}

    def metrics_history(
        self,
        name: str,
        *,
        after: int = 0,
        since: float | None = None,
        limit: int = 1000,
    ) -> dict[str, Any]:
        """Stored metric snapshots, oldest first: ``{"seq", "time", "n", "metrics",
        "windows"}`` for the learns after ``after`` (a ``seq``) and at or after ``since``."""
        self._get_live(name)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must be an integer from 1 to 10000, got {limit!r}")
        points = self.store.metric_history(name, after=after, since=since, limit=limit)
        return {
            "model": name,
            "points": [{"seq": p.seq, "time": p.time, **p.values} for p in points],
        }

    def stats(self, name: str) -> dict[str, Any]:
        """Counts and latency (seconds spent in the model call) of predict and learn."""
        live = self._get_live(name)
        with live.lock:
            return {
                "model": name,
                "n_predictions": self._n_predictions(live),
                "n_learns": live.n_learns,
                "predict": live.predict_stats.to_dict(),
                "learn": live.learn_stats.to_dict(),
            }

    def _latency_histograms(
        self, name: str, bounds: Sequence[float]
    ) -> dict[str, tuple[list[int], int, float]]:
        """Per operation (predict, learn): the calls at or below each bound, all calls and
        their total seconds -- GET /metrics' histograms (not an operation of the API)."""
        live = self._get_live(name)
        with live.lock:
            return {
                "predict": live.predict_stats.cumulative(bounds),
                "learn": live.learn_stats.cumulative(bounds),
            }

    # -- internals ---------------------------------------------------------------------------

    def _publisher(
        self,
        type: str,
        name: str,
        data: dict[str, Any] | Callable[[], dict[str, Any]] | bytes,
        failed: Callable[[], None] | None = None,
    ) -> Any:
        def publish(f: Future[Any]) -> None:
            if f.exception() is None:
                self.events.publish(type, name, data)
            elif failed is not None:
                failed()

        return publish

    def _cached_features(self, features: Any, key: str | None) -> Any:
        if key is None:
            if features is None:
                raise InvalidFeatures("give the features, or the cache key that holds them")
            return features
        cached = self.cache.get(key)
        if not isinstance(cached, Mapping):
            raise InvalidFeatures(
                f"cache key {key!r} holds {type(cached).__name__}, not an object of features",
                detail={"features_key": key},
            )
        if features is None:
            return cached
        return {**cached, **features} if isinstance(features, Mapping) else features

    def _id_taken(self, prediction_id: str) -> bool:
        """Whether a cached or pending prediction holds this id (the store is not read); a
        cached one that retention removed from the store frees it (and leaves the cache)."""
        if prediction_id in self._pending:
            return True
        if prediction_id not in self._cache:
            return False
        cached = self._cache.get(prediction_id)
        live = self._live.get(cached.model) if cached is not None else None
        if cached is not None and live is not None and cached.seq <= live.pruned_through:
            self._cache.discard([cached])
            return False
        return True

    def _find_prediction(self, prediction_id: str) -> PredictionRecord | None:
        record = self._cache.get(prediction_id)
        if record is not None:
            return record
        pending = self._pending.get(prediction_id)
        stored = self.store.get_prediction(prediction_id)
        if pending is not None:
            # Not committed yet (a label sent before its prediction was acknowledged). It is
            # the prediction of that id unless an older one already holds the id in the
            # store, in which case the pending one will be refused at commit.
            if stored is None or (stored.model, stored.seq) == (pending.model, pending.seq):
                return pending
        if stored is not None:
            self._remember(stored)
        return stored

    def _no_prediction(self, id: str, name: str) -> str:
        message = (
            f"no prediction with id {id!r} for model {name!r}; predict with that id first, "
            "or learn with features instead"
        )
        if self.settings.retention_predictions:
            message += (
                f" (retention keeps the newest {self.settings.retention_predictions} "
                "predictions of a model: this one may have been removed)"
            )
        return message

    def _forget_predictions(self, records: Sequence[PredictionRecord]) -> None:
        """Drop predictions whose write failed from the in-memory cache."""
        for record in records:
            if self._pending.get(record.id) is record:
                del self._pending[record.id]
        self._cache.discard(records)

    def _mark(self, record: PredictionRecord) -> None:
        """Keep a change of ``record.labelled`` (a pending record is its own state)."""
        if self._pending.get(record.id) is not record:
            self._cache.mark(record)

    def _remember(self, record: PredictionRecord) -> None:
        if self._pending.get(record.id) is record:
            return  # a pending record is its own state until its commit caches it
        self._cache.put(record)

    # The checks of what callers send (riverbed.validation), with this engine's limits.

    @staticmethod
    def _check_name(name: Any) -> str:
        return validation.check_name(name)

    def _check_id(self, id: Any) -> str:
        return validation.check_id(id)

    def _check_text(self, field: str, value: Any) -> str:
        return validation.check_text(field, value, self.settings.max_string_length)

    def _check_tags(self, tags: Mapping[str, str] | None) -> dict[str, str]:
        return validation.check_tags(tags, self.settings.max_string_length)

    def _check_features(self, features: Any) -> dict[str, Any]:
        return validation.check_features(
            features, self.settings.max_features, self.settings.max_string_length
        )


class _Ids:
    """Prediction ids of 32 hex characters: the time in milliseconds (12), then 80 random
    bits (20) drawn from the OS in blocks of 256 (one ``os.urandom`` per id would release
    the GIL on every prediction).

    The time first keeps new ids next to each other in the store's primary-key index: with
    fully random ids every commit dirtied a different index page for each prediction, and
    SQLite wrote all of those pages to its log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: list[str] = []

    def __call__(self) -> str:
        with self._lock:
            if not self._pool:
                block = os.urandom(10 * 256).hex()
                self._pool = [block[i : i + 20] for i in range(0, len(block), 20)]
                self._pool.reverse()
            prefix = f"{time.time_ns() // 1_000_000:012x}"
            return prefix + self._pool.pop()


_new_id = _Ids()


def _unscored(name: str, y_pred: Any, exc: Exception) -> InvalidInput | ModelDiverged:
    """The error of a learn whose prediction the metrics could not score."""
    cause = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OverflowError | FloatingPointError):
        return ModelDiverged(
            f"the metrics of model {name!r} cannot score its prediction {y_pred!r} ({cause}): "
            "the model has diverged; nothing was learned and its metrics are unchanged",
            detail={"prediction": repr(y_pred)},
        )
    return InvalidInput(
        f"the metrics of model {name!r} cannot score this sample ({cause}); nothing was learned"
    )


def _finite(value: Any) -> Any:
    """A metric value as a JSON-ready float (None when undefined)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
