"""Canary splits: a route of a model answered by two or more arms, by percentage.

A *route* is how callers address a model: its bare name (the live route, answered by the live
model) or ``name@alias``. :meth:`CanaryMonitor.set_canary` splits one route between *arms*:
``"live"`` (the live model) and frozen versions (``"v3"``), each with a weight, the weights
summing to 100. A prediction through the route is answered by the arm a hash of its *sticky
key* falls in: the prediction id (``sticky="id"``, the default; an id is generated first when
the caller gives none) or the value of one of the request's features (``sticky="key:NAME"``;
a request without that feature goes to the baseline arm). The same key lands on the same arm
while the weights stay; moving weight to an arm moves only keys onto it (the arms share
[0, 1) in their order, each its own slice). The arm that answered is stored beside the
prediction (:class:`~riverbed.stores.base.CanaryArm`) and named in the response (``arm``,
``version``) and in the ``predict`` event.

What learns: the live model, as without a split -- a label by id trains the live model and
is scored in the model's own metrics with the prediction that was answered, whichever arm
answered it (so the live model learns from every arm's traffic). Frozen versions never learn.
Each arm also has metrics of its own: a label of a prediction an arm answered is scored in
that arm's metrics (the model's metric names and windows, progressive: the prediction made
before the label) and in that arm's history. The first arm is the *baseline* unless stated.

A guard ``{"metric", "margin", "min_samples"}`` stops a canary arm (weight 0, its weight to
the baseline) as soon as, after a label, both it and the baseline have scored at least
``min_samples`` labels and its metric is worse than the baseline's by more than ``margin``
(an absolute difference, in the metric's own direction): a ``model.canary_stopped`` event
with the numbers. Setting, moving, stopping and removing a split are ``model.canary_set``,
``model.canary_moved``, ``model.canary_stopped`` and ``model.canary_removed`` events.

Durability: a split and its arms' metrics live in the model's live state, so the checkpoint
holds them; a change by hand writes the checkpoint, and loading a model (the checkpoint,
then the learns after it) scores each replayed label in its arm again, the stored arm of its
prediction telling which -- and stops an arm again at the same label, since the guard
depends on the labels alone. The arms' prediction counts after the checkpoint are counted
from the stored arms.

This module is an engine part: it imports neither the engine nor live.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import orjson

from riverbed.exceptions import (
    InvalidInput,
    NotFound,
    NotServable,
    PredictionExists,
    RiverbedError,
    VersionNotFound,
)
from riverbed.receipts import Receipt, state_written
from riverbed.stores.base import CanaryArm
from riverbed.stores.futures import all_done

if TYPE_CHECKING:
    from riverbed.config import Settings
    from riverbed.events import EventBus
    from riverbed.metrics import Tracker
    from riverbed.stores.base import LearnRecord, Store

__all__ = ["LIVE", "Arm", "Canary", "CanaryMonitor"]

LIVE = "live"
TASKS = frozenset({"regression", "binary", "multiclass"})
_MAX_ARMS = 8
_PENDING_MAX = 100_000  # arms of predictions not labelled yet, kept in memory (else read)
_HISTORY_MAX = 10_000  # points of an arm's history kept
_GUARD_FIELDS = frozenset({"metric", "margin", "min_samples"})
_SPAN = float(2**64)
log = logging.getLogger(__name__)


@dataclasses.dataclass
class Arm:
    """One arm of a split: the live model or a version, its weight, its own metrics."""

    key: str  # "live" or "vN"
    version: int | None
    weight: float
    tracker: Tracker
    n_predictions: int = 0
    n_labels: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "arm": self.key,
            "version": self.version,
            "weight": self.weight,
            "n_predictions": self.n_predictions,
            "n_labels": self.n_labels,
            **self.tracker.values(),
        }


@dataclasses.dataclass
class Canary:
    """A split of one route (``""``: the live route, else an alias)."""

    model: str
    route: str
    run: str  # a new one each time a split is set: the stored arms name it
    arms: list[Arm]
    baseline: str
    sticky: str  # "id" or "key:NAME"
    guard: dict[str, Any] | None
    created_at: float
    updated_at: float
    status: str = "running"  # or "stopped": every canary arm at 0%
    stopped: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.route}" if self.route else self.model

    def arm(self, key: str) -> Arm | None:
        for arm in self.arms:
            if arm.key == key:
                return arm
        return None

    def choose(self, prediction_id: str, features: Any) -> Arm:
        """The arm a prediction falls in (the caller holds the model's lock)."""
        if self.sticky == "id":
            key: Any = prediction_id
        else:
            name = self.sticky[4:]
            if not isinstance(features, Mapping) or name not in features:
                return self.arm(self.baseline) or self.arms[0]
            key = features[name]
        point = bucket(self.ref, key)
        edge = 0.0
        for arm in self.arms:
            edge += arm.weight / 100
            if arm.weight > 0 and point < edge:
                return arm
        # Rounding at the top end: the last arm with weight.
        return next(a for a in reversed(self.arms) if a.weight > 0)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "route": self.ref,
            "alias": self.route or None,
            "run": self.run,
            "status": self.status,
            "baseline": self.baseline,
            "sticky": self.sticky,
            "guard": dict(self.guard) if self.guard else None,
            "weights": {a.key: a.weight for a in self.arms},
            "arms": [a.describe() for a in self.arms],
            "stopped": dict(self.stopped) if self.stopped else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def bucket(route: str, key: Any) -> float:
    """Where a sticky key falls in [0, 1) for a route: a hash of both, so the same key
    always falls at the same place."""
    try:
        data = orjson.dumps(key, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        data = repr(key).encode()
    digest = hashlib.blake2b(route.encode() + b"\0" + data, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SPAN


# -- checking what callers send --------------------------------------------------------------


def arm_key(value: Any) -> tuple[str, int | None]:
    """``(key, version)`` of an arm as a caller names it: ``"live"``, ``3``, ``"3"``, ``"v3"``."""
    if value == LIVE:
        return LIVE, None
    number: Any = value
    if isinstance(value, str):
        text = value[1:] if value[:1] in ("v", "V") else value
        number = int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidInput(
            f"an arm is 'live' or a version ('v3', 3), got {value!r}", detail={"arm": value}
        )
    return f"v{number}", number


def check_weights(weights: Any, field: str = "arms") -> dict[str, tuple[int | None, float]]:
    """``{key: (version, weight)}`` of a caller's weights, in their order: numbers from 0 to
    100 that sum to 100."""
    if not isinstance(weights, Mapping) or not weights:
        raise InvalidInput(
            f"{field} is an object of arm -> percentage, such as {{'v3': 90, 'v4': 10}}",
            detail={"field": field},
        )
    if len(weights) > _MAX_ARMS:
        raise InvalidInput(f"a split has at most {_MAX_ARMS} arms", detail={"field": field})
    out: dict[str, tuple[int | None, float]] = {}
    for name, weight in weights.items():
        key, version = arm_key(name)
        if key in out:
            raise InvalidInput(f"{field} names arm {key} twice", detail={"field": field})
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not math.isfinite(weight)
            or not 0 <= weight <= 100
        ):
            raise InvalidInput(
                f"the weight of arm {key} must be a percentage from 0 to 100, got {weight!r}",
                detail={"field": f"{field}.{name}"},
            )
        out[key] = (version, float(weight))
    total = sum(w for _, w in out.values())
    if abs(total - 100) > 1e-9:
        raise InvalidInput(
            f"the weights of {field} must sum to 100, they sum to {total:g}",
            detail={"field": field, "sum": total},
        )
    return out


def check_sticky(sticky: Any) -> str:
    if sticky == "id":
        return "id"
    if isinstance(sticky, str) and sticky.startswith("key:") and 4 < len(sticky) <= 132:
        return sticky
    raise InvalidInput(
        f"sticky is 'id' or 'key:FEATURE' (a feature of the request), got {sticky!r}",
        detail={"field": "sticky"},
    )


def check_guard(guard: Any, metrics: list[str]) -> dict[str, Any] | None:
    if guard is None:
        return None
    if not isinstance(guard, Mapping):
        raise InvalidInput(
            "guard is an object {metric, margin, min_samples}", detail={"field": "guard"}
        )
    unknown = sorted(set(guard) - _GUARD_FIELDS)
    if unknown:
        raise InvalidInput(
            f"guard has unknown field(s) {unknown}; allowed: {sorted(_GUARD_FIELDS)}",
            detail={"field": "guard", "unknown": unknown},
        )
    metric = guard.get("metric")
    if metric not in metrics:
        raise InvalidInput(
            f"guard.metric must be one of the model's metrics ({', '.join(metrics)}), "
            f"got {metric!r}",
            detail={"field": "guard.metric", "metrics": metrics},
        )
    margin = guard.get("margin", 0.0)
    if (
        isinstance(margin, bool)
        or not isinstance(margin, int | float)
        or not math.isfinite(margin)
        or margin < 0
    ):
        raise InvalidInput(
            f"guard.margin must be a number of 0 or more, got {margin!r}",
            detail={"field": "guard.margin"},
        )
    n = guard.get("min_samples", 100)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 10**9:
        raise InvalidInput(
            f"guard.min_samples must be an integer of 1 or more, got {n!r}",
            detail={"field": "guard.min_samples"},
        )
    return {"metric": metric, "margin": float(margin), "min_samples": n}


def _metric_of(tracker: Tracker, name: str) -> Any:
    for metric_name, _, metric in tracker.running:
        if metric_name == name:
            return metric
    return None


# -- the engine's operations -----------------------------------------------------------------


class CanaryMonitor:
    """The engine's canary operations (an :class:`~riverbed.engine.Engine` mixin)."""

    if TYPE_CHECKING:  # what the engine provides
        settings: Settings
        store: Store
        events: EventBus
        _live: dict[str, Any]

        def _get_live(self, name: str) -> Any: ...
        def _flavor(self, name: str) -> str: ...
        def _checkpoint(self, live: Any) -> Future[None]: ...
        def _refuse_in_cluster(self, name: str, what: str) -> None: ...
        def _fresh_tracker(self, live: Any) -> Tracker: ...
        def _metric_names(self, live: Any) -> list[str]: ...
        def resolve(self, ref: str, version: int | None = None) -> dict[str, Any]: ...
        def _load_version(self, name: str, number: int) -> Any: ...
        def _check_id(self, id: Any) -> str: ...
        def _id_taken(self, prediction_id: str) -> bool: ...
        def _cached_features(self, features: Any, key: str | None) -> Any: ...
        def _submit_predict_live(
            self,
            live: Any,
            name: str,
            features: Any,
            id: str | None,
            features_key: str | None,
            inputs: Mapping[str, Any],
            extra: Mapping[str, Any] | None = None,
        ) -> Receipt[dict[str, Any]]: ...
        def _submit_predict_version(
            self, target: Any, features: Any, id: str | None, extra: Any = None
        ) -> Receipt[dict[str, Any]]: ...
        def _publisher(self, type: str, name: str, data: Any, failed: Any = None) -> Any: ...
        def submit_predict(
            self, name: str, features: Any = None, *, id: str | None = None
        ) -> Receipt[dict[str, Any]]: ...

    def _init_canaries(self) -> None:
        # The arm of each prediction made through a split and not labelled yet: id ->
        # (model, run, arm). Bounded; one that is not here is read from the store.
        self._canary_pending: dict[str, tuple[str, str, str]] = {}
        # Per model: the events of guard stops raised by learns applied, not queued yet.
        self._canary_fired: dict[str, list[dict[str, Any]]] = {}

    # -- reading and changing splits ---------------------------------------------------------

    def _canary_route(self, ref: str) -> tuple[Any, str]:
        """The live model and the route (``""`` or an alias) of an address."""
        if not isinstance(ref, str):
            raise InvalidInput(f"a route is a model name or name@alias, got {ref!r}")
        name, at, alias = ref.partition("@")
        if at:
            if not alias or (alias.isascii() and alias.isdigit()):
                raise InvalidInput(
                    f"a canary splits the model's live route (its name) or an alias "
                    f"(name@alias), not {ref!r}",
                    detail={"route": ref},
                )
            self.resolve(ref)  # the alias must exist
        live = self._get_live(name)
        if live.evaluated:
            raise NotServable(
                f"model {name!r} is a batch model: a canary splits a river model's routes"
            )
        return live, alias

    def set_canary(
        self,
        ref: str,
        arms: Mapping[Any, Any],
        *,
        sticky: str = "id",
        guard: Mapping[str, Any] | None = None,
        baseline: Any = None,
    ) -> dict[str, Any]:
        """Split a route (``name``: the live route; ``name@alias``) between arms:
        ``{"v3": 90, "v4": 10}`` or ``{"live": 95, "v4": 5}``, percentages summing to 100.
        ``sticky``: ``"id"`` (the prediction id) or ``"key:FEATURE"``; ``guard``: ``{"metric",
        "margin", "min_samples"}``; ``baseline``: the arm the others are compared with (the
        first arm by default). A split set again starts afresh. Returns :meth:`canary`."""
        return self.submit_set_canary(
            ref, arms, sticky=sticky, guard=guard, baseline=baseline
        ).wait()

    def submit_set_canary(
        self,
        ref: str,
        arms: Mapping[Any, Any],
        *,
        sticky: str = "id",
        guard: Mapping[str, Any] | None = None,
        baseline: Any = None,
    ) -> Receipt[dict[str, Any]]:
        live, route = self._canary_route(ref)
        name = live.record.name
        self._refuse_in_cluster(name, "set a canary split")
        if live.task.name not in TASKS:
            raise InvalidInput(
                f"a canary splits a regression, binary or multiclass model; {name!r} is a "
                f"{live.task.name} model"
            )
        metrics = self._metric_names(live)
        if not metrics:
            raise InvalidInput(
                f"model {name!r} has no metrics, so its arms cannot be compared; create it "
                "with metrics to split it"
            )
        weights = check_weights(arms)
        if len(weights) < 2:
            raise InvalidInput("a split has two arms or more", detail={"field": "arms"})
        sticky = check_sticky(sticky)
        checked_guard = check_guard(guard, metrics)
        if baseline is None:
            base = next(iter(weights))
        else:
            base = arm_key(baseline)[0]
            if base not in weights:
                raise InvalidInput(
                    f"the baseline {base} is not an arm of the split ({', '.join(weights)})",
                    detail={"field": "baseline"},
                )
        numbers = {v.version for v in self.store.list_versions(name)}
        for key, (version, _) in weights.items():
            if version is not None and version not in numbers:
                raise VersionNotFound(
                    f"model {name!r} has no version {version} (arm {key})",
                    detail={"versions": sorted(numbers)},
                )
        now = time.time()
        with live.lock:
            canary = Canary(
                name,
                route,
                uuid.uuid4().hex,
                [
                    Arm(key, version, weight, self._fresh_tracker(live))
                    for key, (version, weight) in weights.items()
                ],
                base,
                sticky,
                checked_guard,
                now,
                now,
            )
            canaries = dict(live.canary or {})
            canaries[route] = canary
            return self._write_canary(live, canaries, "model.canary_set", canary)

    def update_canary(self, ref: str, weights: Mapping[Any, Any]) -> dict[str, Any]:
        """Move a split's percentages in one call: ``{"v3": 80, "v4": 20}`` (arms not named
        get 0). A stopped split runs again. Returns :meth:`canary`."""
        return self.submit_update_canary(ref, weights).wait()

    def submit_update_canary(self, ref: str, weights: Mapping[Any, Any]) -> Receipt[dict[str, Any]]:
        live, route = self._canary_route(ref)
        self._refuse_in_cluster(live.record.name, "move a canary split")
        checked = check_weights(weights, "weights")
        with live.lock:
            canary = self._canary_of(live, ref, route)
            unknown = [k for k in checked if canary.arm(k) is None]
            if unknown:
                raise InvalidInput(
                    f"{', '.join(unknown)} is not an arm of the split of {ref!r} (its arms: "
                    f"{', '.join(a.key for a in canary.arms)})",
                    detail={"field": "weights", "unknown": unknown},
                )
            if not any(w > 0 for _, w in checked.values()):  # pragma: no cover - sum is 100
                raise InvalidInput("some arm must have weight")
            before = {a.key: a.weight for a in canary.arms}
            for arm in canary.arms:
                arm.weight = checked[arm.key][1] if arm.key in checked else 0.0
            canary.status = "running" if self._canary_on(canary) else "stopped"
            canary.stopped = None if canary.status == "running" else canary.stopped
            canary.updated_at = time.time()
            return self._write_canary(
                live, dict(live.canary), "model.canary_moved", canary, {"before": before}
            )

    def stop_canary(self, ref: str, *, remove: bool = False) -> dict[str, Any]:
        """Stop a split: every canary arm to 0%, the baseline answers alone (the arms'
        metrics are kept and labels of their earlier predictions still score them).
        ``remove=True`` takes the split off the route altogether."""
        return self.submit_stop_canary(ref, remove=remove).wait()

    def submit_stop_canary(self, ref: str, *, remove: bool = False) -> Receipt[dict[str, Any]]:
        live, route = self._canary_route(ref)
        self._refuse_in_cluster(live.record.name, "stop a canary split")
        with live.lock:
            canary = self._canary_of(live, ref, route)
            canaries = dict(live.canary)
            if remove:
                del canaries[route]
                return self._write_canary(live, canaries, "model.canary_removed", canary)
            moved = _stop_arms(canary, [a for a in canary.arms if a.key != canary.baseline])
            canary.status = "stopped"
            canary.stopped = {"by": "hand", "arms": moved, "time": time.time()}
            canary.updated_at = canary.stopped["time"]
            return self._write_canary(live, canaries, "model.canary_stopped", canary)

    def canary(self, ref: str) -> dict[str, Any]:
        """A route's split: its arms (weight, predictions answered, labels scored, metrics
        of their own), baseline, sticky key, guard and status."""
        live, route = self._canary_route(ref)
        with live.lock:
            return self._canary_of(live, ref, route).describe()

    def canaries(self, name: str) -> list[dict[str, Any]]:
        """Every split of a model's routes (none: ``[]``)."""
        live = self._get_live(name)
        with live.lock:
            return [c.describe() for c in (live.canary or {}).values()]

    def canary_history(self, ref: str, *, limit: int = 1000) -> dict[str, Any]:
        """The metric history of each arm of a split: ``{"arms": {arm: [{"n", "seq", "time",
        "metrics", "windows"}]}}``, oldest first, the newest ``limit`` points an arm."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must be an integer from 1 to 10000, got {limit!r}")
        live, route = self._canary_route(ref)
        with live.lock:
            canary = self._canary_of(live, ref, route)
            return {
                "model": canary.model,
                "route": canary.ref,
                "arms": {a.key: [dict(p) for p in a.history[-limit:]] for a in canary.arms},
            }

    def canary_arm_of(self, name: str, prediction_id: str) -> dict[str, Any] | None:
        """The split and arm that answered a prediction (None: no split answered it)."""
        self._get_live(name)
        pending = self._canary_pending.get(prediction_id)
        if pending is not None and pending[0] == name:
            run, arm = pending[1], pending[2]
        else:
            stored = self.store.canary_arm(name, prediction_id)
            if stored is None:
                return None
            run, arm = stored.run, stored.arm
        return {"model": name, "id": prediction_id, "run": run, "arm": arm}

    @staticmethod
    def _canary_of(live: Any, ref: str, route: str) -> Canary:
        canary = (live.canary or {}).get(route)
        if canary is None:
            raise NotFound(f"{ref!r} has no canary split", detail={"route": ref})
        return canary

    @staticmethod
    def _canary_on(canary: Canary) -> bool:
        return any(a.weight > 0 for a in canary.arms if a.key != canary.baseline)

    def _write_canary(
        self,
        live: Any,
        canaries: dict[str, Canary],
        event: str,
        canary: Canary,
        more: Mapping[str, Any] | None = None,
    ) -> Receipt[dict[str, Any]]:
        # The caller holds live.lock.
        live.canary = canaries or None
        view = canary.describe()
        written = self._checkpoint(live)
        data = {**view, **(more or {})}
        written.add_done_callback(self._publisher(event, live.record.name, data))
        return state_written(live, view, written)

    # -- on the predict path -----------------------------------------------------------------

    def _canary_split(self, ref: str, version: int | None, live: Any) -> tuple[Any, Canary] | None:
        """The live model and the split that answer a prediction through ``ref``, if one
        does (a bare name's ``live`` is given when it is loaded)."""
        if version is not None or not isinstance(ref, str):
            return None
        name, at, alias = ref.partition("@")
        if at:
            live = self._live.get(name)
        if live is None:
            try:
                if self._flavor(name) != "river":
                    return None
            except RiverbedError:  # the usual path says what is wrong
                return None
            live = self._get_live(name)
        canaries = live.canary
        if not canaries:
            return None
        canary = canaries.get(alias if at else "")
        return (live, canary) if canary is not None else None

    def _submit_canary_predict(
        self,
        live: Any,
        canary: Canary,
        features: Any,
        id: str | None,
        features_key: str | None,
        inputs: Mapping[str, Any],
    ) -> Receipt[dict[str, Any]]:
        """Predict through a split: the arm chosen answers, and which one is stored."""
        name = live.record.name
        live.task.reject_inputs(inputs)
        if features_key is not None:
            features = self._cached_features(features, features_key)
        if id is None:  # made now: the arm is chosen by it (as a version's prediction's)
            id = uuid.uuid4().hex
        else:
            id = self._check_id(id)
            if self._id_taken(id) or self.store.get_prediction(id) is not None:
                raise PredictionExists(f"prediction id {id!r} is taken; use a new id")
        pending = self._canary_pending
        with live.lock:
            # Under the model's lock: the arm, its count and the prediction's seq agree with
            # what a checkpoint holds (which replaces the split's object by its copy).
            current = (live.canary or {}).get(canary.route)
            if current is None:  # taken off meanwhile: answered as without a split
                return self.submit_predict(canary.ref, features, id=id)
            canary = current
            arm = canary.choose(id, features)
            extra = {"arm": arm.key, "version": arm.version}
            pending[id] = (name, canary.run, arm.key)
            try:
                if arm.version is None:
                    receipt = self._submit_predict_live(live, name, features, id, None, {}, extra)
                else:
                    target = self._load_version(name, arm.version)
                    receipt = self._submit_predict_version(target, features, id, extra)
            except BaseException:
                pending.pop(id, None)
                raise
            arm.n_predictions += 1
            stored = self.store.add_canary_arm(
                CanaryArm(name, id, live.n_predictions, canary.run, arm.key)
            )
        if len(pending) > _PENDING_MAX:
            try:
                del pending[next(iter(pending))]
            except (KeyError, StopIteration, RuntimeError):  # another thread took it
                pass
        return Receipt(receipt.value, all_done([receipt.committed, stored]), receipt.failed)

    # -- on the learn path (the caller holds the model's lock) ----------------------------

    def _canary_label(self, live: Any, record: LearnRecord, *, replay: bool = False) -> None:
        """Score a label in the arm that answered its prediction, and guard the split."""
        name = live.record.name
        prediction_id = record.prediction_id
        if prediction_id is None:
            return
        pending = self._canary_pending.pop(prediction_id, None)
        if pending is not None and pending[0] == name:
            run, key = pending[1], pending[2]
        else:
            stored = self.store.canary_arm(name, prediction_id)
            if stored is None:
                return
            run, key = stored.run, stored.arm
        canary = next((c for c in live.canary.values() if c.run == run), None)
        arm = canary.arm(key) if canary is not None else None
        if canary is None or arm is None:
            return  # a split set again since, or removed
        arm.n_labels += 1
        tracker = arm.tracker
        if not tracker.update(record.target, record.prediction, t=record.created_at):
            return
        if tracker.point_due(record.created_at):
            arm.history.append({"n": tracker.n, "seq": record.seq, "time": record.created_at})
            arm.history[-1].update(tracker.values())
            if len(arm.history) > _HISTORY_MAX:
                del arm.history[: len(arm.history) - _HISTORY_MAX]
        if canary.guard is None:
            return
        stopped = self._canary_guard(canary, arm, record)
        if stopped is not None and not replay:
            self._canary_fired.setdefault(name, []).append(stopped)

    def _canary_guard(
        self, canary: Canary, scored: Arm, record: LearnRecord
    ) -> dict[str, Any] | None:
        guard = canary.guard
        assert guard is not None
        base = canary.arm(canary.baseline)
        if base is None:  # pragma: no cover - the baseline is an arm
            return None
        if scored is base:
            candidates = [a for a in canary.arms if a is not base and a.weight > 0]
        else:
            candidates = [scored] if scored.weight > 0 else []
        metric, margin, n = guard["metric"], guard["margin"], guard["min_samples"]
        if not candidates or base.tracker.n < n:
            return None
        base_value = base.tracker.values()["metrics"].get(metric)
        river_metric = _metric_of(base.tracker, metric)
        if base_value is None or river_metric is None:
            return None
        bigger = bool(getattr(river_metric, "bigger_is_better", True))
        worse = []
        for arm in candidates:
            if arm.tracker.n < n:
                continue
            value = arm.tracker.values()["metrics"].get(metric)
            if value is None:
                continue
            gap = (base_value - value) if bigger else (value - base_value)
            if gap > margin:
                worse.append((arm, value, gap))
        if not worse:
            return None
        numbers = [
            {
                "arm": arm.key,
                "value": value,
                "baseline_value": base_value,
                "difference": gap,
                "n_labels": arm.tracker.n,
                "baseline_n_labels": base.tracker.n,
            }
            for arm, value, gap in worse
        ]
        moved = _stop_arms(canary, [arm for arm, _, _ in worse])
        if not self._canary_on(canary):
            canary.status = "stopped"
        canary.stopped = {
            "by": "guard",
            "guard": dict(guard),
            "bigger_is_better": bigger,
            "arms": moved,
            "numbers": numbers,
            "n_learns": record.seq,
            "time": record.created_at,
        }
        canary.updated_at = record.created_at
        return canary.describe()

    def _canary_flush(self, live: Any) -> None:
        """Publish the guard stops of the learns just queued (once they are written)."""
        fired = self._canary_fired.pop(live.record.name, None)
        if not fired:
            return
        name = live.record.name
        written = self._checkpoint(live)  # a stop is replayed anyway; this spares the replay
        for data in fired:
            written.add_done_callback(self._publisher("model.canary_stopped", name, data))

    def _canary_loaded(self, live: Any, after: int) -> None:
        """After a load: count the arms' predictions after the checkpoint (seq > after)."""
        self._canary_fired.pop(live.record.name, None)
        if not live.canary:
            return
        counts = self.store.canary_arm_counts(live.record.name, after=after)
        for canary in live.canary.values():
            for arm in canary.arms:
                arm.n_predictions += counts.get((canary.run, arm.key), 0)


def _stop_arms(canary: Canary, arms: list[Arm]) -> dict[str, float]:
    """Put ``arms`` at 0%, their weight to the baseline: the weights they had."""
    base = canary.arm(canary.baseline)
    moved = {}
    for arm in arms:
        if arm is base or arm.weight == 0:
            continue
        moved[arm.key] = arm.weight
        if base is not None:
            base.weight += arm.weight
        arm.weight = 0.0
    if base is not None:
        base.weight = min(100.0, base.weight)
    return moved
