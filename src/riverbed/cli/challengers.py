"""``riverbed challengers add|list|show|remove|promote|rollback|rule``: a model's challengers
and their promotion from the command line.

Each command works on a server or in this process on a database, as
:mod:`riverbed.cli.server`'s one rule chooses (``--database``, else ``--url`` or
``RIVERBED_URL``, else ``RIVERBED_DATABASE``, else the local server); docs/monitoring.md.
"""

from __future__ import annotations

import json
from typing import Any

import click

from riverbed.cli.server import Target, target_options
from riverbed.cli.tables import echo_json, short, table

__all__ = ["challengers"]

_json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")


@click.group()
def challengers() -> None:
    """Challengers (shadow models) beside a model's champion, and promotion
    (docs/monitoring.md).

    \b
        riverbed challengers add fraud --version 3
        riverbed challengers add fraud --spec '{"class": "river.tree.HoeffdingTreeClassifier"}'
        riverbed challengers list fraud
        riverbed challengers promote fraud v3
        riverbed challengers rollback fraud
        riverbed challengers rule fraud --metric LogLoss --margin 0.02 --window 5000
    """


@challengers.command("add")
@click.argument("model")
@click.option("--name", default=None, help="The challenger's name (default v<N> or the class).")
@click.option("--version", default=None, help="A version of MODEL: a number or an alias.")
@click.option("--spec", default=None, help="A declarative model spec, as JSON.")
@click.option("--ref", default=None, help="A version of another model: OTHER or OTHER@N.")
@_json_flag
@target_options
def add(
    target: Target,
    model: str,
    name: str | None,
    version: str | None,
    spec: str | None,
    ref: str | None,
    as_json: bool,
) -> None:
    """Put a challenger beside MODEL's champion (one of --version, --spec, --ref)."""
    if sum(v is not None for v in (version, spec, ref)) != 1:
        raise click.UsageError("give one of --version, --spec or --ref")
    parsed: Any = None
    if spec is not None:
        try:
            parsed = json.loads(spec)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--spec") from None
    number: int | str | None = int(version) if version and version.isdigit() else version
    with target.open() as store:
        result = store.add_challenger(model, name, version=number, spec=parsed, ref=ref)
    _show(result, as_json)


@challengers.command("list")
@click.argument("model")
@_json_flag
@target_options
def list_(target: Target, model: str, as_json: bool) -> None:
    """MODEL's champion and challengers side by side, the rule and the promotions."""
    with target.open(read_only=True) as store:
        result = store.challengers(model)
    _show(result, as_json)


@challengers.command()
@click.argument("model")
@click.argument("challenger")
@click.option("--history", type=click.IntRange(0, 1000), default=20, show_default=True)
@target_options
def show(target: Target, model: str, challenger: str, history: int) -> None:
    """One CHALLENGER of MODEL as JSON, with its newest metric history points."""
    with target.open(read_only=True) as store:
        echo_json(store.challenger(model, challenger, history=history))


@challengers.command()
@click.argument("model")
@click.argument("challenger")
@_json_flag
@target_options
def remove(target: Target, model: str, challenger: str, as_json: bool) -> None:
    """Take CHALLENGER away from MODEL."""
    with target.open() as store:
        result = store.remove_challenger(model, challenger)
    _show(result, as_json)


@challengers.command()
@click.argument("model")
@click.argument("challenger")
@click.option("--by", default=None, help="Who promotes, for the alias history.")
@_json_flag
@target_options
def promote(target: Target, model: str, challenger: str, by: str | None, as_json: bool) -> None:
    """Make CHALLENGER MODEL's champion; the champion stays on as a challenger."""
    with target.open() as store:
        result = store.promote(model, challenger, by=by)
    _promotion(result, as_json)


@challengers.command()
@click.argument("model")
@click.option("--by", default=None, help="Who rolls back, for the alias history.")
@_json_flag
@target_options
def rollback(target: Target, model: str, by: str | None, as_json: bool) -> None:
    """Undo MODEL's last promotion."""
    with target.open() as store:
        result = store.rollback(model, by=by)
    _promotion(result, as_json)


@challengers.command()
@click.argument("model")
@click.option("--metric", default=None, help="One of the model's metrics, e.g. LogLoss.")
@click.option("--margin", type=float, default=0.0, show_default=True, help="0.02 = 2% better.")
@click.option("--min-samples", type=click.IntRange(min=1), default=None, help="Default: window.")
@click.option("--window", type=click.IntRange(min=1), default=None, help="Labels compared.")
@click.option("--off", is_flag=True, help="Remove the rule.")
@_json_flag
@target_options
def rule(
    target: Target,
    model: str,
    metric: str | None,
    margin: float,
    min_samples: int | None,
    window: int | None,
    off: bool,
    as_json: bool,
) -> None:
    """Show MODEL's promotion rule, set it (--metric and --window), or remove it (--off)."""
    changes = off or metric is not None or window is not None
    with target.open(read_only=not changes) as store:
        if off:
            result = store.promotion_rule_off(model)
        elif metric is not None or window is not None:
            if metric is None or window is None:
                raise click.UsageError("a rule needs --metric and --window")
            result = store.set_promotion_rule(
                model,
                {
                    "metric": metric,
                    "margin": margin,
                    "min_samples": min_samples or window,
                    "window": window,
                },
            )
        else:
            result = store.promotion_rule(model)
    if as_json:
        echo_json(result)
        return
    r = result["rule"]
    if r is None:
        click.echo(f"{result['model']}: no promotion rule")
        return
    click.echo(
        f"{result['model']}: promote when {r['metric']} is better by {r['margin']:.2%} over "
        f"the last {r['window']} labels, after {r['min_samples']}"
    )
    rows = [
        (c, n["n"], n["champion"], n["challenger"], n["improvement"])
        for c, n in result["challengers"].items()
    ]
    if rows:
        click.echo(table(rows, ("challenger", "n", "champion", "challenger value", "improvement")))


def _show(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(result)
        return
    champion = result["champion"]
    names = list(champion["metrics"])

    def values(metrics: dict[str, Any]) -> list[str | None]:  # nothing scored yet: blank
        return [None if metrics.get(m) is None else short(metrics[m]) for m in names]

    rows = [("champion", f"v{champion['version']}", champion["n"], *values(champion["metrics"]))]
    for c in result["challengers"]:
        source = ", ".join(f"{k}={v if k != 'spec' else '…'}" for k, v in c["source"].items())
        state = c["name"] + (" (stopped)" if c["error"] else "")
        rows.append((state, source, c["n"], *values(c["metrics"])))
    click.echo(table(rows, ("model", "source", "n", *names)))
    if result["rule"]:
        r = result["rule"]
        click.echo(f"rule: {r['metric']} better by {r['margin']:.2%} over {r['window']} labels")
    for p in result["promotions"][-5:]:
        click.echo(
            f"promoted {p['challenger']} at learn {p['n_learns']} ({p['reason']}): "
            f"version {p['version']}"
        )


def _promotion(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(result)
        return
    click.echo(
        f"{result['model']}: {result['challenger']} is the champion (version "
        f"{result['version']}); the old champion is challenger {result['demoted']}"
    )
