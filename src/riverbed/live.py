"""Live models: the in-memory learning state of each model, and its life.

A live model (:class:`_Live`) is one version's model object, its metrics and counters,
guarded by one lock. :class:`LiveModels` is the :class:`~riverbed.engine.Engine` mixin that
creates live models, loads them (the last checkpoint, then the learns after it from the
log), checkpoints them (every ``checkpoint_every`` learns from the learn path, every
``checkpoint_seconds`` from the checkpoint thread, on close), applies the retention
settings, and deletes them. Predict and learn are the engine's own (engine.py).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from riverbed import artifacts, serialization, specs
from riverbed.challengers import Arena
from riverbed.drift import DriftState, Fired, promote_on_alarm, reset_model
from riverbed.evaluated import Evaluated, evaluated
from riverbed.exceptions import (
    ClusterUnsupported,
    InvalidInput,
    InvalidSpec,
    ModelExists,
    ModelNotFound,
    NotServable,
)
from riverbed.metrics import (
    DEFAULT_HISTORY_EVERY,
    DEFAULT_HISTORY_SECONDS,
    Tracker,
    parse_windows,
)
from riverbed.receipts import Receipt
from riverbed.stores.base import Checkpoint, ModelRecord, Retention, VersionRecord
from riverbed.stores.futures import done
from riverbed.tasks import Task, detect_task, get_task

if TYPE_CHECKING:
    from riverbed.canary import Canary
    from riverbed.config import Settings
    from riverbed.events import EventBus
    from riverbed.prediction_cache import PredictionCache
    from riverbed.stores.base import LearnRecord, PredictionRecord, Store

__all__ = ["LiveModels"]

_METRIC_OPTIONS = {"windows", "history_every", "history_seconds"}
_EWM_ALPHA = 0.3
_PRUNE_SECONDS = 1.0  # how often the checkpoint thread applies the retention settings
log = logging.getLogger(__name__)


# Latency percentiles from a histogram of log-spaced buckets, 16 a doubling (each ~4.4%
# wide) from 0.1 µs: one dict update a call, and any percentile on read.
_BUCKETS_PER_DOUBLING = 16
_FLOOR = 1e-7
PERCENTILES = (50, 95, 99)


def _bucket(seconds: float) -> int:
    return int(math.log2(seconds / _FLOOR) * _BUCKETS_PER_DOUBLING) if seconds > _FLOOR else 0


class _OpStats:
    __slots__ = ("n_calls", "total", "ewm", "last", "ewm_before", "histogram")

    def __init__(
        self,
        n_calls: int = 0,
        total: float = 0.0,
        ewm: float = 0.0,
        histogram: dict[int, int] | None = None,
    ) -> None:
        self.n_calls, self.total, self.ewm = n_calls, total, ewm
        self.last = 0.0  # the last call's seconds, and the ewm before it: for an undo
        self.ewm_before = ewm
        self.histogram: dict[int, int] = histogram if histogram is not None else {}

    def add(self, seconds: float) -> None:
        self.last, self.ewm_before = seconds, self.ewm
        self.n_calls += 1
        self.total += seconds
        self.ewm = (
            seconds if self.n_calls == 1 else (_EWM_ALPHA * seconds + (1 - _EWM_ALPHA) * self.ewm)
        )
        bucket = _bucket(seconds)
        self.histogram[bucket] = self.histogram.get(bucket, 0) + 1

    def take_back(self, n: int, seconds: float) -> None:
        """Uncount ``n`` calls that took ``seconds`` in all (their writes failed): exact for
        one call; several leave their mean's bucket (or the nearest ones)."""
        self.n_calls -= n
        self.total = max(0.0, self.total - seconds)
        bucket = _bucket(seconds / n) if n else 0
        for _ in range(n):
            if not self.histogram:
                break
            if bucket not in self.histogram:
                bucket = min(self.histogram, key=lambda b: abs(b - bucket))
            self.histogram[bucket] -= 1
            if not self.histogram[bucket]:
                del self.histogram[bucket]

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile of the timed calls' seconds (within ~4.4%), None before
        any."""
        total = sum(self.histogram.values())
        if not total:
            return None
        rank, seen = q / 100 * total, 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen >= rank:
                break
        # The bucket's geometric middle.
        return _FLOOR * 2 ** ((bucket + 0.5) / _BUCKETS_PER_DOUBLING)

    def cumulative(self, bounds: Sequence[float]) -> tuple[list[int], int, float]:
        """Calls at or below each of ``bounds`` (ascending seconds), all calls, and their
        total seconds: a Prometheus histogram. A bucket of ours counts under the first bound
        at or above its upper edge, so a count is never early by more than ~4.4%."""
        at = [0] * len(bounds)
        count = 0
        for bucket, n in self.histogram.items():
            upper = _FLOOR * 2 ** ((bucket + 1) / _BUCKETS_PER_DOUBLING)
            i = bisect.bisect_left(bounds, upper)
            if i < len(bounds):
                at[i] += n
            count += n
        return list(itertools.accumulate(at)), count, self.total

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_calls": self.n_calls,
            "mean_duration": self.total / self.n_calls if self.n_calls else 0.0,
            "ewm_duration": self.ewm,
            **{f"p{q}_duration": self.percentile(q) for q in PERCENTILES},
        }


class _Live:
    """One model's in-memory learning state; every field is guarded by ``lock``."""

    def __init__(self, record: ModelRecord, task: Task, version: int) -> None:
        self.record = record
        self.task = task
        self.version = version
        # A scikit-learn model, evaluated online: ``model`` is an Evaluated (riverbed.evaluated).
        self.evaluated = record.flavor != "river"
        self.lock = threading.RLock()
        self.model: Any = None
        self.metric: Tracker = None  # type: ignore[assignment]
        self.n_scored = 0
        self.n_learns = 0
        self.n_predictions = 0
        self.checkpoint_seq = 0
        self.checkpoint_time = time.monotonic()
        # No checkpoint by count or by time before this (checkpoint_share).
        self.checkpoint_next = 0.0
        self.pruned_through = 0  # retention removed the predictions up to this seq
        self.pruned_at = (0, 0)  # (n_predictions, n_learns) at the last prune
        self.predict_stats = _OpStats()
        self.learn_stats = _OpStats()
        # Writes that failed after they were applied here, for the next call to undo
        # (LiveModels._settle): ``stale`` for a learn (the model is rebuilt from what was
        # written), ``refused`` for predictions: (first seq, last seq, seconds spent, the
        # latency's ewm before them).
        self.unsettled = False
        self.stale = False
        self.refused: list[tuple[int, int, float, float]] = []
        self.unlearned: list[tuple[int, float, float]] = []  # (learns, seconds, ewm before)
        self.drift: DriftState | None = None  # its drift detectors (riverbed.drift)
        self.drift_fired: list[Fired] = []  # alarms of learns applied, not queued yet
        self.canary: dict[str, Canary] | None = None  # splits of its routes (riverbed.canary)
        self.arena: Arena | None = None  # its challengers (riverbed.challengers)
        self.drift_promote: Any = None  # the alarm of this learn that promotes (riverbed.drift)

    def state(self) -> dict[str, Any]:
        return {
            "version": self.version,  # the version it started from (create, restore)
            "model": None if self.evaluated else self.model,
            "metric": self.metric,
            "n_scored": self.n_scored,
            "n_learns": self.n_learns,
            "n_predictions": self.n_predictions,
            "predict_stats": vars_of(self.predict_stats),
            "learn_stats": vars_of(self.learn_stats),
            "drift": self.drift,
            "canary": self.canary,
            "arena": self.arena,
        }


