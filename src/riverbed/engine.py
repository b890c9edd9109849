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
are checkpointed every ``checkpoint_every`` learns, every ``checkpoint_seconds`` and on
close; opening the engine again loads the last checkpoint and replays the learns after it,
so a killed process comes back with exactly the state it acknowledged.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import functools
import math
import os
import re
import threading
import time
from collections.abc import Generator, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from riverbed import artifacts, serialization, specs
from riverbed.config import Settings
from riverbed.events import EventBus
from riverbed.exceptions import (
    AlreadyLabelled,
    InvalidFeatures,
    InvalidInput,
    InvalidSpec,
    InvalidTarget,
    ModelExists,
    ModelNotFound,
    NotServable,
    PredictionExists,
    PredictionNotFound,
)
from riverbed.registry import Registry
from riverbed.stores import open_store
from riverbed.stores.base import (
    Checkpoint,
    LearnRecord,
    ModelRecord,
    PredictionRecord,
    Store,
    VersionRecord,
)
from riverbed.tasks import Task, detect_task, get_task, make_metrics
from riverbed.tokens import Tokens

if TYPE_CHECKING:
    from riverbed.cache import Cache
    from riverbed.jobs import JobRunner

__all__ = ["Engine", "Receipt"]

T = TypeVar("T")
_MISSING: Any = object()
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_EWM_ALPHA = 0.3


class Receipt(Generic[T]):
    """The value of an operation and the future of its durable write.

    ``receipt.wait()`` blocks until the write is committed; ``await receipt`` does the same
    without blocking an event loop. Either raises the write's error, if it failed.
    """

    __slots__ = ("value", "committed")

    def __init__(self, value: T, committed: Future[Any]) -> None:
        self.value = value
        self.committed = committed

    def wait(self) -> T:
        self.committed.result()
        return self.value

    def __await__(self) -> Generator[Any, None, T]:
        if not self.committed.done():
            yield from asyncio.wrap_future(self.committed).__await__()
        self.committed.result()
        return self.value


class _OpStats:
    __slots__ = ("n_calls", "total", "ewm")

    def __init__(self, n_calls: int = 0, total: float = 0.0, ewm: float = 0.0) -> None:
        self.n_calls, self.total, self.ewm = n_calls, total, ewm

    def add(self, seconds: float) -> None:
        self.n_calls += 1
        self.total += seconds
        self.ewm = (
            seconds if self.n_calls == 1 else (_EWM_ALPHA * seconds + (1 - _EWM_ALPHA) * self.ewm)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_calls": self.n_calls,
            "mean_duration": self.total / self.n_calls if self.n_calls else 0.0,
            "ewm_duration": self.ewm,
        }


class _Live:
    """One model's in-memory learning state; every field is guarded by ``lock``."""

    def __init__(self, record: ModelRecord, task: Task, version: int) -> None:
        self.record = record
        self.task = task
        self.version = version
        self.lock = threading.RLock()
        self.model: Any = None
        self.metric: Any = None
        self.n_scored = 0
        self.n_learns = 0
        self.n_predictions = 0
        self.checkpoint_seq = 0
        self.checkpoint_time = time.monotonic()
        self.predict_stats = _OpStats()
        self.learn_stats = _OpStats()

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metric": self.metric,
            "n_scored": self.n_scored,
            "n_learns": self.n_learns,
            "n_predictions": self.n_predictions,
            "predict_stats": vars_of(self.predict_stats),
            "learn_stats": vars_of(self.learn_stats),
        }


def vars_of(stats: _OpStats) -> tuple[int, float, float]:
    return (stats.n_calls, stats.total, stats.ewm)


