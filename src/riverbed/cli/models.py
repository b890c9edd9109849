"""``riverbed models``: the model registry from the command line.

Every command talks to a running server or opens the engine in-process on a database, as
:mod:`riverbed.cli.server`'s one rule chooses (``--database``, ``--url``, their variables).
Both have the same method names, so each command is written once. Filters use the
registry's one syntax (docs/registry.md).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from riverbed.cli.server import Target, target_options
from riverbed.cli.tables import cell, describe, echo_json, short, table, when
from riverbed.exceptions import ModelExists, RiverbedError
from riverbed.provenance import current_user
from riverbed.validation import parse_int

__all__ = ["models"]


def _pairs(values: Sequence[str], what: str, parse: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{what} {item!r} is not key=value")
        if parse:
            try:
                out[key] = json.loads(raw)
            except ValueError:
                out[key] = raw
        else:
            out[key] = raw
    return out


def _version_rows(versions: Sequence[dict[str, Any]]) -> str:
    rows = [
        (
            v["model"],
            v["version"],
            v["aliases"],
            v["source"],
            v["format"],
            v["metrics"],
            v["tags"],
            when(v["created_at"]),
        )
        for v in versions
    ]
    headers = ("model", "version", "aliases", "source", "format", "metrics", "tags", "created")
    return table(rows, headers)


def _live_metrics(store: Any, info: dict[str, Any]) -> str | None:
    """An online model's progressive metrics now, for people: ``MAE=1.2, R2=– (5 scored)``,
    with ``–`` for a metric that has nothing to measure yet (null in the API)."""
    if info.get("flavor") != "river" or not info.get("metrics"):
        return None
    try:
        now = store.metrics(info["name"])
    except RiverbedError:  # a task that is not evaluated online
        return None
    shown = ", ".join(f"{k}={'–' if v is None else short(v)}" for k, v in now["metrics"].items())
    return f"{shown} ({now['n']} scored)"


@click.group()
def models() -> None:
    """The model registry: versions, aliases, metadata, artifacts.

    \b
        riverbed models upload fraud model.skops --metric accuracy=0.93 --tag team=risk
        riverbed models alias fraud production 3
        riverbed models search "metrics.accuracy > 0.9 and tags.team = 'risk'"
        riverbed models download fraud@production -o model.skops
    """


_json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")


@models.command("ls")
@click.option("--filter", "filter_", default=None, help="Registry filter (docs/registry.md).")
@click.option("--order-by", default=None, help="e.g. 'updated_at desc'.")
@click.option("--page-size", type=int, default=None)
@click.option("--page-token", default=None)
@_json_flag
@target_options
def ls(
    filter_: str | None,
    order_by: str | None,
    page_size: int | None,
    page_token: str | None,
    as_json: bool,
    target: Target,
) -> None:
    """List models (optionally those passing a filter)."""
    with target.open(read_only=True) as store:
        found = store.search_models(
            filter_, order_by=order_by, page_size=page_size, page_token=page_token
        )
    if as_json:
        return echo_json(found)
    rows = [
        (
            m["name"],
            m["task"],
            m["flavor"],
            m["n_versions"],
            m["latest_version"],
            m["aliases"],
            when(m["updated_at"]),
            m["description"],
        )
        for m in found["models"]
    ]
    headers = ("name", "task", "flavor", "versions", "latest", "aliases", "updated", "description")
    click.echo(table(rows, headers))
    if found["next_page_token"]:
        click.echo(f"(more: --page-token {found['next_page_token']})")


@models.command()
@click.argument("filter_", metavar="FILTER", required=False)
@click.option("--order-by", default=None, help="e.g. 'metrics.accuracy desc'.")
@click.option("--page-size", type=int, default=None)
@click.option("--page-token", default=None)
@_json_flag
@target_options
def search(
    filter_: str | None,
    order_by: str | None,
    page_size: int | None,
    page_token: str | None,
    as_json: bool,
    target: Target,
) -> None:
    """Search versions: riverbed models search "metrics.accuracy > 0.9"."""
    with target.open(read_only=True) as store:
        found = store.search_versions(
            filter_, order_by=order_by, page_size=page_size, page_token=page_token
        )
    if as_json:
        return echo_json(found)
    click.echo(_version_rows(found["versions"]))
    if found["next_page_token"]:
        click.echo(f"(more: --page-token {found['next_page_token']})")


@models.command()
@click.argument("ref")
@click.option("--version", type=int, default=None)
@_json_flag
@target_options
def show(ref: str, version: int | None, as_json: bool, target: Target) -> None:
    """Describe a model (NAME) or one version (NAME@3, NAME@alias, --version)."""
    with target.open(read_only=True) as store:
        if "@" in ref or version is not None:
            info = store.get_version(ref, version)
            versions = live = None
        else:
            info = store.get_model(ref)
            versions = store.list_versions(ref)
            live = _live_metrics(store, info)
    if as_json:
        return echo_json(info if versions is None else {**info, "versions": versions})
    if live is not None:
        info = {**info, "live_metrics": live}
    click.echo(describe(info, as_text=("spec", "hyperparameters")))
    if versions:
        click.echo("")
        click.echo(_version_rows(versions))


@models.command()
@click.argument("name")
@click.option("--spec", "spec_", required=True, help="A spec: JSON text or @file.json.")
@click.option("--task", default=None)
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True, help="key=value (repeatable).")
@click.option(
    "--exist-ok",
    is_flag=True,
    help="A model of that name created from the same spec is fine: nothing changes.",
)
@target_options
def create(
    name: str,
    spec_: str,
    task: str | None,
    description: str,
    tags: tuple[str, ...],
    exist_ok: bool,
    target: Target,
) -> None:
    """Create a model from a declarative spec (docs/specs.md); --exist-ok to run again."""
    text = spec_
    if spec_.startswith("@"):
        with open(spec_[1:]) as f:
            text = f.read()
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"the spec is not JSON: {exc}") from None
    fields = {"spec": spec, "task": task, "description": description, "tags": _pairs(tags, "tag")}
    with target.open() as store:
        try:
            created = store.create_model(name, **fields)
        except ModelExists:
            if not exist_ok:
                raise
            found = store.create_model(name, **fields, exist_ok=True)
            click.echo(f"{found['name']} ({found['task']}) exists, version {found['version']}")
            return
    click.echo(f"created {created['name']} ({created['task']}), version {created['version']}")


@models.command()
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "format_", default=None, help="skops, pickle, joblib, riverbed, file.")
@click.option("--task", default=None)
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True, help="key=value (repeatable).")
@click.option("--metric", "metrics", multiple=True, help="name=number (repeatable).")
@click.option("--param", "params", multiple=True, help="key=value, value as JSON if it parses.")
@click.option("--hyperparameter", "hyper", multiple=True, help="key=value, for opaque files.")
@click.option("--dataset", default=None, help="Name of the training data set.")
@click.option("--dataset-description", default=None)
@click.option("--feature-names", default=None, help="Comma-separated input column names.")
@click.option("--parent", type=int, default=None, help="The version this one derives from.")
@click.option("--alias", "aliases", multiple=True, help="Point this alias at the new version.")
@click.option("--no-git", is_flag=True, help="Do not record the working directory's git state.")
@target_options
def upload(
    name: str,
    path: str,
    format_: str | None,
    task: str | None,
    description: str,
    tags: tuple[str, ...],
    metrics: tuple[str, ...],
    params: tuple[str, ...],
    hyper: tuple[str, ...],
    dataset: str | None,
    dataset_description: str | None,
    feature_names: str | None,
    parent: int | None,
    aliases: tuple[str, ...],
    no_git: bool,
    target: Target,
) -> None:
    """Upload PATH as the next version of NAME (created if new); records the git commit,
    branch and remote of the working directory and who uploaded it."""
    with open(path, "rb") as f:
        data = f.read()
    measured = _pairs(metrics, "metric", parse=True)
    data_set = None
    if dataset or dataset_description:
        data_set = {"name": dataset or "", "description": dataset_description or ""}
    with target.open() as store:
        version = store.upload(
            name,
            data,
            format=format_,
            filename=os.path.basename(path),
            task=task,
            description=description,
            tags=_pairs(tags, "tag"),
            hyperparameters=_pairs(hyper, "hyperparameter", parse=True),
            params=_pairs(params, "param", parse=True),
            metrics=measured,
            dataset=data_set,
            git=False if no_git else None,
            parent=parent,
            feature_names=feature_names.split(",") if feature_names else None,
        )
        for alias in aliases:
            store.set_alias(name, alias, version["version"])
    git = version["git"]
    where = f" from {git.get('branch') or 'detached'}@{git['commit'][:10]}" if git else ""
    click.echo(f"uploaded {name} version {version['version']} ({version['format']}){where}")


@models.command()
@click.argument("ref")
@click.option("--version", type=int, default=None)
@click.option("-o", "--output", default=None, help="File to write ('-' for stdout).")
@target_options
def download(
    ref: str,
    version: int | None,
    output: str | None,
    target: Target,
) -> None:
    """Download a version's artifact (NAME is the latest; NAME@alias, NAME@3)."""
    with target.open(read_only=True) as store:
        info = store.get_version(ref, version)
        data = store.download(info["model"], info["version"])
    if output == "-":
        sys.stdout.buffer.write(data)
        return
    path = output or info["filename"] or f"{info['model']}-{info['version']}.{info['format']}"
    with open(path, "wb") as f:
        f.write(data)
    click.echo(f"wrote {len(data)} bytes of {info['model']} version {info['version']} to {path}")


