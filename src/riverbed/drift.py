"""Drift alarms: river's drift detectors on a model's error stream or on its features.

A model may have detectors (:meth:`DriftMonitor.set_drift`), each one of river's
(``river.drift``: ADWIN, PageHinkley, KSWIN; ``river.drift.binary``: DDM, EDDM, HDDMA,
HDDMW, FHDDM) with its parameters, fed one value a learn from one stream:

- ``errors``: the model's mistakes, from the prediction its metrics scored (the one made
  before learning, as progressive validation does): 0 or 1 for a classifier (the label it
  predicted against the ground truth), the absolute error for a regressor. The binary
  detectors take 0/1 streams only, so they are refused on a regressor's errors.
- ``feature:NAME``: the value of feature NAME in each learned sample (a number or a
  boolean; a sample without it, or with another kind of value, is skipped and counted).

The detectors live in the model's live state, so its checkpoint holds them and loading a
model (the checkpoint, then the learns after it) feeds them those learns again: a restart
goes on exactly where the acknowledged learns left them. An alarm -- the detector's
``drift_detected`` after a value -- is kept in the store (:class:`DriftAlarm`, once per
learn and detector, so the replay writes nothing twice), published as a ``model.drift``
event once it is written, and counted. A detector may have an action: ``snapshot`` (the
live model becomes a new version) or ``reset`` (the live model starts again from its spec,
river's ``clone()``: the same parameters, nothing learned; its metrics go on). A reset is
part of the live state's history, so the replay resets it again at the same learn; a
snapshot is made once, when the alarm is raised.

This module is an engine part: it imports neither the engine nor live.py.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from river import drift as river_drift
from river.drift import binary as river_binary

from riverbed.exceptions import InvalidInput, NotServable
from riverbed.receipts import Receipt, state_written
from riverbed.stores.base import DriftAlarm

if TYPE_CHECKING:
    from riverbed.config import Settings
    from riverbed.events import EventBus
    from riverbed.stores.base import LearnRecord, Store

__all__ = [
    "ACTIONS",
    "BINARY",
    "DETECTORS",
    "Detector",
    "DriftMonitor",
    "DriftState",
    "error_stream",
]

# name -> river class; the binary ones take 0/1 streams only.
DETECTORS: dict[str, type] = {
    "ADWIN": river_drift.ADWIN,
    "PageHinkley": river_drift.PageHinkley,
    "KSWIN": river_drift.KSWIN,
    "DDM": river_binary.DDM,
    "EDDM": river_binary.EDDM,
    "HDDMA": river_binary.HDDMA,
    "HDDMW": river_binary.HDDMW,
    "FHDDM": river_binary.FHDDM,
}
BINARY = frozenset({"DDM", "EDDM", "HDDMA", "HDDMW", "FHDDM"})
# Older river releases' names of the same classes.
_ALIASES = {"HDDM_A": "HDDMA", "HDDM_W": "HDDMW"}
# Parameters that are not JSON values (KSWIN's initial window).
_NOT_PARAMETERS = {"KSWIN": frozenset({"window"})}
ACTIONS = ("snapshot", "reset", "promote")
# The error stream of a task: a classifier's 0/1 mistakes, a regressor's absolute error.
_ERRORS = {"regression": "absolute error", "binary": "mistake", "multiclass": "mistake"}
_FIELDS = frozenset({"detector", "on", "params", "name", "action"})
_MAX_DETECTORS = 16
log = logging.getLogger(__name__)


def error_stream(task: str) -> str | None:
    """What a model of ``task`` feeds a detector on ``errors`` (None: it has no errors)."""
    return _ERRORS.get(task)


@dataclasses.dataclass
class Detector:
    """One configured detector of a model and its river object (in the checkpoint)."""

    name: str
    kind: str  # a key of DETECTORS
    on: str  # "errors" or "feature:NAME"
    params: dict[str, Any]
    action: str | None
    detector: Any
    n: int = 0  # values fed
    n_skipped: int = 0  # learns that had no value for it
    n_alarms: int = 0
    last_alarm: int | None = None  # the learn (seq) of the latest alarm
    # the values since the latest alarm (or the start): their count and sum, for the mean
    run_n: int = 0
    run_sum: float = 0.0

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "detector": self.kind,
            "on": self.on,
            "params": dict(self.params),
            "action": self.action,
        }

    def describe(self) -> dict[str, Any]:
        return {
            **self.config(),
            "n": self.n,
            "n_skipped": self.n_skipped,
            "n_alarms": self.n_alarms,
            "last_alarm": self.last_alarm,
            "statistics": statistics(self.detector),
        }


@dataclasses.dataclass
class Fired:
    """An alarm raised by a learn, waiting for that learn's write (not in the checkpoint)."""

    alarm: DriftAlarm
    action: str | None


