"""Connectors: predict and learn from the messages of a bus (docs/connectors.md).

A :class:`Connector` reads messages from a :class:`Bus`, predicts and learns from each
through a *target* (an :class:`~riverbed.engine.Engine` or a :class:`~riverbed.client.Client`:
the same methods) and publishes each prediction to another topic. A message is::

    {"model": "phishing", "features": {...}, "id": "optional", "ground_truth": optional}

Delivery: a message is acknowledged on the bus only after its writes are durable (the
target's predict and learn return after their commit), so a connector killed at any point
loses no message: the bus delivers again what was not acknowledged. A redelivered message is
absorbed by its id (the message's ``id``, else one made from the bus's own message id): its
prediction is already stored (PredictionExists) and its label already learned
(AlreadyLabelled), so nothing is counted twice. A message that cannot be applied (not JSON,
no model, bad features, an unknown model...) goes to the dead-letter topic with the reason
and is acknowledged; the stream goes on. Predictions are published at most once (a
redelivered message's prediction is stored already and not published again).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from riverbed.exceptions import (
    AlreadyLabelled,
    PredictionExists,
    RiverbedError,
    Unavailable,
)

__all__ = ["Bus", "Connector", "Delivery", "Mapping_", "open_bus"]

log = logging.getLogger("riverbed.connect")
_MISSING: Any = object()


@dataclasses.dataclass
class Delivery:
    """One message as the bus delivered it: its id on the bus (the same on redelivery) and
    its body."""

    id: str
    body: bytes
    handle: Any = None  # what the bus needs to acknowledge it


class Bus(Protocol):
    def receive(self, timeout: float) -> list[Delivery]: ...
    def ack(self, delivery: Delivery) -> None: ...
    def publish(self, topic: str, body: bytes) -> None: ...
    def close(self) -> None: ...


class Target(Protocol):
    def predict(self, name: str, features: Any = None, **kwargs: Any) -> dict[str, Any]: ...
    def learn(self, name: str, features: Any = None, ground_truth: Any = ..., **kw: Any) -> Any: ...


@dataclasses.dataclass
class Mapping_:
    """Where a message of another shape keeps each field: dotted paths into its JSON
    (``--field features=payload.x``)."""

    model: str = "model"
    features: str = "features"
    id: str = "id"
    ground_truth: str = "ground_truth"

    @classmethod
    def parse(cls, pairs: list[str]) -> Mapping_:
        out = cls()
        for pair in pairs:
            key, sep, path = pair.partition("=")
            if not sep or key not in ("model", "features", "id", "ground_truth") or not path:
                raise ValueError(
                    f"a field mapping is FIELD=PATH with FIELD model, features, id or "
                    f"ground_truth, not {pair!r}"
                )
            setattr(out, key, path)
        return out


class Malformed(Exception):
    """A message that no retry can apply: it goes to the dead letters."""


def _at(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return _MISSING
        doc = doc[part]
    return doc


class Connector:
    def __init__(
        self,
        target: Target,
        bus: Bus,
        *,
        topic: str,
        publish: str | None = None,
        dead_letter: str | None = None,
        model: str | None = None,
        mapping: Mapping_ | None = None,
        learn: bool = True,
    ) -> None:
        self.target, self.bus, self.topic = target, bus, topic
        self.publish_to = publish
        self.dead_letter = dead_letter or f"{topic}.dead"
        self.model = model
        self.mapping = mapping or Mapping_()
        self.learn = learn
        self.counts = {"messages": 0, "predictions": 0, "learns": 0, "dead": 0, "again": 0}

    def parse(self, delivery: Delivery) -> tuple[str, Any, str, Any]:
        """``(model, features, id, ground truth or _MISSING)`` of a message, or Malformed."""
        try:
            doc = orjson.loads(delivery.body)
        except orjson.JSONDecodeError as exc:
            raise Malformed(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise Malformed("a message is a JSON object")
        model = _at(doc, self.mapping.model)
        if model is _MISSING:
            model = self.model
        if not isinstance(model, str) or not model:
            raise Malformed(f"no model named: the message needs {self.mapping.model!r}")
        features = _at(doc, self.mapping.features)
        if features is _MISSING:
            features = None
        mid = _at(doc, self.mapping.id)
        if mid is _MISSING or mid is None:
            mid = f"{self.topic}:{delivery.id}"  # the bus's id: the same on redelivery
        elif not isinstance(mid, str | int) or isinstance(mid, bool):
            raise Malformed(f"{self.mapping.id!r} must be a string")
        return model, features, str(mid), _at(doc, self.mapping.ground_truth)

    def handle(self, delivery: Delivery) -> None:
        """Apply one message, then acknowledge it (a malformed one once dead-lettered).
        Raises Unavailable (and the bus's errors) when it should be delivered again."""
        self.counts["messages"] += 1
        try:
            model, features, mid, truth = self.parse(delivery)
            self._predict(model, features, mid)
            if self.learn and truth is not _MISSING:
                try:
                    self.target.learn(model, ground_truth=truth, id=mid)
                    self.counts["learns"] += 1
                except AlreadyLabelled:
                    self.counts["again"] += 1
        except Unavailable:
            raise
        except (Malformed, RiverbedError) as exc:
            code = getattr(exc, "code", "malformed")
            self._dead(delivery, f"{code}: {exc}")
        self.bus.ack(delivery)

    def _predict(self, model: str, features: Any, mid: str) -> None:
        try:
            answer = self.target.predict(model, features, id=mid)
        except PredictionExists:
            self.counts["again"] += 1  # delivered again: stored the first time
            return
        self.counts["predictions"] += 1
        if self.publish_to:
            self.bus.publish(self.publish_to, orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS))

    def _dead(self, delivery: Delivery, reason: str) -> None:
        self.counts["dead"] += 1
        log.warning(
            "message %s to the dead letters (%s): %s", delivery.id, self.dead_letter, reason
        )
        record = {
            "reason": reason,
            "message_id": delivery.id,
            "topic": self.topic,
            "body": delivery.body.decode("utf-8", "replace"),
        }
        self.bus.publish(self.dead_letter, orjson.dumps(record))

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        idle: float = 1.0,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        """Handle messages until ``stop`` is set; an unavailable target or bus is retried
        after a second (the message is not acknowledged, so it comes again)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                batch = self.bus.receive(idle)
            except Exception as exc:  # the bus went away: wait and read again
                log.warning("reading %s failed (%s); retrying", self.topic, exc)
                time.sleep(1)
                continue
            if not batch and on_idle is not None:
                on_idle()
            for delivery in batch:
                try:
                    self.handle(delivery)
                except Unavailable as exc:
                    log.warning("the store is unavailable (%s); the message comes again", exc)
                    time.sleep(1)
                    break


def open_bus(url: str, topic: str, *, group: str, consumer: str) -> Bus:
    """The bus at ``url``: ``redis://`` (Redis Streams)."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStreams(url, topic, group=group, consumer=consumer)
    raise ValueError(f"no connector for {url!r}; known: redis://")


