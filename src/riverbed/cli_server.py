"""What the commands that talk to a server share: the one line an error becomes."""

from __future__ import annotations

import click

from riverbed.exceptions import InvalidToken, RiverbedError, Unauthorized, Unreachable

__all__ = ["refusal"]


def refusal(exc: RiverbedError) -> click.ClickException:
    """The one line a command exits with for ``exc``: its code and message, and where the
    command line has its own way to fix it (``--url``, ``--token``), that way."""
    message = f"{exc.code}: {exc.message}"
    if isinstance(exc, Unreachable):
        message += ", or point --url (env RIVERBED_URL) at one that runs"
    elif isinstance(exc, Unauthorized) and not isinstance(exc, InvalidToken):
        message += " (here: --token, env RIVERBED_TOKEN)"
    return click.ClickException(message)
