"""Serving batch (scikit-learn) estimators: rows in, predictions (and probabilities) out.

A row is an object of feature values, named as the estimator was fitted
(``feature_names_in_``) or as the version's ``feature_names`` metadata says, or a list of
values in the estimator's column order. Rows are checked before the estimator sees them, so a
bad row is a 400 that names the row and the feature.

This module is pure: no I/O, no locks.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from riverbed.artifacts import jsonable
from riverbed.exceptions import InvalidFeatures

__all__ = ["feature_names", "predict_rows"]


def feature_names(obj: Any, metadata: Mapping[str, Any]) -> list[str] | None:
    """The names of the estimator's input columns, in order, when they are known."""
    names = getattr(obj, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    given = metadata.get("feature_names")
    if isinstance(given, list) and all(isinstance(n, str) for n in given):
        return list(given)
    return None


def _value(row: int, name: str, value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidFeatures(f"row {row}: feature {name!r} is not a finite number")
        return value
    raise InvalidFeatures(
        f"row {row}: feature {name!r} must be a number, a string or a boolean, got "
        f"{'null' if value is None else type(value).__name__}"
    )


def _matrix(obj: Any, rows: Sequence[Any], names: list[str] | None) -> list[list[Any]]:
    width = getattr(obj, "n_features_in_", None)
    matrix = []
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            if names is None:
                raise InvalidFeatures(
                    "this model does not know its feature names: send each row as a list of "
                    "values in column order, or upload it with feature_names"
                )
            unknown = sorted(set(row) - set(names))
            if unknown:
                raise InvalidFeatures(
                    f"row {i}: unknown feature(s) {', '.join(map(repr, unknown))}; the model "
                    f"takes {', '.join(names)}",
                    detail={"row": i, "unknown": unknown},
                )
            missing = [n for n in names if n not in row]
            if missing:
                raise InvalidFeatures(
                    f"row {i}: missing feature(s) {', '.join(map(repr, missing))}",
                    detail={"row": i, "missing": missing},
                )
            matrix.append([_value(i, n, row[n]) for n in names])
        elif isinstance(row, list | tuple):
            if width is not None and len(row) != width:
                raise InvalidFeatures(
                    f"row {i} has {len(row)} values; the model takes {width}",
                    detail={"row": i},
                )
            matrix.append([_value(i, str(j), v) for j, v in enumerate(row)])
        else:
            raise InvalidFeatures(f"row {i} must be an object of features or a list of values")
    return matrix


def _frame(matrix: list[list[Any]], names: list[str] | None, obj: Any) -> Any:
    import numpy as np

    if names is not None and getattr(obj, "feature_names_in_", None) is not None:
        try:
            import pandas as pd
        except ImportError:
            pass
        else:
            return pd.DataFrame(matrix, columns=names)
    numeric = all(
        isinstance(v, int | float) and not isinstance(v, bool) for row in matrix for v in row
    )
    return np.array(matrix, dtype=float if numeric else object)


def predict_rows(
    obj: Any, rows: Sequence[Any], metadata: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One ``{"prediction", "probabilities"?}`` per row, in order."""
    if not rows:
        return []
    names = feature_names(obj, metadata)
    X = _frame(_matrix(obj, rows, names), names, obj)
    with warnings.catch_warnings():
        # Fitted on a DataFrame and asked with an array: the columns are in order already.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        try:
            predictions = obj.predict(X)
            probabilities = obj.predict_proba(X) if hasattr(obj, "predict_proba") else None
        except Exception as exc:
            raise InvalidFeatures(
                f"the model could not predict from these rows: {type(exc).__name__}: {exc}"
            ) from None
    out: list[dict[str, Any]] = [{"prediction": jsonable(p)} for p in predictions]
    if probabilities is not None:
        labels = [jsonable(c) for c in getattr(obj, "classes_", range(len(probabilities[0])))]
        for item, row in zip(out, probabilities, strict=True):
            item["probabilities"] = {label: float(p) for label, p in zip(labels, row, strict=True)}
    return out
