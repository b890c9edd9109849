"""Checks of a training job's request, run before it is queued (see :mod:`riverbed.jobs`):
the feature columns, the validation settings, the one task every candidate serves and the
selection of the best candidate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from river import base as river_base

from riverbed import training
from riverbed.exceptions import InvalidInput
from riverbed.tasks import get_task, make_metrics

if TYPE_CHECKING:
    from riverbed.config import Settings
    from riverbed.events import EventBus
    from riverbed.stores.base import Store, VersionRecord

__all__ = ["JobHost", "check_features", "check_select", "check_validation", "task_of"]


class JobHost(Protocol):
    """What training jobs need of the engine that runs them (the engine is one): jobs are a
    part of the engine, so they name its shape here instead of importing it back."""

    settings: Settings
    store: Store
    events: EventBus

    def _check_name(self, name: Any) -> str: ...
    def _check_text(self, field: str, value: Any) -> str: ...
    def _object_of(self, record: VersionRecord) -> Any: ...
    def resolve(self, ref: str) -> dict[str, Any]: ...
    def upload(self, *args: Any, **kwargs: Any) -> Any: ...
    def set_alias(self, *args: Any, **kwargs: Any) -> Any: ...
    def delete_model(self, *args: Any, **kwargs: Any) -> Any: ...
    def delete_version(self, *args: Any, **kwargs: Any) -> Any: ...


_VALIDATION = {"method", "test_size", "folds", "shuffle", "seed"}


def check_features(
    dataset: training.Dataset, target: str, features: Sequence[str] | None
) -> list[str]:
    if features is None:
        return [c for c in dataset.columns if c != target]
    if isinstance(features, str) or not all(isinstance(f, str) for f in features):
        raise InvalidInput("features must be an array of column names")
    for name in features:
        if name not in dataset.columns:
            raise training.data_error("the feature column is not in the data", column=name)
        if name == target:
            raise training.data_error("the target cannot also be a feature", column=name)
    if not features:
        raise InvalidInput("features must name at least one column")
    return list(features)


def check_validation(validation: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(validation or {})
    unknown = set(out) - _VALIDATION
    if unknown:
        raise InvalidInput(f"unknown validation field(s) {sorted(unknown)}")
    method = out.setdefault("method", "holdout")
    if method not in ("holdout", "kfold"):
        raise InvalidInput("validation method is holdout or kfold")
    size = out.get("test_size", 0.25)
    if isinstance(size, bool) or not isinstance(size, int | float) or not 0 < size < 1:
        raise InvalidInput("validation test_size is a fraction between 0 and 1")
    folds = out.get("folds", 5)
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= 100:
        raise InvalidInput("validation folds is an integer from 2 to 100")
    seed = out.get("seed", 0)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidInput("validation seed is an integer")
    if not isinstance(out.get("shuffle", True), bool):
        raise InvalidInput("validation shuffle is true or false")
    return out


def task_of(
    engine: JobHost,
    model: str,
    found: list[training.Candidate],
    stated: str | None,
    dataset: training.Dataset,
    target: str,
) -> str:
    """The one task every candidate serves: stated, else the model's if it exists, else
    regression or classification (binary for at most two distinct targets)."""
    from sklearn.base import is_classifier, is_regressor

    allowed = engine.settings.allowed_module_prefixes
    existing = engine.store.get_model(model)
    if stated is None and existing is not None:
        stated = existing.task
    kinds = set()
    objects = [c.base if c.base is not None else training.build(c.spec, allowed) for c in found]
    flavors = {c.name: training.flavor_of(o) for c, o in zip(found, objects, strict=True)}
    if len(set(flavors.values())) > 1:
        raise InvalidInput(
            "the candidates mix river models and scikit-learn estimators; a job trains "
            "versions of one model, which is either river (it learns online) or scikit-learn",
            detail={"candidates": flavors},
        )
    for obj in objects:
        if training.flavor_of(obj) == "river":
            kinds.add("regression" if isinstance(obj, river_base.Regressor) else "classifier")
        elif is_regressor(obj):
            kinds.add("regression")
        elif is_classifier(obj):
            kinds.add("classifier")
    if stated is None:
        if len(kinds) > 1:
            raise InvalidInput(
                "the candidates mix regressors and classifiers; a job trains versions of "
                "one model, which serves one task"
            )
        if kinds == {"classifier"}:
            labels = {row.get(target) for row in dataset.rows if target in row}
            stated = "binary" if len(labels) <= 2 else "multiclass"
        else:
            stated = "regression"
    task = get_task(stated)
    for obj in objects:
        if training.flavor_of(obj) == "river":
            task.check_model(obj)
    if existing is not None and existing.task != task.name:
        raise InvalidInput(f"model {model!r} serves the {existing.task} task, not {task.name}")
    return task.name


def check_select(
    select: Mapping[str, Any] | None, task: str, metrics: Any, n: int
) -> dict[str, Any]:
    select = dict(select or {})
    unknown = set(select) - {"metric", "direction", "alias"}
    if unknown:
        raise InvalidInput(f"unknown select field(s) {sorted(unknown)}")
    names = list(metrics) if metrics else list(get_task(task).default_metrics)
    metric = select.get("metric", names[0])
    if metric not in names:
        raise InvalidInput(
            f"select metric {metric!r} is not one of the job's metrics: {', '.join(names)}"
        )
    (built,) = make_metrics(get_task(task), [metric])
    direction = select.get("direction", "max" if built.bigger_is_better else "min")
    if direction not in ("min", "max"):
        raise InvalidInput("select direction is min or max")
    alias = select.get("alias", "champion" if n > 1 else None)
    if alias is not None and (not isinstance(alias, str) or not alias):
        raise InvalidInput("select alias is a name (or null: no alias)")
    return {"metric": metric, "direction": direction, "alias": alias}