class DriftState:
    """A model's detectors, fed one learn at a time (the caller holds the model's lock)."""

    def __init__(self, detectors: list[Detector], errors: str | None) -> None:
        self.detectors = detectors
        self.errors = errors  # the model's error stream (error_stream of its task)

    def feed(self, task: str, record: LearnRecord) -> list[Fired]:
        """Give every detector its value of ``record``; the alarms it raised."""
        fired: list[Fired] = []
        error: float | None = None
        if any(d.on == "errors" for d in self.detectors):
            error = _error(self.errors, record.target, record.prediction)
        features: Any = None
        for d in self.detectors:
            if d.on == "errors":
                value = error
            else:
                if features is None:
                    features = _features(task, record.features)
                value = _number(features.get(d.on[8:]) if isinstance(features, dict) else None)
            if value is None or (d.kind in BINARY and value not in (0, 1)):
                d.n_skipped += 1
                continue
            index = d.n
            d.detector.update(value)
            d.n += 1
            if not d.detector.drift_detected:
                d.run_n += 1
                d.run_sum += value
                continue
            mean = d.run_sum / d.run_n if d.run_n else None
            d.n_alarms += 1
            d.last_alarm = record.seq
            d.run_n, d.run_sum = 0, 0.0
            data = {
                "detector": d.kind,
                "on": d.on,
                "index": index,
                "value": value,
                "mean_before": mean,
                "statistics": statistics(d.detector),
                "action": d.action,
            }
            alarm = DriftAlarm(record.model, record.seq, d.name, record.created_at, data)
            fired.append(Fired(alarm, d.action))
        return fired


