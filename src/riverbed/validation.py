"""The checks of what callers send: model names, prediction ids, texts, tags and features.

Each raises the 4xx error its caller answers with and returns the value as the engine keeps
it (features copied, so that a caller's later change to its dict changes nothing stored).
The limits are the engine's settings, passed in.

Features are checked on every predict and learn, so the common case (a dict of numbers) is
checked in C loops: one scan of the values' types, one ``sum`` for finiteness (the sum of
finite numbers is finite unless it overflows, and then the per-value checks decide), and a
lookup of the names among the name lists already checked.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from riverbed.exceptions import InvalidFeatures, InvalidInput, ModelDiverged

__all__ = [
    "MAX_INT_DIGITS",
    "check_features",
    "check_id",
    "check_name",
    "check_prediction",
    "check_tags",
    "check_text",
    "parse_int",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_NUMBERS = frozenset({float, int})
_STRINGS = frozenset({str})

# Feature names already checked (strings, each of this length at most): a stream's samples
# mostly share theirs, and a lookup is cheaper than looking at every name again. Bounded:
# short lists of short names only, and a full cache is emptied.
_KNOWN_NAMES: dict[tuple[Any, ...], int] = {}
_KNOWN_MAX = 256

# An integer written in a path, a query or a header stays within SQLite's 64-bit integers.
MAX_INT_DIGITS = 18


def parse_int(text: str, *, signed: bool = False) -> int | None:
    """``text`` as an integer when it is 1 to :data:`MAX_INT_DIGITS` ASCII digits (after a
    ``-`` when ``signed``), else None. ``str.isdigit`` alone takes ``'²'``, on which ``int``
    raises, and ``int`` alone takes ``'١٢'``, ``' 7'``, ``'+7'`` and ``'1_000'``.

    >>> parse_int("12"), parse_int("-3", signed=True), parse_int("²"), parse_int("١٢")
    (12, -3, None, None)
    """
    digits = text[1:] if signed and text.startswith("-") else text
    if digits.isascii() and digits.isdigit() and len(digits) <= MAX_INT_DIGITS:
        return int(text)
    return None


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid model name {name!r}: use 1 to 128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def check_id(id: Any) -> str:
    if not isinstance(id, str) or not id or len(id) > 256:
        raise InvalidInput(
            f"a prediction id must be a non-empty string of at most 256 characters, got {id!r}"
        )
    return id


def check_text(field: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string")
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters")
    return value


def check_tags(tags: Mapping[str, str] | None, limit: int) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidInput("tags must be an object of string keys and string values")
    return {
        check_text("tag name", k, limit): check_text(f"tag {k!r}", v, limit)
        for k, v in tags.items()
    }


def check_features(features: Any, max_features: int, limit: int) -> dict[str, Any]:
    """``features`` as a new dict of names (strings of at most ``limit`` characters; a str
    subclass such as numpy's ``str_`` is taken as its str) to finite numbers, strings or
    booleans."""
    if type(features) is not dict and not isinstance(features, Mapping):
        raise InvalidFeatures(
            f"features must be an object mapping names to values, got {type(features).__name__}"
        )
    if len(features) > max_features:
        raise InvalidFeatures(f"{len(features)} features is more than the limit of {max_features}")
    if type(features) is dict and _NUMBERS.issuperset(map(type, features.values())):
        try:
            finite = math.isfinite(sum(features.values()))
        except OverflowError:  # an int too large for a float: the checks below say so
            finite = False
        if finite and _names_within(features, limit):
            return dict(features)
    x: dict[str, Any] = {}
    for key, value in features.items():
        if type(key) is not str and isinstance(key, str):
            # a str subclass (numpy's str_, from a data frame's columns): the same name, as
            # the quick check above lets it through when it equals names seen before
            key = str(key)
        if type(key) is not str or len(key) > limit:
            raise InvalidFeatures(
                f"feature names must be strings of at most {limit} characters, got {key!r}"
            )
        kind = type(value)
        if kind is float or (kind is not bool and isinstance(value, int | float)):
            if not _is_finite(value):
                raise InvalidFeatures(
                    f"feature {key!r} is {_shown(value)}; only finite numbers that fit a "
                    "64-bit float are accepted"
                )
        elif kind is str:
            if len(value) > limit:
                raise InvalidFeatures(f"feature {key!r} is longer than {limit} characters")
        elif kind is not bool and not isinstance(value, numbers.Real):
            raise InvalidFeatures(
                f"feature {key!r} must be a number, a string or a boolean, got "
                f"{'null' if value is None else type(value).__name__}; leave a missing "
                "feature out rather than sending null"
            )
        elif kind is not bool and not math.isfinite(value):
            raise InvalidFeatures(f"feature {key!r} is not a finite number")
        x[key] = value
    return x


def _is_finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _shown(value: float) -> str:
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    return str(value)


def _names_within(features: dict[Any, Any], limit: int) -> bool:
    """Whether every feature name is a string of at most ``limit`` characters."""
    names = tuple(features)
    longest = _KNOWN_NAMES.get(names)
    if longest is None:
        if not _STRINGS.issuperset(map(type, names)):
            return False
        longest = max(map(len, names), default=0)
        if len(names) <= _KNOWN_MAX and longest <= _KNOWN_MAX:
            if len(_KNOWN_NAMES) >= _KNOWN_MAX:
                _KNOWN_NAMES.clear()
            _KNOWN_NAMES[names] = longest
    return longest <= limit


def check_prediction(name: str, y_pred: Any) -> Any:
    """A model's prediction, refused with :class:`ModelDiverged` when it is a number that is
    not finite (or a mapping holding one, as probabilities): a diverged model's output is
    not an answer, and no metric can score it."""
    kind = type(y_pred)
    if kind is dict:
        values = y_pred.values()
        if _NUMBERS.issuperset(map(type, values)) and math.isfinite(sum(values)):
            return y_pred
        bad = next((v for v in values if isinstance(v, float) and not math.isfinite(v)), None)
    elif kind is float or isinstance(y_pred, float):
        if math.isfinite(y_pred):
            return y_pred
        bad = y_pred
    else:
        return y_pred
    if bad is None:
        return y_pred
    raise ModelDiverged(
        f"model {name!r} predicted {_shown(bad)}, not a finite number: its state has "
        "diverged (a learning rate too large for the targets, say); nothing was stored",
        detail={"prediction": _shown(bad)},
    )
