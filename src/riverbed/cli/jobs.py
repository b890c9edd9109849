"""``riverbed train`` and ``riverbed jobs``: training jobs on a running server."""

from __future__ import annotations

import json
import queue
import sys
from pathlib import Path
from typing import Any

import click

from riverbed.cli.server import Server, Target, refusal, server_options, target_options
from riverbed.exceptions import RiverbedError
from riverbed.jobs import FINISHED

__all__ = ["jobs", "train"]


def _load_json(path: str | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{what} {path}: {exc}") from None


def _show_result(job: dict[str, Any]) -> None:
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise click.ClickException(
            f"job {job['id']} {job['status']}: {error.get('message', 'no error recorded')}"
        )
    result = job["result"]
    best = result.get("best") or {}
    click.echo(f"job {job['id']} succeeded: {job['data']['rows']} rows")
    for candidate in result.get("candidates", []):
        mark = "*" if candidate["version"] == best.get("version") else " "
        shown = "  ".join(
            f"{k}={'n/a' if v is None else f'{v:.6g}'}" for k, v in candidate["metrics"].items()
        )
        click.echo(f"{mark} {job['model']}@{candidate['version']}  {candidate['name']}  {shown}")
    alias = job["request"]["select"].get("alias")
    if best and alias:
        click.echo(f"{job['model']}@{alias} -> version {best['version']}")


def _draw_progress(events: Any) -> None:
    """A bar on a terminal; a line per tenth elsewhere (logs, CI)."""
    if sys.stderr.isatty():
        progressbar: Any = click.progressbar
        with progressbar(length=1000, label="training", file=sys.stderr) as bar:
            drawn = 0
            for event in events:
                step = int(event.get("progress", 0) * 1000) - drawn
                if step > 0:
                    bar.update(step)
                    drawn += step
        return
    shown = -1
    for event in events:
        tenth = int(event.get("progress", 0) * 10)
        if tenth > shown:
            shown = tenth
            click.echo(f"training: {tenth * 10:3d}%", err=True)


@click.command()
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "-t", "column", required=True, help="The column to learn to predict.")
@click.option("--model", "-m", help="The model to add versions to [default: the file's stem].")
@click.option("--spec", "spec_file", type=click.Path(exists=True), help="A spec JSON file.")
@click.option(
    "--candidates",
    "candidates_file",
    type=click.Path(exists=True),
    help="A JSON file with an array of candidate specs.",
)
@click.option("--grid", "grid_file", type=click.Path(exists=True), help="A parameter grid file.")
@click.option("--warm-start", help="Continue from a version: name, name@alias or name@N.")
@click.option("--feature", "features", multiple=True, help="A feature column (repeatable).")
@click.option("--metric", "metrics", multiple=True, help="A river metric name (repeatable).")
@click.option("--select", "select_metric", help="Pick the best by this metric.")
@click.option("--direction", type=click.Choice(["min", "max"]), help="Best is min or max.")
@click.option("--alias", help="The alias the best version gets.")
@click.option("--validation", type=click.Choice(["holdout", "kfold"]), help="scikit-learn only.")
@click.option("--folds", type=int, help="Folds for kfold.")
@click.option("--test-size", type=float, help="Holdout fraction.")
@click.option("--keep-data", is_flag=True, help="Keep the data with the job.")
@click.option("--no-wait", is_flag=True, help="Print the job and return at once.")
@target_options
def train(
    data: str,
    column: str,
    model: str | None,
    spec_file: str | None,
    candidates_file: str | None,
    grid_file: str | None,
    warm_start: str | None,
    features: tuple[str, ...],
    metrics: tuple[str, ...],
    select_metric: str | None,
    direction: str | None,
    alias: str | None,
    validation: str | None,
    folds: int | None,
    test_size: float | None,
    keep_data: bool,
    no_wait: bool,
    target: Target,
) -> None:
    """Train on DATA (CSV, NDJSON or Parquet) and register the result, with a progress bar.

    \b
        riverbed train houses.csv --target price --spec spec.json
        riverbed train houses.csv -t price --candidates three.json --select MAE
        riverbed train houses.csv -t price --spec spec.json --database riverbed.db
    """
    select = {
        k: v
        for k, v in (("metric", select_metric), ("direction", direction), ("alias", alias))
        if v is not None
    }
    checks = {
        k: v for k, v in (("method", validation), ("folds", folds), ("test_size", test_size)) if v
    }
    options = {
        "spec": _load_json(spec_file, "spec"),
        "candidates": _load_json(candidates_file, "candidates"),
        "grid": _load_json(grid_file, "grid"),
        "warm_start": warm_start,
        "features": list(features) or None,
        "metrics": list(metrics) or None,
        "select": select or None,
        "validation": checks or None,
        "keep_data": keep_data or None,
    }
    name = model or Path(data).stem
    if target.database is not None:
        options = {k: v for k, v in options.items() if v is not None}
        _train_in_process(target, name, Path(data), column, options, no_wait)
        return
    assert target.server is not None
    try:
        with target.server.client(timeout=300) as client:
            job = client.train(name, data, target=column, **options)
            if no_wait:
                click.echo(json.dumps(job))
                return
            click.echo(f"job {job['id']}: training {name} on {Path(data).name}", err=True)
            _draw_progress(client.jobs.follow(job["id"]))
            _show_result(client.jobs.get(job["id"]))
    except RiverbedError as exc:
        raise refusal(exc) from None


