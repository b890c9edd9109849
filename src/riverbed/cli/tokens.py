"""``riverbed tokens``: create, list and revoke API tokens.

The commands work through a running server's admin API (``--url``, env ``RIVERBED_URL``,
default http://127.0.0.1:8000, with an admin ``--token`` when its auth is on), or on a
server's database directly (``--database``, or ``RIVERBED_DATABASE`` when no URL is given),
which is safe while the server runs; :mod:`riverbed.cli.server` has the rule. A server on the
in-memory store is only reachable the first way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from riverbed.cli.server import Server, Target, refusal, target_options
from riverbed.cli.tables import table, when
from riverbed.exceptions import RiverbedError
from riverbed.tokens import SCOPES

__all__ = ["tokens"]


class _Local:
    """The token operations over a database file."""

    def __init__(self, database: str) -> None:
        from riverbed.stores import open_token_file
        from riverbed.tokens import Tokens

        store, self._close = open_token_file(database)
        self.tokens = Tokens(store)

    def create_token(self, scopes: list[str], name: str, expires_in: str | None) -> Any:
        return self.tokens.create_token(scopes, name=name, expires_in=expires_in)

    def list_tokens(self, include_inactive: bool) -> Any:
        return self.tokens.list_tokens(include_inactive=include_inactive)

    def revoke_token(self, token_id: str) -> Any:
        return self.tokens.revoke_token(token_id)

    def close(self) -> None:
        self._close()


class _Remote:
    """The same operations through a server's admin API."""

    def __init__(self, server: Server) -> None:
        self.client = server.client()

    def create_token(self, scopes: list[str], name: str, expires_in: str | None) -> Any:
        return self.client.create_token(scopes, name=name, expires_in=expires_in)

    def list_tokens(self, include_inactive: bool) -> Any:
        return self.client.list_tokens(include_inactive=include_inactive)

    def revoke_token(self, token_id: str) -> Any:
        return self.client.revoke_token(token_id)

    def close(self) -> None:
        self.client.close()


@contextmanager
def _backend(target: Target) -> Iterator[Any]:
    if target.server is not None:
        backend: Any = _Remote(target.server)
    else:
        database = target.database
        assert database is not None
        if database in (":memory:", "memory://"):
            raise click.UsageError(
                "an in-memory server keeps its tokens in its own process: use --url with an "
                "admin --token (printed by the server at start) instead of --database"
            )
        backend = _Local(database)
    try:
        yield backend
    except RiverbedError as exc:
        raise refusal(exc) from None
    finally:
        backend.close()


@click.group()
def tokens() -> None:
    """Create, list and revoke API tokens (scopes: read, predict, learn, admin).

    \b
    A token for a device that predicts and sends ground truth, valid 90 days:
        riverbed tokens create --scope predict --scope learn --expires-in 90d --name edge-1
    """


@tokens.command()
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="A scope to grant; repeat for several. admin implies every other scope.",
)
@click.option("--name", default="", help="A note saying whose or what the token is.")
@click.option("--expires-in", help="Lifetime: seconds or 90s, 15m, 12h, 30d, 2w (default: none).")
@click.option("--json", "as_json", is_flag=True, help="Print the token as JSON.")
@target_options
def create(
    scopes: tuple[str, ...],
    name: str,
    expires_in: str | None,
    as_json: bool,
    target: Target,
) -> None:
    """Create a token and print its secret (on stdout, alone): it is shown this once."""
    with _backend(target) as backend:
        made = backend.create_token(list(scopes), name, expires_in)
    if as_json:
        click.echo(json.dumps(made))
        return
    click.echo(
        f"created token {made['id']} ({', '.join(made['scopes'])}; expires "
        f"{when(made['expires_at'], none='never')}). The secret below is shown once: keep it now.",
        err=True,
    )
    click.echo(made["token"])


@tokens.command(name="ls")
@click.option("--all", "include_inactive", is_flag=True, help="Include expired and revoked ones.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@target_options
def ls(
    include_inactive: bool,
    as_json: bool,
    target: Target,
) -> None:
    """List tokens (never their secrets)."""
    with _backend(target) as backend:
        found = backend.list_tokens(include_inactive)
    if as_json:
        click.echo(json.dumps(found))
        return
    rows = [
        (
            t["id"],
            t["name"] or "-",
            ",".join(t["scopes"]),
            when(t["created_at"]),
            when(t["expires_at"], none="never"),
            t["status"],
        )
        for t in found
    ]
    click.echo(table(rows, ("id", "name", "scopes", "created", "expires", "status")))


@tokens.command()
@click.argument("token_id")
@target_options
def revoke(token_id: str, target: Target) -> None:
    """Revoke the token TOKEN_ID: from now on it verifies no more."""
    with _backend(target) as backend:
        backend.revoke_token(token_id)
    click.echo(f"revoked token {token_id}", err=True)
