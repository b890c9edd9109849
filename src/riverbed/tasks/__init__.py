"""One adapter per learning task: which method predicts, how learning is called, which
metrics apply and what a prediction looks like on the wire.

This package is pure: no I/O, no locks, no clocks. The engine calls it under the model's
writer lock; the tests run the same checks on every adapter.

=================  =========================================  ===================================
task               river calls                                prediction on the wire
=================  =========================================  ===================================
regression         ``predict_one(x)``, ``learn_one(x, y)``    ``prediction``: a number
binary             ``predict_proba_one(x)``, ``learn_one``    ``prediction`` + ``probabilities``
multiclass         the same                                   the same
multioutput        ``predict_one(x)`` -> dict, ``learn_one``  ``prediction``: {output: value}
clustering         ``predict_one(x)``, ``learn_one(x)``       ``prediction`` = ``cluster``: id
anomaly            ``score_one(x)``, ``learn_one(x)``         ``score`` (+ ``anomaly`` flag)
forecasting        ``forecast(h, xs)``, ``learn_one(y, x)``   ``prediction``: the next value
recommendation     ``predict_one(user, item, x)``, ``rank``   ``prediction``: a rating
bandit             ``pull(arms[, context])``, ``update``      ``prediction`` = ``arm``
custom             the methods named in the options           ``prediction``
=================  =========================================  ===================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from river import metrics

from riverbed.exceptions import InvalidInput, InvalidSpec
from riverbed.metrics import build_metric
from riverbed.tasks.base import MISSING, Task
from riverbed.tasks.sequential import Bandit, Custom, Forecasting, Recommendation
from riverbed.tasks.supervised import Binary, Multiclass, MultiOutput, Regression
from riverbed.tasks.unsupervised import AnomalyDetection, Clustering

__all__ = ["MISSING", "TASKS", "Task", "detect_task", "get_task", "make_metrics"]

TASKS: dict[str, type[Task]] = {
    t.name: t
    for t in (
        Regression,
        Binary,
        Multiclass,
        MultiOutput,
        Clustering,
        AnomalyDetection,
        Forecasting,
        Recommendation,
        Bandit,
        Custom,
    )
}

# Detection order: the first task whose base class the model is an instance of.
_DETECT = (
    "multioutput",
    "anomaly",
    "clustering",
    "forecasting",
    "recommendation",
    "bandit",
    "regression",
)


def get_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """The adapter of the task ``name``, configured with the model's task options."""
    cls = TASKS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidInput(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    if options is not None and not isinstance(options, Mapping):
        raise InvalidInput("task options must be an object")
    return cls(options)


def make_metrics(task: Task, names: Sequence[str] | None = None) -> metrics.base.Metrics:
    """River metrics by name (the task's defaults when None) in one river ``Metrics``, for
    code that scores outside a live model (training jobs)."""
    chosen = task.default_metrics if names is None else tuple(names)
    return metrics.base.Metrics([build_metric(name) for name in chosen])


def detect_task(model: Any, options: Mapping[str, Any] | None = None) -> Task:
    """The task a model serves, by ``isinstance`` against river's base classes (which works
    on pipelines). A classifier that handles more than two classes is taken as multiclass;
    state ``task="binary"`` to serve it as a binary one."""
    from river import base

    if isinstance(model, base.Classifier):
        return get_task("multiclass" if getattr(model, "_multiclass", False) else "binary", options)
    for name in _DETECT:
        task = TASKS[name]
        if task(None).matches(model):
            return get_task(name, options)
    raise InvalidSpec(
        f"cannot tell which task a {type(model).__name__} serves; state it with task=... "
        f"(one of {', '.join(TASKS)}; 'custom' serves any object through named methods)"
    )
