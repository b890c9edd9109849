"""One adapter per learning task: which method predicts, how learning is called, which
metrics apply and what a prediction looks like on the wire.

This module is pure: no I/O, no locks, no clocks. The engine calls it under the model's
writer lock; the tests run the same checks on every adapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from river import base, metrics

from riverbed.exceptions import InvalidInput, InvalidSpec, InvalidTarget

__all__ = ["TASKS", "Task", "detect_task", "get_task", "make_metrics"]


class Task:
    """The behaviour shared by every task; subclasses fill in what differs."""

    name: ClassVar[str]
    default_metrics: ClassVar[tuple[str, ...]]
    supervised: ClassVar[bool] = True

    def matches(self, model: Any) -> bool:
        raise NotImplementedError

    def check_model(self, model: Any) -> None:
        if not self.matches(model):
            raise InvalidSpec(f"a {type(model).__name__} cannot serve the {self.name!r} task")

    def check_target(self, y: Any) -> Any:
        return y

    def predict(self, model: Any, x: dict[str, Any], metric: metrics.base.Metrics) -> Any:
        """What the model predicts for ``x``, in the form the task's metrics expect."""
        return model.predict_one(x)

    def learn(self, model: Any, x: dict[str, Any], y: Any) -> None:
        model.learn_one(x, y)

    def update_metric(self, metric: metrics.base.Metrics, y: Any, y_pred: Any) -> bool:
        """Progressive validation: score the stored prediction against the truth.

        Returns whether the metric changed (river skips empty predictions).
        """
        if y_pred is None or y_pred == {}:
            return False
        metric.update(y, y_pred)
        return True

    def wire(self, y_pred: Any) -> dict[str, Any]:
        """The prediction as it is sent to a client."""
        return {"prediction": y_pred}


class Regression(Task):
    name = "regression"
    default_metrics = ("MAE", "RMSE", "R2")

    def matches(self, model: Any) -> bool:
        return isinstance(model, base.Regressor)

    def check_target(self, y: Any) -> Any:
        if isinstance(y, bool) or not isinstance(y, int | float):
            raise InvalidTarget(f"a regression target must be a number, got {y!r}")
        if not math.isfinite(y):
            raise InvalidTarget("a regression target must be a finite number")
        return y


class _Classification(Task):
    def matches(self, model: Any) -> bool:
        return isinstance(model, base.Classifier)

    def check_target(self, y: Any) -> Any:
        if isinstance(y, float) and not y.is_integer():
            raise InvalidTarget(
                f"a class label must be a string, a boolean or an integer, got {y!r}"
            )
        if isinstance(y, float):
            return int(y)
        if y is None or not isinstance(y, str | int | bool):
            raise InvalidTarget(
                f"a class label must be a string, a boolean or an integer, got {y!r}"
            )
        return y

    def predict(self, model: Any, x: dict[str, Any], metric: metrics.base.Metrics) -> Any:
        # As river's progressive validation does: probabilities unless every metric needs labels.
        if metric and metric.requires_labels:
            return model.predict_one(x)
        return model.predict_proba_one(x)

    def wire(self, y_pred: Any) -> dict[str, Any]:
        if isinstance(y_pred, dict):
            label = max(y_pred, key=y_pred.__getitem__) if y_pred else None
            return {"prediction": label, "probabilities": y_pred}
        return {"prediction": y_pred}


class Binary(_Classification):
    name = "binary"
    default_metrics = ("Accuracy", "LogLoss", "F1", "ROCAUC")

    def check_target(self, y: Any) -> Any:
        y = super().check_target(y)
        if isinstance(y, int) and not isinstance(y, bool):
            if y not in (0, 1):
                raise InvalidTarget(f"a binary label must be true/false or 0/1, got {y!r}")
            return bool(y)
        return y


class Multiclass(_Classification):
    name = "multiclass"
    default_metrics = ("Accuracy", "CrossEntropy", "MacroF1")

    def matches(self, model: Any) -> bool:
        return isinstance(model, base.Classifier) and bool(getattr(model, "_multiclass", False))


TASKS: dict[str, Task] = {t.name: t for t in (Regression(), Binary(), Multiclass())}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise InvalidInput(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def detect_task(model: Any) -> Task:
    """The task a model serves, by ``isinstance`` against river's base classes.

    A classifier that handles more than two classes is taken as multiclass; state
    ``task="binary"`` to serve it as a binary one.
    """
    if isinstance(model, base.Classifier):
        return TASKS["multiclass"] if getattr(model, "_multiclass", False) else TASKS["binary"]
    if isinstance(model, base.Regressor):
        return TASKS["regression"]
    raise InvalidSpec(
        f"cannot tell which task a {type(model).__name__} serves; state it with task=... "
        f"(one of {', '.join(TASKS)})"
    )


def make_metrics(task: Task, names: Sequence[str] | None = None) -> metrics.base.Metrics:
    """River metrics by class name (``"MAE"``, ``"F1"``...) combined into one ``Metrics``."""
    chosen = task.default_metrics if names is None else tuple(names)
    built = []
    for name in chosen:
        cls = getattr(metrics, name, None) if isinstance(name, str) else None
        if not isinstance(cls, type) or not issubclass(cls, metrics.base.Metric):
            raise InvalidInput(f"unknown metric {name!r}; use a class name from river.metrics")
        try:
            built.append(cls())
        except TypeError:
            raise InvalidInput(
                f"metric {name!r} needs parameters and cannot be named alone"
            ) from None
    return metrics.base.Metrics(built)