class Engine(Registry):
    """riverbed's core, usable in-process. Thread-safe; close it (or use ``with``).

    The model registry's operations (versions, aliases, search, artifacts) are the methods
    of :class:`riverbed.registry.Registry`.
    """

    def __init__(
        self,
        database: str | None = None,
        *,
        store: Store | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings or Settings.load({"database": database, **overrides})
        self.store = store or open_store(
            self.settings.database, synchronous=self.settings.sqlite_synchronous
        )
        self.events = EventBus()
        from riverbed.cache import open_cache

        self.cache: Cache = open_cache(
            self.store, url=self.settings.cache_url, prefix=self.settings.cache_prefix
        )
        self._allowed = self.settings.allowed_module_prefixes
        self._live: dict[str, _Live] = {}
        self._lock = threading.RLock()
        self._cache: collections.OrderedDict[str, PredictionRecord] = collections.OrderedDict()
        self._closed = False
        self._init_registry()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="riverbed-checkpoints", daemon=True)
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
        self._ticker.join()
        self.checkpoint()
        if self.cache.store is not self.store:
            getattr(self.cache.store, "close", lambda: None)()
        self.store.close()

    def _tick(self) -> None:
        period = max(0.05, min(1.0, self.settings.checkpoint_seconds / 2))
        while not self._stop.wait(period):
            now = time.monotonic()
            for live in list(self._live.values()):
                if (
                    live.n_learns > live.checkpoint_seq
                    and now - live.checkpoint_time >= self.settings.checkpoint_seconds
                ):
                    with live.lock:
                        self._checkpoint(live)

    def checkpoint(self, name: str | None = None) -> int:
        """Checkpoint one model, or every live model that learned since its last checkpoint.

        Returns how many checkpoints were written.
        """
        targets = [self._get_live(name)] if name is not None else list(self._live.values())
        futures = []
        for live in targets:
            with live.lock:
                if name is not None or live.n_learns > live.checkpoint_seq:
                    futures.append(self._checkpoint(live))
        for future in futures:
            future.result()
        return len(futures)

    def _checkpoint(self, live: _Live) -> Future[None]:
        # The caller holds live.lock, so the state and its sequence number agree.
        blob = serialization.dumps(live.state())
        live.checkpoint_seq = live.n_learns
        live.checkpoint_time = time.monotonic()
        return self.store.save_checkpoint(
            Checkpoint(live.record.name, live.n_learns, blob, time.time())
        )

    # -- models ------------------------------------------------------------------------------

    def create_model(
        self,
        name: str,
        model: Any = None,
        *,
        spec: Any = None,
        task: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metrics: list[str] | None = None,
    ) -> dict[str, Any]:
        """Create a model from a river object or a declarative spec (see :mod:`riverbed.specs`).

        The task is detected from the object unless stated; ``metrics`` names river metric
        classes and defaults to the task's own.
        """
        return self.submit_create_model(
            name, model, spec=spec, task=task, description=description, tags=tags, metrics=metrics
        ).wait()

    def submit_create_model(
        self,
        name: str,
        model: Any = None,
        *,
        spec: Any = None,
        task: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metrics: list[str] | None = None,
    ) -> Receipt[dict[str, Any]]:
        name = self._check_name(name)
        if (model is None) == (spec is None):
            raise InvalidInput("give either a model object or a spec, not both or neither")
        if spec is not None:
            obj, source = specs.build(spec, allowed=self._allowed), "spec"
        else:
            obj, source = serialization.loads(serialization.dumps(model)), "object"
            try:
                spec = specs.to_spec(model)
            except InvalidSpec:
                spec = None
        task_ = get_task(task) if task is not None else detect_task(obj)
        task_.check_model(obj)
        metric = make_metrics(task_, metrics)
        for m in metric:
            if not m.works_with(obj):
                raise InvalidInput(f"metric {type(m).__name__} does not fit a {task_.name} model")
        description = self._check_text("description", description)
        tags = self._check_tags(tags)
        now = time.time()
        record = ModelRecord(
            name=name,
            task=task_.name,
            description=description,
            tags=tags,
            metrics=[type(m).__name__ for m in metric],
            created_at=now,
            updated_at=now,
        )
        artifact = serialization.dumps(obj)
        version = VersionRecord(
            model=name,
            version=1,
            artifact=artifact,
            spec=spec,
            source=source,
            created_at=now,
            metadata={
                "hyperparameters": artifacts.hyperparameters(obj),
                "size": len(artifact),
                "checksum": serialization.checksum(artifact),
            },
        )
        live = _Live(record, task_, version=1)
        live.model, live.metric = obj, metric
        with self._lock:
            if name in self._live or self.store.get_model(name) is not None:
                raise ModelExists(f"a model named {name!r} already exists")
            self._live[name] = live
            future = self.store.create_model(record, version)

        def created(f: Future[None]) -> None:
            if f.exception() is not None:
                with self._lock:
                    if self._live.get(name) is live:
                        del self._live[name]
            else:
                self.events.publish("model.created", name, {"task": task_.name, "source": source})

        future.add_done_callback(created)
        return Receipt(self._describe(live, spec=spec, source=source), future)

    def list_models(self) -> list[dict[str, Any]]:
        """Every model, by name, without loading any of them."""
        return [self._record_dict(r) for r in self.store.list_models()]

    def get_model(self, name: str) -> dict[str, Any]:
        if self._flavor(name) != "river":
            return self._describe_batch(name)
        live = self._get_live(name)
        version = self.store.get_version(name, live.version)
        return self._with_registry(
            self._describe(
                live,
                spec=version.spec if version else None,
                source=version.source if version else None,
            )
        )

    def live_model(self, name: str) -> Any:
        """A copy of the model object as it is now, with everything it has learned."""
        live = self._get_live(name)
        with live.lock:
            return copy.deepcopy(live.model)

    def delete_model(self, name: str) -> dict[str, Any]:
        return self.submit_delete_model(name).wait()

    def submit_delete_model(self, name: str) -> Receipt[dict[str, Any]]:
        # A batch model has no live state; its lock is a fresh one.
        live = self._get_live(name) if self._flavor(name) == "river" else None
        with self._lock, live.lock if live is not None else threading.RLock():
            self._live.pop(name, None)
            for key in [k for k, p in self._cache.items() if p.model == name]:
                del self._cache[key]
            future = self.store.delete_model(name)
            self._forget(name)
        future.add_done_callback(self._publisher("model.deleted", name, {}))
        return Receipt({"name": name, "deleted": True}, future)

    # -- predict and learn ------------------------------------------------------------------

    def predict(
        self,
        name: str,
        features: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        features_key: str | None = None,
        version: int | None = None,
    ) -> dict[str, Any]:
        """Predict for one sample; the prediction is stored under ``id`` (generated if None)
        so that its ground truth can be given later with ``learn(name, ..., id=id)``.

        ``features_key`` names a cache entry holding the features (an entity's), so that a
        caller can send a key instead; ``features`` given beside it override those values.

        ``name`` may be ``name@alias`` or ``name@3`` (or give ``version``): a version
        answers as it was frozen; a bare name is the live model (a batch model's latest).
        """
        return self.submit_predict(
            name, features, id=id, features_key=features_key, version=version
        ).wait()

    def submit_predict(
        self,
        name: str,
        features: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        features_key: str | None = None,
        version: int | None = None,
    ) -> Receipt[dict[str, Any]]:
        live = self._live.get(name)
        if live is None or version is not None:
            target = self._serving_target(name, version)
            if target is not None:
                features = self._cached_features(features, features_key)
                return self._submit_predict_version(target, features, id)
            live = self._get_live(name)
        x = self._check_features(self._cached_features(features, features_key))
        if id is None:
            id = _new_id()
        else:
            id = self._check_id(id)
            if id in self._cache or self.store.get_prediction(id) is not None:
                raise PredictionExists(f"prediction id {id!r} is taken; use a new id")
        with live.lock:
            start = time.perf_counter()
            try:
                y_pred = live.task.predict(live.model, x, live.metric)
            except Exception as exc:
                raise InvalidFeatures(
                    f"the model could not predict from these features: {type(exc).__name__}: {exc}"
                ) from None
            live.predict_stats.add(time.perf_counter() - start)
            live.n_predictions += 1
            record = PredictionRecord(id, name, live.n_predictions, x, y_pred, time.time())
            self._remember(record)
            future = self.store.add_prediction(record)
        result = {"id": id, "model": name, **live.task.wire(y_pred)}

        def stored(f: Future[None]) -> None:
            if f.exception() is not None:
                with self._lock:
                    if self._cache.get(id) is record:
                        del self._cache[id]
            else:
                self.events.publish("predict", name, {"id": id, "features": x, **result})

        future.add_done_callback(stored)
        return Receipt(result, future)

    def learn(
        self,
        name: str,
        features: Mapping[str, Any] | None = None,
        ground_truth: Any = _MISSING,
        *,
        id: str | None = None,
    ) -> dict[str, Any]:
        """Learn from a sample: from ``features`` and ``ground_truth``, or from the stored
        features and prediction of the prediction ``id`` and its ``ground_truth``.

        The metrics are updated with the prediction made before learning (progressive
        validation), exactly as ``river.evaluate.progressive_val_score`` does.
        """
        return self.submit_learn(name, features, ground_truth, id=id).wait()

    def submit_learn(
        self,
        name: str,
        features: Mapping[str, Any] | None = None,
        ground_truth: Any = _MISSING,
        *,
        id: str | None = None,
    ) -> Receipt[dict[str, Any]]:
        if name not in self._live:
            name = self._learner_of(name)
        live = self._get_live(name)
        if ground_truth is _MISSING or ground_truth is None:
            raise InvalidTarget("ground_truth is required to learn")
        y = live.task.check_target(ground_truth)
        if isinstance(y, str):
            self._check_text("ground_truth", y)
        if id is not None:
            id = self._check_id(id)
            with live.lock:
                prediction = self._find_prediction(id)
                if prediction is None or prediction.model != name:
                    raise PredictionNotFound(
                        f"no prediction with id {id!r} for model {name!r}; predict with "
                        "that id first, or learn with features instead"
                    )
                if prediction.labelled:
                    raise AlreadyLabelled(f"prediction {id!r} has already been learned from")
                prediction.labelled = True
                try:
                    return self._learn(live, prediction.features, y, prediction.prediction, id)
                except BaseException:
                    prediction.labelled = False
                    raise
        if features is None:
            raise InvalidFeatures("give the features to learn from, or the id of a prediction")
        x = self._check_features(features)
        with live.lock:
            try:
                y_pred = live.task.predict(live.model, x, live.metric)
            except Exception as exc:
                raise InvalidFeatures(
                    f"the model could not predict from these features: {type(exc).__name__}: {exc}"
                ) from None
            return self._learn(live, x, y, y_pred, None)

    def _learn(
        self, live: _Live, x: dict[str, Any], y: Any, y_pred: Any, prediction_id: str | None
    ) -> Receipt[dict[str, Any]]:
        # The caller holds live.lock: learns are applied and logged in one order.
        start = time.perf_counter()
        scored = live.task.update_metric(live.metric, y, y_pred)
        try:
            live.task.learn(live.model, x, y)
        except Exception as exc:
            # learn_one may have changed part of the model before failing: rebuild the model
            # from its checkpoint and log, which do not hold this sample.
            self._reload(live)
            raise InvalidInput(
                f"the model could not learn from this sample: {type(exc).__name__}: {exc}"
            ) from None
        live.learn_stats.add(time.perf_counter() - start)
        live.n_scored += scored
        live.n_learns += 1
        name = live.record.name
        record = LearnRecord(name, live.n_learns, x, y, y_pred, prediction_id, time.time())
        future = self.store.add_learn(record)
        if live.n_learns - live.checkpoint_seq >= self.settings.checkpoint_every:
            self._checkpoint(live)
        data = {
            "features": x,
            "ground_truth": y,
            "prediction_id": prediction_id,
            **live.task.wire(y_pred),
        }
        future.add_done_callback(self._publisher("learn", name, data))
        return Receipt({"model": name, "id": prediction_id, "n_learns": live.n_learns}, future)

    # -- training jobs ----------------------------------------------------------------------

    def train(self, model: str, data: Any, **options: Any) -> dict[str, Any]:
        """Queue a training job (see :meth:`riverbed.jobs.JobRunner.submit`) and return it;
        ``engine.jobs.wait(job["id"])`` waits for its end."""
        return self.submit_train(model, data, **options).wait()

    def submit_train(self, model: str, data: Any, **options: Any) -> Receipt[dict[str, Any]]:
        return self.jobs.submit(model, data, **options)

    # -- metrics and stats ------------------------------------------------------------------

    def metrics(self, name: str) -> dict[str, Any]:
        """Progressive-validation metrics: every prediction scored before learning."""
        live = self._get_live(name)
        with live.lock:
            values = {type(m).__name__: _finite(m.get()) for m in live.metric}
            return {"model": name, "n": live.n_scored, "metrics": values}

    def stats(self, name: str) -> dict[str, Any]:
        """Counts and latency (seconds spent in the model call) of predict and learn."""
        live = self._get_live(name)
        with live.lock:
            return {
                "model": name,
                "n_predictions": live.n_predictions,
                "n_learns": live.n_learns,
                "predict": live.predict_stats.to_dict(),
                "learn": live.learn_stats.to_dict(),
            }

    # -- internals ---------------------------------------------------------------------------

    def _publisher(self, type: str, name: str, data: dict[str, Any]) -> Any:
        def publish(f: Future[Any]) -> None:
            if f.exception() is None:
                self.events.publish(type, name, data)

        return publish

    def _get_live(self, name: str) -> _Live:
        live = self._live.get(name)
        if live is not None:
            return live
        if not isinstance(name, str):
            raise ModelNotFound(f"no model named {name!r}")
        with self._lock:
            live = self._live.get(name)
            if live is None:
                record = self.store.get_model(name)
                if record is None:
                    raise ModelNotFound(f"no model named {name!r}")
                if record.flavor != "river":
                    raise NotServable(
                        f"model {name!r} is a {record.flavor} model: it has versions, not a "
                        "live learning state (address a version, e.g. name@latest)"
                    )
                live = _Live(record, get_task(record.task), version=1)
                self._load(live)
                self._live[name] = live
            return live

    def _load(self, live: _Live) -> None:
        """Bring a live model to its last acknowledged state: checkpoint, then the log."""
        name = live.record.name
        checkpoint = self.store.get_checkpoint(name)
        if checkpoint is not None:
            state = serialization.loads(checkpoint.state)
            live.model, live.metric = state["model"], state["metric"]
            live.n_scored, live.n_learns = state["n_scored"], state["n_learns"]
            live.n_predictions = state["n_predictions"]
            live.predict_stats = _OpStats(*state["predict_stats"])
            live.learn_stats = _OpStats(*state["learn_stats"])
        else:
            version = self.store.get_version(name, live.version)
            if version is None:  # pragma: no cover - a model is always created with a version
                raise ModelNotFound(f"model {name!r} has no version")
            live.model = self._object_of(version)
            live.metric = make_metrics(live.task, live.record.metrics)
            live.n_scored = live.n_learns = live.n_predictions = 0
            live.predict_stats, live.learn_stats = _OpStats(), _OpStats()
        live.checkpoint_seq = live.n_learns
        live.checkpoint_time = time.monotonic()
        for record in self.store.learns_after(name, live.n_learns):
            live.n_scored += live.task.update_metric(live.metric, record.target, record.prediction)
            live.task.learn(live.model, record.features, record.target)
            live.learn_stats.n_calls += 1
            live.n_learns = record.seq
        live.n_predictions = max(live.n_predictions, self.store.max_prediction_seq(name))

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

    def _reload(self, live: _Live) -> None:
        self.store.sync()
        self._load(live)

    def _find_prediction(self, prediction_id: str) -> PredictionRecord | None:
        record = self._cache.get(prediction_id)
        if record is None:
            record = self.store.get_prediction(prediction_id)
            if record is not None:
                self._remember(record)
        return record

    def _remember(self, record: PredictionRecord) -> None:
        with self._lock:
            self._cache[record.id] = record
            while len(self._cache) > self.settings.prediction_cache_size:
                self._cache.popitem(last=False)

    def _describe(self, live: _Live, *, spec: Any, source: str | None) -> dict[str, Any]:
        return {
            **self._record_dict(live.record),
            "version": live.version,
            "source": source,
            "spec": spec,
            "n_predictions": live.n_predictions,
            "n_learns": live.n_learns,
        }

    @staticmethod
    def _record_dict(record: ModelRecord) -> dict[str, Any]:
        return {
            "name": record.name,
            "task": record.task,
            "description": record.description,
            "tags": dict(record.tags),
            "metrics": list(record.metrics),
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }

    @staticmethod
    def _check_name(name: Any) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(
                f"invalid model name {name!r}: use 1 to 128 letters, digits, '_', '-' or '.', "
                "starting with a letter or digit"
            )
        return name

    def _check_id(self, id: Any) -> str:
        if not isinstance(id, str) or not id or len(id) > 256:
            raise InvalidInput(
                f"a prediction id must be a non-empty string of at most 256 characters, got {id!r}"
            )
        return id

    def _check_text(self, field: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidInput(f"{field} must be a string")
        if len(value) > self.settings.max_string_length:
            raise InvalidInput(
                f"{field} is longer than {self.settings.max_string_length} characters"
            )
        return value

    def _check_tags(self, tags: Mapping[str, str] | None) -> dict[str, str]:
        if tags is None:
            return {}
        if not isinstance(tags, Mapping):
            raise InvalidInput("tags must be an object of string keys and string values")
        return {
            self._check_text("tag name", k): self._check_text(f"tag {k!r}", v)
            for k, v in tags.items()
        }

    def _check_features(self, features: Any) -> dict[str, Any]:
        if not isinstance(features, Mapping):
            raise InvalidFeatures(
                f"features must be an object mapping names to values, got {type(features).__name__}"
            )
        if len(features) > self.settings.max_features:
            raise InvalidFeatures(
                f"{len(features)} features is more than the limit of {self.settings.max_features}"
            )
        limit = self.settings.max_string_length
        x: dict[str, Any] = {}
        for key, value in features.items():
            if type(key) is not str or len(key) > limit:
                raise InvalidFeatures(
                    f"feature names must be strings of at most {limit} characters, got {key!r}"
                )
            kind = type(value)
            if kind is float or (kind is not bool and isinstance(value, int | float)):
                if not math.isfinite(value):
                    raise InvalidFeatures(
                        f"feature {key!r} is {value}; only finite numbers are accepted"
                    )
            elif kind is str:
                if len(value) > limit:
                    raise InvalidFeatures(f"feature {key!r} is longer than {limit} characters")
            elif kind is not bool and not _is_real(value):
                raise InvalidFeatures(
                    f"feature {key!r} must be a number, a string or a boolean, got "
                    f"{'null' if value is None else type(value).__name__}; leave a missing "
                    "feature out rather than sending null"
                )
            elif kind is not bool and not math.isfinite(value):
                raise InvalidFeatures(f"feature {key!r} is not a finite number")
            x[key] = value
        return x


class _Ids:
    """Random 128-bit prediction ids, 32 hex characters, drawn from the OS in blocks of 256:
    one ``os.urandom`` per id would release the GIL on every prediction."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: list[str] = []

    def __call__(self) -> str:
        with self._lock:
            if not self._pool:
                block = os.urandom(16 * 256).hex()
                self._pool = [block[i : i + 32] for i in range(0, len(block), 32)]
            return self._pool.pop()


_new_id = _Ids()


def _is_real(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Real)


def _finite(value: Any) -> Any:
    """A metric value as a JSON-ready float (None when undefined)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
