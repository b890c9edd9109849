"""``riverbed canary set|show|move|stop``: canary splits of a model's routes from the command
line.

Each command works on a server or in this process on a database, as
:mod:`riverbed.cli.server`'s one rule chooses (``--database``, else ``--url`` or
``RIVERBED_URL``, else ``RIVERBED_DATABASE``, else the local server); docs/monitoring.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from riverbed.cli.server import Target, target_options
from riverbed.cli.tables import echo_json, table

__all__ = ["canary"]

_json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")


@click.group()
def canary() -> None:
    """Canary splits: a route (MODEL or MODEL@ALIAS) answered by arms by percentage
    (docs/monitoring.md).

    \b
        riverbed canary set fraud@production v3=90 v4=10 --guard-metric Accuracy \\
            --guard-margin 0.02 --guard-min-samples 500
        riverbed canary set fraud live=95 v4=5 --sticky key:customer
        riverbed canary show fraud@production
        riverbed canary move fraud@production v3=50 v4=50
        riverbed canary stop fraud@production
    """


def _weights(pairs: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in pairs:
        arm, sep, raw = item.partition("=")
        if not sep or not arm:
            raise click.BadParameter(f"{item!r} is not ARM=PERCENT (such as v3=90)")
        try:
            out[arm] = float(raw)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {raw!r} is not a number") from None
    return out


@canary.command("set")
@click.argument("route")
@click.argument("weights", nargs=-1, required=True, metavar="ARM=PERCENT...")
@click.option(
    "--sticky", default="id", show_default=True, help="id, or key:FEATURE (a request feature)."
)
@click.option("--baseline", default=None, help="The arm the others are compared with (first).")
@click.option("--guard-metric", default=None, help="Stop a worse canary arm on this metric.")
@click.option("--guard-margin", type=float, default=0.0, show_default=True)
@click.option("--guard-min-samples", type=click.IntRange(min=1), default=100, show_default=True)
@_json_flag
@target_options
def set_(
    target: Target,
    route: str,
    weights: tuple[str, ...],
    sticky: str,
    baseline: str | None,
    guard_metric: str | None,
    guard_margin: float,
    guard_min_samples: int,
    as_json: bool,
) -> None:
    """Split ROUTE between arms: live or vN, each ARM=PERCENT, summing to 100."""
    guard = None
    if guard_metric is not None:
        guard = {
            "metric": guard_metric,
            "margin": guard_margin,
            "min_samples": guard_min_samples,
        }
    with target.open() as store:
        result = store.set_canary(
            route, _weights(weights), sticky=sticky, guard=guard, baseline=baseline
        )
    _show(result, as_json)


@canary.command()
@click.argument("route")
@click.option("--history", is_flag=True, help="Each arm's metric history instead.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@_json_flag
@target_options
def show(target: Target, route: str, history: bool, limit: int, as_json: bool) -> None:
    """ROUTE's split: each arm's weight, predictions, labels and metrics."""
    with target.open() as store:
        if history:
            result = store.canary_history(route, limit=limit)
        else:
            result = store.canary(route)
    if history:
        if as_json:
            echo_json(result)
            return
        rows = [
            (arm, p["seq"], p["n"], *(_metric(v) for v in p["metrics"].values()))
            for arm, points in result["arms"].items()
            for p in points
        ]
        names = next((list(p["metrics"]) for ps in result["arms"].values() for p in ps), [])
        if not rows:
            click.echo(f"{route}: no history points yet")
            return
        click.echo(table(rows, ("arm", "learn", "n", *names)))
        return
    _show(result, as_json)


@canary.command()
@click.argument("route")
@click.argument("weights", nargs=-1, required=True, metavar="ARM=PERCENT...")
@_json_flag
@target_options
def move(target: Target, route: str, weights: tuple[str, ...], as_json: bool) -> None:
    """Move ROUTE's percentages (arms not named get 0)."""
    with target.open() as store:
        result = store.update_canary(route, _weights(weights))
    _show(result, as_json)


@canary.command()
@click.argument("route")
@click.option("--remove", is_flag=True, help="Take the split off the route altogether.")
@_json_flag
@target_options
def stop(target: Target, route: str, remove: bool, as_json: bool) -> None:
    """Stop ROUTE's split: every canary arm to 0%, the baseline answers alone."""
    with target.open() as store:
        result = store.stop_canary(route, remove=remove)
    if remove and not as_json:
        click.echo(f"{route}: split removed")
        return
    _show(result, as_json)


def _metric(value: Any) -> str:
    return "-" if value is None else f"{value:.6g}"


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(result)
        return
    guard = result["guard"]
    guarded = (
        f"{guard['metric']} by more than {guard['margin']:g} after {guard['min_samples']}"
        if guard
        else "none"
    )
    click.echo(
        f"{result['route']}: {result['status']}, baseline {result['baseline']}, sticky "
        f"{result['sticky']}, guard {guarded}"
    )
    stopped = result.get("stopped")
    if stopped:
        moved = ", ".join(f"{arm} (was {w:g}%)" for arm, w in stopped["arms"].items())
        click.echo(f"stopped by {stopped['by']}: {moved or 'no arm had traffic'}")
        for n in stopped.get("numbers") or ():
            click.echo(
                f"  {n['arm']}: {n['value']:.6g} over {n['n_labels']} labels vs the baseline's "
                f"{n['baseline_value']:.6g} over {n['baseline_n_labels']}"
            )
    names = list(result["arms"][0]["metrics"]) if result["arms"] else []
    rows = [
        (
            a["arm"],
            f"{a['weight']:g}%",
            a["n_predictions"],
            a["n_labels"],
            *(_metric(a["metrics"][m]) for m in names),
        )
        for a in result["arms"]
    ]
    click.echo(table(rows, ("arm", "weight", "predictions", "labels", *names)))
