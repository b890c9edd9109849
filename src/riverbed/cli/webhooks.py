"""``riverbed webhooks create|list|show|delete|deliveries|retry|ping``: webhook subscriptions
and their delivery log from the command line (docs/webhooks.md).

Each command works on a server or in this process on a database, as
:mod:`riverbed.cli.server`'s one rule chooses (``--database``, else ``--url`` or
``RIVERBED_URL``, else ``RIVERBED_DATABASE``, else the local server). On a database, the
deliveries a change queues are sent by the process that serves it next (``ping`` and
``retry`` make their attempt at once, from this process); ``list``, ``show`` and
``deliveries`` open it to read only, so they work beside the server that serves it.
"""

from __future__ import annotations

from typing import Any

import click

from riverbed.cli.server import Target, target_options
from riverbed.cli.tables import echo_json, table, when
from riverbed.stores.webhookstore import DELIVERY_STATUSES

__all__ = ["webhooks"]

_json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")


@click.group()
def webhooks() -> None:
    """Webhooks: a signed POST to a URL for each event of the kinds it subscribed to.

    \b
        riverbed webhooks create https://ops.example.com/hook -e model.drift -e job.finished
        riverbed webhooks list
        riverbed webhooks deliveries wh_... --status failed
        riverbed webhooks retry wh_... whd_...
        riverbed webhooks ping wh_...
    """


def _counts(hook: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in hook["deliveries"].items())


@webhooks.command()
@click.argument("receiver", metavar="URL")
@click.option(
    "--event",
    "-e",
    "events",
    multiple=True,
    required=True,
    help="An event kind, job.finished, PREFIX.* or * (repeatable).",
)
@click.option("--secret", default=None, help="The signing secret (default: one is made).")
@click.option("--description", default="", help="What the subscription is for.")
@_json_flag
@target_options
def create(
    target: Target,
    receiver: str,
    events: tuple[str, ...],
    secret: str | None,
    description: str,
    as_json: bool,
) -> None:
    """Subscribe URL to event kinds; prints the signing secret, the only time it is shown."""
    with target.open() as store:
        hook = store.webhooks.subscribe(
            receiver, list(events), secret=secret, description=description
        )
    if as_json:
        echo_json(hook)
        return
    click.echo(f"webhook {hook['id']} -> {hook['url']}")
    click.echo(f"events: {', '.join(hook['events'])} ({', '.join(hook['kinds'])})")
    click.echo(f"secret: {hook['secret']}")
    click.echo(
        "keep the secret: receivers check X-Riverbed-Signature with it; it is not shown again"
    )


@webhooks.command("list")
@_json_flag
@target_options
def list_(target: Target, as_json: bool) -> None:
    """Every webhook subscription, oldest first."""
    with target.open(read_only=True) as store:
        hooks = store.webhooks.list()
    if as_json:
        echo_json(hooks)
        return
    if not hooks:
        click.echo("no webhooks")
        return
    rows = [(h["id"], h["url"], ",".join(h["events"]), _counts(h), h["description"]) for h in hooks]
    click.echo(table(rows, ("id", "url", "events", "deliveries", "description")))


@webhooks.command()
@click.argument("webhook")
@_json_flag
@target_options
def show(target: Target, webhook: str, as_json: bool) -> None:
    """One webhook subscription: its URL, kinds and deliveries by status."""
    with target.open(read_only=True) as store:
        hook = store.webhooks.get(webhook)
    if as_json:
        echo_json(hook)
        return
    for key in ("id", "url", "description"):
        click.echo(f"{key}: {hook[key]}")
    click.echo(f"events: {', '.join(hook['events'])}")
    click.echo(f"kinds: {', '.join(hook['kinds'])}")
    click.echo(f"created: {when(hook['created_at'])}")
    click.echo(f"deliveries: {_counts(hook)}")


@webhooks.command()
@click.argument("webhook")
@_json_flag
@target_options
def delete(target: Target, webhook: str, as_json: bool) -> None:
    """Delete a webhook subscription and its delivery log."""
    with target.open() as store:
        hook = store.webhooks.delete(webhook)
    if as_json:
        echo_json(hook)
        return
    click.echo(f"deleted webhook {hook['id']} ({hook['url']})")


@webhooks.command()
@click.argument("webhook")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@_json_flag
@target_options
def deliveries(target: Target, webhook: str, status: str | None, limit: int, as_json: bool) -> None:
    """WEBHOOK's deliveries, newest first, with their last attempt."""
    with target.open(read_only=True) as store:
        found = store.webhooks.deliveries(webhook, status=status, limit=limit)
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo(f"no deliveries for {webhook}" + (f" {status}" if status else ""))
        return
    click.echo(table([_row(d) for d in found], _ROW))


_ROW = ("id", "event", "status", "tries", "last attempt", "next")


def _row(delivery: dict[str, Any]) -> tuple[Any, ...]:
    last = delivery["attempts"][-1] if delivery["attempts"] else None
    outcome = ""
    if last is not None:
        outcome = last["error"] or f"HTTP {last['status_code']}"
    return (
        delivery["id"],
        delivery["event"],
        delivery["status"],
        delivery["tries"],
        outcome,
        when(delivery["next_at"]) if delivery["status"] == "pending" else "",
    )


def _outcome(delivery: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(delivery)
    else:
        click.echo(table([_row(delivery)], _ROW))
    if delivery["status"] != "delivered":
        raise SystemExit(1)


@webhooks.command()
@click.argument("webhook")
@click.argument("delivery")
@_json_flag
@target_options
def retry(target: Target, webhook: str, delivery: str, as_json: bool) -> None:
    """Attempt a delivery again now; exit status 1 if this attempt failed too."""
    with target.open() as store:
        result = store.webhooks.retry(webhook, delivery)
    _outcome(result, as_json)


@webhooks.command()
@click.argument("webhook")
@_json_flag
@target_options
def ping(target: Target, webhook: str, as_json: bool) -> None:
    """Send WEBHOOK a ping now; exit status 1 if the receiver did not take it."""
    with target.open() as store:
        result = store.webhooks.ping(webhook)
    _outcome(result, as_json)
