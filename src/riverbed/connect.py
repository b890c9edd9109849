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
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from riverbed.buses.common import Delivery
from riverbed.exceptions import (
    AlreadyLabelled,
    PredictionExists,
    RiverbedError,
    Unavailable,
)

__all__ = ["Bus", "Connector", "Delivery", "Mapping_", "open_bus"]

log = logging.getLogger("riverbed.connect")
_MISSING: Any = object()


class Bus(Protocol):
    """A bus (riverbed/buses/): ``receive`` waits up to ``timeout`` seconds for messages in
    order; ``rewind`` makes every delivered and unacknowledged message come again, in order,
    before any newer one; ``publish`` returns once the bus has the message."""

    def receive(self, timeout: float) -> list[Delivery]: ...
    def rewind(self) -> None: ...
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
        events: str | None = None,
        event_types: list[str] | None = None,
    ) -> None:
        self.target, self.bus, self.topic = target, bus, topic
        self.publish_to = publish
        self.dead_letter = dead_letter or f"{topic}.dead"
        self.model = model
        self.mapping = mapping or Mapping_()
        self.learn = learn
        self.events_to = events
        self.event_types = set(event_types or ())
        self._events: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=100_000)
        self._unfollow: Callable[[], None] | None = None
        self.counts = {
            "messages": 0,
            "predictions": 0,
            "learns": 0,
            "dead": 0,
            "again": 0,
            "unknown_again": 0,
            "events": 0,
            "events_dropped": 0,
        }

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
        if (mid is _MISSING or mid is None) and delivery.id is not None:
            mid = f"{self.topic}:{delivery.id}"  # the bus's id: the same on redelivery
        elif mid is _MISSING or mid is None:  # the bus keeps no identity: at least once
            mid = f"{self.topic}:{uuid.uuid4().hex}"
            if delivery.redelivered:
                self.counts["unknown_again"] += 1
                log.warning(
                    "a message without an id was delivered again: it is learned again "
                    "(give messages an id for exactly-once learning)"
                )
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

    def follow_events(self) -> None:
        """Publish the target's events (an Engine's event bus, or a server's event feed
        from now on) to ``events``, in order, at most once, from the connector's own thread
        (the bus is not shared between threads): an event is queued when it happens and
        published between messages. Only ``event_types`` when given."""
        if self.events_to is None or self._unfollow is not None:
            return
        target: Any = self.target
        bus = getattr(target, "events", None)
        if bus is not None and hasattr(bus, "subscribe"):  # an Engine: as they are published
            self._unfollow = bus.subscribe(lambda event: self._queue(event.to_dict()))
            return
        stop = threading.Event()
        types = sorted(self.event_types) or None

        def follow() -> None:  # a Client: the server's feed, from now on, resumed if dropped
            while not stop.is_set():
                try:
                    for event in target.events(types=types, last_event_id="now"):
                        if stop.is_set():
                            return
                        self._queue(event)
                except Exception as exc:
                    if stop.is_set():  # the client closed under it
                        return
                    log.warning("following the server's events failed (%s); retrying", exc)
                    stop.wait(1)

        threading.Thread(target=follow, name="riverbed-connect-events", daemon=True).start()
        self._unfollow = stop.set

    def _queue(self, event: dict[str, Any]) -> None:
        if self.event_types and event.get("type") not in self.event_types:
            return
        try:
            self._events.put_nowait(event)
        except queue.Full:  # a bus slower than the engine: the oldest news is dropped
            self.counts["events_dropped"] += 1

    def publish_events(self, limit: int = 1000) -> None:
        for _ in range(limit):
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            assert self.events_to is not None
            self.bus.publish(self.events_to, orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS))
            self.counts["events"] += 1

    def _rewind(self) -> None:
        """What was delivered and not handled comes again, in order, before newer messages
        (the rest of the batch included: handling out of order would change the metrics)."""
        while True:
            try:
                self.bus.rewind()
                return
            except Exception as exc:
                log.warning("rewinding %s failed (%s); retrying", self.topic, exc)
                time.sleep(1)

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
        self.follow_events()
        try:
            self._run(stop, idle, on_idle)
        finally:
            if self._unfollow is not None:
                self._unfollow()
                self._unfollow = None

    def _run(self, stop: threading.Event, idle: float, on_idle: Callable[[], None] | None) -> None:
        while not stop.is_set():
            if self.events_to is not None:
                try:
                    self.publish_events()
                except Exception as exc:
                    log.warning("publishing events to %s failed (%s)", self.events_to, exc)
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
                    self._rewind()
                    break


SCHEMES = {
    "redis": "Redis Streams",
    "rediss": "Redis Streams",
    "unix": "Redis Streams",
    "nats": "NATS JetStream",
    "tls": "NATS JetStream",
    "mqtt": "MQTT",
    "amqp": "AMQP",
    "amqps": "AMQP",
}


def open_bus(url: str, topic: str, *, group: str, consumer: str) -> Bus:
    """The bus at ``url``, by its scheme: redis:// (Redis Streams), nats:// (NATS
    JetStream), mqtt:// (MQTT), amqp:// (AMQP, RabbitMQ). ValueError for another URL, and
    for a bus whose client package is missing (naming the extra to install)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise ValueError(f"no connector for {url!r}; known: redis://, nats://, mqtt://, amqp://")
    extra = {"Redis Streams": "redis", "NATS JetStream": "nats", "MQTT": "mqtt"}.get(kind, "amqp")
    try:
        if kind == "Redis Streams":
            from riverbed.buses.redis_streams import RedisStreams as bus
        elif kind == "NATS JetStream":
            from riverbed.buses.nats_jetstream import NatsJetStream as bus  # type: ignore[assignment]
        elif kind == "MQTT":
            from riverbed.buses.mqtt import Mqtt as bus  # type: ignore[assignment]
        else:
            from riverbed.buses.amqp import Amqp as bus  # type: ignore[assignment]
        return bus(url, topic, group=group, consumer=consumer)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"{kind} needs the package {exc.name}: pip install 'riverbed[{extra}]'"
        ) from None