def _train_in_process(
    where: Target, name: str, path: Path, target: str, options: dict[str, Any], no_wait: bool
) -> None:
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    try:
        with where.open() as engine:
            engine.events.subscribe(
                lambda e: events.put(e.data) if e.type.startswith("job.") else None
            )
            job = engine.train(name, path.read_bytes(), target=target, dataset=path.name, **options)
            if no_wait:  # in-process, the job ends with the process: wait for it anyway
                engine.jobs.wait(job["id"])
                click.echo(json.dumps(engine.jobs.get(job["id"])))
                return
            click.echo(f"job {job['id']}: training {name} on {path.name}", err=True)

            def follow() -> Any:
                while True:
                    event = events.get()
                    if event.get("job") != job["id"]:
                        continue
                    yield event
                    if event["status"] in FINISHED:
                        return

            _draw_progress(follow())
            _show_result(engine.jobs.wait(job["id"]))
    except RiverbedError as exc:
        raise refusal(exc) from None


@click.group()
def jobs() -> None:
    """Training jobs on a server: list, show, logs, cancel."""


def _run(server: Server, call: Any) -> Any:
    try:
        with server.client() as client:
            return call(client)
    except RiverbedError as exc:
        raise refusal(exc) from None


@jobs.command("ls")
@click.option("--model", help="Only this model's jobs.")
@server_options
def ls(model: str | None, server: Server) -> None:
    """List jobs, newest first."""
    for job in _run(server, lambda c: c.jobs.list(model=model)):
        click.echo(
            f"{job['id']}  {job['model']:<20} {job['status']:<11} {job['progress'] * 100:5.1f}%"
            f"  {job['data'].get('rows', '?')} rows"
        )


@jobs.command()
@click.argument("job_id")
@server_options
def show(job_id: str, server: Server) -> None:
    """Print a job as JSON."""
    click.echo(json.dumps(_run(server, lambda c: c.jobs.get(job_id)), indent=2))


@jobs.command()
@click.argument("job_id")
@server_options
def logs(job_id: str, server: Server) -> None:
    """Print a job's log lines."""
    for line in _run(server, lambda c: c.jobs.logs(job_id)):
        click.echo(line["message"])


@jobs.command()
@click.argument("job_id")
@server_options
def cancel(job_id: str, server: Server) -> None:
    """Cancel a queued or running job."""
    job = _run(server, lambda c: c.jobs.cancel(job_id))
    click.echo(f"{job['id']}: {job['status']}")
