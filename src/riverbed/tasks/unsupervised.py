"""Tasks that learn without a target: clustering and anomaly detection."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from river import anomaly, base, compose

from riverbed.exceptions import InvalidInput, InvalidTarget
from riverbed.metrics import Tracker
from riverbed.tasks.base import Task, check_number
from riverbed.tasks.supervised import check_label

__all__ = ["AnomalyDetection", "Clustering"]


class Clustering(Task):
    """``learn_one(x)``; a prediction is a cluster id. Internal metrics (``Silhouette``) need
    no ground truth; label metrics (``AdjustedRand``...) use one when it is given."""

    name = "clustering"
    default_metrics = ("Silhouette",)
    requires_target = False

    def matches(self, model: Any) -> bool:
        return isinstance(model, base.Clusterer)

    def check_target(self, y: Any) -> Any:
        return check_label(y)

    def score(
        self, tracker: Tracker, model: Any, sample: Any, y: Any, y_pred: Any, t: float
    ) -> bool:
        clusterer, x = model, sample
        if isinstance(model, compose.Pipeline):
            clusterer = model._last_step
            x, _ = model._transform_one(sample)
        centers = getattr(clusterer, "centers", None)
        return tracker.update(y, y_pred, t=t, x=x, centers=centers)

    def learn(self, model: Any, sample: Any, y: Any, y_pred: Any) -> None:
        model.learn_one(sample)

    def wire(self, y_pred: Any) -> dict[str, Any]:
        return {"prediction": y_pred, "cluster": y_pred}


class AnomalyDetection(Task):
    """Anomaly scores (``score_one``), and a flag when the model is a river anomaly filter
    (``anomaly.ThresholdFilter`` / ``anomaly.QuantileFilter``), which the ``threshold`` or
    ``quantile`` option builds around the detector.

    Unsupervised detectors learn from ``x`` alone; a ground truth, when given, is whether the
    sample was an anomaly and feeds the metrics (ROCAUC of the score, F1 of the flag).
    Supervised detectors (``anomaly.GaussianScorer``...) score a value: their ground truth is
    that value, and a prediction needs it as ``value``.
    """

    name = "anomaly"
    inputs = frozenset({"value"})
    option_names = frozenset({"threshold", "quantile"})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        if "threshold" in self.options and "quantile" in self.options:
            raise InvalidInput("give a threshold or a quantile, not both")
        threshold = self.options.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
        ):
            raise InvalidInput(f"threshold must be a finite number, got {threshold!r}")
        q = self.options.get("quantile")
        if q is not None and (
            isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q < 1
        ):
            raise InvalidInput(f"quantile must be a number between 0 and 1, got {q!r}")
        self.kind = "detector"

    @property
    def requires_target(self) -> bool:  # type: ignore[override]
        return self.kind == "supervised"

    def matches(self, model: Any) -> bool:
        return isinstance(
            model, base.AnomalyDetector | base.SupervisedAnomalyDetector | base.AnomalyFilter
        )

    def prepare(self, model: Any) -> Any:
        if "threshold" in self.options or "quantile" in self.options:
            if not isinstance(model, base.AnomalyDetector):
                raise InvalidInput("a threshold or quantile needs an unsupervised anomaly detector")
            if "threshold" in self.options:
                model = anomaly.ThresholdFilter(model, threshold=self.options["threshold"])
            else:
                model = anomaly.QuantileFilter(model, q=self.options["quantile"])
        self.bind(model)
        return model

    def bind(self, model: Any) -> None:
        if isinstance(model, base.AnomalyFilter):
            self.kind = "filter"
        elif isinstance(model, base.SupervisedAnomalyDetector):
            self.kind = "supervised"
        else:
            self.kind = "detector"

    def metrics_for(self, model: Any) -> tuple[str, ...]:
        self.bind(model)
        return {"filter": ("Precision", "Recall", "F1"), "detector": ("ROCAUC",)}.get(self.kind, ())

    def sample(self, x: dict[str, Any], inputs: Mapping[str, Any]) -> Any:
        if self.kind != "supervised":
            self.reject_inputs(inputs)
            return x
        value = inputs.get("value")
        if value is None:
            return x
        return {"x": x, "value": check_number(value, "value")}

    def check_target(self, y: Any) -> Any:
        if self.kind == "supervised":
            return check_number(y, "the value a supervised detector learns")
        if isinstance(y, bool):
            return y
        if isinstance(y, int | float) and y in (0, 1):
            return bool(y)
        raise InvalidTarget(f"an anomaly ground truth is true/false (is it an anomaly?), got {y!r}")

    def predict(self, model: Any, sample: Any, tracker: Tracker) -> Any:
        if self.kind == "supervised":
            if not isinstance(sample, dict) or "value" not in sample or "x" not in sample:
                raise InvalidInput("a supervised anomaly detector scores a value: give 'value'")
            return {"score": float(model.score_one(sample["x"], sample["value"]))}
        score = float(model.score_one(sample))
        if self.kind == "filter":
            return {"score": score, "anomaly": bool(model.classify(score))}
        return {"score": score}

    def learn_prediction(self, model: Any, sample: Any, tracker: Tracker, stored: Any) -> Any:
        if self.kind == "supervised":
            return None  # the score of a learned value is returned by predict with 'value'
        return super().learn_prediction(model, sample, tracker, stored)

    def score(
        self, tracker: Tracker, model: Any, sample: Any, y: Any, y_pred: Any, t: float
    ) -> bool:
        if y is None or y_pred is None or self.kind == "supervised":
            return False
        flag = y_pred.get("anomaly")
        return tracker.update(y, flag if flag is not None else y_pred["score"], t=t)

    def learn(self, model: Any, sample: Any, y: Any, y_pred: Any) -> None:
        if self.kind == "supervised":
            x = sample["x"] if "value" in sample and isinstance(sample.get("x"), dict) else sample
            model.learn_one(x, y)
        else:
            model.learn_one(sample)

    def wire(self, y_pred: Any) -> dict[str, Any]:
        if not isinstance(y_pred, dict):
            return {"prediction": None}
        flag = y_pred.get("anomaly")
        return {"prediction": flag if flag is not None else y_pred["score"], **y_pred}
