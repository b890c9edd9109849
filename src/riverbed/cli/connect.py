"""``riverbed connect``: predict and learn from a message bus (docs/connectors.md)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

import click

from riverbed.cli.server import Target, target_options

__all__ = ["connect"]


@click.command()
@click.argument("bus_url")
@click.option("--topic", required=True, help="The stream, subject or queue to consume.")
@click.option("--publish", default=None, help="Where each prediction is published.")
@click.option(
    "--dead-letter", default=None, help="Where malformed messages go [default: TOPIC.dead]."
)
@click.option("--group", default="riverbed", show_default=True, help="The consumer group.")
@click.option("--consumer", default=None, help="This consumer's name [default: host-pid].")
@click.option("--model", default=None, help="The model of messages that name none.")
@click.option(
    "--field",
    "fields",
    multiple=True,
    help="Where a message of another shape keeps a field: FIELD=dotted.path (repeatable).",
)
@click.option("--no-learn", is_flag=True, help="Predict only, even with a ground truth.")
@click.option(
    "--events", default=None, help="Where the target's events are published (none if unset)."
)
@click.option(
    "--event-type",
    "event_types",
    multiple=True,
    help="Publish only events of this type, e.g. label, model.created (repeatable).",
)
@target_options
def connect(
    bus_url: str,
    topic: str,
    publish: str | None,
    dead_letter: str | None,
    group: str,
    consumer: str | None,
    model: str | None,
    fields: tuple[str, ...],
    no_learn: bool,
    events: str | None,
    event_types: tuple[str, ...],
    target: Target,
) -> None:
    """Consume TOPIC on the bus at BUS_URL (redis://HOST:PORT/DB for Redis Streams,
    nats://HOST:PORT for NATS JetStream, mqtt://HOST:PORT for MQTT, amqp://USER:PASS@HOST:PORT/
    for AMQP):
    predict from each message, learn from its ground truth, publish the prediction; each
    message is acknowledged after its writes are durable. Stop with Ctrl-C."""
    from riverbed.connect import Connector, Mapping_, open_bus

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    try:
        mapping = Mapping_.parse(list(fields))
        bus = open_bus(
            bus_url,
            topic,
            group=group,
            consumer=consumer or f"{socket.gethostname()}-{os.getpid()}",
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except ConnectionError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with target.open() as store:
            connector = Connector(
                store,
                bus,
                topic=topic,
                publish=publish,
                dead_letter=dead_letter,
                model=model,
                mapping=mapping,
                learn=not no_learn,
                events=events,
                event_types=list(event_types),
            )
            click.echo(
                f"riverbed connect: consuming {topic} on {bus_url} (group {group})", err=True
            )
            try:
                connector.run(stop)
            finally:
                click.echo(f"riverbed connect: stopped; {connector.counts}", err=True)
    finally:
        bus.close()
