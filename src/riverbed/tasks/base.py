"""The shape every task adapter has, and the checks shared by several tasks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from riverbed.exceptions import InvalidInput, InvalidSpec, InvalidTarget
from riverbed.metrics import Tracker

__all__ = ["MISSING", "Task", "check_number", "check_options"]

MISSING: Any = object()


def check_number(y: Any, what: str = "a regression target") -> float | int:
    if isinstance(y, bool) or not isinstance(y, int | float):
        raise InvalidTarget(f"{what} must be a number, got {y!r}")
    if not math.isfinite(y):
        raise InvalidTarget(f"{what} must be a finite number")
    return y


def check_options(task: str, options: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidInput(
            f"unknown option(s) {', '.join(map(repr, unknown))} for the {task!r} task"
            + (f"; accepted: {', '.join(sorted(allowed))}" if allowed else "; it takes none"),
            detail={"options": unknown},
        )


class Task:
    """One learning task. An instance serves one model (it holds the model's task options).

    A *sample* is what one predict or learn is about, in the form it is stored in the log:
    the features ``x`` for tabular tasks, ``{"user", "item", "x"}`` for a recommender,
    ``{"context", "arms"}`` for a bandit. The engine validates ``x``; the task checks the
    other inputs (``inputs`` names the request fields it accepts besides the features).
    """

    name: ClassVar[str]
    default_metrics: ClassVar[tuple[str, ...]] = ()
    # request fields accepted besides "features" (e.g. user and item for a recommender)
    inputs: ClassVar[frozenset[str]] = frozenset()
    # whether learning needs a ground truth (False: learn_one(x) alone is meaningful)
    requires_target: ClassVar[bool] = True
    option_names: ClassVar[frozenset[str]] = frozenset()
    # whether a learn may come without features (a forecaster's x is optional)
    features_optional: ClassVar[bool] = False
    # whether a learn must name a prediction (a bandit's reward is for a pull)
    learns_by_id_only: ClassVar[bool] = False
    # whether a predict changes the model (a bandit's pull draws from its random state), so
    # that loading it replays the predictions after its checkpoint between its learns
    replays_predictions: ClassVar[bool] = False
    # whether river's metric.works_with(model) applies (it knows regressors and classifiers)
    checks_metric_fit: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        check_options(self.name, options, set(self.option_names))
        self.options = options

    # -- the model --------------------------------------------------------------------------

    def matches(self, model: Any) -> bool:
        raise NotImplementedError

    def check_model(self, model: Any) -> None:
        if not self.matches(model):
            raise InvalidSpec(f"a {type(model).__name__} cannot serve the {self.name!r} task")

    def bind(self, model: Any) -> None:
        """Note what the task needs to know about the served object (after loading it)."""

    def prepare(self, model: Any) -> Any:
        """The object to serve, built once at creation (a task option may wrap the model)."""
        return model

    def metrics_for(self, model: Any) -> tuple[str, ...]:
        """The default metrics for this model."""
        return self.default_metrics

    def tracker(
        self, names: list[str], *, windows: Any = (), history_every: int, history_seconds: float
    ) -> Tracker:
        return Tracker(
            names, windows=windows, history_every=history_every, history_seconds=history_seconds
        )

    # -- inputs -----------------------------------------------------------------------------

    def sample(self, x: dict[str, Any], inputs: Mapping[str, Any]) -> Any:
        """The stored sample for features ``x`` and the task's other request fields."""
        self.reject_inputs(inputs)
        return x

    def reject_inputs(
        self, inputs: Mapping[str, Any], allowed: frozenset[str] = frozenset()
    ) -> None:
        if not inputs:
            return
        unknown = sorted(k for k, v in inputs.items() if v is not None and k not in allowed)
        if unknown:
            raise InvalidInput(
                f"the {self.name!r} task does not take {', '.join(map(repr, unknown))}",
                detail={"fields": unknown},
            )

    def check_target(self, y: Any) -> Any:
        return y

    # -- predict, score, learn --------------------------------------------------------------

    def predict(self, model: Any, sample: Any, tracker: Tracker) -> Any:
        """What the model predicts for ``sample``, in the form the task's metrics expect."""
        return model.predict_one(sample)

    def learn_prediction(self, model: Any, sample: Any, tracker: Tracker, stored: Any) -> Any:
        """The prediction scored against the truth of a learn: the stored one when the learn
        names a prediction id, else one made now (none when metrics are off)."""
        if stored is not MISSING:
            return stored
        if not tracker.active:
            return None
        return self.predict(model, sample, tracker)

    def score(
        self, tracker: Tracker, model: Any, sample: Any, y: Any, y_pred: Any, t: float
    ) -> bool:
        """Progressive validation: update the metrics with the prediction made before
        learning. Returns whether a metric changed."""
        if y is None:
            return False
        return tracker.update(y, y_pred, t=t)

    def learn(self, model: Any, sample: Any, y: Any, y_pred: Any) -> None:
        model.learn_one(sample, y)

    #: A ground truth every model of the task learns from, or MISSING: with one, a learn that
    #: makes the model fail can be told apart as a bad target (see :meth:`blames_target`).
    probe_target: Any = MISSING

    def blames_target(self, model: Any, sample: Any, y: Any, y_pred: Any) -> bool:
        """Whether a learn that made ``model`` fail failed for its ground truth: a fresh copy
        of the model learns the sample with :attr:`probe_target` and fails with ``y``."""
        if self.probe_target is MISSING or y == self.probe_target:
            return False
        try:
            self.learn(model.clone(), sample, self.probe_target, y_pred)
        except Exception:
            return False  # the sample (or the copy) is to blame, not the target
        try:
            self.learn(model.clone(), sample, y, y_pred)
        except Exception:
            return True
        return False

    def wire(self, y_pred: Any) -> dict[str, Any]:
        """The prediction as it is sent to a client (always has a ``prediction`` field)."""
        return {"prediction": y_pred}