@models.command()
@click.argument("name")
@click.argument("alias", required=False)
@click.argument("version", type=int, required=False)
@click.option("--delete", is_flag=True, help="Remove ALIAS.")
@target_options
def alias(
    name: str,
    alias: str | None,
    version: int | None,
    delete: bool,
    target: Target,
) -> None:
    """Point NAME@ALIAS at VERSION (a rollback is a move back); without ALIAS, list the
    aliases and their history."""
    with target.open(read_only=alias is None) as store:
        if alias is None:
            current = store.aliases(name)
            history = store.alias_history(name)
            click.echo(table(sorted(current.items()), ("alias", "version")))
            click.echo("")
            rows = [
                (h["alias"], h["previous"], h["version"], h["by"], when(h["at"])) for h in history
            ]
            click.echo(table(rows, ("alias", "from", "to", "by", "at")))
            return
        if delete:
            store.delete_alias(name, alias)
            click.echo(f"removed {name}@{alias}")
            return
        if version is None:
            raise click.UsageError("give the VERSION to point the alias at (or --delete)")
        moved = store.set_alias(name, alias, version, by=current_user())
    previous = moved["previous"]
    origin = f" (was {previous})" if previous is not None else ""
    click.echo(f"{name}@{alias} -> version {moved['version']}{origin}")


