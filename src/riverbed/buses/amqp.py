"""AMQP 0-9-1 (RabbitMQ): a durable queue (``amqp://USER:PASSWORD@HOST:PORT/VHOST``).

The queue named by ``--topic`` is declared durable; messages are consumed with manual
acknowledgement (a prefetch of 100) and acknowledged after their writes. A message delivered
and not acknowledged returns to its place in the queue when the channel closes, so a
connector killed at any point loses nothing and reads it again first; :meth:`rewind` reopens
the channel. Predictions and dead letters go to durable queues of their names through the
default exchange, persistent and confirmed by the broker before the message is acknowledged.

A message's id on the bus is its ``message_id`` property when the publisher set one: AMQP
keeps no other identity across a redelivery, so a message with neither an ``id`` nor a
message_id is given a new id each time it comes (learned at least once, not exactly once).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from riverbed.buses.common import Delivery


class Amqp:
    def __init__(self, url: str, queue: str, *, group: str, consumer: str) -> None:
        import pika

        self.pika = pika
        self.params = pika.URLParameters(url)
        self.queue = queue
        self._open()

    def _open(self) -> None:
        try:
            self.connection = self.pika.BlockingConnection(self.params)
        except self.pika.exceptions.AMQPConnectionError as exc:
            host = f"{self.params.host}:{self.params.port}"
            raise ConnectionError(f"cannot reach AMQP at {host}: {exc!r}") from None
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.queue_declare(queue=self.queue, durable=True)
        self.channel.basic_qos(prefetch_count=100)
        self._declared = {self.queue}
        self._consuming: Iterator[Any] | None = None

    def receive(self, timeout: float) -> list[Delivery]:
        if self._consuming is None:
            self._consuming = self.channel.consume(self.queue, inactivity_timeout=timeout)
        method, properties, body = next(self._consuming)
        if method is None:
            return []
        key = str(properties.message_id) if properties.message_id else None
        return [Delivery(key, body, method.delivery_tag, redelivered=bool(method.redelivered))]

    def rewind(self) -> None:
        """Reopen: the unacknowledged messages go back to their places in the queue."""
        self.close()
        self._open()

    def ack(self, delivery: Delivery) -> None:
        self.channel.basic_ack(delivery.handle)

    def publish(self, topic: str, body: bytes) -> None:
        if topic not in self._declared:
            self.channel.queue_declare(queue=topic, durable=True)
            self._declared.add(topic)
        properties = self.pika.BasicProperties(delivery_mode=2, content_type="application/json")
        self.channel.basic_publish("", topic, body, properties, mandatory=True)

    def close(self) -> None:
        if self.connection.is_open:
            try:
                self.connection.close()
            except Exception:  # a connection the broker already closed
                pass
