"""scikit-learn models evaluated online: a batch model seen by the live machinery.

A scikit-learn model does not learn online, but it is evaluated online as a river model is:
its predictions get ids, their ground truths come later (by id, or with the features), and
the task's metrics score each prediction against its truth. The live machinery (prediction
ids, the learn log, checkpoints, retention, stats, events) is the river models'; what it
holds as the "model" is an :class:`Evaluated`, which predicts with a loaded version and
learns nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from riverbed import batch

if TYPE_CHECKING:
    from riverbed.stores.base import ModelRecord, VersionRecord

__all__ = ["EVALUATED_TASKS", "Evaluated", "evaluated"]

#: The tasks whose scikit-learn models are evaluated online (others are only served).
EVALUATED_TASKS = frozenset({"regression", "binary", "multiclass"})


def evaluated(record: ModelRecord) -> bool:
    """Whether a model is a batch model evaluated online."""
    return record.flavor == "sklearn" and record.task in EVALUATED_TASKS


class Loaded(Protocol):
    """A version loaded for serving, as the registry gives it (its ``_Loaded``)."""

    record: VersionRecord
    obj: Any
    lock: threading.Lock


class Evaluated:
    """River's ``predict_one``/``predict_proba_one``/``learn_one`` over a scikit-learn
    version: ``serving`` gives the loaded version that answers (the caller holds the live
    model's lock)."""

    def __init__(self, serving: Callable[[], Loaded]) -> None:
        self._serving = serving
        self.version: int | None = None  # the version that made the last prediction

    def _row(self, x: dict[str, Any]) -> dict[str, Any]:
        target = self._serving()
        self.version = target.record.version
        with target.lock:
            (row,) = batch.predict_rows(target.obj, [x], target.record.metadata)
        return row

    def predict_one(self, x: dict[str, Any]) -> Any:
        return self._row(x)["prediction"]

    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        row = self._row(x)
        # A classifier without probabilities is sure of its label.
        return row.get("probabilities") or {row["prediction"]: 1.0}

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        """Nothing: a batch model learns from training jobs, not from each label."""

    def __reduce__(self) -> Any:
        # Checkpoints hold the metrics and counts; the versions are the model.
        return (_unbound, ())


def _unbound() -> None:
    return None