class RedisStreams:
    """A Redis stream read through a consumer group: this consumer's pending messages (left
    unacknowledged by a connector that died) first, then new ones; XACK after the writes."""

    def __init__(self, url: str, stream: str, *, group: str, consumer: str) -> None:
        import redis

        self.redis = redis.Redis.from_url(url)
        self.stream, self.group, self.consumer = stream, group, consumer
        try:
            self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._backlog = True  # read our pending entries first

    def receive(self, timeout: float) -> list[Delivery]:
        start = "0" if self._backlog else ">"
        block = None if self._backlog else max(1, int(timeout * 1000))
        answer: Any = self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=100, block=block
        )
        entries = answer[0][1] if answer else []
        if self._backlog and not entries:
            self._backlog = False
        out = []
        for entry_id, fields in entries:
            key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            body = fields.get(b"body") if fields else None
            if body is None:  # an entry whose body was trimmed, or not ours
                body = orjson.dumps({k.decode(): v.decode() for k, v in (fields or {}).items()})
            out.append(Delivery(key, body, key))
        return out

    def ack(self, delivery: Delivery) -> None:
        self.redis.xack(self.stream, self.group, delivery.handle)

    def publish(self, topic: str, body: bytes) -> None:
        self.redis.xadd(topic, {"body": body})

    def close(self) -> None:
        self.redis.close()
