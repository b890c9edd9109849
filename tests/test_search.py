"""The registry's one filter syntax: what parses, what matches, and clear errors."""

from __future__ import annotations

import pytest

from riverbed.exceptions import InvalidFilter
from riverbed.search import paginate, parse_filter, parse_order

ENTRY = {
    "model": "fraud-detector",
    "version": 3,
    "task": "binary",
    "tags": {"team": "risk", "cost center": "42"},
    "model_tags": {"owner": "ann"},
    "metrics": {"Accuracy": 0.93, "f1": 0.8},
    "hyperparameters": {"LogisticRegression.l2": 0.01, "max_depth": 3, "fit_intercept": True},
    "params": {"seed": 7},
    "dataset": {"name": "phishing", "description": "emails"},
    "git": {"commit": "abc123", "branch": "main"},
    "aliases": ["production"],
    "created_at": 1_790_000_000.0,
    "parent": None,
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", True),
        ("name ~ 'FRAUD'", True),
        ("name = 'fraud'", False),
        ("name !~ 'fraud'", False),
        ("metrics.accuracy > 0.9", True),
        ("metrics.accuracy >= 0.93 and metrics.F1 < 0.9", True),
        ("metrics.accuracy > 0.95", False),
        ("metrics.recall > 0", False),
        ("metrics.recall != 1", False),
        ("tags.team = 'risk' and task = 'binary'", True),
        ('tags."cost center" = "42"', True),
        ("tags.owner = 'ann'", True),
        ("hyperparameters.LogisticRegression.l2 = 0.01", True),
        ("hyperparameters.max_depth <= 3 AND hyperparameters.fit_intercept = true", True),
        ("params.seed == 7", True),
        ("dataset = 'phishing' and dataset.description ~ 'mail'", True),
        ("git.branch = 'main' and git.commit ~ 'abc'", True),
        ("alias = 'production'", True),
        ("alias = 'champion'", False),
        ("alias != 'champion'", True),
        ("version > 2", True),
        ("created_at > '2026-01-01' and created_at < '2026-12-31T23:59'", True),
        ("created_at > '2027-01-01'", False),
        ("parent = null", True),
    ],
)
def test_filters_match(text: str, expected: bool) -> None:
    assert parse_filter(text).match(ENTRY) is expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("metrics.accuracy >", "expected a value"),
        ("colour = 'red'", "unknown field 'colour'"),
        ("name = 'a' or name = 'b'", "only 'and'"),
        ("name = 'a' and", "expected a field name"),
        ("metrics > 1", "needs a key"),
        ("name 'x'", "expected an operator"),
        ("name = x", "expected a value"),
        ("name = 'x", "unexpected character"),
        ("created_at > 'last week'", "not an ISO date"),
        ("name $ 'x'", "unexpected character '.' at position 5"),
    ],
)
def test_malformed_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidFilter, match=message):
        parse_filter(text)


def test_order_by_puts_missing_values_last() -> None:
    rows = [{"name": "a", "metrics": {"x": 1}}, {"name": "b"}, {"name": "c", "metrics": {"x": 2}}]
    ordered = parse_order("metrics.x desc", "name").sort(rows)
    assert [r["name"] for r in ordered] == ["c", "a", "b"]
    ordered = parse_order("metrics.x", "name").sort(rows)
    assert [r["name"] for r in ordered] == ["a", "c", "b"]
    with pytest.raises(InvalidFilter):
        parse_order("metrics.x sideways", "name")
    with pytest.raises(InvalidFilter):
        parse_order("nope", "name")


def test_pages_and_tokens() -> None:
    rows = [{"i": i} for i in range(5)]
    page, token = paginate(rows, 2, None)
    assert page == rows[:2] and token
    page, token = paginate(rows, 2, token)
    assert page == rows[2:4]
    page, token = paginate(rows, 2, token)
    assert page == rows[4:] and token is None
    for bad_size in (0, 1001, True):
        with pytest.raises(InvalidFilter, match="page_size"):
            paginate(rows, bad_size, None)
    with pytest.raises(InvalidFilter, match="page_token"):
        paginate(rows, 2, "!!not-a-token")
