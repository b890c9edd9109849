"""Redis Streams: a stream read through a consumer group (``redis://HOST:PORT/DB``)."""

from __future__ import annotations

from typing import Any

import orjson

from riverbed.buses.common import Delivery


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

    def rewind(self) -> None:
        self._backlog = True  # the pending entries again, in order, before any new one

    def ack(self, delivery: Delivery) -> None:
        self.redis.xack(self.stream, self.group, delivery.handle)

    def publish(self, topic: str, body: bytes) -> None:
        self.redis.xadd(topic, {"body": body})

    def close(self) -> None:
        self.redis.close()
