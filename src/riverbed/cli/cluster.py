"""``riverbed learner`` and ``riverbed cluster status|move``: the scale-out commands
(docs/scale-out.md)."""

from __future__ import annotations

import json
import logging
import signal
from typing import Any

import click

from riverbed.cli.server import target_options
from riverbed.config import Settings
from riverbed.exceptions import RiverbedError

__all__ = ["cluster", "learner"]


def _settings(**options: Any) -> Settings:
    from riverbed.cli.server import require

    try:
        settings = Settings.load(options)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    require(settings.database)  # one line, creating nothing, for a database not there
    if not settings.broker:
        raise click.BadParameter("give the broker: --broker redis://HOST:PORT/DB")
    return settings


_database = click.option(
    "--database",
    default=None,
    help="The cluster's postgresql:// database [env RIVERBED_DATABASE].",
)
_broker = click.option(
    "--broker",
    default=None,
    help="The cluster's broker, redis://HOST:PORT/DB [env RIVERBED_BROKER].",
)
_lease = click.option(
    "--lease-seconds",
    type=float,
    default=None,
    help="How long a lease lasts unrenewed [env RIVERBED_LEASE_SECONDS; default 10.0].",
)


@click.command()
@_database
@_broker
@_lease
@click.option(
    "--staleness-seconds",
    type=float,
    default=None,
    help="How long the replicas may lag a learn [env RIVERBED_STALENESS_SECONDS; default 1.0].",
)
@click.option(
    "--checkpoint-every",
    type=int,
    default=None,
    help="Checkpoint a model after this many learns [env RIVERBED_CHECKPOINT_EVERY].",
)
@click.option("--name", default=None, help="This learner's id (default: learner-HOST-PID-XXXX).")
@click.option("--log-level", default=None, help="debug, info, warning or error.")
def learner(name: str | None, **options: Any) -> None:
    """Learn the models of a scale-out cluster: hold a lease per model, apply its learns
    from the broker in order, commit them with the stream position in one transaction.
    Several learners share the models; SIGTERM or Ctrl-C gives the leases up at once."""
    from riverbed.scaleout.learner import Learner
    from riverbed.stores import check_database

    settings = _settings(**options)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        check_database(settings.database, shared=True)
        worker = Learner(settings, name=name)
    except (ValueError, RiverbedError) as exc:
        raise click.ClickException(str(exc)) from None
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    click.echo(
        f"riverbed learner {worker.id}: {settings.database} with {settings.broker}", err=True
    )
    try:
        worker.run()
    except KeyboardInterrupt:
        worker.stop()


@click.group()
def cluster() -> None:
    """See and steer a scale-out cluster (replicas, learners, leases).

    \b
        riverbed cluster status --database postgresql://... --broker redis://...
        riverbed cluster status --url http://replica:8000
        riverbed cluster move MODEL LEARNER --database ... --broker ...
    """


def _local(target: Any, broker: str | None, lease_seconds: float | None) -> Settings:
    """The settings of a command working on the database itself (it needs the broker)."""
    return _settings(database=target.database, broker=broker, lease_seconds=lease_seconds)


def _through(target: Any, method: str, path: str, body: Any = None) -> Any:
    """A cluster route of the replica at ``target.server``, its answer or the one line."""
    import httpx

    headers = {"Authorization": f"Bearer {target.server.token}"} if target.server.token else {}
    try:
        answer = httpx.request(
            method, target.server.url + path, json=body, headers=headers, timeout=30
        )
    except httpx.HTTPError as exc:
        url = target.server.url
        raise click.ClickException(f"unreachable: nothing answers at {url} ({exc})") from None
    if answer.status_code >= 400:
        try:
            message = answer.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = answer.text
        raise click.ClickException(message)
    return answer.json()


def _open(settings: Settings) -> tuple[Any, Any]:
    from riverbed.scaleout.broker import Broker
    from riverbed.stores.postgres.writer import connect

    try:
        conn = connect(settings.database)
    except Exception as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None
    from riverbed.scaleout.cluster import ensure_tables

    ensure_tables(conn)
    return conn, Broker(settings.broker)


@cluster.command()
@target_options
@_broker
@_lease
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(target: Any, broker: str | None, lease_seconds: float | None, as_json: bool) -> None:
    """Replicas, learners, leases, and per model the learns not applied yet and each
    replica's staleness: from the database and the broker (--database, --broker) or a
    replica's GET /v1/cluster (--url)."""
    from riverbed.scaleout.cluster import status as cluster_status

    if target.database is None:
        found = _through(target, "GET", "/v1/cluster")
    else:
        settings = _local(target, broker, lease_seconds)
        conn, bus = _open(settings)
        try:
            found = cluster_status(conn, bus, settings.lease_seconds)
        finally:
            conn.close()
            bus.close()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(
        f"broker {found['broker']}"
        + (f" ({found['broker_error']})" if found["broker_error"] else "")
    )
    for kind in ("replicas", "learners"):
        click.echo(f"{kind}:")
        for m in found[kind]:
            state = "alive" if m["alive"] else "gone"
            click.echo(f"  {m['id']}  {m['address']}  {state}, seen {m['seen_seconds_ago']}s ago")
            for model, info in (m.get("models") or {}).items() if kind == "replicas" else []:
                click.echo(
                    f"    {model}: n_learns {info['n_learns']}, lag {info['lag_learns']} learns,"
                    f" staleness {info['staleness_seconds']}s"
                )
    click.echo("models:")
    for m in found["models"]:
        click.echo(
            f"  {m['model']}  learner {m['learner'] or '-'}  n_learns {m['n_learns']}"
            f"  lag {m['lag_learns']} learns  refused {m['refused']}"
        )


@cluster.command()
@click.argument("model")
@click.argument("learner_id", metavar="LEARNER")
@target_options
@_broker
@_lease
def move(
    model: str, learner_id: str, target: Any, broker: str | None, lease_seconds: float | None
) -> None:
    """Hand MODEL's lease to the running learner LEARNER now (its current holder's next
    commit is refused; the new one goes on from the last committed position): in the
    database (--database, --broker) or through a replica (--url)."""
    from riverbed.scaleout.cluster import move as move_lease

    if target.database is None:
        moved = _through(target, "POST", f"/v1/cluster/leases/{model}", {"learner": learner_id})
    else:
        settings = _local(target, broker, lease_seconds)
        conn, bus = _open(settings)
        try:
            moved = move_lease(conn, model, learner_id, settings.lease_seconds)
        except RiverbedError as exc:
            raise click.ClickException(exc.message) from None
        finally:
            conn.close()
            bus.close()
    click.echo(f"{model}: lease moved to {moved['learner']} (epoch {moved['epoch']})")
