"""What the buses share: a delivered message and the query parameters of a bus URL."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit


@dataclasses.dataclass
class Delivery:
    """One message as the bus delivered it: its id on the bus, the same when it is delivered
    again (None on a bus that keeps no such identity: MQTT, AMQP without a message_id), its
    body, and whether the bus says it was delivered before."""

    id: str | None
    body: bytes
    handle: Any = None  # what the bus needs to acknowledge it
    redelivered: bool = False


def split_options(url: str, known: dict[str, float]) -> tuple[str, dict[str, float]]:
    """``url`` without its query, and the query's numeric options (``?ack_wait=5``) over the
    defaults in ``known``; an unknown or non-numeric option is a ValueError naming it."""
    parts = urlsplit(url)
    options = dict(known)
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key not in known:
            raise ValueError(
                f"{key!r} is not an option of a {parts.scheme}:// bus; known: "
                + ", ".join(sorted(known))
            )
        try:
            options[key] = float(values[-1])
        except ValueError:
            raise ValueError(f"{key}={values[-1]!r} in {url!r} is not a number") from None
        if options[key] <= 0:
            raise ValueError(f"{key} in {url!r} must be positive")
    return urlunsplit(parts._replace(query="")), options