def vars_of(stats: _OpStats) -> tuple[int, float, float, dict[int, int]]:
    return (stats.n_calls, stats.total, stats.ewm, dict(stats.histogram))


class LiveModels:
    """The engine's live models: create, load, checkpoint, prune, delete."""

    if TYPE_CHECKING:  # what the engine provides
        settings: Settings
        store: Store
        events: EventBus
        _allowed: tuple[str, ...]
        _live: dict[str, _Live]
        _lock: threading.RLock
        _cache: PredictionCache
        _pending: dict[str, PredictionRecord]
        _deleting: set[str]
        _shown: dict[str, int]
        _shown_lock: threading.Lock
        _stop: threading.Event
        scaleout: Any  # engine.ScaleOut (riverbed/scaleout), or None

        def _check_name(self, name: Any) -> str: ...
        def _check_text(self, field: str, value: Any) -> str: ...
        def _check_tags(self, tags: Mapping[str, str] | None) -> dict[str, str]: ...
        def _flavor(self, name: str) -> str: ...
        def _describe_batch(self, name: str) -> dict[str, Any]: ...
        def _serving_target(self, ref: str, version: int | None) -> Any: ...
        def _model_record(self, name: str) -> ModelRecord: ...
        def _with_registry(self, described: dict[str, Any]) -> dict[str, Any]: ...
        def _object_of(self, version: VersionRecord) -> Any: ...
        def _forget(self, name: str, number: int | None = None) -> None: ...
        def _mark(self, record: PredictionRecord) -> None: ...
        def _canary_label(self, live: _Live, record: Any, *, replay: bool = False) -> None: ...
        def _canary_loaded(self, live: _Live, after: int) -> None: ...
        def _forget_predictions(self, records: list[PredictionRecord]) -> None: ...
        def _publisher(
            self, type: str, name: str, data: dict[str, Any] | Callable[[], dict[str, Any]] | bytes
        ) -> Any: ...
        def _arena_learn(self, live: _Live, record: Any, *, replay: bool = False) -> None: ...
        def _start_challengers(self) -> None: ...

    # -- checkpoints and retention ----------------------------------------------------------

    def _tick(self) -> None:
        period = max(0.05, min(1.0, self.settings.checkpoint_seconds / 2))
        pruned = time.monotonic()
        while not self._stop.wait(period):
            now = time.monotonic()
            for live in list(self._live.values()):
                if (
                    not live.unsettled  # its next call rebuilds it first
                    and live.n_learns > live.checkpoint_seq
                    and now - live.checkpoint_time >= self.settings.checkpoint_seconds
                    and now >= live.checkpoint_next
                ):
                    with live.lock:
                        self._checkpoint(live)
            if now - pruned >= _PRUNE_SECONDS:  # after the checkpoints: their learns may go
                pruned = now
                try:
                    self.prune()
                except Exception:  # the checkpoints must go on
                    log.exception("pruning by the retention settings failed")

    def checkpoint(self, name: str | None = None) -> int:
        """Checkpoint one model, or every live model that learned since its last checkpoint.

        Returns how many checkpoints were written.
        """
        targets = [self._get_live(name)] if name is not None else list(self._live.values())
        futures = []
        for live in targets:
            if live.unsettled:
                self._settle(live)
            with live.lock:
                if name is not None or live.n_learns > live.checkpoint_seq:
                    futures.append(self._checkpoint(live))
        for future in futures:
            future.result()
        return len(futures)

    def prune(self, name: str | None = None) -> dict[str, int]:
        """Delete what the retention settings do not keep (the newest
        ``retention_predictions`` predictions, ``retention_learns`` learns and
        ``retention_metric_points`` history points) of one model, or of every live model that
        predicted or learned since its last prune. The learns after a model's checkpoint are
        always kept. The checkpoint thread does this about once a second.

        Returns how many predictions, learns and metric points were deleted.
        """
        s = self.settings
        retention = Retention(
            s.retention_predictions, s.retention_learns, s.retention_metric_points
        )
        counts = {"predictions": 0, "learns": 0, "metric_points": 0}
        if not retention:
            return counts
        targets = [self._get_live(name)] if name is not None else list(self._live.values())
        pending = []
        for live in targets:
            mark = (live.n_predictions, live.n_learns)
            if name is None and mark == live.pruned_at:
                continue
            live.pruned_at = mark
            pending.append((live, self.store.prune(live.record.name, retention)))
        for live, future in pending:
            pruned = future.result()
            live.pruned_through = max(live.pruned_through, pruned.predictions_through)
            counts["predictions"] += pruned.predictions
            counts["learns"] += pruned.learns
            counts["metric_points"] += pruned.metric_points
        return counts

    def _refuse_in_cluster(self, name: str, what: str) -> None:
        """Refuse, before anything changes, a change of a model's live state by hand (its
        drift detectors, canary splits, a restored version) on a scale-out replica: only the
        checkpoint of the model's learner carries a model's state to the database and the
        other replicas, and a replica's own would be lost."""
        if self.scaleout is not None:
            raise ClusterUnsupported(
                f"this server is a replica of a scale-out cluster, which cannot {what} of "
                f"model {name!r} yet (only its learner writes the model's state): nothing "
                "was changed; do it on a server that serves the database alone, without "
                "--broker (docs/scale-out.md)",
                detail={"model": name},
            )

    def _checkpoint(self, live: _Live) -> Future[None]:
        # The caller holds live.lock, so the state and its sequence number agree.
        if self.scaleout is not None:  # a learner checkpoints in its own transactions
            return done()
        return self.store.save_checkpoint(self._take_checkpoint(live))

    def _take_checkpoint(self, live: _Live) -> Checkpoint:
        """The live state as a checkpoint, to be written (the caller holds live.lock); the
        model goes on with the objects loaded back from it."""
        start = time.monotonic()
        with live.arena.lock if live.arena is not None else contextlib.nullcontext():
            blob = serialization.dumps(live.state(), inline=True)
        # Pickling moved the live objects' attributes into dicts of their own, slower to
        # read and write for good (serialization.live_copy): go on with the copy just written.
        state = serialization.loads(blob)
        live.metric = state["metric"]
        live.drift = state["drift"]
        live.canary = state["canary"]
        if live.arena is not None:  # its promotions to write are not in the checkpoint
            state["arena"].keep_fired(live.arena)
        live.arena = state["arena"]
        if not live.evaluated:
            live.model = state["model"]
            live.task.bind(live.model)
        live.checkpoint_seq = live.n_learns
        live.checkpoint_time = now = time.monotonic()
        # The requests waiting on this model waited for all of that: keep such waits to
        # checkpoint_share of the time (a forest of 4 MB took 180 ms a checkpoint).
        share = self.settings.checkpoint_share
        live.checkpoint_next = now + (now - start) * (1 - share) / share
        return Checkpoint(live.record.name, live.n_learns, blob, time.time())

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
        options: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> dict[str, Any]:
        """Create a model from a river object or a declarative spec (see :mod:`riverbed.specs`).

        The task is detected from the object unless stated; ``metrics`` names river metrics
        and defaults to the task's own (``[]`` turns metrics off). ``options`` holds the
        metric options (``windows``, ``history_every``, ``history_seconds``) and the task's
        own (see docs/tasks.md).

        A name that is taken raises :class:`ModelExists`; with ``exist_ok=True`` a model of
        that name created from the same spec (or an object with the same spec) is described
        instead, as it is now, and nothing changes, so a script can run again.
        """
        return self.submit_create_model(
            name,
            model,
            spec=spec,
            task=task,
            description=description,
            tags=tags,
            metrics=metrics,
            options=options,
            exist_ok=exist_ok,
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
        options: Mapping[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> Receipt[dict[str, Any]]:
        name = self._check_name(name)
        if not isinstance(exist_ok, bool):
            raise InvalidInput(f"exist_ok must be true or false, got {exist_ok!r}")
        if options is not None and not isinstance(options, Mapping):
            raise InvalidInput("options must be an object")
        options = dict(options or {})
        task_options = {k: v for k, v in options.items() if k not in _METRIC_OPTIONS}
        if (model is None) == (spec is None):
            raise InvalidInput("give either a model object or a spec, not both or neither")
        if spec is not None:
            obj, source = specs.build(spec, allowed=self._allowed), "spec"
        else:
            obj, source = serialization.live_copy(model), "object"
            try:
                spec = specs.to_spec(model)
            except InvalidSpec:
                spec = None
        task_ = get_task(task, task_options) if task is not None else detect_task(obj, task_options)
        task_.check_model(obj)
        obj = task_.prepare(obj)
        if metrics is not None and (
            not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics)
        ):
            raise InvalidInput("metrics must be a list of river metric names")
        metric_names = list(task_.metrics_for(obj) if metrics is None else metrics)
        metric = self._tracker(task_, metric_names, options)
        misfits = metric.works_with(obj) if task_.checks_metric_fit else []
        if misfits:
            raise InvalidInput(f"metric {misfits[0]} does not fit a {task_.name} model")
        description = self._check_text("description", description)
        tags = self._check_tags(tags)
        now = time.time()
        record = ModelRecord(
            name=name,
            task=task_.name,
            description=description,
            tags=tags,
            metrics=metric_names,
            created_at=now,
            updated_at=now,
            options=options,
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
            taken = name in self._live or self.store.get_model(name) is not None
            if not taken:
                self._live[name] = live
                future = self.store.create_model(record, version)
        if taken:
            if not exist_ok:
                raise ModelExists(f"a model named {name!r} already exists")
            return Receipt(self._existing_model(name, spec), done())

        def created(f: Future[None]) -> None:
            if f.exception() is not None:
                with self._lock:
                    if self._live.get(name) is live:
                        del self._live[name]
            else:
                self.events.publish("model.created", name, {"task": task_.name, "source": source})

        future.add_done_callback(created)
        return Receipt(self._describe(live, spec=spec, source=source), future)

    def _existing_model(self, name: str, spec: Any) -> dict[str, Any]:
        """The model ``name`` as it is, for a create with ``exist_ok``: if it was created
        from ``spec`` (its version 1's), else :class:`ModelExists` saying why."""
        first = self.store.get_version(name, 1)
        if first is None or self._canonical(first.spec) != self._canonical(spec):
            raise ModelExists(
                f"a model named {name!r} already exists, created from another spec; "
                "delete it first or choose another name"
            )
        return self.get_model(name)

    def _canonical(self, spec: Any) -> str:
        """A spec as text that equal models share: a short spec and the full one of the same
        object (every parameter spelled out) agree, key order and tuples set aside."""
        if spec is not None:
            with contextlib.suppress(InvalidSpec):
                spec = specs.to_spec(specs.build(spec, allowed=self._allowed))
        return json.dumps(spec, sort_keys=True, default=str)

    def list_models(self) -> list[dict[str, Any]]:
        """Every model, by name, without loading any of them."""
        return [{**self._record_dict(r), "flavor": r.flavor} for r in self.store.list_models()]

    def get_model(self, name: str) -> dict[str, Any]:
        if self._flavor(name) != "river":
            described = self._describe_batch(name)
            if evaluated(self._model_record(name)):
                live = self._get_live(name)  # evaluated online: its counts
                with live.lock:
                    described.update(
                        n_predictions=self._n_predictions(live), n_learns=live.n_learns
                    )
            return described
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
        if self._flavor(name) != "river":
            raise NotServable(f"model {name!r} is a batch model: its versions are the model")
        live = self._get_live(name)
        with live.lock:
            return self._replace_model(live)

    def _replace_model(self, live: _Live) -> Any:
        """Serve a live copy of the model from now on and return the object it replaces (the
        caller holds live.lock). For whoever reads a live model's whole state (pickles it,
        copies it): that moves its attributes into dicts for good, slower to serve with
        (serialization.live_copy), so the reader gets the old object and the copy goes on."""
        old = live.model
        live.model = serialization.live_copy(old)
        live.task.bind(live.model)
        return old

    def delete_model(self, name: str) -> dict[str, Any]:
        return self.submit_delete_model(name).wait()

    def submit_delete_model(self, name: str) -> Receipt[dict[str, Any]]:
        # A batch model has no live state; its lock is a fresh one.
        live = self._get_live(name) if self._flavor(name) == "river" else self._live.get(name)
        with self._lock, live.lock if live is not None else threading.RLock():
            # Until the deletion commits, the store still holds the model: without this
            # mark a read in between would load it back into _live, where it would outlive
            # its deletion.
            self._deleting.add(name)
            self._live.pop(name, None)
            with self._shown_lock:  # a model created again under its name counts from 0
                self._shown.pop(name, None)
            self._cache.drop_model(name)
            for key in [k for k, p in self._pending.items() if p.model == name]:
                del self._pending[key]
            future = self.store.delete_model(name)
            self._forget(name)
        future.add_done_callback(self._publisher("model.deleted", name, {}))
        future.add_done_callback(lambda _: self._deleting.discard(name))
        return Receipt({"name": name, "deleted": True}, future)

    # -- loading -----------------------------------------------------------------------------

    def _get_live(self, name: str) -> _Live:
        live = self._live.get(name)
        if live is not None:
            if live.unsettled:
                self._settle(live)
            return live
        if not isinstance(name, str):
            raise ModelNotFound(f"no model named {name!r}")
        with self._lock:
            live = self._live.get(name)
            if live is None:
                if name in self._deleting:
                    raise ModelNotFound(f"no model named {name!r} (it is being deleted)")
                record = self.store.get_model(name)
                if record is None:
                    raise ModelNotFound(f"no model named {name!r}")
                if record.flavor != "river" and not evaluated(record):
                    raise NotServable(
                        f"model {name!r} is a {record.flavor} model: it has versions, not a "
                        "live learning state (address a version, e.g. name@latest)"
                    )
                task = get_task(record.task, self._task_options(record.options))
                live = _Live(record, task, version=1 if record.flavor == "river" else 0)
                self._load(live)
                self._live[name] = live
                if live.arena is not None:
                    self._start_challengers()
            return live

    def _load(self, live: _Live) -> None:
        """Bring a live model to its last acknowledged state: checkpoint, then the log."""
        name = live.record.name
        checkpoint = self.store.get_checkpoint(name)
        if checkpoint is not None:
            state = serialization.loads(checkpoint.state)
            live.version = state.get("version", live.version)
            live.model, live.metric = state["model"], state["metric"]
            live.n_scored, live.n_learns = state["n_scored"], state["n_learns"]
            live.n_predictions = state["n_predictions"]
            live.predict_stats = _OpStats(*state["predict_stats"])
            live.learn_stats = _OpStats(*state["learn_stats"])
            live.drift = state.get("drift")
            live.canary = state.get("canary")
            live.arena = state.get("arena")
        elif live.evaluated:
            live.metric = self._fresh_tracker(live)
            live.n_scored = live.n_learns = live.n_predictions = 0
            live.predict_stats, live.learn_stats = _OpStats(), _OpStats()
        else:
            live.version = 1
            version = self.store.get_version(name, live.version)
            if version is None:  # pragma: no cover - a model is always created with a version
                raise ModelNotFound(f"model {name!r} has no version")
            live.model = serialization.live_copy(self._object_of(version))
            live.metric = self._tracker(live.task, live.record.metrics, live.record.options)
            live.n_scored = live.n_learns = live.n_predictions = 0
            live.predict_stats, live.learn_stats = _OpStats(), _OpStats()
        if checkpoint is None:
            live.drift = live.canary = live.arena = None
        self._canary_loaded(live, live.n_predictions)
        live.drift_fired = []
        if live.evaluated:  # it predicts with the version the bare name serves
            live.model = Evaluated(functools.partial(self._serving_target, name, None))
        live.task.bind(live.model)
        live.checkpoint_seq = live.n_learns
        live.checkpoint_time = time.monotonic()
        task = live.task
        # A predict that changes the model (a bandit's pull) is replayed where it was made:
        # after the learns its record says it followed.
        pulls: list[PredictionRecord] = []
        if task.replays_predictions:
            pulls = [
                p
                for p in self.store.predictions_after(name, live.n_predictions)
                if isinstance(p.features, dict) and "n_learns" in p.features
            ]
        next_pull = 0
        for record in self.store.learns_after(name, live.n_learns):
            while next_pull < len(pulls) and pulls[next_pull].features["n_learns"] < record.seq:
                self._replay_predict(live, pulls[next_pull])
                next_pull += 1
            self._replay_learn(live, record)
        for pull in pulls[next_pull:]:
            self._replay_predict(live, pull)
        live.n_predictions = max(live.n_predictions, self.store.max_prediction_seq(name))

    def _replay_learn(self, live: _Live, record: LearnRecord) -> None:
        """Apply one logged learn as it was applied (the caller holds live.lock, or owns a
        live model no one else sees yet): loading a model, and a scale-out replica following
        its learner's log."""
        task, model = live.task, live.model
        x, y, y_pred = record.features, record.target, record.prediction
        live.n_scored += task.score(live.metric, model, x, y, y_pred, record.created_at)
        task.learn(model, x, y, y_pred)
        live.learn_stats.n_calls += 1
        live.n_learns = record.seq
        if live.drift is not None:
            # The alarms again, written again (the store keeps the first of each): no
            # event, no snapshot; a reset is part of the model's history.
            fired_now = live.drift.feed(task.name, record)
            for fired in fired_now:
                self.store.add_drift_alarm(fired.alarm)
                if fired.action == "reset":
                    reset_model(live)
            promote_on_alarm(live, fired_now)
        if live.canary is not None:  # the arm's metrics again; no event
            self._canary_label(live, record, replay=True)
        if live.arena is not None:  # a rule promotion swaps the champion
            self._arena_learn(live, record, replay=True)

    @staticmethod
    def _replay_predict(live: _Live, record: PredictionRecord) -> None:
        try:
            live.task.predict(live.model, record.features, live.metric)
        except Exception:  # it answered when it was made; a replay changes what it can
            log.warning("replaying prediction %r of %r failed", record.id, live.record.name)

    @staticmethod
    def _metric_names(live: _Live) -> list[str]:
        # A scikit-learn model's record names none (it was made by an upload): the task's.
        if live.evaluated and not live.record.metrics:
            return list(live.task.default_metrics)
        return list(live.record.metrics)

    def _fresh_tracker(self, live: _Live) -> Tracker:
        """The model's metrics as they are before anything is measured."""
        return self._tracker(live.task, self._metric_names(live), live.record.options)

    @staticmethod
    def _task_options(options: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in options.items() if k not in _METRIC_OPTIONS}

    @staticmethod
    def _tracker(task: Task, names: list[str], options: Mapping[str, Any]) -> Tracker:
        every = options.get("history_every", DEFAULT_HISTORY_EVERY)
        seconds = options.get("history_seconds", DEFAULT_HISTORY_SECONDS)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InvalidInput(f"history_every must be a positive integer, got {every!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise InvalidInput(f"history_seconds must be a positive number, got {seconds!r}")
        return task.tracker(
            list(names),
            windows=parse_windows(options.get("windows")),
            history_every=every,
            history_seconds=float(seconds),
        )

    def _reload(self, live: _Live) -> None:
        """Rebuild the model and its metrics from the checkpoint and the log, undoing what
        was applied and not logged; the counts and latencies of predict and learn are the
        process's own (a prediction not yet committed is counted already)."""
        self.store.sync()
        self._rebuild(live)

    def _rebuild(self, live: _Live) -> None:
        kept = live.n_predictions, live.predict_stats, live.learn_stats
        self._load(live)
        live.n_predictions = max(live.n_predictions, kept[0])
        live.predict_stats, live.learn_stats = kept[1], kept[2]

    # -- writes that failed ------------------------------------------------------------------

    def _learn_failed(
        self, live: _Live, marked: list[PredictionRecord], n: int, seconds: float, ewm: float
    ) -> Callable[[], None]:
        """What undoes learns whose write failed, once (called from the write's callback
        and from its receipt, in whichever thread comes first; it takes no lock): their
        predictions are unlabelled, so that a retry can label them, and the model is marked
        for a rebuild from what was written, before its next call (:meth:`_settle`). The
        committed predictions among them are also dropped from the in-memory cache, so that
        the next lookup reads their mark back from the store: a commit in doubt
        (PostgreSQL's CommitInDoubt) may have labelled them after all, and a retry must then
        find them labelled, not learn twice."""
        once: list[bool] = []

        def failed() -> None:
            if once:
                return
            once.append(True)
            for prediction in marked:
                prediction.labelled = False
                self._mark(prediction)
            self._cache.discard([p for p in marked if self._pending.get(p.id) is not p])
            live.unlearned.append((n, seconds, ewm))
            live.stale = live.unsettled = True

        return failed

    def _predictions_failed(
        self, live: _Live, records: list[PredictionRecord], seconds: float, ewm: float
    ) -> Callable[[], None]:
        """What undoes predictions whose write failed, once (as :meth:`_learn_failed`):
        they are forgotten, and uncounted before the model's next call."""
        once: list[bool] = []

        def failed() -> None:
            if once:
                return
            once.append(True)
            self._forget_predictions(records)
            live.refused.append((records[0].seq, records[-1].seq, seconds, ewm))
            if live.task.replays_predictions:  # the refused pull changed the model
                live.stale = True
            live.unsettled = True

        return failed

    def _settle(self, live: _Live) -> None:
        """Undo the writes of this model that failed after they were applied: uncount the
        refused predictions, rebuild the model and metrics from the checkpoint and the log
        after a failed learn (a retry then learns on exactly what was written)."""
        with live.lock:
            if not live.unsettled:
                return
            live.unsettled = False
            refused, live.refused = live.refused, []
            unlearned, live.unlearned = live.unlearned, []
            for n, seconds, _ in unlearned:
                live.learn_stats.take_back(n, seconds)
            if unlearned:  # no learn after the first that failed was written: its ewm
                live.learn_stats.ewm = unlearned[0][2]
            stats = live.predict_stats
            for first, last, seconds, ewm in sorted(refused, reverse=True):
                if live.n_predictions == last:  # else later ones hold the seqs after it
                    live.n_predictions = first - 1
                    stats.ewm = ewm
                stats.take_back(last - first + 1, seconds)
            if live.stale:
                try:
                    self.store.sync()  # every write queued so far is then settled
                except Exception:  # the sync's own commit failed, after the others settled
                    log.warning("syncing %r before its rebuild failed", live.record.name)
                try:
                    self._rebuild(live)
                except BaseException:
                    live.unsettled = True
                    raise
                live.stale = False

    def _rescore(self, live: _Live) -> None:
        """Rebuild the metrics alone from the checkpoint and the log (the caller holds
        live.lock): the scores of every logged learn, none of one that failed to score."""
        self.store.sync()
        name = live.record.name
        checkpoint = self.store.get_checkpoint(name)
        if checkpoint is not None:
            state = serialization.loads(checkpoint.state)
            tracker, n_scored, seq = state["metric"], state["n_scored"], checkpoint.seq
        else:
            tracker = self._fresh_tracker(live)
            n_scored = seq = 0
        task, model = live.task, live.model
        for record in self.store.learns_after(name, seq):
            x, y, y_pred = record.features, record.target, record.prediction
            n_scored += task.score(tracker, model, x, y, y_pred, record.created_at)
        live.metric, live.n_scored = tracker, n_scored

    def _n_predictions(self, live: _Live) -> int:
        """The predictions count shown to readers (the stats, GET /metrics' counter, a
        model's description): ``n_predictions``, never lower than a count shown before.

        ``n_predictions`` counts a prediction when it is made, before its commit (it is the
        next prediction's seq). A prediction refused at commit is uncounted before the
        model's next call (:meth:`_settle`), its seq taken up by the next prediction; a bulk
        predict that fails is uncounted; a live model loaded again (a scale-out replica or
        learner) counts what the store holds. A reader who saw such a prediction counted is
        not shown less after: a counter that goes down reads as a restart to Prometheus. The
        count shown is exact again once that many predictions more have been made."""
        name = live.record.name
        with self._shown_lock:
            shown = max(self._shown.get(name, 0), live.n_predictions)
            self._shown[name] = shown
        return shown

    def _describe(self, live: _Live, *, spec: Any, source: str | None) -> dict[str, Any]:
        return {
            **self._record_dict(live.record),
            "version": live.version,
            "source": source,
            "spec": spec,
            "n_predictions": self._n_predictions(live),
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
            "options": dict(record.options),
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }
