"""Progressive metrics of a live model: running values, rolling windows and history points.

This module is pure (no I/O, no locks, no clock reads): the engine calls it under the model's
writer lock with the time of each learn, and stores the history points it asks for.

A :class:`Tracker` holds, for one model:

- the **running** metrics, updated with every scored sample since the model was created
  (progressive validation: the prediction made before learning, scored against the truth);
- **windows**: the same metrics over the last ``size`` samples, or the last ``seconds``
  seconds (river's ``utils.Rolling`` / ``utils.TimeRolling``), for the metrics that can be
  reverted;
- the rule for **history points**: a snapshot every ``history_every`` scored samples, or
  when ``history_seconds`` have passed since the last point, so that a chart can be drawn
  after a restart.

Metrics are named as river names them: ``"MAE"``, ``"ROCAUC"``, a wrapper around another
metric such as ``"MicroAverage(F1)"`` (from ``river.metrics.multioutput``), or a running
statistic of the target (``"Mean"``, ``"Sum"`` from ``river.stats``, for bandit rewards).
An empty list turns metrics off: nothing is scored and learning skips the prediction.

>>> tracker = Tracker(["MAE"], windows=[Window(size=2)])
>>> for y, y_pred in [(1.0, 2.0), (3.0, 3.0), (5.0, 4.0)]:
...     _ = tracker.update(y, y_pred, t=0.0)
>>> tracker.values()["metrics"], tracker.values()["windows"][0]["metrics"]
({'MAE': 0.666...}, {'MAE': 0.5})
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from river import metrics, stats, utils

from riverbed.exceptions import InvalidInput

__all__ = [
    "DEFAULT_HISTORY_EVERY",
    "DEFAULT_HISTORY_SECONDS",
    "DEFAULT_WINDOWS",
    "Horizon",
    "Tracker",
    "Window",
    "build_metric",
    "parse_windows",
]

DEFAULT_HISTORY_EVERY = 100
DEFAULT_HISTORY_SECONDS = 60.0
_CALL = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.]*)\s*(?:\((.*)\))?\s*$")
_MODULES = (metrics, metrics.multioutput, stats)


@dataclasses.dataclass(frozen=True)
class Window:
    """A rolling window: the last ``size`` scored samples, or the last ``seconds`` seconds."""

    size: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.size is None) == (self.seconds is None):
            raise InvalidInput("a window has either a size or a number of seconds")
        if self.size is not None and (
            isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1
        ):
            raise InvalidInput(f"a window size must be a positive integer, got {self.size!r}")
        if self.seconds is not None and (
            isinstance(self.seconds, bool)
            or not isinstance(self.seconds, int | float)
            or not math.isfinite(self.seconds)
            or self.seconds <= 0
        ):
            raise InvalidInput(f"window seconds must be a positive number, got {self.seconds!r}")

    @property
    def label(self) -> str:
        return str(self.size) if self.size is not None else f"{self.seconds:g}s"

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size} if self.size is not None else {"seconds": self.seconds}


# No window unless chosen: a window doubles the work of scoring each learn.
DEFAULT_WINDOWS: tuple[Window, ...] = ()


def parse_windows(value: Any) -> tuple[Window, ...]:
    """Windows from their JSON form: ``[{"size": 1000}, {"seconds": 3600}]``."""
    if value is None:
        return DEFAULT_WINDOWS
    if not isinstance(value, list) or len(value) > 8:
        raise InvalidInput("windows must be a list of at most 8 objects")
    out = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) - {"size", "seconds"}:
            raise InvalidInput(
                'each window is {"size": n} (the last n samples) or {"seconds": s}, '
                f"got {item!r}"
            )
        out.append(Window(size=item.get("size"), seconds=item.get("seconds")))
    return tuple(out)


def _lookup(name: str) -> Any:
    for module in _MODULES:
        obj = getattr(module, name, None)
        if isinstance(obj, type):
            return obj
    return None


def _parse(name: Any) -> tuple[type, dict[str, Any]]:
    """A metric name -> (class, constructor keyword arguments)."""
    match = _CALL.match(name) if isinstance(name, str) and len(name) < 200 else None
    if match is None:
        raise InvalidInput(f"unknown metric {name!r}; use a class name from river.metrics")
    cls_name, inner = match.group(1).rsplit(".", 1)[-1], match.group(2)
    cls = _lookup(cls_name)
    if cls is None or cls_name.startswith("_"):
        raise InvalidInput(f"unknown metric {name!r}; use a class name from river.metrics")
    is_metric = issubclass(cls, metrics.base.Metric | metrics.base.ClusteringMetric)
    if not is_metric and not issubclass(cls, stats.base.Univariate):
        raise InvalidInput(f"{name!r} is not a river metric")
    if inner is not None:
        inner_cls, inner_kwargs = _parse(inner)
        return cls, {"metric": inner_cls(**inner_kwargs)}
    return cls, {}


def build_metric(name: str) -> Any:
    """One river metric (or running statistic) from its name.

    >>> build_metric("MicroAverage(MAE)")
    MicroAverage(MAE): 0.
    """
    cls, kwargs = _parse(name)
    try:
        return cls(**kwargs)
    except TypeError:
        raise InvalidInput(f"metric {name!r} needs parameters and cannot be named alone") from None


def _kind(metric: Any) -> str:
    if isinstance(metric, metrics.base.ClassificationMetric) and metric.requires_labels:
        return "label-of-proba"  # given probabilities, it scores the most probable label
    if isinstance(metric, metrics.base.ClusteringMetric):
        return "cluster"  # update(x, y_pred, centers): needs no ground truth
    if isinstance(metric, stats.base.Univariate):
        return "stat"  # update(y): a statistic of the ground truth (a reward)
    return "label"  # update(y_true, y_pred)


def _finite(value: Any) -> float | None:
    """A metric's value for the wire: None when it is not a finite number, and 0.0 rather
    than -0.0 (a sign that measures nothing)."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value + 0.0 if math.isfinite(value) else None


