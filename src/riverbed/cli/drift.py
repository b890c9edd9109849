"""``riverbed drift set|show|alarms|off``: a model's drift detectors from the command line.

Each command works on a server or in this process on a database, as
:mod:`riverbed.cli.server`'s one rule chooses (``--database``, else ``--url`` or
``RIVERBED_URL``, else ``RIVERBED_DATABASE``, else the local server); docs/drift.md.
"""

from __future__ import annotations

import json
from typing import Any

import click

from riverbed.cli.models import _pairs
from riverbed.cli.server import Target, target_options
from riverbed.cli.tables import echo_json, table, when
from riverbed.drift import ACTIONS, DETECTORS

__all__ = ["drift"]

_json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")


@click.group()
def drift() -> None:
    """Drift detectors on a model's errors or features, and their alarms (docs/drift.md).

    \b
        riverbed drift set fraud ADWIN --param delta=0.002 --action snapshot
        riverbed drift set fraud KSWIN --on feature:amount --param seed=1 --add
        riverbed drift show fraud
        riverbed drift alarms fraud --after 5000
        riverbed drift off fraud
    """


def _config(detector: dict[str, Any]) -> dict[str, Any]:
    """A detector as ``drift`` shows it -> as ``set_drift`` takes it."""
    keys = ("name", "detector", "on", "params", "action")
    return {k: detector[k] for k in keys}


@drift.command("set")
@click.argument("model")
@click.argument("detector", required=False, metavar=f"[{'|'.join(DETECTORS)}]")
@click.option("--on", default="errors", show_default=True, help="errors, or feature:NAME.")
@click.option(
    "--param", "-p", "params", multiple=True, help="A detector parameter, key=value (repeatable)."
)
@click.option("--name", default=None, help="The detector's name (default DETECTOR[:FEATURE]).")
@click.option("--action", type=click.Choice(ACTIONS), default=None, help="What an alarm does.")
@click.option(
    "--add", is_flag=True, help="Keep the model's other detectors (default: replace them)."
)
@click.option(
    "--detectors-json",
    default=None,
    help="Every detector at once, as the API's JSON list (instead of DETECTOR and its options).",
)
@_json_flag
@target_options
def set_(
    target: Target,
    model: str,
    detector: str | None,
    on: str,
    params: tuple[str, ...],
    name: str | None,
    action: str | None,
    add: bool,
    detectors_json: str | None,
    as_json: bool,
) -> None:
    """Put a drift detector on MODEL's errors or on one of its features."""
    if (detector is None) == (detectors_json is None):
        raise click.UsageError("give a DETECTOR, or --detectors-json with a list of them")
    if detectors_json is not None:
        try:
            detectors = json.loads(detectors_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--detectors-json") from None
    else:
        one: dict[str, Any] = {
            "detector": detector,
            "on": on,
            "params": _pairs(params, "--param", parse=True),
        }
        if name is not None:
            one["name"] = name
        if action is not None:
            one["action"] = action
        detectors = [one]
    with target.open() as store:
        if add:
            current = [_config(d) for d in store.drift(model)["detectors"]]
            detectors = current + list(detectors) if isinstance(detectors, list) else detectors
        result = store.set_drift(model, detectors)
    _show(result, as_json)


@drift.command()
@click.argument("model")
@_json_flag
@target_options
def show(target: Target, model: str, as_json: bool) -> None:
    """MODEL's drift detectors: what each is on, values fed, alarms, its statistics."""
    with target.open(read_only=True) as store:
        result = store.drift(model)
    _show(result, as_json)


@drift.command()
@click.argument("model")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Only after this learn.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@_json_flag
@target_options
def alarms(target: Target, model: str, after: int, limit: int, as_json: bool) -> None:
    """MODEL's drift alarms, oldest first; POSITION is the learn that raised each."""
    with target.open(read_only=True) as store:
        result = store.drift_alarms(model, after=after, limit=limit)
    if as_json:
        echo_json(result)
        return
    rows = [
        (
            a["position"],
            when(a["time"]),
            a["name"],
            a["on"],
            a["index"],
            a["value"],
            a["mean_before"],
            a["action"],
        )
        for a in result["alarms"]
    ]
    if not rows:
        click.echo(f"no drift alarms for {model}" + (f" after learn {after}" if after else ""))
        return
    headers = ("position", "time", "detector", "on", "index", "value", "mean before", "action")
    click.echo(table(rows, headers))


@drift.command()
@click.argument("model")
@_json_flag
@target_options
def off(target: Target, model: str, as_json: bool) -> None:
    """Take every drift detector off MODEL (its alarms are kept)."""
    with target.open() as store:
        result = store.drift_off(model)
    _show(result, as_json)


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(result)
        return
    if not result["detectors"]:
        click.echo(f"{result['model']}: no drift detectors")
        return
    rows = [
        (
            d["name"],
            d["detector"],
            d["on"],
            d["params"],
            d["action"],
            d["n"],
            d["n_skipped"],
            d["n_alarms"],
            d["last_alarm"],
        )
        for d in result["detectors"]
    ]
    headers = ("name", "detector", "on", "params", "action", "n", "skipped", "alarms", "last")
    click.echo(table(rows, headers))
