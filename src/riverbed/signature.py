"""What a model takes and gives, as far as riverbed knows it (an Engine mixin).

An online model declares no schema: it takes whatever features it is sent. Its *signature*
is read from what it has seen: the features of its latest learn (or, before any learn, of
its latest prediction) in the order they came, each with its kind, and the kind of the
ground truth it learned from. A scikit-learn version's features are its column names
(``feature_names_in_`` or the ``feature_names`` it was uploaded with). The Open Inference
Protocol's model metadata (docs/protocols.md) is built from it.

Kinds are JSON's: ``boolean``, ``integer``, ``number`` and ``string`` (and ``null`` for a
value that was null).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Signatures", "kind_of"]


def kind_of(value: Any) -> str:
    """The JSON kind of a feature or target value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    return "object" if isinstance(value, dict) else "array"


class Signatures:
    """The signature operation (mixed into :class:`~riverbed.engine.Engine`)."""

    if TYPE_CHECKING:
        from riverbed.registry.base import _Loaded
        from riverbed.stores.base import ModelRecord, Store

        store: Store

        def _model_record(self, name: str) -> ModelRecord: ...
        def _flavor(self, name: str) -> str: ...
        def _serving_target(self, ref: str, version: int | None) -> _Loaded | None: ...
        def get_model(self, name: str) -> dict[str, Any]: ...

    def signature(self, ref: str, version: int | None = None) -> dict[str, Any]:
        """``{"model", "task", "flavor", "features": [{"name", "kind"}], "inputs": [{"name",
        "kind"}], "target": kind or None, "seen": "learn" | "prediction" | "version" |
        None}`` for a model (``ref`` may name a version: ``name@3``, ``name@alias``, or
        ``version``). The features are those of the latest sample seen, in their order;
        ``inputs`` the task's other fields (a recommender's user and item, a bandit's arms);
        ``seen`` says where the features were read."""
        from riverbed.registry.base import split_ref

        name = split_ref(ref)[0]
        model = self._model_record(name)
        out: dict[str, Any] = {
            "model": name,
            "task": model.task,
            "flavor": model.flavor,
            "features": [],
            "inputs": [],
            "target": None,
            "seen": None,
        }
        if model.flavor == "sklearn":
            from riverbed import batch

            target = self._serving_target(ref, version)
            if target is not None:
                names = batch.feature_names(target.obj, target.record.metadata)
                if names:
                    out["features"] = [{"name": n, "kind": "number"} for n in names]
                    out["seen"] = "version"
        elif model.flavor != "river":
            return out
        else:
            self._serving_target(ref, version)  # a version named must exist
        described = self.get_model(name)
        sample, target_value, seen = self._latest_sample(name, described)
        if not isinstance(sample, dict):
            return out
        features, inputs = _split(sample)
        if not out["features"]:
            out["features"] = [{"name": k, "kind": kind_of(v)} for k, v in features.items()]
            out["seen"] = seen
        if inputs:
            out["inputs"] = [{"name": k, "kind": kind_of(v)} for k, v in inputs.items()]
        if target_value is not None:
            out["target"] = kind_of(target_value)
        return out

    def _latest_sample(self, name: str, described: dict[str, Any]) -> tuple[Any, Any, str]:
        """The sample and target of the latest learn, or of the latest prediction (target
        None), with where it was found; (None, None, "") when there is none."""
        n_learns = int(described.get("n_learns") or 0)
        if n_learns:
            last = None
            for record in self.store.learns_after(name, n_learns - 1):
                last = record
            if last is not None:
                return last.features, last.target, "learn"
        n_predictions = self.store.max_prediction_seq(name)
        if n_predictions:
            records = self.store.predictions_after(name, n_predictions - 1)
            if records:
                return records[-1].features, None, "prediction"
        return None, None, ""


# Where a task keeps the features in its stored sample, beside its other inputs (see
# riverbed.tasks: a recommender's {"user", "item", "x"}, a bandit's {"context", "arms"}, a
# supervised detector's {"x", "value"}); "n_learns" is a bandit pull's place among learns.
_FEATURES_UNDER = ("x", "context")
_BOOKKEEPING = frozenset({"n_learns"})


def _split(sample: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored sample as its features and the task's other inputs."""
    for key in _FEATURES_UNDER:
        inner = sample.get(key)
        if isinstance(inner, dict) and set(sample) - {key} <= {
            "user",
            "item",
            "arms",
            "value",
            *_BOOKKEEPING,
        }:
            others = {k: v for k, v in sample.items() if k != key and k not in _BOOKKEEPING}
            return inner, others
    return sample, {}
