"""The registry's filter language, shared by the engine, the HTTP API, the client and the CLI.

A filter is clauses joined by ``and``::

    name ~ 'fraud' and tags.team = 'risk' and metrics.accuracy > 0.9
    hyperparameters.C <= 1 and created_at >= '2026-11-01' and dataset = 'phishing'

- a clause is ``field operator value``;
- operators: ``=`` (or ``==``), ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``~`` (contains,
  ignoring case) and ``!~`` (does not contain);
- values: ``'text'`` or ``"text"`` (a backslash escapes the quote), numbers, ``true``,
  ``false``, ``null``; ``created_at`` and ``updated_at`` also take an ISO date or time
  (UTC unless it says otherwise);
- fields: ``name``, ``version``, ``task``, ``flavor``, ``format``, ``source``,
  ``description``, ``created_by``, ``parent``, ``alias``, ``created_at``, ``updated_at``,
  ``dataset`` (its name), ``dataset.name``, ``dataset.description``, ``git.commit``,
  ``git.branch``, ``git.remote``, and keyed ones ``tags.<key>``, ``metrics.<key>``,
  ``hyperparameters.<key>``, ``params.<key>`` (the key may hold dots:
  ``hyperparameters.LogisticRegression.l2``; quote one with other characters:
  ``tags."cost center" = 'x'``). Keys of metrics, hyperparameters and params also match
  ignoring case (``metrics.accuracy`` finds ``Accuracy``);
- a clause about a field that an entry does not have is false (``!=`` included).

``order_by`` is fields with an optional ``asc``/``desc``, comma-separated
(``metrics.accuracy desc, created_at``); entries without the field come last.
A malformed filter raises :class:`~riverbed.exceptions.InvalidFilter` saying where.

>>> f = parse_filter("metrics.accuracy > 0.9 and tags.team = 'risk'")
>>> f.match({"metrics": {"Accuracy": 0.93}, "tags": {"team": "risk"}})
True
>>> f.match({"metrics": {"Accuracy": 0.5}, "tags": {"team": "risk"}})
False
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from riverbed.exceptions import InvalidFilter

__all__ = [
    "FIELDS",
    "KEYED_FIELDS",
    "Filter",
    "Order",
    "paginate",
    "parse_filter",
    "parse_order",
]

FIELDS = (
    "name",
    "version",
    "task",
    "flavor",
    "format",
    "source",
    "description",
    "created_by",
    "parent",
    "alias",
    "created_at",
    "updated_at",
    "dataset",
    "dataset.name",
    "dataset.description",
    "git.commit",
    "git.branch",
    "git.remote",
)
KEYED_FIELDS = ("tags", "metrics", "hyperparameters", "params")
_TIME_FIELDS = ("created_at", "updated_at")
_OPERATORS = ("==", "!=", "<=", ">=", "!~", "=", "<", ">", "~")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
      | (?P<op>==|!=|<=|>=|!~|=|<|>|~)
      | (?P<dot>\.)
      | (?P<comma>,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_\-]*)
    )""",
    re.VERBOSE,
)
_MISSING: Any = object()
MAX_PAGE_SIZE = 1000


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    value: Any
    at: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            start = len(text) - len(text[position:].lstrip())
            raise InvalidFilter(
                f"unexpected character {text[start]!r} at position {start} of the filter",
                detail={"position": start},
            )
        kind = match.lastgroup or ""
        raw = match.group(kind)
        start = match.start(kind)
        value: Any = raw
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif kind == "number":
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        out.append(_Token(kind, raw, value, start))
        position = match.end()
    return out


