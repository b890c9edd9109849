"""River's own progressive validation of the benchmark stream, and the checks against it.

The stream is river's Phishing data set, repeated. With one connection every system sees
the samples in stream order, so its metrics after ``n`` learns must equal river's
``progressive_val_score`` over the first ``n`` samples (to floating-point noise). With 16
connections the order of concurrent requests is not fixed, so the metrics are held to a
tolerance instead; the learn count is exact in both cases.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from river import datasets, linear_model, metrics, preprocessing

__all__ = ["LEARNING_MODES", "METRICS", "Reference", "check", "metrics_by_name", "model", "samples"]

# The modes whose runs learn, and so are held to river's progressive validation.
LEARNING_MODES = ("loop", "learn", "batch", "ws", "ws-many")
METRICS = ("Accuracy", "LogLoss", "F1", "ROCAUC", "Precision", "Recall")
# With many connections the same samples arrive in another order, and a prediction may be
# made before the learns sent just ahead of it: each bounded metric may then be this far
# from river's on the same number of samples (looser for short runs).
TOLERANCE = {"Accuracy": 0.05, "F1": 0.05, "Precision": 0.07, "Recall": 0.07, "ROCAUC": 0.05}


def samples() -> list[tuple[dict[str, Any], Any]]:
    return list(datasets.Phishing())


def metrics_by_name(name: str) -> Any:
    return getattr(metrics, name)()


def model() -> Any:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


class Reference:
    """Progressive-validation metrics of the first ``n`` samples of the repeated stream."""

    def __init__(self, data: list[tuple[dict[str, Any], Any]]) -> None:
        self.data = data
        self._restart()

    def _restart(self) -> None:
        self.model = model()
        self.metrics = {name: getattr(metrics, name)() for name in METRICS}
        self.position = 0
        self.stream = itertools.cycle(self.data)

    def at(self, n: int) -> dict[str, float]:
        if n < self.position:
            self._restart()
        while self.position < n:
            x, y = next(self.stream)
            y_pred = self.model.predict_proba_one(x)
            for m in self.metrics.values():
                if m.requires_labels:
                    m.update(y, max(y_pred, key=y_pred.get))
                else:
                    m.update(y, y_pred)
            self.model.learn_one(x, y)
            self.position += 1
        return {name: m.get() for name, m in self.metrics.items()}


def check(
    reference: Reference,
    *,
    mode: str,
    connections: int,
    acked_learns: int,
    acked_predictions: int = 0,
    state: dict[str, Any],
    errors: int,
    in_flight: int = 1,
    ordered: bool | None = None,
) -> tuple[bool, list[str]]:
    """Did the run lose nothing, fail nothing and learn what river learns? (ok, problems)

    ``in_flight`` is how many learns one connection may have sent but not seen acknowledged
    when the load stopped (one request, a batch of them, or a WebSocket window); ``ordered``
    says whether the server saw the samples in stream order (by default: one connection),
    which holds its metrics to river's exactly rather than to a tolerance.
    """
    if ordered is None:
        ordered = connections == 1
    problems: list[str] = []
    if errors:
        problems.append(f"{errors} errors")
    learns = state.get("learns")
    if learns is not None:
        if mode in ("predict", "echo") and learns:
            problems.append(f"{learns} learns from predictions alone")
        if learns < acked_learns:
            problems.append(f"lost learns: {acked_learns} acknowledged, {learns} applied")
        # The load stops with at most ``in_flight`` learns per connection unacknowledged,
        # which the server may have applied without the load generator counting them.
        if learns > acked_learns + connections * in_flight:
            problems.append(f"{learns} learns applied but only {acked_learns} sent")
    predictions = state.get("predictions")
    if mode == "predict" and predictions is not None and predictions < acked_predictions:
        problems.append(
            f"lost predictions: {acked_predictions} acknowledged, {predictions} recorded"
        )
    values = state.get("metrics") or {}
    if mode in LEARNING_MODES and learns:
        expected = reference.at(learns)
        compared = [name for name in values if name in expected]
        if not compared:
            problems.append("no comparable metrics")
        for name in compared:
            got, want = values[name], expected[name]
            if got is None or (isinstance(got, float) and math.isnan(got)):
                problems.append(f"{name} is undefined")
                continue
            got = float(got)
            if ordered:
                if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
                    problems.append(f"{name} {got:.6f} != river's {want:.6f}")
            elif name in TOLERANCE and abs(got - want) > max(TOLERANCE[name], 3 / learns**0.5):
                problems.append(f"{name} {got:.4f} is far from river's {want:.4f}")
    return not problems, problems
