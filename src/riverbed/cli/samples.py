"""``riverbed predict`` and the batches of ``riverbed learn``: samples from the command line.

The input (the command's INPUT argument) is one of

- one JSON object, given as the argument itself (``'{"features": {"x": 1}}'``);
- a JSON-lines file: one JSON object a line, blank lines skipped (``learn`` also reads a
  CSV file, ``.csv``, with ``--target`` and ``--id-column``);
- ``-``, or nothing: JSON lines on stdin.

A line is the body of the HTTP route's one sample: for ``predict``, ``features``, an optional
``id`` to store the prediction under (for a label later) and the task's other fields (``user``,
``item``, ``arms``, ``value``); for ``learn``, ``features`` and ``ground_truth``, or the ``id``
of a stored prediction and its ``ground_truth`` (a delayed label).

The whole input is read and each line checked to be a JSON object before anything is sent:
a line that is not stops the command, naming its line number, and nothing is applied. Then
the lines go, in order, in batches of ``--batch-size`` through ``predict_many`` /
``learn_many`` (of the engine on a database, of the client on a server: the target is chosen
as :mod:`riverbed.cli.server` says). A batch is all or none; a line the model refuses (a
missing feature, an unknown prediction id) stops the command naming its line: nothing of
its batch nor after is applied, the batches before it are (the message says how many
lines). Each line applied prints one JSON line on stdout, in the input's order; a terminal
gets a progress bar on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from riverbed.cli.server import Target, refusal, target_options
from riverbed.exceptions import InvalidBatch, RiverbedError

__all__ = ["Line", "batch_size_option", "count", "predict", "read_lines", "run_batches"]

# (line number, body); the line number is the input's, 1-based, blank lines counted
Line = tuple[int, dict[str, Any]]

batch_size_option = click.option(
    "--batch-size",
    "--chunk-size",
    "batch_size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Lines per request (at most the server's max_batch_size).",
)


def read_lines(given: str | None, what: str = "INPUT") -> tuple[list[Line], str]:
    """The input's lines (see the module docstring) and how to name where a line is: ``line
    7`` (a file or stdin) or ``the input`` (one object given as the argument)."""
    if given is not None and given.lstrip().startswith("{"):
        return [(1, _object(given, "the input"))], "the input"
    if given is None or given == "-":
        return _parse(sys.stdin), "line"
    path = Path(given)
    if not path.is_file():
        raise click.BadParameter(
            f"{given!r} is neither a JSON object nor a file (give '-' for stdin)", param_hint=what
        )
    with path.open(encoding="utf-8") as file:
        return _parse(file), "line"


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
_JSON_KINDS[type(None)] = "null"


def _parse(lines: Iterable[str]) -> list[Line]:
    return [
        (number, _object(text, f"line {number}"))
        for number, text in enumerate(lines, 1)
        if text.strip()
    ]


def _object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.ClickException(f"{where} is not JSON ({exc}); nothing was sent") from None
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        raise click.ClickException(
            f"{where} is a JSON {kind}, not an object (the route's body: "
            '{"features": {...}, ...}); nothing was sent'
        )
    return value


def run_batches(
    target: Target,
    lines: list[Line],
    where: str,
    batch_size: int,
    label: str,
    send: Callable[[Any, list[dict[str, Any]]], list[dict[str, Any]]],
    verb: str,
) -> dict[str, Any] | None:
    """Send ``lines`` in batches through ``send(store, items)`` (which returns one answer a
    line) and print each answer as a JSON line; a refused batch becomes one line naming the
    input line at fault. Returns the last answer."""
    done = 0
    answers: list[dict[str, Any]] = []
    with target.open() as store, _bar(len(lines), label) as bar:
        for start in range(0, len(lines), batch_size):
            batch = lines[start : start + batch_size]
            try:
                answers = send(store, [body for _, body in batch])
            except InvalidBatch as exc:
                raise _bad_line(exc, batch, where, done, verb) from None
            except RiverbedError as exc:
                raise refusal(exc) from None
            for answer in answers:
                click.echo(json.dumps(answer, default=str))
            done += len(batch)
            bar.update(len(batch))
    return answers[-1] if answers else None


def _bad_line(
    exc: InvalidBatch, batch: list[Line], where: str, done: int, verb: str
) -> click.ClickException:
    errors = (exc.detail or {}).get("errors") or []
    if not errors or not isinstance(errors[0].get("index"), int):
        return refusal(exc)
    first = errors[0]
    at = f"line {batch[first['index']][0]}" if where == "line" else where
    if where != "line":
        return click.ClickException(f"{at}: {first['code']}: {first['message']}")
    kept = ""
    if done:
        kept = f"; the {done} line before it was" if done == 1 else f"; the {done} before it were"
    return click.ClickException(
        f"{at}: {first['code']}: {first['message']} (nothing from line {batch[0][0]} on, "
        f"its batch's first, was {verb}{kept})"
    )


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _bar(total: int, label: str) -> Any:
    """click's progress bar on a terminal's stderr for more than one line; nothing else
    (stdout is the answers, and a log or a pipe has no use for a bar)."""
    if total > 1 and sys.stderr.isatty():
        return click.progressbar(length=total, label=label, file=sys.stderr)
    return _NoBar()


@click.command()
@click.argument("model")
@click.argument("input_", metavar="[INPUT]", required=False)
@batch_size_option
@target_options
def predict(model: str, input_: str | None, batch_size: int, target: Target) -> None:
    """Predict with MODEL for one sample or many: INPUT is one JSON object, a JSON-lines
    file, or - (the default) for JSON lines on stdin; each line a predict body.

    \b
        riverbed predict fraud '{"features": {"amount": 12.5}, "id": "tx-1"}'
        riverbed predict fraud samples.jsonl > predictions.jsonl
        cat samples.jsonl | riverbed predict fraud -

    Prints one JSON line per prediction (its id, the prediction), in order. Every line is
    checked to be a JSON object before anything is sent; then they go in batches of
    --batch-size, each all or none, and a line the model refuses stops the command, naming
    its line number (docs/cli.md).
    """
    lines, where = read_lines(input_)
    run_batches(
        target,
        lines,
        where,
        batch_size,
        f"predicting {model}",
        lambda store, items: list(store.predict_many(model, items)),
        "predicted",
    )
    if where == "line":  # many: what was done, on stderr beside the answers
        click.echo(f"predicted {count(len(lines))} with {model}", err=True)


def count(n: int) -> str:
    return f"{n} line" if n == 1 else f"{n} lines"
