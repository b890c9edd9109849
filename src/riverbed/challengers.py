"""Challengers (shadow models) beside a champion, and promotion by hand or by rule.

A live model (the *champion*) may have challengers: other versions of the model, models
built from a declarative spec, or versions of another model of the same task. Together they
are the model's *arena* (:class:`Arena`), kept in the champion's live state, so the
checkpoint holds it and loading the model (the checkpoint, then the learns after it) feeds
the challengers those learns again.

- **predict**: the champion answers. The request path only appends the sample to the arena's
  queue (one ``deque.append``; a full queue of ``challenger_pending`` samples drops it and
  counts it); the challengers predict it off the request path -- on the engine's challengers
  thread, or on the learn path before any challenger learns, whichever comes first -- always
  with their state as it was when the champion predicted (no challenger learns before the
  queue is drained). The prediction waits, by prediction id, for its label.
- **learn / label**: once the champion has scored and learned a sample, every challenger
  scores its own prediction of that sample (the one made for the prediction id, else one
  made now, before learning: a *late* prediction, counted) with the champion's metrics,
  then learns it. Same samples, same order, same metrics: each challenger's metrics are
  river's progressive validation of that model alone on the model's labels.
- **promotion**: :meth:`Challengers.promote` swaps a challenger and the champion (the old
  champion stays on as a challenger, named ``v<its version>``) as one registry change: the
  new champion's state becomes a new version (source ``promotion``), ``name@restored``
  points at it, and a ``model.promoted`` event says who, why and with what numbers.
  :meth:`Challengers.rollback` undoes the last promotion the same way.
- **the rule** ``{"metric", "margin", "min_samples", "window"}``: after each label, each
  challenger that has scored at least ``min_samples`` labels beside the champion (since it
  joined, the rule was set, or the last promotion) is compared with the champion on
  ``metric`` over the last ``window`` of those labels (river's ``utils.Rolling``); one
  better by at least ``margin`` (relative to the champion's value) is promoted (the best, if
  several). Rule promotions happen inside the learn sequence, so a replay makes them again
  at the same label; their registry change is written once, when they happen.

This module is an engine part: it imports neither the engine nor live.py.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import re
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from river import utils

from riverbed.exceptions import ChallengerNotFound, InvalidInput, NotServable
from riverbed.metrics import Tracker, _kind, _parse, build_metric
from riverbed.tasks import MISSING, Task, get_task

if TYPE_CHECKING:
    from riverbed.stores.base import LearnRecord

__all__ = ["TASKS", "Arena", "Challenger", "check_rule"]

# The tasks whose models can be compared this way: one sample, one target, one prediction.
TASKS = frozenset({"regression", "binary", "multiclass"})
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_RULE_FIELDS = frozenset({"metric", "margin", "min_samples", "window"})
_MAX_CHALLENGERS = 8
_HISTORY = 1000  # history points kept per challenger (the champion's are in the store)
_DRAIN = 256  # predictions made per turn of the challengers thread
# In a waiting prediction's entry: the new champion's own prediction, after a promotion that
# came between the prediction and its label; and the old champion's marker, whose own
# prediction is the one stored (it answered the request).
_CHAMPION = "\x00champion"
_STORED = "\x00stored"
log = logging.getLogger(__name__)


def _scorable(y_pred: Any) -> bool:
    return y_pred is not None and not (isinstance(y_pred, dict) and not y_pred)


class _Rolling:
    """One metric over the last ``window`` labels, fed as the Tracker feeds it."""

    def __init__(self, metric: str, window: int) -> None:
        cls, kwargs = _parse(metric)
        self.roll: Any = utils.Rolling(cls, window_size=window, **kwargs)
        self.kind = _kind(build_metric(metric))

    def update(self, y: Any, y_pred: Any) -> None:
        if self.kind == "label-of-proba" and isinstance(y_pred, dict):
            y_pred = max(y_pred, key=y_pred.__getitem__)
        self.roll.update(y, y_pred)

    def get(self) -> float:
        return float(self.roll.get())


class _Pair:
    """A challenger against the champion on the rule's metric, over the same labels."""

    def __init__(self, rule: Mapping[str, Any]) -> None:
        self.champion = _Rolling(rule["metric"], rule["window"])
        self.challenger = _Rolling(rule["metric"], rule["window"])
        self.n = 0  # labels both scored since this pair began

    def update(self, y: Any, champion: Any, challenger: Any) -> None:
        if _scorable(champion) and _scorable(challenger):
            self.champion.update(y, champion)
            self.challenger.update(y, challenger)
            self.n += 1


