"""``riverbed db``: a whole database, copied to another backend or checked."""

from __future__ import annotations

import sys
from typing import Any

import click

from riverbed.exceptions import RiverbedError

__all__ = ["db"]


@click.group()
def db() -> None:
    """Copy a database (SQLite file to PostgreSQL and back) or check one.

    \b
        riverbed db copy riverbed.db postgresql://postgres@127.0.0.1:5432/riverbed
        riverbed db check postgresql://postgres@127.0.0.1:5432/riverbed
    """


def _refused(exc: Exception) -> click.ClickException:
    return click.ClickException(exc.message if isinstance(exc, RiverbedError) else str(exc))


@db.command()
@click.argument("source")
@click.argument("target")
@click.option(
    "--replace", is_flag=True, help="Delete what TARGET holds first (else it must be empty)."
)
def copy(source: str, target: str, replace: bool) -> None:
    """Copy every record of SOURCE into TARGET: models, versions, aliases, predictions,
    learns, metric history, checkpoints, tokens, the cache and jobs. Each is an SQLite file
    (a path or sqlite:///path) or postgresql://USER@HOST:PORT/DB; no server may be running
    on either while it copies."""
    from riverbed.stores.copy import copy_database

    bar: Any = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label="copying", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        counts = copy_database(source, target, replace=replace, progress=progress)
    except (ValueError, RiverbedError) as exc:
        raise _refused(exc) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    copied = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "nothing"
    click.echo(f"copied {source} to {target}: {copied}")


@db.command()
@click.argument("location", metavar="DATABASE")  # not "database": that is the --database option
def check(location: str) -> None:
    """Report a database's schema version, whether a process serves it, and what it holds.
    Changes nothing; exits 1 for a database this riverbed cannot open."""
    from riverbed.stores.copy import describe

    try:
        found = describe(location)
    except (ValueError, RiverbedError) as exc:
        raise _refused(exc) from None
    click.echo(f"database: {found.where} ({found.backend})")
    if found.schema is None:
        click.echo("schema: none (not a riverbed database yet; riverbed creates it on first start)")
    else:
        click.echo(f"schema: {found.schema} (this riverbed reads {found.reads} and older)")
    click.echo(f"served: {'no' if found.served_by is None else found.served_by}")
    if found.counts:
        click.echo("records: " + ", ".join(f"{kind} {n}" for kind, n in found.counts.items()))
    if found.schema is not None and found.schema > found.reads:
        raise click.ClickException(
            f"{found.where} was written by a newer riverbed (schema {found.schema}): upgrade "
            "riverbed to open it"
        )
