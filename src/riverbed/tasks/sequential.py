"""Tasks whose calls are not ``predict_one(x)`` / ``learn_one(x, y)``: forecasting,
recommendation, bandits and custom (duck-typed) models."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from river import bandit, reco
from river.time_series.base import Forecaster

from riverbed.exceptions import InvalidInput
from riverbed.metrics import Tracker
from riverbed.tasks.base import MISSING, Task, check_number

__all__ = ["Bandit", "Custom", "Forecasting", "Recommendation"]

_MAX_ARMS = 10_000


def _check_id(value: Any, what: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise InvalidInput(f"{what} must be a non-empty string or an integer, got {value!r}")
    return value


class Forecasting(Task):
    """``learn_one(y, x)``; ``forecast(horizon, xs)``. The metrics are per step ahead
    (``"+1 MAE"``...), scored as ``evaluate.iter_evaluate`` does with the ``horizon`` option
    (default 1): before each learn, from the ``horizon``-th on, the next ``horizon`` values
    are forecast and scored once they have all arrived."""

    name = "forecasting"
    default_metrics = ("MAE",)
    option_names = frozenset({"horizon"})
    features_optional = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        horizon = self.options.get("horizon", 1)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= 1000:
            raise InvalidInput(f"horizon must be an integer from 1 to 1000, got {horizon!r}")
        self.horizon = horizon

    def matches(self, model: Any) -> bool:
        return isinstance(model, Forecaster)

    def tracker(
        self, names: list[str], *, windows: Any = (), history_every: int, history_seconds: float
    ) -> Tracker:
        return Tracker(
            names,
            horizon=self.horizon,
            history_every=history_every,
            history_seconds=history_seconds,
        )

    def check_target(self, y: Any) -> Any:
        return check_number(y, "a time series value")

    def predict(self, model: Any, sample: Any, tracker: Tracker) -> Any:
        return model.forecast(horizon=1, xs=[sample])[0]

    def learn_prediction(self, model: Any, sample: Any, tracker: Tracker, stored: Any) -> Any:
        # Always the forecast of the next `horizon` values made now, even when learning by id.
        if tracker.horizon is None or not tracker.horizon.ready:
            return None
        try:
            return [float(v) for v in model.forecast(horizon=self.horizon)]
        except Exception:  # a model that cannot forecast yet (still warming up) is not scored
            return None

    def score(
        self, tracker: Tracker, model: Any, sample: Any, y: Any, y_pred: Any, t: float
    ) -> bool:
        return tracker.update(y, y_pred, t=t) if tracker.horizon is not None else False

    def learn(self, model: Any, sample: Any, y: Any, y_pred: Any) -> None:
        model.learn_one(y=y, x=sample)

    def forecast(self, model: Any, horizon: int, xs: list[dict[str, Any]] | None) -> list[float]:
        return [float(v) for v in model.forecast(horizon=horizon, xs=xs)]


class Recommendation(Task):
    """``learn_one(user, item, y, x)``; a prediction is the rating of ``item`` by ``user``;
    ``rank(user, items, x)`` orders items by preference."""

    name = "recommendation"
    default_metrics = ("MAE", "RMSE")
    inputs = frozenset({"user", "item"})
    features_optional = True

    def matches(self, model: Any) -> bool:
        return isinstance(model, reco.base.Ranker)

    def sample(self, x: dict[str, Any], inputs: Mapping[str, Any]) -> Any:
        self.reject_inputs(inputs, self.inputs)
        if inputs.get("user") is None or inputs.get("item") is None:
            raise InvalidInput("a recommender needs a 'user' and an 'item'")
        return {
            "user": _check_id(inputs["user"], "user"),
            "item": _check_id(inputs["item"], "item"),
            "x": x,
        }

    def check_target(self, y: Any) -> Any:
        return float(y) if isinstance(y, bool) else check_number(y, "a rating")

    def predict(self, model: Any, sample: Any, tracker: Tracker) -> Any:
        return model.predict_one(sample["user"], sample["item"], x=sample["x"])

    def learn(self, model: Any, sample: Any, y: Any, y_pred: Any) -> None:
        model.learn_one(sample["user"], sample["item"], y, x=sample["x"])

    def rank(self, model: Any, user: Any, items: list[Any], x: dict[str, Any]) -> list[Any]:
        _check_id(user, "user")
        if not isinstance(items, list) or not items:
            raise InvalidInput("items must be a non-empty list of item ids")
        for item in items:
            _check_id(item, "an item")
        return list(model.rank(user, items, x=x))


class Bandit(Task):
    """A predict pulls one of ``arms`` (with the features as context for a contextual
    policy); the reward arrives later as the ground truth of that pull's id."""

    name = "bandit"
    default_metrics = ("Mean", "Sum")
    inputs = frozenset({"arms"})
    features_optional = True
    learns_by_id_only = True
    replays_predictions = True

    def matches(self, model: Any) -> bool:
        return isinstance(model, bandit.base.Policy)

    def sample(self, x: dict[str, Any], inputs: Mapping[str, Any]) -> Any:
        self.reject_inputs(inputs, self.inputs)
        arms = inputs.get("arms")
        if not isinstance(arms, list) or not arms or len(arms) > _MAX_ARMS:
            raise InvalidInput(f"a bandit needs 'arms': a list of 1 to {_MAX_ARMS} arm ids")
        for arm in arms:
            _check_id(arm, "an arm")
        return {"context": x, "arms": arms}

    def check_target(self, y: Any) -> Any:
        return float(y) if isinstance(y, bool) else check_number(y, "a reward")

    def predict(self, model: Any, sample: Any, tracker: Tracker) -> Any:
        if isinstance(model, bandit.base.ContextualPolicy):
            return model.pull(sample["arms"], context=sample["context"])
        return model.pull(sample["arms"])

    def learn_prediction(self, model: Any, sample: Any, tracker: Tracker, stored: Any) -> Any:
        if stored is MISSING:
            raise InvalidInput(
                "a bandit learns the reward of a pull: predict (pull) first, then learn with "
                "the pull's id"
            )
        return stored

    def score(
        self, tracker: Tracker, model: Any, sample: Any, y: Any, y_pred: Any, t: float
    ) -> bool:
        return tracker.update(y, y_pred, t=t)

    def learn(self, model: Any, sample: Any, y: Any, y_pred: Any) -> None:
        if isinstance(model, bandit.base.ContextualPolicy):
            model.update(y_pred, sample["context"], y)
        else:
            model.update(y_pred, y)

    def wire(self, y_pred: Any) -> dict[str, Any]:
        return {"prediction": y_pred, "arm": y_pred}


