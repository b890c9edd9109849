"""``riverbed learn``, ``riverbed forecast`` and ``riverbed tail``: streams of learning from
the command line, against a running server (``--url``, env ``RIVERBED_URL``)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from riverbed.cli.server import Server, refusal, server_options
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


def _rows(path: Path, target: str | None, id_column: str | None) -> Iterator[dict[str, Any]]:
    """Learn bodies from a CSV file (a header row, then samples) or an NDJSON file."""
    with path.open(newline="") as file:
        if path.suffix in (".ndjson", ".jsonl"):
            for line in file:
                if line.strip():
                    yield json.loads(line)
            return
        for record in csv.DictReader(file):
            features = {k: _value(v) for k, v in record.items() if k is not None and v != ""}
            body: dict[str, Any] = {}
            if id_column is not None:
                body["id"] = str(features.pop(id_column))
            if target is not None:
                if target not in features:
                    raise click.UsageError(f"no column {target!r} in {path}")
                body["ground_truth"] = features.pop(target)
            if id_column is None or features:
                body["features"] = features
            yield body


def _count(path: Path) -> int:
    with path.open("rb") as file:
        n = sum(1 for line in file if line.strip())
    return n if path.suffix in (".ndjson", ".jsonl") else max(0, n - 1)


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", "-m", required=True, help="The model that learns.")
@click.option(
    "--target",
    "-t",
    default=None,
    help="The CSV column holding the ground truth (leave out for clustering, anomalies).",
)
@click.option("--id-column", default=None, help="A CSV column of prediction ids to label.")
@click.option("--chunk-size", default=1000, show_default=True, help="Rows per commit.")
@server_options
def learn(
    path: Path,
    model: str,
    target: str | None,
    id_column: str | None,
    chunk_size: int,
    server: Server,
) -> None:
    """Learn from every row of a CSV (header row first) or NDJSON file, with a progress bar.

    The rows are streamed to the server as one NDJSON upload and learned in order, in
    commits of --chunk-size rows; a bad row stops the upload there (the rows before it are
    learned) and is reported with its line number.
    """
    total = _count(path)
    final: dict[str, Any] = {}
    with server.client() as client:
        try:
            client.health()  # a server that does not answer is one line, not a bar and a line
        except RiverbedError as exc:
            raise refusal(exc) from None
        with click.progressbar(length=total, label=f"learning {model}", file=sys.stderr) as bar:
            done = 0
            try:
                reports = client.learn_stream(
                    model, _rows(path, target, id_column), chunk_size=chunk_size
                )
                for report in reports:
                    bar.update(report["n_learned"] - done)
                    done = report["n_learned"]
                    final = report
            except RiverbedError as exc:
                raise refusal(exc) from None
    if "error" in final:
        error = final["error"]
        raise click.ClickException(
            f"stopped at line {error.get('line')}: {error['code']}: {error['message']} "
            f"({final['n_learned']} rows learned before it)"
        )
    click.echo(
        f"learned {final.get('n_learned', 0)} rows; {model} has {final.get('n_learns')} learns"
    )


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