def statistics(detector: Any) -> dict[str, Any]:
    """What a river detector tells of its state, as numbers (ADWIN's estimation, width and
    variance; KSWIN's p-value; PageHinkley's mean; the warning of those that warn)."""
    out: dict[str, Any] = {}
    for attribute in ("estimation", "width", "variance", "p_value"):
        value = getattr(detector, attribute, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[attribute] = _finite(value)
    mean = getattr(detector, "_x_mean", None)  # PageHinkley's running mean
    if mean is not None and hasattr(mean, "get"):
        out["mean"] = _finite(mean.get())
    warning = getattr(detector, "warning_detected", None)
    if isinstance(warning, bool):
        out["warning"] = warning
    return out


def alarm_dict(alarm: DriftAlarm) -> dict[str, Any]:
    return {"position": alarm.seq, "name": alarm.detector, "time": alarm.time, **alarm.data}


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _features(task: str, sample: Any) -> Any:
    """The features of a stored sample (a recommender's and a bandit's hold them inside)."""
    if isinstance(sample, dict):
        if task == "recommendation":
            return sample.get("x")
        if task == "bandit":
            return sample.get("context")
        if task == "anomaly" and set(sample) == {"x", "value"}:
            return sample["x"]
    return sample


def _error(kind: str | None, y: Any, y_pred: Any) -> float | None:
    if y is None:
        return None
    if kind == "mistake":
        # Probabilities: the label predicted is the likeliest, as river's predict_one says;
        # none (a model that has learned nothing yet) is a mistake, as in river's metrics.
        if isinstance(y_pred, dict):
            y_pred = max(y_pred, key=y_pred.__getitem__) if y_pred else None
        return 0.0 if y_pred is not None and y_pred == y else 1.0
    if y_pred is None:
        return None
    try:
        error = abs(float(y) - float(y_pred))
    except (TypeError, ValueError):
        return None
    return error if math.isfinite(error) else None


# -- checking what callers send --------------------------------------------------------------


def check_detectors(
    detectors: Any,
    *,
    model: str,
    task: str,
    scores: bool,
    live_learning: bool,
    features: Sequence[str] | None,
) -> list[dict[str, Any]]:
    """The detectors a caller asks for, checked (nothing is made): a list of ``{"detector",
    "on", "params", "name", "action"}``. ``scores``: the model keeps the predictions its
    metrics score (it has metrics); ``live_learning``: it is a river model (actions need
    one); ``features``: the features its latest sample had, if it has seen one."""
    if not isinstance(detectors, list):
        raise InvalidInput(
            "detectors is a list of objects such as {'detector': 'ADWIN', 'on': 'errors'}",
            detail={"field": "detectors"},
        )
    if len(detectors) > _MAX_DETECTORS:
        raise InvalidInput(f"a model has at most {_MAX_DETECTORS} detectors")
    checked, names = [], set()
    for i, item in enumerate(detectors):
        where = f"detectors[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidInput(f"{where} must be an object", detail={"field": where})
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            raise InvalidInput(
                f"{where} has unknown field(s) {unknown}; allowed: {sorted(_FIELDS)}",
                detail={"field": where, "unknown": unknown},
            )
        kind = item.get("detector")
        kind = _ALIASES.get(kind, kind) if isinstance(kind, str) else kind
        if kind not in DETECTORS:
            raise InvalidInput(
                f"{where}: unknown detector {item.get('detector')!r}; the detectors are "
                f"{', '.join(DETECTORS)}",
                detail={"field": f"{where}.detector", "detectors": list(DETECTORS)},
            )
        on = item.get("on", "errors")
        _check_stream(where, kind, on, model=model, task=task, scores=scores, features=features)
        params = _check_params(where, kind, item.get("params") or {})
        action = item.get("action")
        if action is not None:
            if action not in ACTIONS:
                raise InvalidInput(
                    f"{where}: action is one of {', '.join(ACTIONS)} (or null), got {action!r}",
                    detail={"field": f"{where}.action"},
                )
            if not live_learning:
                raise NotServable(
                    f"{where}: model {model!r} is a batch model evaluated online; it has no "
                    f"live learning state to {action}"
                )
            from riverbed.challengers import TASKS

            if action == "promote" and task not in TASKS:
                raise InvalidInput(
                    f"{where}: a {task} model has no challengers to promote (they are for "
                    f"{', '.join(sorted(TASKS))} models)",
                    detail={"field": f"{where}.action"},
                )
        name = item.get("name")
        if name is None:
            name = kind if on == "errors" else f"{kind}:{on[8:]}"
        if not isinstance(name, str) or not name or len(name) > 128:
            raise InvalidInput(f"{where}: name must be a string of 1 to 128 characters")
        if name in names:
            raise InvalidInput(
                f"{where}: two detectors are named {name!r}; give each its own 'name'",
                detail={"field": f"{where}.name"},
            )
        names.add(name)
        checked.append(
            {"name": name, "detector": kind, "on": on, "params": params, "action": action}
        )
    return checked


def _check_stream(
    where: str,
    kind: str,
    on: Any,
    *,
    model: str,
    task: str,
    scores: bool,
    features: Sequence[str] | None,
) -> None:
    if on == "errors":
        errors = error_stream(task)
        if errors is None:
            raise InvalidInput(
                f"{where}: a {task} model has no error stream; put the detector on a feature "
                "(on: 'feature:NAME')",
                detail={"field": f"{where}.on"},
            )
        if not scores:
            raise InvalidInput(
                f"{where}: model {model!r} has no metrics, so it keeps no prediction to compare "
                "with the ground truth; put the detector on a feature",
                detail={"field": f"{where}.on"},
            )
        if kind in BINARY and errors != "mistake":
            raise InvalidInput(
                f"{where}: {kind} detects drift in 0/1 streams, and the errors of a {task} "
                "model are absolute errors: use ADWIN, PageHinkley or KSWIN",
                detail={"field": f"{where}.detector", "binary": sorted(BINARY)},
            )
        return
    if not isinstance(on, str) or not on.startswith("feature:") or len(on) == 8:
        raise InvalidInput(
            f"{where}: on is 'errors' or 'feature:NAME', got {on!r}",
            detail={"field": f"{where}.on"},
        )
    feature = on[8:]
    if features is not None and feature not in features:
        shown = ", ".join(repr(f) for f in list(features)[:20])
        raise InvalidInput(
            f"{where}: model {model!r} has no feature {feature!r} (its latest sample had "
            f"{shown or 'none'})",
            detail={"field": f"{where}.on", "feature": feature},
        )


def _check_params(where: str, kind: str, params: Any) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise InvalidInput(
            f"{where}: params must be an object", detail={"field": f"{where}.params"}
        )
    cls = DETECTORS[kind]
    allowed = [
        p
        for p in inspect.signature(cls).parameters
        if p not in _NOT_PARAMETERS.get(kind, frozenset())
    ]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"{where}: {kind} has no parameter(s) {unknown}; its parameters are "
            f"{', '.join(allowed)}",
            detail={"field": f"{where}.params", "unknown": unknown, "parameters": allowed},
        )
    for key, value in params.items():
        ok = (
            value is None
            or isinstance(value, bool | str)
            or (isinstance(value, int | float) and math.isfinite(value))
        )
        if not ok:
            raise InvalidInput(
                f"{where}: parameter {key!r} must be a number, a string, a boolean or null",
                detail={"field": f"{where}.params.{key}"},
            )
    try:
        cls(**params)
    except Exception as exc:
        raise InvalidInput(
            f"{where}: {kind}({', '.join(f'{k}={v!r}' for k, v in params.items())}) is refused "
            f"by river: {type(exc).__name__}: {exc}",
            detail={"field": f"{where}.params"},
        ) from None
    return dict(params)


