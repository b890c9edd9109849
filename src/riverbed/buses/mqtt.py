"""MQTT (3.1.1, QoS 1): a topic filter read in a persistent session
(``mqtt://[USER:PASSWORD@]HOST:PORT?connect_timeout=SECONDS``).

The session's client id is ``riverbed-GROUP``, with clean_session off: the broker keeps the
subscription and the messages published while the connector is away (up to its queue limit:
Mosquitto's ``max_queued_messages``, 1000 by default), and a message is acknowledged
(PUBACK, manual) only after its writes. A message delivered and not acknowledged is sent
again when the session reconnects, before newer ones: :meth:`rewind` reconnects. Messages
published before the session first existed are not kept: start the connector first.

MQTT keeps no message identity across a redelivery: give each message an ``id`` for
exactly-once learning; one without is given a new id each time it comes (at least once).
Predictions and dead letters are published with QoS 1; the broker keeps them only for
subscribers whose sessions exist.
"""

from __future__ import annotations

import queue
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

from riverbed.buses.common import Delivery, split_options

OPTIONS = {"connect_timeout": 10.0}


class Mqtt:
    def __init__(self, url: str, topic: str, *, group: str, consumer: str) -> None:
        plain, self.options = split_options(url, OPTIONS)
        parts = urlsplit(plain)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 1883
        self.topic = topic
        self.group, self.user = group, parts.username
        self.password = parts.password
        self._messages: queue.Queue[Any] = queue.Queue()
        self._connected = threading.Event()
        self._connect()

    def _client(self) -> Any:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"riverbed-{self.group}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if self.user:
            password = unquote(self.password) if self.password else None
            client.username_pw_set(unquote(self.user), password)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._connected.set()
        client.on_message = lambda _c, _u, message: self._messages.put(message)
        client.on_disconnect = lambda *_: self._connected.clear()
        return client

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:  # connected once subscribed (the session may have it already)
            client.subscribe(self.topic, qos=1)

    def _connect(self) -> None:
        """A new client on the same session (a paho client is not restarted cleanly)."""
        self.client = self._client()
        try:
            self.client.connect(self.host, self.port)
        except OSError as exc:
            raise ConnectionError(f"cannot reach MQTT at {self.host}:{self.port}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(self.options["connect_timeout"]):
            self.client.loop_stop()
            raise ConnectionError(
                f"the MQTT broker at {self.host}:{self.port} did not accept the connection"
            )

    def receive(self, timeout: float) -> list[Delivery]:
        try:
            first = self._messages.get(timeout=timeout)
        except queue.Empty:
            return []
        out = [first]
        while len(out) < 100:
            try:
                out.append(self._messages.get_nowait())
            except queue.Empty:
                break
        return [Delivery(None, m.payload, m, redelivered=bool(m.dup)) for m in out]

    def rewind(self) -> None:
        """Reconnect: the broker sends the unacknowledged messages again, in order."""
        self.client.disconnect()
        self.client.loop_stop()
        while not self._messages.empty():  # what was delivered comes again
            self._messages.get_nowait()
        self._connect()

    def ack(self, delivery: Delivery) -> None:
        self.client.ack(delivery.handle.mid, delivery.handle.qos)

    def publish(self, topic: str, body: bytes) -> None:
        self.client.publish(topic, body, qos=1).wait_for_publish(30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
