"""The ``riverbed`` command line: thin over the engine, the server and the client."""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

import click

from riverbed.config import SETTINGS, Settings
from riverbed.version import __version__

__all__ = ["main"]


def _setting_options(func: Any) -> Any:
    """One ``--flag`` per setting, each defaulting to its RIVERBED_* variable or default."""
    for setting in reversed(SETTINGS):
        func = click.option(
            setting.flag,
            setting.name,
            type=setting.type,
            default=None,
            help=f"{setting.help} [env {setting.env}; default {setting.default!r}]",
        )(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="riverbed")
def cli() -> None:
    """riverbed serves online (river) and batch models: predict, learn from delayed ground
    truth, and watch metrics move.

    \b
    Start a server on an SQLite file in this directory:
        riverbed serve
    Then see what it answers:
        riverbed routes
    """


@cli.command()
@_setting_options
def serve(**options: Any) -> None:
    """Run the HTTP server (JSON API under /v1, OpenAPI at /openapi.json)."""
    import uvicorn

    from riverbed.server import create_app
    from riverbed.server.auth import websocket_max_size
    from riverbed.server.protocol import RiverbedWebSockets, protocol_for
    from riverbed.stores import check_database

    try:
        settings = Settings.load(options)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _check_address(settings.host, settings.port)
    try:
        check_database(settings.database, shared=bool(settings.broker))
        app = create_app(settings=settings)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(app.state.auth.banner()[1], err=True)
    click.echo(
        f"riverbed {__version__}: serving {settings.database} on "
        f"http://{settings.host}:{settings.port} (API docs: /openapi.json)",
        err=True,
    )
    # The imports above made a few hundred thousand long-lived objects (river, scikit-learn,
    # Starlette...). Freezing them keeps Python's full collections from scanning them again:
    # without this, a full collection every few thousand predictions paused the server for
    # tens of milliseconds, which was the p99 latency.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        lifespan="on",
        # riverbed reads the proxy headers itself, from forwarded_allow_ips only
        # (riverbed.server.guard.ProxyRule); uvicorn's own would trust 127.0.0.1.
        proxy_headers=False,
        http=protocol_for(app),
        ws=RiverbedWebSockets,
        # a message over its route's limit gets an error answer, not a dropped connection
        ws_max_size=websocket_max_size(app.state.endpoints, settings),
    )


def _check_address(host: str, port: int) -> None:
    """Refuse, before anything starts or is announced, an address the server could not listen
    on: bind it as uvicorn will (each address the host resolves to, ``SO_REUSEADDR``) and let
    go at once."""
    import errno
    import socket

    try:
        found = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot serve on {host}: {exc.strerror}") from None
    for family, kind, proto, _, address in found:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise click.ClickException(
                        f"port {port} on {host} is taken by another process (another riverbed "
                        "serve?): stop it, or serve on another --port"
                    ) from None
                raise click.ClickException(
                    f"cannot serve on {host}:{port}: {exc.strerror}"
                ) from None


@cli.command()
def routes() -> None:
    """List every HTTP route the server answers, with the scope a token needs for it and its
    route group (see docs/auth.md)."""
    from riverbed.server.app import endpoints

    rows = [(e.method, e.path, e.scope, e.tag, e.summary) for e in endpoints()]
    width = max(len(row[1]) for row in rows)
    groups = max(len(row[3]) for row in rows)
    for method, path, scope, tag, summary in rows:
        click.echo(f"{method:<7} {path:<{width}}  {scope:<7} {tag:<{groups}}  {summary}")


def _add_commands() -> None:
    from riverbed.cli.cache import cache
    from riverbed.cli.canary import canary
    from riverbed.cli.challengers import challengers
    from riverbed.cli.cluster import cluster, learner
    from riverbed.cli.connect import connect
    from riverbed.cli.db import db
    from riverbed.cli.drift import drift
    from riverbed.cli.jobs import jobs, train
    from riverbed.cli.learning import forecast, learn, tail
    from riverbed.cli.models import models
    from riverbed.cli.samples import predict
    from riverbed.cli.tokens import tokens
    from riverbed.cli.webhooks import webhooks

    cli.add_command(cache)
    cli.add_command(canary)
    cli.add_command(challengers)
    cli.add_command(connect)
    cli.add_command(cluster)
    cli.add_command(db)
    cli.add_command(drift)
    cli.add_command(models)
    cli.add_command(tokens)
    cli.add_command(train)
    cli.add_command(jobs)
    cli.add_command(learner)
    cli.add_command(predict)
    cli.add_command(learn)
    cli.add_command(forecast)
    cli.add_command(tail)
    cli.add_command(webhooks)


_add_commands()


def main() -> None:
    from riverbed.stores.sqlite.schema import NewerDatabase

    try:
        cli(prog_name="riverbed")
    except NewerDatabase as exc:  # a command that opened a database file itself
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
