"""What the commands that talk to a server, or work on a database, share: how they are told
which (one rule, :func:`choose_target`), their options, and the one line an error becomes.

The rule, for every command that can do either (``riverbed models``, ``tokens``, ``drift``,
``canary``, ``webhooks``, ``train``, ``predict``, ``learn``, ``connect``):

1. ``--database PATH`` given: that database, in this process;
2. else ``--url URL`` or ``RIVERBED_URL``: the server there;
3. else ``RIVERBED_DATABASE``: that database, in this process;
4. else the server at http://127.0.0.1:8000 (what ``riverbed serve`` listens on).

``--database`` and ``--url`` both given is a usage error (exit status 2). A command that
works on a database says so on stderr, in one line naming the file and why it was chosen.
None of them creates a database (only ``riverbed serve`` does): a database that is not
there is the one line ``Error: no database at PATH``, exit status 1. A command that only
reads opens the database to read only (:meth:`Target.open`), so it works beside a server
that serves the same file.
Commands that only talk to a server (``cache``, ``jobs``, ``forecast``, ``tail``) take
:func:`server_options`: ``--url`` (env ``RIVERBED_URL``) and ``--token``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from riverbed.client import DEFAULT_URL
from riverbed.exceptions import InvalidToken, RiverbedError, Unauthorized, Unreachable

__all__ = [
    "Server",
    "Target",
    "choose_target",
    "refusal",
    "require",
    "server_options",
    "target_options",
]

URL_ENV = "RIVERBED_URL"
DATABASE_ENV = "RIVERBED_DATABASE"
TOKEN_ENV = "RIVERBED_TOKEN"


def refusal(exc: RiverbedError) -> click.ClickException:
    """The one line a command exits with for ``exc``: its code and message, and where the
    command line has its own way to fix it (``--url``, ``--token``), that way."""
    message = f"{exc.code}: {exc.message}"
    if isinstance(exc, Unreachable):
        message += ", or point --url (env RIVERBED_URL) at one that runs"
    elif isinstance(exc, Unauthorized) and not isinstance(exc, InvalidToken):
        message += " (here: --token, env RIVERBED_TOKEN)"
    return click.ClickException(message)


@dataclass(frozen=True)
class Server:
    """A server to talk to: its URL and the API token to send (if any)."""

    url: str
    token: str | None = None

    def client(self, **options: Any) -> Any:
        from riverbed.client import Client

        return Client(self.url, token=self.token, **options)


@dataclass(frozen=True)
class Target:
    """Where a command works: a database in this process, or a server (one of the two)."""

    database: str | None = None
    server: Server | None = None
    reason: str = ""  # why the database: "--database" or "env RIVERBED_DATABASE"

    @contextmanager
    def open(self, *, read_only: bool = False) -> Iterator[Any]:
        """An :class:`~riverbed.engine.Engine` on the database or a client of the server
        (the same method names); a riverbed error inside becomes the command's one line.
        ``read_only``: the command only reads, so the engine opens the database to read only
        (``Engine(read_only=True)``), beside a process that writes it."""
        try:
            if self.server is not None:
                with self.server.client() as client:
                    yield client
            else:
                from riverbed.engine import Engine

                try:
                    engine = Engine(self.database, read_only=read_only)
                except ValueError as exc:  # gone meanwhile, held by a server, newer, ...
                    raise click.ClickException(str(exc)) from None
                with engine:
                    yield engine
        except RiverbedError as exc:
            raise refusal(exc) from None


def choose_target(
    database: str | None,
    url: str | None,
    token: str | None,
    environ: Mapping[str, str] = os.environ,
) -> Target:
    """The rule in this module's docstring; an empty value counts as not given."""
    if database and url:
        raise _both(database, url)
    if database:
        return Target(database=database, reason="--database")
    url = url or environ.get(URL_ENV) or None
    if url:
        return Target(server=Server(url, token))
    database = environ.get(DATABASE_ENV) or None
    if database:
        return Target(database=database, reason=f"env {DATABASE_ENV}")
    return Target(server=Server(DEFAULT_URL, token))


def require(database: str) -> None:
    """Stop the command, in one line and creating nothing, when ``database`` is not there
    (``Error: no database at PATH``) or cannot be opened (a URL of an unknown scheme, a
    PostgreSQL server out of reach)."""
    from riverbed.stores import require_database

    try:
        require_database(database)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("no "):
            message += " (riverbed serve --database creates one)"
        raise click.ClickException(message) from None


def _both(database: str, url: str, ctx: click.Context | None = None) -> click.UsageError:
    return click.UsageError(
        f"--database {database} and --url {url} both given: --database works on that "
        "database in this process, --url talks to that server; give one of them",
        ctx,
    )


def _not_both(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse ``--database`` with ``--url`` as soon as the second is parsed, before what
    else the command needs is checked (so the one error is this one)."""
    other = ctx.params.get("url" if param.name == "database" else "database")
    if value and other:
        database, url = (value, other) if param.name == "database" else (other, value)
        raise _both(database, url, ctx)
    return value


_token = click.option(
    "--token",
    envvar=TOKEN_ENV,
    default=None,
    help=f"API token for a server with auth on [env {TOKEN_ENV}].",
)


def server_options(func: Any) -> Any:
    """``--url`` (env ``RIVERBED_URL``, default http://127.0.0.1:8000) and ``--token``,
    handed to the command as one ``server`` (:class:`Server`)."""

    @functools.wraps(func)
    def command(*args: Any, url: str, token: str | None, **kwargs: Any) -> Any:
        return func(*args, server=Server(url or DEFAULT_URL, token), **kwargs)

    command = _token(command)
    return click.option(
        "--url",
        envvar=URL_ENV,
        default=DEFAULT_URL,
        show_default=True,
        help=f"The server to talk to [env {URL_ENV}].",
    )(command)


def target_options(func: Any) -> Any:
    """``--database``, ``--url`` and ``--token``, chosen between by :func:`choose_target`
    and handed to the command as one ``target`` (:class:`Target`); a database chosen is
    announced on stderr."""

    @functools.wraps(func)
    def command(
        *args: Any, database: str | None, url: str | None, token: str | None, **kwargs: Any
    ) -> Any:
        target = choose_target(database, url, token)
        if target.database is not None:
            require(target.database)
            click.echo(
                f"riverbed: using the database {target.database} ({target.reason}), not a server",
                err=True,
            )
        return func(*args, target=target, **kwargs)

    command = _token(command)
    command = click.option(
        "--url",
        default=None,
        callback=_not_both,
        help=(
            f"Talk to the server at this URL [env {URL_ENV}; default {DEFAULT_URL} unless "
            f"{DATABASE_ENV} is set]."
        ),
    )(command)
    return click.option(
        "--database",
        default=None,
        callback=_not_both,
        help=(
            "Work in this process on this database (an SQLite path or a postgresql:// URL), "
            f"not on a server [env {DATABASE_ENV}, used when neither --url nor {URL_ENV} is "
            "given]."
        ),
    )(command)
