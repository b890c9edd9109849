"""Declarative specs: built without pickle, allow-listed, and round-tripped."""

from __future__ import annotations

import pytest
from river import compose, feature_extraction, linear_model, optim, preprocessing, tree

from riverbed.exceptions import InvalidSpec
from riverbed.specs import build, to_spec


@pytest.mark.parametrize(
    "model",
    [
        linear_model.LinearRegression(l2=0.1, optimizer=optim.Adam(lr=0.05)),
        preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        (preprocessing.StandardScaler() + feature_extraction.PolynomialExtender())
        | linear_model.LinearRegression(),
        tree.HoeffdingTreeClassifier(grace_period=50, max_depth=5),
        compose.Select("a", "b") | preprocessing.MinMaxScaler() | linear_model.PARegressor(C=0.5),
    ],
)
def test_a_model_survives_spec_round_trip(model: object) -> None:
    rebuilt = build(to_spec(model))
    assert repr(rebuilt) == repr(model)
    assert to_spec(rebuilt) == to_spec(model)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"class": "os.system"}, "outside the allowed modules"),
        ({"class": "builtins.eval"}, "outside the allowed modules"),
        ({"class": "river._private.Thing"}, "private"),
        ({"class": "river.linear_model.Nope"}, "no attribute"),
        ({"class": "river.nope.Nope"}, "no module"),
        ({"class": "river.linear_model.LinearRegression", "params": {"bogus": 1}}, "cannot build"),
        ({"class": "river.linear_model.LinearRegression", "extra": 1}, "unknown keys"),
        ({"pipeline": []}, "one step or more"),
        ({"function": "river.linear_model.LinearRegression"}, "not a function"),
        ({"class": "river.utils.math.sigmoid"}, "not a class"),
        ({"class": 5}, "dotted path"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(spec: object, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        build(spec)


def test_the_allow_list_can_be_widened() -> None:
    with pytest.raises(InvalidSpec):
        build({"class": "collections.OrderedDict"})
    assert build({"class": "collections.OrderedDict"}, allowed=("collections",)) == {}


def test_deep_nesting_is_refused() -> None:
    spec: dict[str, object] = {"class": "river.linear_model.LinearRegression"}
    for _ in range(40):
        spec = {"class": "river.linear_model.LinearRegression", "params": {"optimizer": spec}}
    with pytest.raises(InvalidSpec, match="deeper"):
        build(spec)


def test_a_lambda_has_no_spec() -> None:
    with pytest.raises(InvalidSpec, match="lambda"):
        to_spec(compose.FuncTransformer(lambda x: x))