@models.command()
@click.argument("name")
@click.argument("version", type=int)
@click.option(
    "--metrics",
    type=click.Choice(["restart", "carry"]),
    default="restart",
    show_default=True,
    help="Measure the restored model afresh, or go on with the running metrics.",
)
@target_options
def restore(name: str, version: int, metrics: str, target: Target) -> None:
    """Make VERSION the live model's state: NAME predicts and learns from there on (a
    rollback of what it learned; kept in the alias history as NAME@restored)."""
    with target.open() as store:
        done = store.restore(name, version, metrics=metrics, by=current_user())
    click.echo(
        f"{name} restored to version {done['version']} (was based on {done['previous']}); "
        f"metrics {'restarted' if metrics == 'restart' else 'carried on'}"
    )


@models.command()
@click.argument("ref")
@click.argument("tags", nargs=-1)
@click.option("--remove", "remove", multiple=True, help="Tag name to remove (repeatable).")
@click.option("--version", type=int, default=None)
@click.option("--description", default=None, help="Also set the description.")
@target_options
def tag(
    ref: str,
    tags: tuple[str, ...],
    remove: tuple[str, ...],
    version: int | None,
    description: str | None,
    target: Target,
) -> None:
    """Set key=value tags on a model (NAME) or a version (NAME@3, --version)."""
    pairs = _pairs(tags, "tag")
    with target.open() as store:
        if "@" in ref or version is not None:
            result = store.update_version(
                ref, version, description=description, tags=pairs, remove_tags=list(remove)
            )
            what = f"{result['model']} version {result['version']}"
        else:
            result = store.update_model(
                ref, description=description, tags=pairs, remove_tags=list(remove)
            )
            what = result["name"]
    click.echo(f"{what}: {cell(result['tags'], 200) or '(no tags)'}")


@models.command()
@click.argument("ref")
@click.option("--version", type=int, default=None)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@target_options
def delete(ref: str, version: int | None, yes: bool, target: Target) -> None:
    """Delete a version (NAME@3, --version) or a whole model (NAME) with its history."""
    name, _, at = ref.partition("@")
    if at and version is None:
        version = parse_int(at)
        if version is None:
            raise click.UsageError("delete a version by its number (NAME@3), not by an alias")
    what = f"{name} version {version}" if version is not None else f"model {name} and its history"
    if not yes:
        click.confirm(f"delete {what}?", abort=True)
    with target.open() as store:
        if version is not None:
            store.delete_version(name, version)
        else:
            store.delete_model(name)
    click.echo(f"deleted {what}")


@models.command()
@click.argument("name")
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True, help="key=value (repeatable).")
@target_options
def snapshot(
    name: str,
    description: str,
    tags: tuple[str, ...],
    target: Target,
) -> None:
    """Freeze what an online model has learned so far as a new version."""
    with target.open() as store:
        version = store.snapshot(
            name, description=description, tags=_pairs(tags, "tag"), created_by=current_user()
        )
    click.echo(f"{name} version {version['version']}: snapshot after {version['n_learns']} learns")
