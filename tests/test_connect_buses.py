"""``riverbed connect`` on the other buses, each the real server on this machine: NATS
JetStream (127.0.0.1:4222), MQTT (Mosquitto, 127.0.0.1:1883) and AMQP (RabbitMQ,
127.0.0.1:5672). As for Redis Streams (tests/test_connect.py): a stream of labelled Phishing
samples, the connector killed with SIGKILL early in the stream and started again, ends with
exactly river's progressive-validation metrics (so nothing lost, nothing learned twice, the
order kept), and malformed messages land in the dead letters with their reasons. Each test
uses subjects, topics and queues of its own (a uuid in the names)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from river import datasets

from riverbed import Engine
from riverbed.connect import Connector, open_bus
from tests.test_connect import SPEC, assert_learned_once

N = 400
END = {"model": "phish", "features": {"end": 1.0}, "id": "end"}  # predicted last: all done


class Nats:
    url = "nats://127.0.0.1:4222?ack_wait=60"
    sep = "."

    def __init__(self, names: dict[str, str]) -> None:
        import nats

        self.names, self.out, self.dead = names, [], []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.nc = self._run(nats.connect("nats://127.0.0.1:4222"))
        self.js = self.nc.jetstream()
        # the input's stream exists before anything is published (the connector would make it)
        self._run(self.js.add_stream(name=names["in"].replace(".", "_"), subjects=[names["in"]]))
        for key, into in (("out", self.out), ("dead", self.dead)):
            self._run(self.nc.subscribe(names[key], cb=self._collect(into)))

    def _collect(self, into: list[bytes]) -> Any:
        async def cb(message: Any) -> None:
            into.append(message.data)

        return cb

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def publish(self, body: bytes, message_id: str | None = None) -> None:
        self._run(self.js.publish(self.names["in"], body))

    def close(self) -> None:
        for key in ("in", "out", "dead"):
            try:
                self._run(self.js.delete_stream(self.names[key].replace(".", "_")))
            except Exception:  # a stream the connector never made
                pass
        self._run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Mqtt:
    url = "mqtt://127.0.0.1:1883"
    sep = "/"

    def __init__(self, names: dict[str, str]) -> None:
        import paho.mqtt.client as mqtt

        self.names, self.out, self.dead = names, [], []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=True)

        def on_message(_c: Any, _u: Any, message: Any) -> None:
            (self.out if message.topic == names["out"] else self.dead).append(message.payload)

        self.client.on_message = on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        self.client.subscribe([(names["out"], 1), (names["dead"], 1)])
        assert subscribed.wait(10)

    def publish(self, body: bytes, message_id: str | None = None) -> None:
        self.client.publish(self.names["in"], body, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Amqp:
    url = "amqp://guest:guest@127.0.0.1:5672/"
    sep = "."

    def __init__(self, names: dict[str, str]) -> None:
        import pika

        self.pika, self.names, self.out, self.dead = pika, names, [], []
        self.connection = pika.BlockingConnection(pika.URLParameters(self.url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        for name in names.values():
            self.channel.queue_declare(queue=name, durable=True)
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:  # its own connection: pika's are not shared between threads
        connection = self.pika.BlockingConnection(self.pika.URLParameters(self.url))
        channel = connection.channel()
        for key, into in (("out", self.out), ("dead", self.dead)):
            channel.basic_consume(
                self.names[key], lambda _ch, _m, _p, body, into=into: into.append(body), True
            )
        while not self.stop.is_set():
            connection.process_data_events(time_limit=0.1)
        connection.close()

    def publish(self, body: bytes, message_id: str | None = None) -> None:
        properties = self.pika.BasicProperties(delivery_mode=2, message_id=message_id)
        self.channel.basic_publish("", self.names["in"], body, properties)

    def close(self) -> None:
        self.stop.set()
        self.reader.join(10)
        for name in self.names.values():
            self.channel.queue_delete(name)
        self.connection.close()


BUSES = {"nats": Nats, "mqtt": Mqtt, "amqp": Amqp}


@pytest.fixture(params=sorted(BUSES))
def bus(request: pytest.FixtureRequest) -> Iterator[Any]:
    kind = BUSES[request.param]
    tag = uuid.uuid4().hex[:12]
    names = {k: kind.sep.join(("riverbed-test", tag, k)) for k in ("in", "out", "dead")}
    harness = kind(names)
    yield harness
    harness.close()


def _start(harness: Any, db: str, log: Path) -> subprocess.Popen[bytes]:
    names = harness.names
    with log.open("ab") as output:  # the child keeps its own copy
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "riverbed",
                "connect",
                harness.url,
                "--topic",
                names["in"],
                "--publish",
                names["out"],
                "--dead-letter",
                names["dead"],
                "--group",
                "g" + names["in"].split(harness.sep)[1],
                "--database",
                db,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    starts = log.read_text().count("consuming")
    _wait(lambda: log.read_text().count("consuming") > starts, "the connector to start", process)
    return process


def _wait(predicate: Any, what: str, process: Any = None, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the connector stopped (exit {process.returncode})")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_connector_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, bus: Any
) -> None:
    db = str(tmp_path / "connect.db")
    with Engine(db) as engine:
        engine.create_model("phish", spec=SPEC)
    samples = list(datasets.Phishing().take(N))
    bad = {
        100: b"{not json",
        200: orjson.dumps({"model": "nope", "features": {"a": 1.0}, "ground_truth": True}),
        300: orjson.dumps({"model": "phish", "features": {"a": "x" * 20_000}}),
    }
    log = tmp_path / "connect.log"
    # MQTT keeps messages only for a session that exists: the connector starts first
    process = _start(bus, db, log)

    def publish() -> None:  # paced, beside the connector: the kill lands mid-stream
        for i, (x, y) in enumerate(samples):
            if i in bad:
                bus.publish(bad[i])
            message: dict[str, Any] = {"model": "phish", "features": x, "ground_truth": y}
            if i % 2 or isinstance(bus, Mqtt):  # MQTT: every message names its id
                message["id"] = f"s{i}"
            # AMQP: the others carry it as the message_id property; NATS: the stream sequence
            bus.publish(orjson.dumps(message), message_id=f"p{i}")
            time.sleep(0.005)
        bus.publish(orjson.dumps(END))

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        _wait(lambda: len(bus.out) >= N // 20, "the first predictions", process)
        process.kill()  # SIGKILL mid-stream: no shutdown hook, some messages unacknowledged
        process.wait(timeout=30)
        assert not any(orjson.loads(p)["id"] == "end" for p in bus.out)
        process = _start(bus, db, log)
        _wait(
            lambda: any(orjson.loads(p)["id"] == "end" for p in bus.out),
            "the last message's prediction",
            process,
        )
    finally:
        publisher.join(60)
        process.terminate()
        process.wait(timeout=30)
    assert_learned_once(db, samples, [orjson.loads(body) for body in bus.dead], bad)


def test_a_message_without_an_id_is_learned_at_least_once(tmp_path: Path, bus: Any) -> None:
    """On a bus that keeps no identity (MQTT; AMQP without a message_id) a message without
    an id gets a fresh one; redelivered after a rewind it is learned again and counted as
    such. NATS names it by its stream sequence, so it is absorbed instead."""
    group = "g" + uuid.uuid4().hex[:8]
    connected = open_bus(bus.url, bus.names["in"], group=group, consumer="c")
    try:
        (x, y), *_ = datasets.Phishing().take(1)
        bus.publish(orjson.dumps({"model": "m", "features": x, "ground_truth": y}))
        with Engine(str(tmp_path / "again.db")) as engine:
            engine.create_model("m", spec=SPEC)
            connector = Connector(engine, connected, topic=bus.names["in"])
            deliveries: list[Any] = []
            _wait(lambda: deliveries.extend(connected.receive(0.2)) or deliveries, "a message")
            connector._predict("m", x, "first")  # a prediction not acknowledged on the bus
            connected.rewind()  # as after a crash: the delivery comes again
            again: list[Any] = []
            _wait(lambda: again.extend(connected.receive(0.2)) or again, "the redelivery")
            for delivery in deliveries + again:
                connector.handle(delivery)
            learns = engine.stats("m")["n_learns"]
        if isinstance(bus, Nats):
            assert learns == 1 and connector.counts["again"] == 2
        else:
            assert learns == 2 and connector.counts["unknown_again"] == 1
    finally:
        connected.close()


def test_a_bus_url_that_is_wrong_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="known: redis://, nats://, mqtt://, amqp://"):
        open_bus("kafka://127.0.0.1:9092", "t", group="g", consumer="c")
    with pytest.raises(ValueError, match="'wait' is not an option of a nats:// bus"):
        open_bus("nats://127.0.0.1:4222?wait=3", "t", group="g", consumer="c")
    with pytest.raises(ValueError, match="is not a number"):
        open_bus("nats://127.0.0.1:4222?ack_wait=soon", "t", group="g", consumer="c")
    done = subprocess.run(
        [sys.executable, "-m", "riverbed", "connect", "mqtt://127.0.0.1:1", "--topic", "t"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot reach MQTT at 127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
