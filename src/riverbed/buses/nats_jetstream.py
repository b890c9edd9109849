"""NATS JetStream: a subject read through a durable pull consumer
(``nats://HOST:PORT``; options ``?ack_wait=30&connect_timeout=5&timeout=10``, seconds:
how long an unacknowledged message waits before JetStream sends it again, how long to wait
for the server, and for each JetStream request).

The stream holding the subject is found by subject, or created (named after the subject)
when there is none; so are the streams of the prediction and dead-letter subjects, so that
what the connector publishes is kept. The consumer is durable, named after ``--group``, acks
explicitly (and synchronously: the acknowledgement is confirmed before the next message).

Order: JetStream redelivers an unacknowledged message only after ``ack_wait``, behind newer
ones. The connector handles messages one at a time in stream order, so everything below the
consumer's ack floor is done; :meth:`rewind` (at start, and after the store was unavailable)
re-creates the consumer from the first unacknowledged sequence, so messages are delivered
again at once and in order. One connector per group: a rewind takes the consumer over.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine
from typing import Any

from riverbed.buses.common import Delivery, split_options

OPTIONS = {"ack_wait": 30.0, "connect_timeout": 5.0, "timeout": 10.0}


def stream_name(subject: str) -> str:
    """A stream or consumer name for ``subject``: JetStream names take no '.', '*', '>'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject)


class NatsJetStream:
    def __init__(self, url: str, subject: str, *, group: str, consumer: str) -> None:
        self.url, self.options = split_options(url, OPTIONS)
        self.subject, self.durable = subject, stream_name(group)
        self._streams: dict[str, str] = {}
        self._sub: Any = None
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="riverbed-nats", daemon=True
        )
        self._thread.start()
        try:
            self._run(self._open())
        except BaseException:
            self.close()
            raise

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _open(self) -> None:
        import nats

        timeout = self.options["connect_timeout"]
        try:
            self.nc = await nats.connect(
                servers=[self.url],
                connect_timeout=timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
            )
        except Exception as exc:
            raise ConnectionError(f"cannot reach NATS at {self.url}: {exc}") from None
        self.js = self.nc.jetstream(timeout=self.options["timeout"])
        self.stream = await self._stream(self.subject)
        info = await self.js.stream_info(self.stream)
        # a message's id is its sequence in this stream; the stream's creation time tells a
        # re-created stream's sequences (which start again at 1) from the old ones
        self._epoch = int(info.created.timestamp()) if info.created else 0
        await self._rewind()

    async def _stream(self, subject: str) -> str:
        """The stream that keeps ``subject``, created when none does."""
        from nats.js.errors import NotFoundError

        if subject not in self._streams:
            try:
                self._streams[subject] = await self.js.find_stream_name_by_subject(subject)
            except NotFoundError:
                await self.js.add_stream(name=stream_name(subject), subjects=[subject])
                self._streams[subject] = stream_name(subject)
        return self._streams[subject]

    async def _rewind(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.options["ack_wait"],
            filter_subject=self.subject,
            max_ack_pending=1000,
        )
        try:
            info = await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            await self.js.add_consumer(self.stream, config)
        else:
            if info.num_ack_pending:  # delivered and not acknowledged: from there, in order
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = floor + 1
                await self.js.delete_consumer(self.stream, self.durable)
                await self.js.add_consumer(self.stream, config)
        if self._sub is not None:
            await self._sub.unsubscribe()
        self._sub = await self.js.pull_subscribe_bind(self.durable, self.stream)

    async def _fetch(self, timeout: float) -> list[Delivery]:
        import nats.errors

        try:
            messages = await self._sub.fetch(batch=100, timeout=timeout)
        except (TimeoutError, nats.errors.TimeoutError):  # nothing new in time
            return []
        return [
            Delivery(f"{self._epoch}-{m.metadata.sequence.stream}", m.data, m) for m in messages
        ]

    def receive(self, timeout: float) -> list[Delivery]:
        return self._run(self._fetch(timeout))

    def rewind(self) -> None:
        self._run(self._rewind())

    def ack(self, delivery: Delivery) -> None:
        self._run(delivery.handle.ack_sync())

    async def _publish(self, subject: str, body: bytes) -> None:
        await self._stream(subject)
        await self.js.publish(subject, body)

    def publish(self, topic: str, body: bytes) -> None:
        self._run(self._publish(topic, body))

    def close(self) -> None:
        nc = getattr(self, "nc", None)
        if nc is not None and self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(nc.close(), self.loop).result(5)
            except Exception:  # closing a connection that is already gone
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()
