"""What the commands print for people: aligned tables and ``key  value`` listings, with
times as ISO-8601 in UTC (``2026-12-07T16:28:39Z``). ``--json`` prints the values as the API
has them instead: times stay numbers (seconds since the epoch).

A value is a time when its key is one (:func:`is_time`: ``created_at``, ``expires_at``,
``time``, ``at``, ...) and it is a number; a table column of times is converted by the
command that builds the rows (:func:`when`)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

__all__ = ["cell", "describe", "echo_json", "is_time", "short", "table", "when"]


def when(timestamp: Any, none: str = "") -> str:
    """Seconds since the epoch as ISO-8601 UTC to the second; ``none`` for anything else
    (a missing time: "never expires", not yet)."""
    if not _number(timestamp):
        return none
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def is_time(key: str) -> bool:
    """Whether a field of this name holds a time (the API's names: ``*_at``, ``time``)."""
    return key.endswith("_at") or key in ("at", "time")


def short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cell(value: Any, width: int = 40) -> str:
    """One value as a table shows it: objects as ``k=v, ...``, lists comma-separated,
    nothing for null, cut to ``width`` characters."""
    if value is None:
        text = ""
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={_shown(k, v)}" for k, v in value.items())
    elif isinstance(value, list):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _shown(key: str, value: Any) -> str:
    return when(value) if is_time(key) and _number(value) else short(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table with aligned columns and upper-case headers."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def describe(info: Mapping[str, Any], as_text: Sequence[str] = (), width: int = 100) -> str:
    """One ``key  value`` line per field, the keys aligned; times as ISO-8601 UTC, the
    fields named in ``as_text`` (a spec, hyperparameters) as their JSON text."""
    pad = max((len(k) for k in info), default=0)
    lines = []
    for key, value in info.items():
        if is_time(key) and _number(value):
            value = when(value)
        elif key in as_text and value:
            value = json.dumps(value, default=str)
        lines.append(f"{key:<{pad}}  {cell(value, width)}".rstrip())
    return "\n".join(lines)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
