"""``riverbed cache``: the key-value cache of a running server, from the command line."""

from __future__ import annotations

import functools
import json
from typing import Any

import click

from riverbed.cli_server import refusal
from riverbed.client import DEFAULT_URL, Client
from riverbed.exceptions import RiverbedError

__all__ = ["cache", "url_option"]


def url_option(func: Any) -> Any:
    """``--url`` and ``--token``, handed to the command as one ``server`` (url, token)."""

    @functools.wraps(func)
    def command(*args: Any, url: str, token: str | None, **kwargs: Any) -> Any:
        return func(*args, server=(url, token), **kwargs)

    command = click.option(
        "--token",
        envvar="RIVERBED_TOKEN",
        default=None,
        help="API token for a server with auth on [env RIVERBED_TOKEN].",
    )(command)
    return click.option(
        "--url",
        envvar="RIVERBED_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The server to talk to [env RIVERBED_URL].",
    )(command)


Server = tuple[str, str | None]


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # a bare word is a string


def _run(server: Server, call: Any) -> None:
    try:
        with Client(server[0], token=server[1]) as client:
            result = call(client)
    except RiverbedError as exc:
        raise refusal(exc) from None
    click.echo(json.dumps(result, ensure_ascii=False))


@click.group()
def cache() -> None:
    """Read and write the server's key-value cache (JSON values, optional time to live).

    \b
        riverbed cache put user:42 '{"age": 31}' --ttl 3600
        riverbed cache get user:42
        riverbed cache push jobs '"j1"'; riverbed cache pop jobs
    """


_ttl = click.option("--ttl", type=float, default=None, help="Seconds to live (none: forever).")


@cache.command()
@click.argument("key")
@click.argument("value")
@_ttl
@url_option
def put(key: str, value: str, ttl: float | None, server: Server) -> None:
    """Store VALUE (JSON; a bare word is a string) under KEY."""
    _run(server, lambda c: c.cache.put(key, _json(value), ttl=ttl))


@cache.command()
@click.argument("key")
@url_option
def get(key: str, server: Server) -> None:
    """Print the value under KEY as JSON."""
    _run(server, lambda c: c.cache.get(key))


@cache.command()
@click.argument("key")
@url_option
def delete(key: str, server: Server) -> None:
    """Delete KEY (a value or a list)."""
    _run(server, lambda c: c.cache.delete(key))


@cache.command()
@click.argument("key")
@click.argument("value")
@_ttl
@url_option
def push(key: str, value: str, ttl: float | None, server: Server) -> None:
    """Push VALUE onto the front of the list under KEY."""
    _run(server, lambda c: c.cache.push(key, _json(value), ttl=ttl))


@cache.command()
@click.argument("key")
@click.option("--position", "-p", type=int, default=0, show_default=True)
@url_option
def peek(key: str, position: int, server: Server) -> None:
    """Print the list item at a position (0: front, -1: back)."""
    _run(server, lambda c: c.cache.peek(key, position))


@cache.command()
@click.argument("key")
@url_option
def pop(key: str, server: Server) -> None:
    """Remove and print the front item of the list under KEY."""
    _run(server, lambda c: c.cache.pop(key))


@cache.command()
@click.argument("key")
@click.option("--set", "new", type=float, default=None, help="Set a new time to live (0: none).")
@url_option
def ttl(key: str, new: float | None, server: Server) -> None:
    """Print (or --set) the seconds left before KEY expires."""
    if new is None:
        _run(server, lambda c: c.cache.ttl(key))
    else:
        _run(server, lambda c: c.cache.expire(key, new))
