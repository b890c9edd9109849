"""Training on a batch of rows: reading the data, expanding candidates, fitting, scoring.

This module does no storage and knows no jobs: :mod:`riverbed.jobs` runs it in the
background and registers what it returns. Two ways to train:

- **river** models learn over the rows in order; every row is first predicted, then learned
  (progressive validation, as ``river.evaluate.progressive_val_score``), and the metrics'
  course is kept as a history;
- **scikit-learn** estimators are scored on a holdout split or by k-fold cross-validation
  (river's metric classes over the held-out predictions, averaged over folds), then fit on
  every row: the registered model has seen all the data, its metrics are the estimate.

Errors say where the data went wrong: :class:`~riverbed.exceptions.InvalidData` carries the
row (1-based, data rows only) and the column in its detail.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from riverbed import specs
from riverbed.exceptions import InvalidData, InvalidInput, InvalidSpec
from riverbed.tasks import MISSING, Task, get_task, make_metrics
from riverbed.validation import parse_int

__all__ = [
    "FORMATS",
    "Candidate",
    "Cancelled",
    "Dataset",
    "Outcome",
    "blame",
    "candidates_of",
    "flavor_of",
    "read_data",
    "train",
]

FORMATS = ("json", "csv", "ndjson", "parquet")
HISTORY_POINTS = 100
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")


def data_error(message: str, *, row: int | None = None, column: str | None = None) -> InvalidData:
    """An :class:`InvalidData` whose message starts with where the data went wrong."""
    where = []
    if row is not None:
        where.append(f"row {row}")
    if column is not None:
        where.append(f"column {column!r}")
    prefix = ", ".join(where)
    return InvalidData(
        f"{prefix}: {message}" if prefix else message, detail={"row": row, "column": column}
    )


class Cancelled(Exception):
    """Raised inside training when the job was cancelled."""


# -- data -------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """Rows as dictionaries (a missing value is left out of its row) and their columns."""

    rows: list[dict[str, Any]]
    columns: list[str]
    format: str
    name: str = ""

    def fingerprint(self) -> dict[str, Any]:
        """Rows, columns and a SHA-256 of the parsed rows (the same data in another format
        gives the same hash)."""
        digest = hashlib.sha256()
        digest.update(orjson.dumps(self.columns))
        for row in self.rows:
            digest.update(orjson.dumps(row, option=orjson.OPT_SORT_KEYS))
            digest.update(b"\n")
        return {
            "rows": len(self.rows),
            "columns": list(self.columns),
            "hash": "sha256:" + digest.hexdigest(),
        }


def blame(exc: InvalidData, candidate: Candidate) -> InvalidData:
    """The error of a candidate's training, naming the candidate."""
    exc.message = f"candidate {candidate.name!r}: {exc.message}"
    exc.detail = {**(exc.detail or {}), "candidate": candidate.name}
    return exc


def _scalar(value: Any, row: int, column: str) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    if hasattr(value, "item"):  # numpy scalars from Parquet
        return _scalar(value.item(), row, column)
    raise data_error(
        f"a value must be a number, a string or a boolean, got {type(value).__name__}",
        row=row,
        column=column,
    )


def _from_objects(objects: Iterable[Any], fmt: str, name: str) -> Dataset:
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for i, obj in enumerate(objects, 1):
        if not isinstance(obj, Mapping):
            raise data_error(f"a row must be an object of column -> value, got {obj!r}", row=i)
        row = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise data_error(f"column names must be strings, got {key!r}", row=i)
            value = _scalar(value, i, key)
            columns.setdefault(key)
            if value is not None:
                row[key] = value
        rows.append(row)
    return Dataset(rows, list(columns), fmt, name)


def _csv_value(raw: str) -> Any:
    text = raw.strip()
    if not text or text.lower() in {"nan", "na", "null", "none"}:
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return raw