@dataclasses.dataclass
class Challenger:
    """One challenger: its model, metrics and counts (its task object is not pickled)."""

    name: str
    source: dict[str, Any]
    model: Any
    metric: Tracker
    added_at: int  # the champion's n_learns when it joined
    task: Task | None = None
    n_scored: int = 0
    n_learns: int = 0
    n_late: int = 0  # labels it scored with a prediction made at the label, not before
    error: str | None = None  # why it stopped (it failed to predict or learn)
    history: collections.deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=_HISTORY)
    )
    pair: _Pair | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["task"] = None
        return state

    def describe(self, rule: Mapping[str, Any] | None) -> dict[str, Any]:
        out = {
            "name": self.name,
            "source": dict(self.source),
            "added_at": self.added_at,
            "n_learns": self.n_learns,
            "n_scored": self.n_scored,
            "n_late": self.n_late,
            "error": self.error,
            **self.metric.values(),
        }
        if rule is not None and self.pair is not None:
            out["rule"] = pair_numbers(self.pair, rule)
        return out


def pair_numbers(pair: _Pair, rule: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's numbers for one challenger now: both values over the window, and the
    challenger's improvement relative to the champion (positive: better)."""
    if not pair.n:
        return {"n": 0, "champion": None, "challenger": None, "improvement": None}
    champion, challenger = pair.champion.get(), pair.challenger.get()
    return {
        "n": pair.n,
        "champion": _finite(champion),
        "challenger": _finite(challenger),
        "improvement": _finite(improvement(rule["metric"], champion, challenger)),
    }


def improvement(metric: str, champion: float, challenger: float) -> float | None:
    """How much better ``challenger`` is than ``champion`` on ``metric``, relative to the
    champion's value (0.02: 2% better); None when the champion's value is 0 or not finite."""
    if not (math.isfinite(champion) and math.isfinite(challenger)) or champion == 0:
        return None
    better = challenger - champion if _bigger_is_better(metric) else champion - challenger
    return better / abs(champion)


def _bigger_is_better(metric: str) -> bool:
    return bool(getattr(build_metric(metric), "bigger_is_better", True))


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value + 0.0 if math.isfinite(value) else None


class Arena:
    """A champion's challengers, their waiting predictions, the rule and the promotions.
    Every field is guarded by ``lock``, taken after the model's own lock."""

    def __init__(self, task: str, task_options: Mapping[str, Any], max_pending: int) -> None:
        self.task_name = task
        self.task_options = dict(task_options)
        self.max_pending = max_pending
        self.challengers: dict[str, Challenger] = {}
        self.rule: dict[str, Any] | None = None
        self.promotions: list[dict[str, Any]] = []  # oldest first
        self.n_dropped = 0  # predictions the queue had no room for
        # The champion's samples not predicted by the challengers yet: (id, sample).
        self.queue: collections.deque[tuple[str, Any]] = collections.deque()
        # The challengers' predictions waiting for their label, by prediction id.
        self.pending: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        # Rule promotions made in the live state whose registry change is not queued yet.
        self.fired: list[dict[str, Any]] = []
        self.lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        self.drain()  # the caller holds the lock
        state = dict(self.__dict__)
        del state["lock"], state["queue"], state["fired"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()
        self.queue = collections.deque()
        self.fired = []
        for c in self.challengers.values():
            c.task = self.new_task(c.model)

    def keep_fired(self, old: Arena) -> None:
        """This arena is ``old`` loaded back from a checkpoint (which leaves ``fired`` out):
        the promotions ``old`` made whose registry change is not written yet are still to
        be written, as this arena's copies of them (the caller holds the model's lock)."""
        where = {id(p): i for i, p in enumerate(old.promotions)}
        self.fired = [self.promotions[where[id(p)]] for p in old.fired]

    def new_task(self, model: Any) -> Task:
        task = get_task(self.task_name, self.task_options)
        task.bind(model)
        return task

    def active(self) -> Iterator[Challenger]:
        return (c for c in self.challengers.values() if c.error is None)

    # -- the request path ----------------------------------------------------------------

    def offer(self, prediction_id: str, sample: Any) -> None:
        """A champion's prediction for the challengers to make too (the request path: one
        append, never a wait)."""
        if len(self.queue) < self.max_pending:
            self.queue.append((prediction_id, sample))
        else:
            self.n_dropped += 1

    # -- off the request path (the caller holds the lock) ---------------------------------

    def drain(self, limit: int | None = None) -> int:
        """Make the challengers' predictions of the queued samples (at most ``limit``)."""
        n = 0
        queue, pending = self.queue, self.pending
        while queue and (limit is None or n < limit):
            prediction_id, sample = queue.popleft()
            n += 1
            made = {}
            for c in self.active():
                assert c.task is not None
                try:
                    made[c.name] = c.task.predict(c.model, sample, c.metric)
                except Exception:  # it predicts again at the label, and stops if it fails
                    continue
            pending[prediction_id] = made
            pending.move_to_end(prediction_id)
            while len(pending) > self.max_pending:
                pending.popitem(last=False)
        return n

    def champion_prediction(self, prediction_id: str, stored: Any) -> Any:
        """The prediction the champion scores for the label of ``prediction_id``: its own,
        made as a challenger, if a promotion came between the prediction and its label;
        else the stored one (the champion's answer)."""
        self.drain()
        made = self.pending.get(prediction_id)
        if made is None or made.get(_CHAMPION) is None:
            return stored
        return made[_CHAMPION]

    def learn(
        self, record: LearnRecord, champion_prediction: Any, stored: Any = None
    ) -> dict[str, Any] | None:
        """Every challenger scores its prediction of ``record`` and learns it, after the
        champion did; returns the promotion the rule calls for, if any:
        ``{"challenger", "numbers"}``. ``stored``: a function giving the stored prediction of
        the record's id (what the champion of the time answered)."""
        self.drain()
        made = self.pending.pop(record.prediction_id, None) if record.prediction_id else None
        x, y, t = record.features, record.target, record.created_at
        for c in self.active():
            task = c.task
            assert task is not None
            try:
                if made is not None and made.get(c.name) == _STORED and stored is not None:
                    y_pred = stored()
                elif made is not None and c.name in made and made[c.name] != _STORED:
                    y_pred = made[c.name]
                else:
                    y_pred = task.learn_prediction(c.model, x, c.metric, MISSING)
                    if record.prediction_id is not None:
                        c.n_late += 1
                c.n_scored += task.score(c.metric, c.model, x, y, y_pred, t)
                task.learn(c.model, x, y, y_pred)
            except Exception as exc:
                c.error = f"at learn {record.seq}: {type(exc).__name__}: {exc}; it learns no more"
                continue
            c.n_learns += 1
            if c.pair is not None:
                c.pair.update(y, champion_prediction, y_pred)
            if c.metric.point_due(t):
                c.history.append({"seq": record.seq, "time": t, **c.metric.values()})
        return self.judge()

    def judge(self, *, margin: float | None = None) -> dict[str, Any] | None:
        """The challenger the rule promotes now, with its numbers (None: none). ``margin``:
        instead of the rule's (a drift alarm's promotion takes any improvement, 0)."""
        rule = self.rule
        if rule is None:
            return None
        if margin is None:
            margin = rule["margin"]
        best: tuple[float, Challenger] | None = None
        for c in self.active():
            pair = c.pair
            if pair is None or pair.n < rule["min_samples"]:
                continue
            gain = improvement(rule["metric"], pair.champion.get(), pair.challenger.get())
            if gain is None or gain <= 0 or gain < margin:
                continue
            if best is None or gain > best[0]:
                best = (gain, c)
        if best is None:
            return None
        c = best[1]
        assert c.pair is not None
        return {"challenger": c.name, "numbers": {**rule, **pair_numbers(c.pair, rule)}}

    def reset_pairs(self) -> None:
        """Every challenger starts again beside the champion on the rule's metric."""
        for c in self.challengers.values():
            c.pair = _Pair(self.rule) if self.rule is not None else None


# -- checking what callers send ------------------------------------------------------------


def check_name(name: Any, taken: Mapping[str, Any]) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid challenger name {name!r}: 1 to 64 letters, digits, '_', '-' or '.', "
            "starting with a letter",
            detail={"field": "name"},
        )
    if name in taken:
        raise InvalidInput(
            f"the model has a challenger named {name!r} already", detail={"field": "name"}
        )
    if len(taken) >= _MAX_CHALLENGERS:
        raise InvalidInput(f"a model has at most {_MAX_CHALLENGERS} challengers")
    return name


def check_task(model: str, task: str | None, flavor: str) -> None:
    """Refuse a model that cannot have challengers (``task`` None: any river model)."""
    if flavor != "river":
        raise NotServable(f"model {model!r} is a batch model: it has no live champion to challenge")
    if task is not None and task not in TASKS:
        raise InvalidInput(
            f"a {task} model cannot have challengers (they compare one prediction a label: "
            f"{', '.join(sorted(TASKS))})",
            detail={"task": task, "tasks": sorted(TASKS)},
        )


def check_rule(rule: Any, metrics: list[str]) -> dict[str, Any]:
    """A promotion rule, checked against the model's metric names."""
    if not isinstance(rule, Mapping):
        raise InvalidInput(
            "a promotion rule is an object {metric, margin, min_samples, window}",
            detail={"field": "rule"},
        )
    unknown = sorted(set(rule) - _RULE_FIELDS)
    missing = sorted({"metric", "min_samples", "window"} - set(rule))
    if unknown or missing:
        wrong = [f"unknown field(s) {', '.join(unknown)}"] if unknown else []
        wrong += [f"no {', '.join(missing)}"] if missing else []
        raise InvalidInput(
            f"the promotion rule has {' and '.join(wrong)}; its fields are "
            f"{', '.join(sorted(_RULE_FIELDS))} (margin defaults to 0)",
            detail={"unknown": unknown, "missing": missing},
        )
    metric = rule["metric"]
    if metric not in metrics:
        raise InvalidInput(
            f"the rule's metric {metric!r} is not one of the model's metrics "
            f"({', '.join(metrics) or 'none'}): the challengers are scored on those",
            detail={"field": "metric", "metrics": list(metrics)},
        )
    if not hasattr(build_metric(metric), "revert"):
        raise InvalidInput(
            f"{metric} cannot be measured over a window (river cannot revert it); choose "
            "another of the model's metrics",
            detail={"field": "metric"},
        )
    margin = rule.get("margin", 0.0)
    if (
        isinstance(margin, bool)
        or not isinstance(margin, int | float)
        or not math.isfinite(margin)
        or not 0 <= margin < 10
    ):
        raise InvalidInput(
            f"margin is a relative improvement from 0 (0.02: 2% better), got {margin!r}",
            detail={"field": "margin"},
        )
    checked: dict[str, Any] = {"metric": metric, "margin": float(margin)}
    for field, top in (("min_samples", 10_000_000), ("window", 1_000_000)):
        value = rule[field]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise InvalidInput(
                f"{field} must be an integer from 1 to {top}, got {value!r}",
                detail={"field": field},
            )
        checked[field] = value
    return checked


def unknown(model: str, name: Any, arena: Arena | None) -> ChallengerNotFound:
    names = sorted(arena.challengers) if arena is not None else []
    return ChallengerNotFound(
        f"model {model!r} has no challenger {name!r}"
        + (f" (its challengers: {', '.join(names)})" if names else " (it has none)"),
        detail={"challengers": names},
    )


# -- the engine's operations -----------------------------------------------------------------


class Challengers:
    """The engine's challenger and promotion operations (an :class:`~riverbed.engine.Engine`
    mixin)."""

    if TYPE_CHECKING:  # what the engine provides
        from concurrent.futures import Future

        from riverbed.config import Settings
        from riverbed.events import EventBus
        from riverbed.stores.base import ModelRecord, Store, VersionRecord

        settings: Settings
        store: Store
        events: EventBus
        _allowed: tuple[str, ...]
        _live: dict[str, Any]
        _lock: threading.RLock
        _stop: threading.Event

        def _get_live(self, name: str) -> Any: ...
        def _checkpoint(self, live: Any) -> Future[None]: ...
        def _refuse_in_cluster(self, name: str, what: str) -> None: ...
        def _flavor(self, name: str) -> str: ...
        def _model_record(self, name: str) -> ModelRecord: ...
        def _object_of(self, record: VersionRecord) -> Any: ...
        def _replace_model(self, live: Any) -> Any: ...
        def _find_prediction(self, prediction_id: str) -> Any: ...
        def _check_text(self, field: str, value: Any) -> str: ...
        def _add_version(self, name: str, record: VersionRecord, new_model: Any) -> Any: ...

        _live_version: Any

        def resolve(self, ref: str, version: int | None = None) -> dict[str, Any]: ...
        def _publisher(self, type: str, name: str, data: Any, failed: Any = None) -> Any: ...
        @staticmethod
        def _task_options(options: Mapping[str, Any]) -> dict[str, Any]: ...
        @staticmethod
        def _tracker(task: Task, names: list[str], options: Mapping[str, Any]) -> Tracker: ...

    # -- challengers ---------------------------------------------------------------------

    def add_challenger(
        self,
        name: str,
        challenger: str | None = None,
        *,
        version: int | str | None = None,
        spec: Any = None,
        ref: str | None = None,
        model: Any = None,
    ) -> dict[str, Any]:
        """Put a challenger beside model ``name``'s champion, named ``challenger`` (default:
        ``v<N>`` for a version, the class name for a spec or an object). Exactly one source:
        ``version`` (a number or an alias of this model), ``spec`` (a declarative spec),
        ``ref`` (``other@3``: a version of another model of the same task) or ``model`` (an
        object, in-process). It starts from that state and learns every label from now on.
        Durable once the checkpoint that holds it is written. Returns :meth:`challengers`."""
        return self.submit_add_challenger(
            name, challenger, version=version, spec=spec, ref=ref, model=model
        ).wait()

    def submit_add_challenger(
        self,
        name: str,
        challenger: str | None = None,
        *,
        version: int | str | None = None,
        spec: Any = None,
        ref: str | None = None,
        model: Any = None,
    ) -> Any:
        from riverbed import serialization, specs
        from riverbed.exceptions import InvalidSpec

        live = self._champion(name)
        self._refuse_in_cluster(live.record.name, "add a challenger")
        given = [k for k, v in {"version": version, "spec": spec, "ref": ref}.items() if v]
        given += ["model"] if model is not None else []
        if len(given) != 1:
            raise InvalidInput(
                "give one source of the challenger: version, spec or ref (or, in-process, a "
                f"model object); got {given or 'none'}",
                detail={"given": given},
            )
        source: dict[str, Any]
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int | str):
                raise InvalidInput(f"version is a number or an alias, got {version!r}")
            resolved = self.resolve(f"{name}@{version}")
            obj, source = self._version_object(name, resolved["version"]), {}
            source = {"version": resolved["version"]}
            default = f"v{resolved['version']}"
        elif ref is not None:
            if not isinstance(ref, str):
                raise InvalidInput(f"ref is MODEL or MODEL@VERSION, got {ref!r}")
            resolved = self.resolve(ref)
            other = self._model_record(resolved["model"])
            if other.flavor != "river" or other.task != live.record.task:
                raise InvalidInput(
                    f"task mismatch: {ref!r} is a {other.task} model ({other.flavor}), and "
                    f"{name!r} a {live.record.task} model (river): a challenger serves the "
                    "champion's task",
                    detail={"task": live.record.task, "challenger_task": other.task},
                )
            obj = self._version_object(resolved["model"], resolved["version"])
            source = {"ref": f"{resolved['model']}@{resolved['version']}"}
            default = f"{resolved['model']}-v{resolved['version']}"
        elif spec is not None:
            obj, source = specs.build(spec, allowed=self._allowed), {"spec": spec}
            default = type(obj).__name__
        else:
            obj = serialization.live_copy(model)
            source = {"object": type(model).__name__}
            default = type(model).__name__
        try:
            live.task.check_model(obj)
        except InvalidSpec:
            raise InvalidInput(
                f"task mismatch: a {type(obj).__name__} cannot serve the {live.record.task} "
                f"task of model {name!r}",
                detail={"task": live.record.task, "challenger": type(obj).__name__},
            ) from None
        with live.lock:
            arena = self._arena_of(live)
            taken = arena.challengers
            if challenger is None:
                challenger, n = default, 2
                while challenger in taken:
                    challenger, n = f"{default}-{n}", n + 1
            challenger = check_name(challenger, taken)
            tracker = self._tracker(live.task, list(live.metric.names), live.record.options)
            with arena.lock:
                arena.drain()  # the samples queued before it joined are not its own
                c = Challenger(challenger, source, obj, tracker, live.n_learns)
                c.task = arena.new_task(obj)
                c.pair = _Pair(arena.rule) if arena.rule is not None else None
                arena.challengers[challenger] = c
            live.arena = arena
        self._start_challengers()
        return self._arena_write(live)

    def _version_object(self, name: str, number: int) -> Any:
        from riverbed import serialization

        if self._flavor(name) != "river":
            raise InvalidInput(f"model {name!r} is a batch model: its versions cannot learn")
        record = self.store.get_version(name, number)
        if record is None:  # pragma: no cover - resolve found it
            raise InvalidInput(f"model {name!r} has no version {number}")
        return serialization.live_copy(self._object_of(record))

    def remove_challenger(self, name: str, challenger: str) -> dict[str, Any]:
        """Take a challenger away (it is forgotten, its metrics with it)."""
        return self.submit_remove_challenger(name, challenger).wait()

    def submit_remove_challenger(self, name: str, challenger: str) -> Any:
        live = self._champion(name)
        self._refuse_in_cluster(live.record.name, "remove a challenger")
        with live.lock:
            arena = live.arena
            if arena is None or challenger not in arena.challengers:
                raise unknown(name, challenger, arena)
            with arena.lock:
                del arena.challengers[challenger]
        return self._arena_write(live)

    def challengers(self, name: str) -> dict[str, Any]:
        """The champion and its challengers side by side: each one's progressive metrics
        over the same labels, counts, the rule's numbers, and the promotions so far."""
        live = self._champion(name, reading=True)
        self._flush_promotions(live, wait=True)
        with live.lock:
            return self._arena_view(live)

    def challenger(self, name: str, challenger: str, *, history: int = 1000) -> dict[str, Any]:
        """One challenger: as in :meth:`challengers`, with its metric history (the newest
        ``history`` points, oldest first)."""
        if isinstance(history, bool) or not isinstance(history, int) or not 0 <= history <= 1000:
            raise InvalidInput(f"history must be an integer from 0 to 1000, got {history!r}")
        live = self._champion(name)
        with live.lock:
            arena = live.arena
            if arena is None or challenger not in arena.challengers:
                raise unknown(name, challenger, arena)
            with arena.lock:
                c = arena.challengers[challenger]
                points = list(c.history)[-history:] if history else []
                return {"model": name, **c.describe(arena.rule), "history": points}

    # -- the rule ------------------------------------------------------------------------

    def set_promotion_rule(self, name: str, rule: Mapping[str, Any]) -> dict[str, Any]:
        """Promote a challenger by itself when it is better than the champion: ``{"metric":
        "LogLoss", "margin": 0.02, "min_samples": 5000, "window": 5000}`` (2% better on
        LogLoss over the last 5,000 labels, once it has scored 5,000 of them). Every
        challenger starts counting again. Returns :meth:`promotion_rule`."""
        return self.submit_set_promotion_rule(name, rule).wait()

    def submit_set_promotion_rule(self, name: str, rule: Mapping[str, Any]) -> Any:
        live = self._champion(name)
        self._refuse_in_cluster(live.record.name, "set a promotion rule")
        with live.lock:
            checked = check_rule(rule, list(live.metric.names))
            arena = self._arena_of(live)
            with arena.lock:
                arena.rule = checked
                arena.reset_pairs()
            live.arena = arena
        return self._arena_write(live, view=self._rule_view)

    def promotion_rule(self, name: str) -> dict[str, Any]:
        """A model's promotion rule (``rule`` None: none) and each challenger's numbers."""
        live = self._champion(name)
        with live.lock:
            return self._rule_view(live)

    def promotion_rule_off(self, name: str) -> dict[str, Any]:
        """No more promotions by rule (by hand still)."""
        return self.submit_promotion_rule_off(name).wait()

    def submit_promotion_rule_off(self, name: str) -> Any:
        live = self._champion(name)
        self._refuse_in_cluster(live.record.name, "take a promotion rule off")
        with live.lock:
            if live.arena is not None:
                with live.arena.lock:
                    live.arena.rule = None
                    live.arena.reset_pairs()
        return self._arena_write(live, view=self._rule_view)

    # -- promotion -----------------------------------------------------------------------

    def promote(self, name: str, challenger: str, *, by: str | None = None) -> dict[str, Any]:
        """Make a challenger the champion, and the champion a challenger (``v<version>``),
        as one registry change: the new champion's state becomes a new version (source
        ``promotion``), ``name@restored`` points at it, and ``model.promoted`` is published.
        Returns the promotion."""
        return self.submit_promote(name, challenger, by=by).wait()

    def submit_promote(self, name: str, challenger: str, *, by: str | None = None) -> Any:
        live = self._champion(name)
        self._refuse_in_cluster(live.record.name, "promote a challenger")
        by = self._check_text("by", by or "")
        with self._lock, live.lock:
            arena = live.arena
            if arena is None or challenger not in arena.challengers:
                raise unknown(name, challenger, arena)
            with arena.lock:
                arena.drain()
                c = arena.challengers[challenger]
                if c.error is not None:
                    raise NotServable(
                        f"challenger {challenger!r} stopped ({c.error}): it cannot be promoted",
                        detail={"error": c.error},
                    )
                promotion = self._swap(live, challenger, "manual", None, None)
            return self._write_promotion(live, promotion, by=by, checkpoint=True)

    def rollback(self, name: str, *, by: str | None = None) -> dict[str, Any]:
        """Undo the last promotion not undone yet (by hand or by rule): the champion it
        replaced, which stayed on as a challenger, is the champion again (as one registry
        change, as :meth:`promote` makes one). Returns the promotion that undoes it."""
        return self.submit_rollback(name, by=by).wait()

    def submit_rollback(self, name: str, *, by: str | None = None) -> Any:
        from riverbed.exceptions import Conflict

        live = self._champion(name)
        self._refuse_in_cluster(live.record.name, "roll a promotion back")
        by = self._check_text("by", by or "")
        with self._lock, live.lock:
            arena = live.arena
            undone = None
            for p in reversed(arena.promotions if arena is not None else []):
                if p["reason"] != "rollback" and not p["rolled_back"]:
                    undone = p
                    break
            if arena is None or undone is None:
                raise Conflict(f"model {name!r} has no promotion to roll back")
            back = undone["demoted"]
            if back not in arena.challengers:
                raise Conflict(
                    f"the champion that promotion replaced ({back!r}) is no longer a "
                    "challenger: nothing to roll back to",
                    detail={"challenger": back},
                )
            with arena.lock:
                arena.drain()
                promotion = self._swap(live, back, "rollback", None, undone["challenger"])
                undone["rolled_back"] = True
                promotion["undoes"] = undone["version"]
            return self._write_promotion(live, promotion, by=by, checkpoint=True)

    def _swap(
        self,
        live: Any,
        challenger: str,
        reason: str,
        numbers: dict[str, Any] | None,
        demoted: str | None,
        *,
        at: float | None = None,
    ) -> dict[str, Any]:
        """The state change of a promotion (the caller holds both locks)."""
        import time

        arena = live.arena
        assert arena is not None
        c = arena.challengers.pop(challenger)
        if demoted is None or demoted in arena.challengers:
            base = demoted or f"v{live.version}"
            demoted, n = base, 2
            while demoted in arena.challengers:
                demoted, n = f"{base}-{n}", n + 1
        old = Challenger(
            demoted,
            {"champion": live.version},
            live.model,
            live.metric,
            live.n_learns,
            task=live.task,
            n_scored=live.n_scored,
            n_learns=live.n_learns,
        )
        assert c.task is not None
        live.model, live.metric, live.task, live.n_scored = c.model, c.metric, c.task, c.n_scored
        arena.challengers[demoted] = old
        arena.reset_pairs()
        # The predictions waiting for their label were answered by the old champion: each
        # model scores its own when the label comes.
        for made in arena.pending.values():
            own = made.pop(challenger, None)
            previous = made.pop(_CHAMPION, None)
            made[_CHAMPION] = own
            made[demoted] = previous if previous is not None else _STORED
        promotion = {
            "n_learns": live.n_learns,
            "challenger": challenger,
            "demoted": demoted,
            "reason": reason,
            "numbers": numbers,
            "previous_version": live.version,
            "version": None,
            "time": time.time() if at is None else at,
            "rolled_back": False,
        }
        arena.promotions.append(promotion)
        return promotion

    def _write_promotion(
        self, live: Any, promotion: dict[str, Any], *, by: str, checkpoint: bool
    ) -> Any:
        """The registry change of a promotion made in the live state (the caller holds the
        engine's lock, then the model's): the new champion's state as a new version,
        ``name@restored`` moved to it, the checkpoint (for one by hand); ``model.promoted``
        once all of it is written."""
        import time

        from riverbed.receipts import Receipt
        from riverbed.stores.futures import all_done

        name = live.record.name
        record = self._live_version(
            live,
            source="promotion",
            created_by=by,
            description=f"{promotion['reason']} promotion of {promotion['challenger']!r} "
            f"at learn {promotion['n_learns']}",
            extra={
                "promotion": {
                    k: promotion[k]
                    for k in ("n_learns", "challenger", "demoted", "reason", "numbers")
                }
            },
        )
        added = self._add_version(name, record, None)
        promotion["version"] = live.version = record.version
        previous = {a.alias: a.version for a in self.store.list_aliases(name)}.get("restored")
        moved = self.store.set_alias(name, "restored", record.version, at=time.time(), by=by)
        moved.add_done_callback(
            self._publisher(
                "alias.moved",
                name,
                {"alias": "restored", "version": record.version, "previous": previous},
            )
        )
        writes = [added.committed, moved]
        if checkpoint:
            writes.append(self._checkpoint(live))
        future = all_done(writes)
        data_out = {k: v for k, v in promotion.items() if k != "rolled_back"}

        def failed() -> None:  # rebuilt from the checkpoint and log written before
            live.stale = live.unsettled = True

        future.add_done_callback(
            self._publisher("model.promoted", name, data_out, failed if checkpoint else None)
        )
        return Receipt({"model": name, **data_out}, future, failed if checkpoint else None)

    # -- on the learn path (the caller holds the model's lock) ----------------------------

    def _arena_learn(self, live: Any, record: LearnRecord, *, replay: bool = False) -> None:
        """The challengers learn a record the champion learned; a promotion the rule calls
        for is made in the live state now, its registry change off the learn path."""
        arena = live.arena
        assert arena is not None
        stored = None
        if record.prediction_id is not None:
            pid = record.prediction_id

            def stored() -> Any:
                found = self._find_prediction(pid)
                return found.prediction if found is not None else None

        alarm, live.drift_promote = live.drift_promote, None
        with arena.lock:
            decision, reason = arena.learn(record, record.prediction, stored), "rule"
            if decision is None and alarm is not None:
                decision, reason = arena.judge(margin=0.0), "drift"
                if decision is not None:
                    decision["numbers"]["alarm"] = {
                        "detector": alarm.detector,
                        "seq": alarm.seq,
                        "value": alarm.data.get("value"),
                    }
            if decision is None:
                return
            promotion = self._swap(
                live,
                decision["challenger"],
                reason,
                decision["numbers"],
                None,
                at=record.created_at,
            )
            found = self._promotion_version(live, record.seq) if replay else None
            if found is not None:
                promotion["version"] = live.version = found
            else:
                arena.fired.append(promotion)

    def _promotion_version(self, live: Any, seq: int) -> int | None:
        """The version a rule's or an alarm's promotion at learn ``seq`` wrote (a replay
        finds it)."""
        for v in self.store.list_versions(live.record.name):
            made = v.metadata.get("promotion") if v.source == "promotion" else None
            if not isinstance(made, dict) or made.get("reason") not in ("rule", "drift"):
                continue
            if made.get("n_learns") == seq:
                return v.version
        return None

    def _flush_promotions(self, live: Any, *, wait: bool = False) -> None:
        """Write the registry changes of the rule promotions made since the last flush
        (``wait``: and wait until they are written)."""
        arena = live.arena
        if arena is None or not arena.fired or self.store.read_only:
            return  # a read-only engine shows the promotion its replay made, writes nothing
        with self._lock, live.lock:
            if live.arena is not arena:  # rebuilt meanwhile: its replay fires them again
                return
            fired, arena.fired = arena.fired, []
            receipts = [
                self._write_promotion(live, promotion, by=promotion["reason"], checkpoint=False)
                for promotion in fired
            ]
        if wait:
            for receipt in receipts:
                receipt.wait()

    def _arena_write(self, live: Any, view: Any = None) -> Any:
        from riverbed.receipts import Receipt

        with live.lock:
            shown = (view or self._arena_view)(live)
            written = self._checkpoint(live)

        def failed() -> None:  # rebuilt from the checkpoint and log written before
            live.stale = live.unsettled = True

        def settled(f: Any) -> None:
            if f.exception() is not None:
                failed()

        written.add_done_callback(settled)
        return Receipt(shown, written, failed)

    def _arena_of(self, live: Any) -> Arena:
        """The model's arena, or a new one (set on the live model by the caller)."""
        if live.arena is not None:
            return live.arena
        options = self._task_options(live.record.options)
        return Arena(live.record.task, options, self.settings.challenger_pending)

    def _champion(self, name: str, *, reading: bool = False) -> Any:
        """The live model of a model that can have challengers (``reading``: of any river
        model, whose list of challengers is then empty)."""
        if not isinstance(name, str) or "@" in name:
            raise InvalidInput("challengers belong to a model name (its live champion)")
        task = self._model_record(name).task
        check_task(name, None if reading else task, self._flavor(name))
        return self._get_live(name)

    def _arena_view(self, live: Any) -> dict[str, Any]:
        arena = live.arena
        champion = {
            "version": live.version,
            "n_learns": live.n_learns,
            "n_scored": live.n_scored,
            **live.metric.values(),
        }
        out: dict[str, Any] = {
            "model": live.record.name,
            "n_learns": live.n_learns,
            "champion": champion,
            "challengers": [],
            "rule": None,
            "promotions": [],
            "n_dropped": 0,
        }
        if arena is None:
            return out
        with arena.lock:
            out["challengers"] = [c.describe(arena.rule) for c in arena.challengers.values()]
            out["rule"] = dict(arena.rule) if arena.rule else None
            out["promotions"] = [dict(p) for p in arena.promotions[-100:]]
            out["n_dropped"] = arena.n_dropped
        return out

    def _rule_view(self, live: Any) -> dict[str, Any]:
        arena = live.arena
        out: dict[str, Any] = {"model": live.record.name, "rule": None, "challengers": {}}
        if arena is None or arena.rule is None:
            return out
        with arena.lock:
            out["rule"] = dict(arena.rule)
            out["challengers"] = {
                c.name: pair_numbers(c.pair, arena.rule)
                for c in arena.challengers.values()
                if c.pair is not None
            }
        return out

    def _challenger_gauges(self, name: str) -> tuple[list[tuple[str, str, float]], dict[str, int]]:
        """GET /metrics' numbers: (challenger, metric, value) and promotions by reason."""
        live = self._live.get(name)
        arena = live.arena if live is not None else None
        if arena is None:
            return [], {}
        with arena.lock:
            values = [
                (c.name, metric, value)
                for c in arena.challengers.values()
                for metric, value in c.metric.values()["metrics"].items()
                if value is not None
            ]
            counts: dict[str, int] = {}
            for p in arena.promotions:
                counts[p["reason"]] = counts.get(p["reason"], 0) + 1
        return values, counts

    # -- the challengers thread ----------------------------------------------------------

    def _start_challengers(self) -> None:
        with self._lock:
            if getattr(self, "_challengers_thread", None) is not None or self._stop.is_set():
                return
            thread = threading.Thread(
                target=self._challengers_loop, name="riverbed-challengers", daemon=True
            )
            self._challengers_thread: threading.Thread | None = thread
            thread.start()

    def _challengers_loop(self) -> None:
        while not self._stop.wait(0.02):
            for live in list(self._live.values()):
                arena = live.arena
                if arena is None:
                    continue
                try:
                    if arena.queue:
                        with arena.lock:
                            arena.drain(_DRAIN)
                    if arena.fired:
                        self._flush_promotions(live)
                except Exception:  # the next turn tries again; the learn path drains too
                    log.exception("the challengers of %r failed", live.record.name)

    def _close_challengers(self) -> None:
        """Stop the challengers thread (the engine's stop event is set) and write what the
        rule promoted since its last turn."""
        thread = getattr(self, "_challengers_thread", None)
        if thread is not None:
            thread.join()
        for live in list(self._live.values()):
            try:
                self._flush_promotions(live)
            except Exception:
                log.exception("writing the promotions of %r failed", live.record.name)
