"""The broker: one Redis stream a model (``riverbed:learns:<model>``) holding its learns in
the order the replicas handed them over.

A replica adds a request's learns in one ``MULTI``/``EXEC`` (all or none) and acknowledges
them once Redis answered; with ``appendonly yes`` and ``appendfsync always`` (the test's
and the docs' configuration) Redis answers only after the entries are in its append-only
file. An entry's id starts with Redis's clock in milliseconds: the time it was acknowledged.
A learner reads a model's stream from the position it committed in PostgreSQL (``XREAD``
from that id, not a consumer group's delivery cursor, which a learner fenced out of its
lease could still move) and trims what it committed.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from riverbed.exceptions import Unavailable

__all__ = ["STREAM_PREFIX", "Broker", "broker_error", "stream_key"]

log = logging.getLogger(__name__)

STREAM_PREFIX = "riverbed:learns:"
_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def stream_key(model: str) -> str:
    return STREAM_PREFIX + model


def broker_error(url: str, exc: BaseException) -> Unavailable:
    return Unavailable(
        f"the broker {url} cannot be reached ({type(exc).__name__}: {exc}): nothing was "
        "learned; retry",
        detail={"cause": "broker_unreachable"},
    )


def entry_ms(entry_id: str) -> int:
    """The milliseconds an entry id starts with: when Redis added it."""
    return int(entry_id.split("-", 1)[0])


def _after(entry_id: str) -> str:
    """The smallest id above ``entry_id``."""
    ms, seq = entry_id.split("-", 1)
    return f"{ms}-{int(seq) + 1}"


class Broker:
    """A Redis connection for the streams. Commands are not retried by the client: a
    request whose answer was lost is the caller's to retry (it may have been added)."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def close(self) -> None:
        self.redis.close()

    def ping(self) -> None:
        try:
            self.redis.ping()
        except _ERRORS as exc:
            raise broker_error(self.url, exc) from None

    def durability(self) -> tuple[str, str] | None:
        """Redis's ``appendonly`` and ``appendfsync``, None if it does not say."""
        try:
            config = self.redis.config_get("append*")
        except redis.RedisError:
            return None
        return str(config.get("appendonly", "")), str(config.get("appendfsync", ""))

    def add(self, entries: list[tuple[str, bytes]]) -> list[str]:
        """Append ``(model, message)`` entries, all or none; their ids in order."""
        try:
            pipe = self.redis.pipeline(transaction=True)
            for model, message in entries:
                pipe.xadd(stream_key(model), {"m": message})
            return [_text(i) for i in pipe.execute()]
        except _ERRORS as exc:
            raise broker_error(self.url, exc) from None

    def read(
        self, positions: dict[str, str], *, count: int, block_ms: int
    ) -> list[tuple[str, list[tuple[str, bytes]]]]:
        """Entries after each model's position: ``[(model, [(id, message)])]``."""
        if not positions:
            return []
        streams = {stream_key(m): p for m, p in positions.items()}
        try:
            found: Any = self.redis.xread(streams, count=count, block=block_ms)  # type: ignore[arg-type]
        except _ERRORS as exc:
            raise broker_error(self.url, exc) from None
        out = []
        for key, entries in found or []:
            model = _text(key)[len(STREAM_PREFIX) :]
            out.append((model, [(_text(i), fields[b"m"]) for i, fields in entries]))
        return out

    def trim(self, model: str, through: str) -> None:
        """Drop the entries up to ``through`` (committed by a learner)."""
        try:
            self.redis.xtrim(stream_key(model), minid=_after(through), approximate=False)
        except _ERRORS:
            pass  # the next commit trims them

    def waiting(self, positions: dict[str, str]) -> dict[str, tuple[int, int | None]]:
        """For each model: the entries after its position, and the id time (ms) of the
        oldest of them (None when there are none). One round trip."""
        names = list(positions)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                key, position = stream_key(name), positions[name]
                pipe.xlen(key)
                pipe.xrange(key, "-", position)
                pipe.xrange(key, "(" + position, "+", count=1)
            answers = pipe.execute()
        except _ERRORS as exc:
            raise broker_error(self.url, exc) from None
        out: dict[str, tuple[int, int | None]] = {}
        for i, name in enumerate(names):
            length, done, oldest = answers[3 * i : 3 * i + 3]
            behind = int(length) - len(done)
            first = entry_ms(_text(oldest[0][0])) if oldest else None
            out[name] = (max(0, behind), first)
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