def configure(
    checked: list[dict[str, Any]], old: DriftState | None, errors: str | None
) -> DriftState | None:
    """The state for ``checked`` detectors: one whose configuration is unchanged keeps its
    river object and counts (setting the same detectors again changes nothing)."""
    kept = {tuple(sorted(_key(d.config()).items())): d for d in (old.detectors if old else [])}
    detectors = []
    for config in checked:
        same = kept.get(tuple(sorted(_key(config).items())))
        if same is not None:
            detectors.append(same)
            continue
        detector = DETECTORS[config["detector"]](**config["params"])
        detectors.append(
            Detector(
                config["name"],
                config["detector"],
                config["on"],
                config["params"],
                config["action"],
                detector,
            )
        )
    return DriftState(detectors, errors) if detectors else None


def _key(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: repr(sorted(v.items())) if isinstance(v, dict) else v for k, v in config.items()}


# -- the engine's operations -----------------------------------------------------------------


class DriftMonitor:
    """The engine's drift operations (an :class:`~riverbed.engine.Engine` mixin)."""

    if TYPE_CHECKING:  # what the engine provides
        settings: Settings
        store: Store
        events: EventBus

        def _get_live(self, name: str) -> Any: ...
        def _checkpoint(self, live: Any) -> Future[None]: ...
        def _refuse_in_cluster(self, name: str, what: str) -> None: ...
        def signature(self, ref: str, version: int | None = None) -> dict[str, Any]: ...

        submit_snapshot: Callable[..., Receipt[dict[str, Any]]]  # registry/versions.py

        def _publisher(self, type: str, name: str, data: Any, failed: Any = None) -> Any: ...

    def set_drift(self, name: str, detectors: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Put drift detectors on a model (replacing those it had), each ``{"detector":
        "ADWIN", "on": "errors" | "feature:NAME", "params": {...}, "name": ..., "action":
        None | "snapshot" | "reset" | "promote"}``; a detector given as it was keeps its
        state. Durable once the model's checkpoint that holds them is written. Returns
        :meth:`drift`."""
        return self.submit_set_drift(name, detectors).wait()

    def submit_set_drift(
        self, name: str, detectors: list[Mapping[str, Any]]
    ) -> Receipt[dict[str, Any]]:
        live = self._get_live(name)
        task = live.task.name
        features = None
        if not live.task.learns_by_id_only:
            seen = self.signature(name)
            if seen["seen"] is not None:
                features = [f["name"] for f in seen["features"]]
        checked = check_detectors(
            detectors,
            model=name,
            task=task,
            scores=bool(live.metric.active),
            live_learning=not live.evaluated,
            features=features,
        )
        return self._write_drift(live, checked)

    def drift_off(self, name: str) -> dict[str, Any]:
        """Take every drift detector off a model (its alarms are kept)."""
        return self.submit_drift_off(name).wait()

    def submit_drift_off(self, name: str) -> Receipt[dict[str, Any]]:
        return self._write_drift(self._get_live(name), [])

    def _write_drift(self, live: Any, checked: list[dict[str, Any]]) -> Receipt[dict[str, Any]]:
        self._refuse_in_cluster(live.record.name, "change the drift detectors")
        with live.lock:
            live.drift = configure(checked, live.drift, error_stream(live.task.name))
            view = self._drift_view(live)
            written = self._checkpoint(live)
        return state_written(live, view, written)

    def drift(self, name: str) -> dict[str, Any]:
        """A model's detectors: their configuration, how many values each was fed (and how
        many learns had none for it), its alarms and its statistics now."""
        live = self._get_live(name)
        with live.lock:
            return self._drift_view(live)

    def drift_alarms(self, name: str, *, after: int = 0, limit: int = 1000) -> dict[str, Any]:
        """A model's alarms, oldest first: ``{"position", "name", "detector", "on",
        "index", "value", "mean_before", "statistics", "action", "time"}``; ``position`` is
        the learn (``n_learns``) that raised it, ``index`` where the value fell in the
        detector's own stream. ``after``: alarms after that position only."""
        self._get_live(name)
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise InvalidInput(f"after must be an integer of 0 or more, got {after!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput(f"limit must be an integer from 1 to 10000, got {limit!r}")
        alarms = self.store.drift_alarms(name, after=after, limit=limit)
        return {"model": name, "alarms": [alarm_dict(a) for a in alarms]}

    @staticmethod
    def _drift_view(live: Any) -> dict[str, Any]:
        state: DriftState | None = live.drift
        return {
            "model": live.record.name,
            "n_learns": live.n_learns,
            "errors": error_stream(live.task.name),
            "detectors": [d.describe() for d in state.detectors] if state else [],
        }

    # -- on the learn path (the caller holds the model's lock) ----------------------------

    def _drift_feed(self, live: Any, record: LearnRecord) -> None:
        """Feed a learned record to the model's detectors; a reset is done now (the next
        learn learns on the fresh model), the rest once the learn is queued."""
        fired = live.drift.feed(live.task.name, record)
        if not fired:
            return
        live.drift_fired.extend(fired)
        if any(f.action == "reset" for f in fired):
            reset_model(live)
        promote_on_alarm(live, fired)

    def _drift_flush(self, live: Any) -> None:
        """Queue the alarms raised by the learns just queued (after them), publish each as a
        ``model.drift`` event once written, and snapshot where a detector says so."""
        fired, live.drift_fired = live.drift_fired, []
        name = live.record.name
        for f in fired:
            data = alarm_dict(f.alarm)
            self.store.add_drift_alarm(f.alarm).add_done_callback(
                self._publisher("model.drift", name, data)
            )
            if f.action == "snapshot":
                try:
                    self.submit_snapshot(
                        name,
                        description=f"drift alarm of {f.alarm.detector} at learn {f.alarm.seq}",
                        tags={"drift": f.alarm.detector},
                    )
                except Exception:  # the learn is queued already: it must not fail now
                    log.exception("the snapshot on %r's drift alarm failed", name)


def promote_on_alarm(live: Any, fired: list[Fired]) -> None:
    """An alarm whose action is ``promote`` asks the model's challengers (riverbed.challengers)
    for their best at this learn: noted on the live model for the challengers' learn of the
    same record, which comes next."""
    if live.arena is not None:
        for f in fired:
            if f.action == "promote":
                live.drift_promote = f.alarm
                return


def reset_model(live: Any) -> None:
    """The live model starts again: river's ``clone()`` (the same parameters, nothing
    learned). Its metrics go on."""
    live.model = live.model.clone()
    live.task.bind(live.model)
