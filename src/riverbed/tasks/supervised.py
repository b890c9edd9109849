"""Supervised tabular tasks: regression, binary and multiclass classification, multi-output."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from river import base

from riverbed.exceptions import InvalidTarget
from riverbed.metrics import Tracker
from riverbed.tasks.base import Task, check_number

__all__ = ["Binary", "Multiclass", "MultiOutput", "Regression"]


class Regression(Task):
    name = "regression"
    default_metrics = ("MAE", "RMSE", "R2")
    checks_metric_fit = True

    def matches(self, model: Any) -> bool:
        return isinstance(model, base.Regressor)

    def check_target(self, y: Any) -> Any:
        return check_number(y)


_LABEL_TYPES = (str, int, bool)  # a tuple: `str | int | bool` makes a union at every call


def check_label(y: Any) -> Any:
    if isinstance(y, float) and not y.is_integer():
        raise InvalidTarget(f"a class label must be a string, a boolean or an integer, got {y!r}")
    if isinstance(y, float):
        return int(y)
    if y is None or not isinstance(y, _LABEL_TYPES):
        raise InvalidTarget(f"a class label must be a string, a boolean or an integer, got {y!r}")
    return y


class _Classification(Task):
    checks_metric_fit = True

    def matches(self, model: Any) -> bool:
        return isinstance(model, base.Classifier)

    def check_target(self, y: Any) -> Any:
        return check_label(y)

    def predict(self, model: Any, sample: Any, tracker: Tracker) -> Any:
        # As river's progressive validation does: probabilities unless every metric needs labels.
        if not tracker.takes_probabilities:
            return model.predict_one(sample)
        return model.predict_proba_one(sample)

    def wire(self, y_pred: Any) -> dict[str, Any]:
        if isinstance(y_pred, dict):
            label = max(y_pred, key=y_pred.__getitem__) if y_pred else None
            return {"prediction": label, "probabilities": y_pred}
        return {"prediction": y_pred}


class Binary(_Classification):
    name = "binary"
    default_metrics = ("Accuracy", "LogLoss", "F1", "ROCAUC")
    # Trees and pipelines of them take string labels; a linear model takes only booleans.
    probe_target = True

    def check_target(self, y: Any) -> Any:
        y = check_label(y)  # as every classifier does (not super(): an object a call)
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


class MultiOutput(Task):
    """Several targets at once: a multi-label classifier (``{label: bool}``) or a multi-target
    regressor (``{target: number}``). The ground truth is an object of that shape."""

    name = "multioutput"

    def matches(self, model: Any) -> bool:
        return isinstance(model, base.MultiLabelClassifier | base.MultiTargetRegressor)

    def metrics_for(self, model: Any) -> tuple[str, ...]:
        if isinstance(model, base.MultiLabelClassifier):
            return ("ExactMatch", "MicroAverage(F1)", "MacroAverage(F1)")
        return ("MicroAverage(MAE)", "MacroAverage(RMSE)")

    def check_target(self, y: Any) -> Any:
        if not isinstance(y, Mapping) or not y:
            raise InvalidTarget(
                "a multi-output ground truth is an object of output name -> value, "
                f"got {type(y).__name__}"
            )
        for key, value in y.items():
            ok = isinstance(value, bool | str) or (
                isinstance(value, int | float) and math.isfinite(value)
            )
            if not ok:
                raise InvalidTarget(f"output {key!r} must be a finite number, a label or a boolean")
        return dict(y)