_METHOD = re.compile(r"[a-z][a-z0-9_]{0,63}")
_LEARN_WITH = {"x,y": ("x", "y"), "x": ("x",), "y,x": ("y", "x"), "y": ("y",)}


def jsonable(value: Any) -> Any:
    """A prediction of a custom model in a form JSON can carry."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {
            k if isinstance(k, str | int | bool) else str(k): jsonable(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item"):  # a numpy scalar
        return jsonable(value.item())
    return str(value)


class Custom(Task):
    """Any object, duck-typed: the options name the method that predicts (``predict``,
    default ``predict_one``, called with ``x``), the one that learns (``learn``, default
    ``learn_one``) and its arguments (``learn_with``: ``"x,y"`` (default), ``"x"``,
    ``"y,x"`` or ``"y"``). Metrics are off unless chosen."""

    name = "custom"
    option_names = frozenset({"predict", "learn", "learn_with"})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.predict_method = self.options.get("predict", "predict_one")
        self.learn_method = self.options.get("learn", "learn_one")
        for method in (self.predict_method, self.learn_method):
            if not isinstance(method, str) or not _METHOD.fullmatch(method):
                raise InvalidInput(f"a method name must be public and lower case, got {method!r}")
        learn_with = self.options.get("learn_with", "x,y")
        if learn_with not in _LEARN_WITH:
            raise InvalidInput(f"learn_with must be one of {', '.join(_LEARN_WITH)}")
        self.learn_args = _LEARN_WITH[learn_with]

    @property
    def requires_target(self) -> bool:  # type: ignore[override]
        return "y" in self.learn_args

    def matches(self, model: Any) -> bool:
        return all(
            callable(getattr(model, m, None)) for m in (self.predict_method, self.learn_method)
        )

    def check_model(self, model: Any) -> None:
        if not self.matches(model):
            raise InvalidInput(
                f"a {type(model).__name__} has no method {self.predict_method!r} or "
                f"{self.learn_method!r}; name the methods with the predict and learn options"
            )

    def predict(self, model: Any, sample: Any, tracker: Tracker) -> Any:
        return jsonable(getattr(model, self.predict_method)(sample))

    def learn(self, model: Any, sample: Any, y: Any, y_pred: Any) -> None:
        values = {"x": sample, "y": y}
        getattr(model, self.learn_method)(*(values[a] for a in self.learn_args))