@dataclasses.dataclass(frozen=True)
class _Clause:
    field: tuple[str, ...]
    op: str
    value: Any

    def match(self, entry: dict[str, Any]) -> bool:
        actual = lookup(entry, self.field)
        if actual is _MISSING:
            return False
        if self.field == ("alias",):
            aliases = actual if isinstance(actual, list) else [actual]
            found = any(_compare(a, "=", self.value) for a in aliases)
            return found if self.op in ("=", "==", "~") else not found
        return _compare(actual, self.op, self.value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op in ("~", "!~"):
        found = str(expected).lower() in ("" if actual is None else str(actual)).lower()
        return found if op == "~" else not found
    if op in ("=", "==", "!="):
        if _number(actual) and _number(expected):
            same = float(actual) == float(expected)
        elif isinstance(actual, str) and _number(expected):
            same = actual == str(expected)
        else:
            same = actual == expected
        return same if op != "!=" else not same
    if _number(actual) and _number(expected):
        a, b = float(actual), float(expected)
    elif isinstance(actual, str) and isinstance(expected, str):
        a, b = actual, expected  # type: ignore[assignment]
    else:
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def lookup(entry: dict[str, Any], field: tuple[str, ...]) -> Any:
    """The value of a field in a registry entry (a version or model as the API shows it)."""
    head = field[0]
    if head == "dataset" and len(field) == 1:
        field = ("dataset", "name")
    if head == "name" and "model" in entry and "version" in entry:
        return entry["model"]
    if head == "alias":
        return entry.get("aliases", _MISSING)
    value: Any = entry
    for i, part in enumerate(field):
        if not isinstance(value, dict):
            return _MISSING
        if part in value:
            value = value[part]
            continue
        if i > 0 and field[0] in ("metrics", "hyperparameters", "params"):
            folded = [k for k in value if isinstance(k, str) and k.lower() == part.lower()]
            if len(folded) == 1:
                value = value[folded[0]]
                continue
        if i > 0 and field[0] == "tags":
            model_tags = entry.get("model_tags")
            if isinstance(model_tags, dict) and part in model_tags:
                value = model_tags[part]
                continue
        return _MISSING
    return _MISSING if value is None and head != "parent" else value


class Filter:
    """A parsed filter; ``match(entry)`` says whether an entry passes every clause."""

    def __init__(self, clauses: Sequence[_Clause], text: str = "") -> None:
        self.clauses = tuple(clauses)
        self.text = text

    def match(self, entry: dict[str, Any]) -> bool:
        return all(clause.match(entry) for clause in self.clauses)

    def fields(self) -> set[str]:
        return {clause.field[0] for clause in self.clauses}

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"


def _field(tokens: list[_Token], i: int, text: str) -> tuple[tuple[str, ...], int]:
    if i >= len(tokens) or tokens[i].kind != "word":
        at = tokens[i].at if i < len(tokens) else len(text)
        raise InvalidFilter(f"expected a field name at position {at}", detail={"position": at})
    parts = [tokens[i].text]
    i += 1
    while i < len(tokens) and tokens[i].kind == "dot":
        if i + 1 >= len(tokens) or tokens[i + 1].kind not in ("word", "string", "number"):
            raise InvalidFilter(
                f"expected a key after '.' at position {tokens[i].at}",
                detail={"position": tokens[i].at},
            )
        parts.append(str(tokens[i + 1].value))
        i += 2
    name = parts[0].lower()
    if name in KEYED_FIELDS:
        if len(parts) < 2:
            raise InvalidFilter(
                f"{name} needs a key, as in {name}.accuracy", detail={"field": name}
            )
        return (name, ".".join(parts[1:])), i
    dotted = ".".join(p.lower() for p in parts)
    if dotted not in FIELDS:
        raise InvalidFilter(
            f"unknown field {'.'.join(parts)!r}; fields: {', '.join(FIELDS)}, and "
            + ", ".join(f"{k}.<key>" for k in KEYED_FIELDS),
            detail={"field": ".".join(parts)},
        )
    return tuple(dotted.split(".")), i


def _literal(token: _Token, field: tuple[str, ...]) -> Any:
    if token.kind in ("string", "number"):
        value = token.value
    elif token.kind == "word" and token.text.lower() in ("true", "false", "null"):
        value = {"true": True, "false": False, "null": None}[token.text.lower()]
    else:
        raise InvalidFilter(
            f"expected a value (a quoted string, a number, true, false or null) at position "
            f"{token.at}, got {token.text!r}",
            detail={"position": token.at},
        )
    if field[0] in _TIME_FIELDS and isinstance(value, str):
        value = parse_time(value)
    return value


def parse_time(text: str) -> float:
    """An ISO 8601 date or time as a Unix timestamp (UTC unless an offset is given)."""
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFilter(
            f"{text!r} is not an ISO date or time such as '2026-11-01' or '2026-11-01T08:00'"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def parse_filter(text: str | None) -> Filter:
    """Parse a filter; an empty or None filter matches everything."""
    if text is None or not text.strip():
        return Filter([], "")
    if not isinstance(text, str):
        raise InvalidFilter("a filter is a string")
    tokens = _tokens(text)
    clauses: list[_Clause] = []
    i = 0
    while True:
        field, i = _field(tokens, i, text)
        if i >= len(tokens) or tokens[i].kind != "op":
            at = tokens[i].at if i < len(tokens) else len(text)
            raise InvalidFilter(
                f"expected an operator ({', '.join(_OPERATORS)}) after "
                f"{'.'.join(field)!r} at position {at}",
                detail={"position": at},
            )
        op = tokens[i].text
        if i + 1 >= len(tokens):
            raise InvalidFilter(
                f"expected a value after {op!r} at the end of the filter",
                detail={"position": len(text)},
            )
        clauses.append(_Clause(field, op, _literal(tokens[i + 1], field)))
        i += 2
        if i >= len(tokens):
            break
        if tokens[i].kind != "word" or tokens[i].text.lower() != "and":
            raise InvalidFilter(
                f"expected 'and' between clauses at position {tokens[i].at}, got "
                f"{tokens[i].text!r} (only 'and' joins clauses)",
                detail={"position": tokens[i].at},
            )
        i += 1
    return Filter(clauses, text)


@dataclasses.dataclass(frozen=True)
class Order:
    keys: tuple[tuple[tuple[str, ...], bool], ...]  # (field, descending)

    def sort(self, entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = list(entries)
        for field, descending in reversed(self.keys):
            present = [r for r in rows if _sortable(lookup(r, field)) is not None]
            absent = [r for r in rows if _sortable(lookup(r, field)) is None]
            present.sort(key=_key_of(field), reverse=descending)
            rows = present + absent
        return rows


def _sortable(value: Any) -> Any:
    if value is _MISSING or value is None:
        return None
    if isinstance(value, bool):
        return (0, int(value))
    if _number(value):
        return (0, float(value))
    if isinstance(value, str):
        return (1, value)
    return (2, str(value))


def _key_of(field: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    return lambda row: _sortable(lookup(row, field))


def parse_order(order_by: str | Sequence[str] | None, default: str) -> Order:
    """Parse ``order_by`` ("field [asc|desc], ..."), falling back to ``default``."""
    if order_by is None or (isinstance(order_by, str) and not order_by.strip()):
        order_by = default
    if isinstance(order_by, str):
        items = [item for item in order_by.split(",")]
    elif isinstance(order_by, Sequence) and all(isinstance(i, str) for i in order_by):
        items = list(order_by)
    else:
        raise InvalidFilter("order_by is a string such as 'metrics.accuracy desc, created_at'")
    keys = []
    for item in items:
        words = item.strip().rsplit(None, 1)
        descending = False
        if len(words) == 2 and words[1].lower() in ("asc", "desc"):
            descending = words[1].lower() == "desc"
            item = words[0]
        tokens = _tokens(item.strip())
        field, end = _field(tokens, 0, item)
        if end != len(tokens):
            raise InvalidFilter(
                f"cannot order by {item.strip()!r}: give a field and optionally asc or desc"
            )
        keys.append((field, descending))
    return Order(tuple(keys))


def paginate(
    rows: list[dict[str, Any]], page_size: int | None, page_token: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``rows`` and the token of the next page (None on the last one)."""
    if page_size is None:
        page_size = 100
    if (
        isinstance(page_size, bool)
        or not isinstance(page_size, int)
        or not (1 <= page_size <= MAX_PAGE_SIZE)
    ):
        raise InvalidFilter(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    offset = 0
    if page_token:
        try:
            offset = int(base64.urlsafe_b64decode(page_token.encode()).decode())
        except (ValueError, UnicodeDecodeError):
            raise InvalidFilter(f"invalid page_token {page_token!r}") from None
        if offset < 0:
            raise InvalidFilter(f"invalid page_token {page_token!r}")
    page = rows[offset : offset + page_size]
    end = offset + page_size
    token = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(rows) else None
    return page, token
