"""Declarative model specs: build a model from JSON without pickle.

A spec is a JSON value:

- ``{"class": "river.linear_model.LogisticRegression", "params": {...}}`` builds one object;
  a parameter may itself be a spec (an optimizer, a loss, a nested model);
- ``{"pipeline": [spec, spec, ...]}`` chains steps with ``|`` (river's ``compose.Pipeline``);
- ``{"union": [spec, spec, ...]}`` joins transformers with ``+`` (``compose.TransformerUnion``);
- ``{"function": "river.utils.math.sigmoid"}`` refers to a function by its path;
- any other JSON value is passed through; lists are walked.

Only modules under the allowed prefixes (``river`` and ``sklearn`` by default) may be
imported, and only public names: a spec is data, never code.

>>> model = build({"pipeline": [
...     {"class": "river.preprocessing.StandardScaler"},
...     {"class": "river.linear_model.LogisticRegression",
...      "params": {"optimizer": {"class": "river.optim.SGD", "params": {"lr": 0.1}}}},
... ]})
>>> model["LogisticRegression"].optimizer.lr.learning_rate
0.1
>>> to_spec(model)["pipeline"][1]["class"]
'river.linear_model.LogisticRegression'
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Sequence
from typing import Any

from riverbed.exceptions import InvalidSpec

__all__ = ["DEFAULT_ALLOWED", "build", "to_spec"]

DEFAULT_ALLOWED: tuple[str, ...] = ("river", "sklearn")
_MAX_DEPTH = 32


def _resolve(path: Any, allowed: Sequence[str]) -> Any:
    if not isinstance(path, str) or "." not in path:
        raise InvalidSpec(
            f"expected a dotted path such as 'river.linear_model.LinearRegression', got {path!r}"
        )
    module_path, _, name = path.rpartition(".")
    if not any(module_path == p or module_path.startswith(p + ".") for p in allowed):
        raise InvalidSpec(
            f"{path!r} is outside the allowed modules ({', '.join(allowed)}); "
            "an operator can widen the list with the allowed_modules setting",
            detail={"path": path, "allowed": list(allowed)},
        )
    if any(part.startswith("_") for part in path.split(".")):
        raise InvalidSpec(f"{path!r} names a private module or attribute")
    try:
        module = importlib.import_module(module_path)
    except ImportError:
        raise InvalidSpec(f"no module named {module_path!r}", detail={"path": path}) from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise InvalidSpec(
            f"module {module_path!r} has no attribute {name!r}", detail={"path": path}
        ) from None


def build(spec: Any, *, allowed: Sequence[str] = DEFAULT_ALLOWED) -> Any:
    """Build the object a spec describes. Raises :class:`InvalidSpec` with a reason."""
    return _build(spec, tuple(allowed), 0)


def _build(spec: Any, allowed: tuple[str, ...], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise InvalidSpec(f"spec is nested deeper than {_MAX_DEPTH} levels")
    if isinstance(spec, list):
        return [_build(item, allowed, depth + 1) for item in spec]
    if not isinstance(spec, dict):
        if isinstance(spec, float) and not math.isfinite(spec):
            raise InvalidSpec("spec parameters must be finite numbers")
        return spec
    if "pipeline" in spec or "union" in spec:
        kind = "pipeline" if "pipeline" in spec else "union"
        steps = spec[kind]
        if set(spec) != {kind} or not isinstance(steps, list) or not steps:
            raise InvalidSpec(f'a {kind} spec is {{"{kind}": [step, ...]}} with one step or more')
        built = [_build(step, allowed, depth + 1) for step in steps]
        from river import compose

        try:
            if kind == "pipeline":
                return compose.Pipeline(*built)
            return compose.TransformerUnion(*built)
        except Exception as exc:  # river raises ValueError/TypeError for bad steps
            raise InvalidSpec(f"cannot build {kind}: {exc}") from None
    if "function" in spec:
        if set(spec) != {"function"}:
            raise InvalidSpec('a function spec is {"function": "module.path.name"}')
        target = _resolve(spec["function"], allowed)
        if not callable(target) or inspect.isclass(target):
            raise InvalidSpec(f"{spec['function']!r} is not a function")
        return target
    if "class" in spec:
        extra = set(spec) - {"class", "params"}
        if extra:
            raise InvalidSpec(f"unknown keys in class spec: {sorted(extra)}")
        cls = _resolve(spec["class"], allowed)
        if not inspect.isclass(cls):
            raise InvalidSpec(f"{spec['class']!r} is not a class")
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidSpec(f"params of {spec['class']!r} must be an object")
        kwargs = {k: _build(v, allowed, depth + 1) for k, v in params.items()}
        positional = kwargs.pop("_POSITIONAL_ARGS", [])
        try:
            return cls(*positional, **kwargs)
        except Exception as exc:
            raise InvalidSpec(
                f"cannot build {spec['class']}: {exc}", detail={"class": spec["class"]}
            ) from None
    # A plain mapping parameter (e.g. class weights): walk its values.
    return {k: _build(v, allowed, depth + 1) for k, v in spec.items()}


def _path(obj: Any) -> str:
    cls = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    module = cls.__module__
    # Prefer the shortest public import path (river.linear_model, not river.linear_model.log_reg).
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        candidate = ".".join(parts[:i])
        try:
            if getattr(importlib.import_module(candidate), cls.__name__, None) is cls:
                return f"{candidate}.{cls.__name__}"
        except ImportError:  # pragma: no cover - the defining module always imports
            continue
    return f"{module}.{cls.__name__}"


def to_spec(obj: Any) -> Any:
    """Describe a river (or scikit-learn) object as a spec that :func:`build` rebuilds.

    Raises :class:`InvalidSpec` for a value that has no JSON form (a lambda, say).
    """
    from river import base, compose

    if isinstance(obj, compose.Pipeline):
        return {"pipeline": [to_spec(step) for step in obj.steps.values()]}
    if isinstance(obj, compose.TransformerUnion):
        return {"union": [to_spec(t) for t in obj.transformers.values()]}
    if isinstance(obj, base.Base):
        return {"class": _path(obj), "params": _params(obj._get_params())}
    if hasattr(obj, "get_params") and not inspect.isclass(obj):  # scikit-learn
        return {
            "class": _path(obj),
            "params": {k: to_spec(v) for k, v in obj.get_params(deep=False).items()},
        }
    if isinstance(obj, tuple) and len(obj) == 2 and inspect.isclass(obj[0]):
        return {"class": _path(obj[0]), "params": _params(obj[1])}
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        if obj.__name__ == "<lambda>":
            raise InvalidSpec("a lambda has no spec; use a named function")
        return {"function": _path(obj)}
    if isinstance(obj, list | tuple):
        return [to_spec(v) for v in obj]
    if isinstance(obj, set | frozenset):  # JSON has no sets; a sorted list rebuilds them
        return [to_spec(v) for v in sorted(obj, key=str)]
    if isinstance(obj, dict):
        return {str(k): to_spec(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise InvalidSpec(f"non-finite parameter {obj!r} has no JSON form")
        return obj
    raise InvalidSpec(f"a {type(obj).__name__} parameter has no spec form")


def _params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: to_spec(v) for k, v in params.items()}