class Horizon:
    """Forecasting metrics along a horizon, scored as ``evaluate.iter_evaluate`` scores them.

    At each learn the engine gives the truth ``y`` and the forecast of the next ``horizon``
    values made just before learning it (None during the first ``horizon`` learns). A forecast
    is scored once every value it forecast has arrived: step ``k`` of the forecast made at
    step ``t`` is compared with the value of step ``t + k``.
    """

    def __init__(self, names: Sequence[str], horizon: int) -> None:
        self.names = list(names)
        self.horizon = horizon
        self.steps = [[build_metric(n) for n in names] for _ in range(horizon)]
        self.pending: collections.deque[list[float] | None] = collections.deque()
        self.recent: collections.deque[float] = collections.deque(maxlen=horizon)
        self.n_seen = 0
        self.n = 0

    @property
    def ready(self) -> bool:
        """Whether a forecast is to be made before the next learn."""
        return self.n_seen >= self.horizon

    def update(self, y: float, forecast: list[float] | None) -> bool:
        self.n_seen += 1
        self.recent.append(y)
        scored = False
        # The forecast made horizon learns ago is complete once y is in.
        if len(self.pending) == self.horizon:
            old = self.pending.popleft()
            if old is not None:
                for step, (y_true, y_pred) in enumerate(zip(self.recent, old, strict=False)):
                    for metric in self.steps[step]:
                        metric.update(y_true, y_pred)
                self.n += 1
                scored = True
        self.pending.append(list(forecast) if forecast is not None else None)
        return scored

    def values(self) -> dict[str, float | None]:
        """Each step's metrics; None for all of them until a forecast has been scored."""
        scored = self.n > 0
        return {
            f"+{step + 1} {name}": _finite(metric.get()) if scored else None
            for step, row in enumerate(self.steps)
            for name, metric in zip(self.names, row, strict=True)
        }


class Tracker:
    """Running metrics, rolling windows and the history-point rule of one model."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        windows: Iterable[Window] = (),
        history_every: int = DEFAULT_HISTORY_EVERY,
        history_seconds: float = DEFAULT_HISTORY_SECONDS,
        horizon: int | None = None,
    ) -> None:
        self.names = list(names)
        self.history_every = history_every
        self.history_seconds = history_seconds
        self.n = 0
        self.last_point_n = 0
        self.last_point_time = -math.inf
        self.horizon: Horizon | None = None
        self.running: list[tuple[str, str, Any]] = []
        self.windows: list[tuple[Window, list[tuple[str, str, Any]]]] = []
        # The running metrics not updated yet (a metric of another kind than the others can
        # wait longer for its first sample): they have no value to show.
        self.unscored: set[str] = set(self.names)
        if horizon is not None:
            self.horizon = Horizon(names, horizon)
            self._derive()
            return
        for name in self.names:
            metric = build_metric(name)
            self.running.append((name, _kind(metric), metric))
        self._derive()
        for window in windows if self.names else ():
            rolled = []
            for name, kind, metric in self.running:
                if not hasattr(metric, "revert"):
                    continue  # a metric that cannot forget has no window
                cls, kwargs = _parse(name)
                if window.size is not None:
                    roll: Any = utils.Rolling(cls, window_size=window.size, **kwargs)
                else:
                    period = dt.timedelta(seconds=window.seconds or 0)
                    roll = utils.TimeRolling(cls, period=period, **kwargs)
                rolled.append((name, kind, roll))
            self.windows.append((window, rolled))

    def _derive(self) -> None:
        """What follows from the metrics, read for every sample: plain attributes (a
        property is a call from C on each read, and Python 3.11 does not specialize it)."""
        # Whether anything is scored (metrics are on).
        self.active = bool(self.names)
        # Whether a classifier's probabilities are scored (else its labels): they are when
        # some label metric takes them (see requires_labels).
        self.takes_probabilities = not self.requires_labels
        self._labelled_only = all(
            kind in ("label", "label-of-proba") for _, kind, _ in self.running
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # One attribute at a time rather than into __dict__, which would keep them in a dict
        # of the tracker's own (slower to read; see serialization.live_copy). A tracker
        # pickled by an older riverbed lacks the derived fields: made again here.
        for name, value in state.items():
            object.__setattr__(self, name, value)
        if "unscored" not in state:  # pickled before riverbed knew: scored if any was
            object.__setattr__(self, "unscored", set() if self.n else set(self.names))
        self._derive()

    @property
    def requires_labels(self) -> bool:
        """Whether every label metric needs a label rather than probabilities."""
        label_metrics = [m for _, kind, m in self.running if kind.startswith("label")]
        return bool(label_metrics) and all(
            getattr(m, "requires_labels", True) for m in label_metrics
        )

    def works_with(self, model: Any) -> list[str]:
        """The names of the metrics that do not fit ``model``."""
        return [
            name
            for name, kind, metric in self.running
            if kind.startswith("label")
            and hasattr(metric, "works_with")
            and not metric.works_with(model)
        ]

    def update(
        self,
        y: Any,
        y_pred: Any,
        *,
        t: float,
        x: Any = None,
        centers: Any = None,
    ) -> bool:
        """Score one sample; returns whether any metric changed."""
        if self.horizon is not None:
            scored = self.horizon.update(y, y_pred)
            self.n += scored
            return scored
        if y_pred is None or (isinstance(y_pred, dict) and not y_pred):
            return False
        scored = False
        label = y_pred
        if isinstance(y_pred, dict) and y_pred and self.takes_probabilities:
            label = max(y_pred, key=y_pred.__getitem__)  # as river's Metrics does
        if y is not None and not self.windows and self._labelled_only:
            # The common case, label metrics only and no windows: no argument table.
            for _, kind, metric in self.running:
                if kind == "label":
                    metric.update(y, y_pred)
                else:
                    metric.update(y, label)
            if self.running:
                self.n += 1
                if self.unscored:
                    self.unscored.clear()
                return True
            return False
        args_by_kind = {
            "label": None if y is None else (y, y_pred),
            "label-of-proba": None if y is None else (y, label),
            "cluster": None if centers is None else (x, y_pred, centers),
            "stat": None if y is None else (y,),
        }
        for name, kind, metric in self.running:
            args = args_by_kind[kind]
            if args is not None:
                metric.update(*args)
                scored = True
                self.unscored.discard(name)
        if scored:
            self.n += 1
            when: dt.datetime | None = None
            for window, rolled in self.windows:
                for _, kind, roll in rolled:
                    args = args_by_kind[kind]
                    if args is None:
                        continue
                    if window.size is not None:
                        roll.update(*args)
                    else:
                        if when is None:
                            when = dt.datetime.fromtimestamp(t, tz=dt.UTC).replace(tzinfo=None)
                        roll.update(*args, t=when)
        return scored

    def point_due(self, now: float) -> bool:
        """Whether a history point should be stored now (and, if so, note that it is)."""
        if self.n == self.last_point_n or not self.names:
            return False
        if self.last_point_time == -math.inf:
            self.last_point_time = now  # the time rule counts from the first scored sample
        every = self.history_every
        if self.n // every > self.last_point_n // every or (
            now - self.last_point_time >= self.history_seconds
        ):
            self.last_point_n = self.n
            self.last_point_time = now
            return True
        return False

    def values(self) -> dict[str, Any]:
        """``{"n", "metrics": {name: value}, "windows": [{"window", "n", "metrics"}]}``.

        A metric that has scored nothing yet (no label since the model was created, an empty
        window, a forecast step not scored yet) is None, not river's initial 0.0.
        """
        if self.horizon is not None:
            return {"n": self.n, "metrics": self.horizon.values(), "windows": []}
        windows = []
        for window, rolled in self.windows:
            n = 0
            values = {}
            for name, _, roll in rolled:
                count = _window_count(roll)
                n = max(n, count)
                values[name] = _finite(roll.get()) if count else None
            windows.append({"window": window.label, **window.to_dict(), "n": n, "metrics": values})
        unscored = self.unscored if self.n else self.names
        return {
            "n": self.n,
            "metrics": {
                name: None if name in unscored else _finite(metric.get())
                for name, _, metric in self.running
            },
            "windows": windows,
        }


def _window_count(roll: Any) -> int:
    if hasattr(roll, "window"):
        return len(roll.window)
    return len(getattr(roll, "_timestamps", ()))
