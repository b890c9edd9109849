"""``riverbed learn``, ``riverbed forecast`` and ``riverbed tail``: learning from the command
line. ``learn`` works on a server or a database (:mod:`riverbed.cli.samples` has how it
reads and sends its input); ``forecast`` and ``tail`` talk to a running server (``--url``,
env ``RIVERBED_URL``)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import click

from riverbed.cli.samples import Line, batch_size_option, count, read_lines, run_batches
from riverbed.cli.server import Server, Target, refusal, server_options, target_options
from riverbed.exceptions import RiverbedError

__all__ = ["forecast", "learn", "tail"]


def _value(text: str) -> Any:
    """A CSV cell as JSON would carry it: numbers as numbers, true/false as booleans."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in lowered else number


def _csv_lines(path: Path, target: str | None, id_column: str | None) -> list[Line]:
    """Learn bodies from a CSV file (a header row, then samples), numbered by file line (the
    header is line 1). An empty cell is left out: an empty target or id, the engine refuses,
    naming the line."""
    lines: list[Line] = []
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        for column in (target, id_column):
            if column is not None and column not in (reader.fieldnames or ()):
                raise click.UsageError(f"no column {column!r} in {path}")
        for record in reader:
            features = {k: _value(v) for k, v in record.items() if k is not None and v != ""}
            body: dict[str, Any] = {}
            if id_column is not None and id_column in features:
                body["id"] = str(features.pop(id_column))
            if target is not None and target in features:
                body["ground_truth"] = features.pop(target)
            if id_column is None or features:
                body["features"] = features
            lines.append((reader.line_num, body))
    return lines


@click.command()
@click.argument("model_", metavar="MODEL")
@click.argument("input_", metavar="[INPUT]", required=False)
@click.option(
    "--model",
    "-m",
    "model_option",
    default=None,
    help="The older spelling, riverbed learn DATA --model MODEL: the argument is then the file.",
)
@click.option(
    "--target",
    "-t",
    "target_column",
    default=None,
    help="A CSV file's column of the ground truth (leave out for clustering, anomalies).",
)
@click.option("--id-column", default=None, help="A CSV file's column of prediction ids to label.")
@batch_size_option
@target_options
def learn(
    model_: str,
    input_: str | None,
    model_option: str | None,
    target_column: str | None,
    id_column: str | None,
    batch_size: int,
    target: Target,
) -> None:
    """Learn MODEL from one sample or many: INPUT is one JSON object, a JSON-lines file, a
    CSV file (.csv: a header row, then samples; see --target, --id-column), or - (the
    default) for JSON lines on stdin. A JSON line is a learn body: features and
    ground_truth, or the id of a stored prediction and its ground_truth (a delayed label).

    \b
        riverbed learn phishing '{"features": {"length": 42}, "ground_truth": true}'
        riverbed learn phishing labels.jsonl      # {"id": "tx-1", "ground_truth": false}
        riverbed learn phishing rows.csv --target is_phishing
        cat rows.jsonl | riverbed learn phishing -

    Prints one JSON line per learn (the prediction id it labelled, or null, and the model's
    learn count), in order. Every line is checked before anything is sent; then they go in
    batches of --batch-size, each all or none, and a line the model refuses stops the
    command, naming its line number: the batches before it stay learned (docs/cli.md).
    """
    model, given = model_, input_
    if model_option is not None:  # riverbed learn DATA --model MODEL
        if input_ is not None:
            raise click.UsageError("give the model as MODEL or as --model, not both")
        model, given = model_option, model_
    if given is not None and given.lower().endswith(".csv") and Path(given).is_file():
        lines, at = _csv_lines(Path(given), target_column, id_column), "line"
    else:
        if target_column is not None or id_column is not None:
            raise click.UsageError("--target and --id-column are for a CSV file's columns")
        lines, at = read_lines(given)

    def send(store: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(store.learn_many(model, items)["items"])

    last = run_batches(target, lines, at, batch_size, f"learning {model}", send, "learned")
    if at == "line":  # many: what was done, on stderr beside the answers
        now = f"; {model} has {last['n_learns']} learns" if last else ""
        click.echo(f"learned {count(len(lines))}{now}", err=True)


@click.command()
@click.argument("model")
@click.option(
    "--horizon", "-H", "horizon", type=int, default=1, show_default=True, help="Steps ahead."
)
@server_options
def forecast(model: str, horizon: int, server: Server) -> None:
    """Print a forecasting model's next --horizon values, one a line."""
    with server.client() as client:
        try:
            answer = client.forecast(model, horizon)
        except RiverbedError as exc:
            raise refusal(exc) from None
    for step, value in enumerate(answer["forecast"], 1):
        click.echo(f"+{step}\t{value}")


@click.command()
@click.argument("model", required=False)
@click.option("--types", default=None, help="Comma-separated event types (predict,learn,label).")
@click.option("--limit", "-n", type=int, default=None, help="Stop after this many events.")
@click.option("--replay", is_flag=True, help="First replay the events the server still holds.")
@click.option("--since", type=int, default=None, help="First replay the events after this id.")
@server_options
def tail(
    model: str | None,
    types: str | None,
    limit: int | None,
    replay: bool,
    since: int | None,
    server: Server,
) -> None:
    """Follow a model's events (every model's without MODEL) as JSON lines, until Ctrl-C.

    Shows what happens from now on; --replay or --since first shows what happened before.
    Events the server could no longer replay are reported on stderr as a gap."""
    wanted = [t for t in (types or "").split(",") if t] or None
    start: int | str | None = since if since is not None else (None if replay else "now")
    with server.client() as client:
        try:
            n = 0
            for event in client.events(model, types=wanted, last_event_id=start):
                if event.get("type") == "gap":
                    missed = event["data"]["missed"]
                    what = f"{missed} events" if missed is not None else "events"
                    reason = {"restart": "the server restarted"}.get(
                        event["data"]["reason"], "the server no longer holds them"
                    )
                    click.echo(f"gap: {what} could not be replayed ({reason})", err=True)
                    continue
                click.echo(json.dumps(event, default=str))
                n += 1
                if limit is not None and n >= limit:
                    break
        except RiverbedError as exc:
            raise refusal(exc) from None
        except KeyboardInterrupt:  # pragma: no cover - interactive
            pass
