"""``riverbed cache``: the key-value cache of a running server, from the command line."""

from __future__ import annotations

import json
from typing import Any

import click

from riverbed.cli.server import Server, refusal, server_options
from riverbed.exceptions import RiverbedError

__all__ = ["cache"]


def _json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # a bare word is a string


def _run(server: Server, call: Any) -> None:
    try:
        with server.client() as client:
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
@server_options
def put(key: str, value: str, ttl: float | None, server: Server) -> None:
    """Store VALUE (JSON; a bare word is a string) under KEY."""
    _run(server, lambda c: c.cache.put(key, _json(value), ttl=ttl))


@cache.command()
@click.argument("key")
@server_options
def get(key: str, server: Server) -> None:
    """Print the value under KEY as JSON."""
    _run(server, lambda c: c.cache.get(key))


@cache.command()
@click.argument("key")
@server_options
def delete(key: str, server: Server) -> None:
    """Delete KEY (a value or a list)."""
    _run(server, lambda c: c.cache.delete(key))


@cache.command()
@click.argument("key")
@click.argument("value")
@_ttl
@server_options
def push(key: str, value: str, ttl: float | None, server: Server) -> None:
    """Push VALUE onto the front of the list under KEY."""
    _run(server, lambda c: c.cache.push(key, _json(value), ttl=ttl))


@cache.command()
@click.argument("key")
@click.option("--position", "-p", type=int, default=0, show_default=True)
@server_options
def peek(key: str, position: int, server: Server) -> None:
    """Print the list item at a position (0: front, -1: back)."""
    _run(server, lambda c: c.cache.peek(key, position))


@cache.command()
@click.argument("key")
@server_options
def pop(key: str, server: Server) -> None:
    """Remove and print the front item of the list under KEY."""
    _run(server, lambda c: c.cache.pop(key))


@cache.command()
@click.argument("key")
@click.option("--set", "new", type=float, default=None, help="Set a new time to live (0: none).")
@server_options
def ttl(key: str, new: float | None, server: Server) -> None:
    """Print (or --set) the seconds left before KEY expires."""
    if new is None:
        _run(server, lambda c: c.cache.ttl(key))
    else:
        _run(server, lambda c: c.cache.expire(key, new))