def _read_csv(data: bytes, name: str) -> Dataset:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise data_error(f"the CSV is not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise data_error("the CSV is empty: it needs a header line") from None
    except csv.Error as exc:
        raise data_error(f"line 1 of the CSV: {exc}") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or "" in header:
        raise data_error(f"the CSV header has empty or repeated column names: {header}")
    rows: list[dict[str, Any]] = []
    try:
        for line in reader:
            if not line:
                continue
            if len(line) != len(header):
                raise data_error(
                    f"expected {len(header)} fields, found {len(line)} (line "
                    f"{reader.line_num} of the CSV)",
                    row=len(rows) + 1,
                )
            row = {}
            for key, raw in zip(header, line, strict=True):
                value = _csv_value(raw)
                if value is not None:
                    row[key] = value
            rows.append(row)
    except csv.Error as exc:
        raise data_error(f"line {reader.line_num} of the CSV: {exc}") from None
    return Dataset(rows, header, "csv", name)


def _ndjson_objects(lines: Iterable[bytes]) -> Iterator[Any]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise data_error(f"line {number} of the NDJSON is not JSON: {exc}") from None


def _read_parquet(data: bytes, name: str) -> Dataset:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the test extra installs it
        raise InvalidInput(
            "reading Parquet needs pyarrow: pip install 'riverbed[parquet]'"
        ) from None
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:
        raise data_error(f"the Parquet file cannot be read: {exc}") from None
    dataset = _from_objects(table.to_pylist(), "parquet", name)
    dataset.columns = list(table.column_names)
    return dataset


def read_data(data: Any, format: str | None = None, *, name: str = "") -> Dataset:
    """Parse training data: JSON rows (a list of objects), or the bytes of a CSV (with a
    header line), an NDJSON file (one object per line) or a Parquet file."""
    if format is None:
        format = "json" if isinstance(data, list) else _guess(data, name)
    if format not in FORMATS:
        raise InvalidInput(f"unknown data format {format!r}; one of {', '.join(FORMATS)}")
    if format == "json":
        if isinstance(data, bytes | bytearray):
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise data_error(f"the data is not JSON: {exc}") from None
        if not isinstance(data, list):
            raise data_error("JSON data must be an array of row objects")
        dataset = _from_objects(data, "json", name)
    elif not isinstance(data, bytes | bytearray):
        raise InvalidInput(f"{format} data must be bytes")
    elif format == "csv":
        dataset = _read_csv(bytes(data), name)
    elif format == "ndjson":
        dataset = _from_objects(_ndjson_objects(bytes(data).splitlines()), "ndjson", name)
    else:
        dataset = _read_parquet(bytes(data), name)
    if not dataset.rows:
        raise data_error("the data has no rows")
    return dataset


def _guess(data: Any, name: str) -> str:
    lowered = name.lower()
    for ext, fmt in ((".csv", "csv"), (".parquet", "parquet"), (".ndjson", "ndjson")):
        if lowered.endswith(ext):
            return fmt
    if lowered.endswith((".jsonl", ".json")):
        return "ndjson" if lowered.endswith(".jsonl") else "json"
    if isinstance(data, bytes | bytearray) and bytes(data[:4]) == b"PAR1":
        return "parquet"
    head = bytes(data[:1]).strip() if isinstance(data, bytes | bytearray) else b""
    return "ndjson" if head == b"{" else "csv"


# -- candidates -------------------------------------------------------------------------------


@dataclass
class Candidate:
    name: str
    spec: Any = None
    base: Any = None  # a warm-start object (deep-copied before training)
    params: dict[str, Any] = field(default_factory=dict)  # the grid point, if any


def _set_path(spec: Any, path: str, value: Any) -> Any:
    spec = copy.deepcopy(spec)
    parts = path.split(".")
    node = spec
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            index = parse_int(part)
            if index is None or index >= len(node):
                raise InvalidInput(f"grid path {path!r}: {part!r} is not an index of the list")
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise InvalidInput(f"grid path {path!r} goes through a {type(node).__name__}")
    return spec


def candidates_of(
    *, spec: Any = None, candidates: Any = None, grid: Any = None, limit: int = 50
) -> list[Candidate]:
    """The candidates a job names: one ``spec``, a list of ``candidates`` (specs, or
    ``{"name", "spec"}``), or a ``grid`` ``{"spec": base, "params": {"params.alpha": [..]}}``
    whose paths point into the spec (``pipeline.1.params.l2`` for a pipeline step)."""
    given = [k for k, v in (("spec", spec), ("candidates", candidates), ("grid", grid)) if v]
    if len(given) > 1:
        raise InvalidInput(f"give one of spec, candidates or grid, not {' and '.join(given)}")
    out: list[Candidate] = []
    if spec is not None:
        out.append(Candidate("candidate-1", spec))
    elif candidates is not None:
        if not isinstance(candidates, list) or not candidates:
            raise InvalidInput("candidates must be a non-empty array of specs")
        for i, item in enumerate(candidates, 1):
            if isinstance(item, dict) and "spec" in item:
                unknown = set(item) - {"name", "spec"}
                if unknown:
                    raise InvalidInput(f"candidate {i}: unknown field(s) {sorted(unknown)}")
                name = item.get("name") or f"candidate-{i}"
                out.append(Candidate(str(name), item["spec"]))
            else:
                out.append(Candidate(f"candidate-{i}", item))
    elif grid is not None:
        if not isinstance(grid, dict) or set(grid) != {"spec", "params"}:
            raise InvalidInput('grid must be {"spec": base spec, "params": {path: [values]}}')
        params = grid["params"]
        if (
            not isinstance(params, dict)
            or not params
            or not all(isinstance(v, list) and v for v in params.values())
        ):
            raise InvalidInput("grid params must map spec paths to non-empty arrays of values")
        paths = list(params)
        for i, values in enumerate(itertools.product(*(params[p] for p in paths)), 1):
            point = dict(zip(paths, values, strict=True))
            built = grid["spec"]
            for path, value in point.items():
                built = _set_path(built, path, value)
            label = ",".join(f"{p.rsplit('.', 1)[-1]}={v}" for p, v in point.items())
            out.append(Candidate(label or f"candidate-{i}", built, params=point))
    if len(out) > limit:
        raise InvalidInput(f"{len(out)} candidates is more than the limit of {limit}")
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise InvalidInput(f"candidate names must differ: {names}")
    return out


def flavor_of(obj: Any) -> str:
    """``river`` or ``sklearn``: how a model object is trained."""
    from river import base

    if isinstance(obj, base.Estimator):
        return "river"
    module = type(obj).__module__
    if module.startswith("sklearn") or hasattr(obj, "fit") and hasattr(obj, "get_params"):
        return "sklearn"
    raise InvalidSpec(
        f"a spec must build a river model or a scikit-learn estimator; this one built a "
        f"{type(obj).__name__}"
    )


# -- fitting ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What training one candidate produced."""

    model: Any
    flavor: str
    task: str
    metrics: dict[str, float | None]
    details: dict[str, Any]  # history (river) or folds / split sizes (scikit-learn)


Progress = Callable[[float], None]


def _features_of(row: Mapping[str, Any], features: Sequence[str]) -> dict[str, Any]:
    return {f: row[f] for f in features if f in row}


def _target(task: Task, row: Mapping[str, Any], target: str, number: int) -> Any:
    if target not in row:
        raise data_error("the target is missing", row=number, column=target)
    try:
        return task.check_target(row[target])
    except InvalidInput as exc:
        raise data_error(exc.message, row=number, column=target) from None


def _values(metric: Any) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for m in metric:
        value = m.get()
        out[type(m).__name__] = (
            float(value) if value is not None and math.isfinite(float(value)) else None
        )
    return out


def train_river(
    model: Any,
    task: Task,
    metric_names: Sequence[str] | None,
    dataset: Dataset,
    target: str,
    features: Sequence[str],
    progress: Progress,
    cancelled: Callable[[], bool],
) -> Outcome:
    names = list(task.default_metrics if metric_names is None else metric_names)
    tracker = task.tracker(names, history_every=1, history_seconds=math.inf)
    metric = [m for _, _, m in tracker.running]
    n = len(dataset.rows)
    every = max(1, n // HISTORY_POINTS)
    tick = max(1, n // 200)
    history = []
    for i, row in enumerate(dataset.rows, 1):
        y = _target(task, row, target, i)
        x = _features_of(row, features)
        try:
            y_pred = task.learn_prediction(model, x, tracker, MISSING)
            task.score(tracker, model, x, y, y_pred, 0.0)
            task.learn(model, x, y, y_pred)
        except Exception as exc:
            raise data_error(
                f"the model could not learn from it: {type(exc).__name__}: {exc}", row=i
            ) from None
        if i % every == 0 or i == n:
            history.append({"n": i, **_values(metric)})
        if i % tick == 0:
            if cancelled():
                raise Cancelled
            progress(i / n)
    return Outcome(model, "river", task.name, _values(metric), {"history": history, "rows": n})


def _matrix(dataset: Dataset, features: Sequence[str]) -> Any:
    import numpy as np

    X = np.full((len(dataset.rows), len(features)), np.nan)
    for i, row in enumerate(dataset.rows):
        for j, f in enumerate(features):
            value = row.get(f)
            if value is None:
                continue
            if isinstance(value, str):
                raise data_error(
                    f"{value!r} is not a number (scikit-learn models take numeric columns)",
                    row=i + 1,
                    column=f,
                )
            X[i, j] = float(value)
    return X


def _sklearn_task(obj: Any, y: list[Any], stated: str | None) -> Task:
    from sklearn.base import is_classifier, is_regressor

    if stated is not None:
        return get_task(stated)
    if is_regressor(obj):
        return get_task("regression")
    if is_classifier(obj):
        return get_task("binary" if len(set(y)) <= 2 else "multiclass")
    raise InvalidInput(f"cannot tell which task a {type(obj).__name__} serves; state the task")


def _score(model: Any, task: Task, names: Sequence[str] | None, X: Any, y: list[Any]) -> Any:
    metric = make_metrics(task, names)
    if task.name == "regression" or metric.requires_labels or not hasattr(model, "predict_proba"):
        for y_true, y_pred in zip(y, model.predict(X), strict=True):
            metric.update(y_true, y_pred.item() if hasattr(y_pred, "item") else y_pred)
    else:
        classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
        for y_true, proba in zip(y, model.predict_proba(X), strict=True):
            metric.update(y_true, dict(zip(classes, map(float, proba), strict=True)))
    return metric


def train_sklearn(
    model: Any,
    stated_task: str | None,
    metric_names: Sequence[str] | None,
    dataset: Dataset,
    target: str,
    features: Sequence[str],
    validation: Mapping[str, Any],
    progress: Progress,
    cancelled: Callable[[], bool],
) -> Outcome:
    import numpy as np
    from sklearn.base import clone
    from sklearn.model_selection import KFold, train_test_split

    raw_y = [row.get(target) for row in dataset.rows]
    for i, value in enumerate(raw_y, 1):
        if value is None:
            raise data_error("the target is missing", row=i, column=target)
    task = _sklearn_task(model, raw_y, stated_task)
    y = [_target(task, row, target, i) for i, row in enumerate(dataset.rows, 1)]
    X = _matrix(dataset, features)
    y_arr = np.asarray(y)
    method = validation.get("method", "holdout")
    seed = validation.get("seed", 0)
    shuffle = bool(validation.get("shuffle", method == "holdout"))
    indices = np.arange(len(y))
    if method == "holdout":
        test_size = validation.get("test_size", 0.25)
        train_idx, test_idx = train_test_split(
            indices, test_size=test_size, shuffle=shuffle, random_state=seed if shuffle else None
        )
        splits = [(train_idx, test_idx)]
    else:
        folds = KFold(
            n_splits=int(validation.get("folds", 5)),
            shuffle=shuffle,
            random_state=seed if shuffle else None,
        )
        splits = list(folds.split(indices))
    steps = len(splits) + 1
    per_fold = []
    for k, (train_idx, test_idx) in enumerate(splits):
        if cancelled():
            raise Cancelled
        fitted = _fit(
            clone(model) if not _warm(model) else copy.deepcopy(model), X, y_arr, train_idx
        )
        scored = _score(fitted, task, metric_names, X[test_idx], [y[i] for i in test_idx])
        per_fold.append({"train": len(train_idx), "test": len(test_idx), **_values(scored)})
        progress((k + 1) / steps)
    if cancelled():
        raise Cancelled
    final = _fit(model, X, y_arr, indices)
    names = [k for k in per_fold[0] if k not in ("train", "test")]
    metrics: dict[str, float | None] = {}
    for name in names:
        values = [fold[name] for fold in per_fold]
        known = [float(v) for v in values if v is not None]
        metrics[name] = sum(known) / len(known) if len(known) == len(values) else None
    settings: dict[str, Any] = {"method": method, "shuffle": shuffle, "seed": seed}
    if method == "holdout":
        settings["test_size"] = validation.get("test_size", 0.25)
    else:
        settings["folds"] = len(splits)
    details: dict[str, Any] = {"validation": settings, "folds": per_fold}
    progress(1.0)
    return Outcome(final, "sklearn", task.name, metrics, details)


def _warm(model: Any) -> bool:
    return bool(getattr(model, "warm_start", False))


def _fit(model: Any, X: Any, y: Any, rows: Any) -> Any:
    try:
        model.fit(X[rows], y[rows])
    except ValueError as exc:
        raise data_error(f"the estimator could not fit the data: {exc}") from None
    return model


def build(spec: Any, allowed: Sequence[str]) -> Any:
    return specs.build(spec, allowed=allowed)


def train(
    candidate: Candidate,
    dataset: Dataset,
    *,
    target: str,
    features: Sequence[str],
    task: str | None,
    metrics: Sequence[str] | None,
    validation: Mapping[str, Any],
    allowed: Sequence[str],
    progress: Progress,
    cancelled: Callable[[], bool],
) -> Outcome:
    """Train one candidate on the dataset (see the module docstring)."""
    from riverbed.tasks import detect_task

    model = (
        copy.deepcopy(candidate.base)
        if candidate.base is not None
        else build(candidate.spec, allowed)
    )
    if flavor_of(model) == "river":
        task_ = get_task(task) if task is not None else detect_task(model)
        task_.check_model(model)
        return train_river(model, task_, metrics, dataset, target, features, progress, cancelled)
    if candidate.base is not None and "warm_start" in model.get_params():
        model.set_params(warm_start=True)
    return train_sklearn(
        model, task, metrics, dataset, target, features, validation, progress, cancelled
    )
