"""``riverbed connect`` against the real Redis on 127.0.0.1:6379 (Redis Streams, a consumer
group): a stream of labelled Phishing samples, the connector killed with SIGKILL in the
middle and started again, ends with exactly river's progressive-validation metrics, every
message learned once and none lost; malformed messages land in the dead letters with their
reason and the stream goes on. Each test uses streams of its own (a uuid in the names)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from river import datasets, evaluate, linear_model, metrics, preprocessing

from riverbed import Engine

REDIS_URL = (
    f"redis://{os.environ.get('REDIS_HOST', '127.0.0.1')}:{os.environ.get('REDIS_PORT', '6379')}/0"
)
N = 400
SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


@pytest.fixture
def streams() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:12]
    names = {k: f"riverbed-test:{tag}:{k}" for k in ("in", "out", "dead", "events")}
    yield names
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(*names.values())
    client.close()


def _connector(db: str, names: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:  # the child keeps its own copy
        return _start(db, names, output)


def _start(db: str, names: dict[str, str], output: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "riverbed",
            "connect",
            REDIS_URL,
            "--topic",
            names["in"],
            "--publish",
            names["out"],
            "--dead-letter",
            names["dead"],
            "--consumer",
            "c1",
            "--database",
            db,
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
    )


def _drained(client: redis.Redis, stream: str) -> bool:
    """Every entry of the stream delivered to the group and acknowledged."""
    groups = client.xinfo_groups(stream)
    if not groups:
        return False
    group = groups[0]
    last = client.xinfo_stream(stream)["last-generated-id"]
    return bool(group["pending"] == 0 and group["last-delivered-id"] == last)


def _wait(predicate: Any, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_connector_loses_nothing_and_counts_nothing_twice(
    tmp_path: Path, streams: dict[str, str]
) -> None:
    db = str(tmp_path / "connect.db")
    with Engine(db) as engine:
        engine.create_model("phish", spec=SPEC)
    samples = list(datasets.Phishing().take(N))
    client = redis.Redis.from_url(REDIS_URL)
    bad = {
        100: b"{not json",
        200: orjson.dumps({"model": "nope", "features": {"a": 1.0}, "ground_truth": True}),
        300: orjson.dumps({"model": "phish", "features": {"a": "x" * 20_000}}),
    }
    for i, (x, y) in enumerate(samples):
        if i in bad:
            client.xadd(streams["in"], {"body": bad[i]})
        # half name their id, half leave it to the bus's entry id
        message: dict[str, Any] = {"model": "phish", "features": x, "ground_truth": y}
        if i % 2:
            message["id"] = f"s{i}"
        client.xadd(streams["in"], {"body": orjson.dumps(message)})
    log = tmp_path / "connect.log"
    process = _connector(db, streams, log)
    try:
        _wait(lambda: client.xlen(streams["out"]) >= N // 3, "a third of the predictions")
        process.kill()  # SIGKILL mid-stream: no shutdown hook, some entries left pending
        process.wait(timeout=30)
        assert not _drained(client, streams["in"])
        process = _connector(db, streams, log)
        _wait(lambda: _drained(client, streams["in"]), "the stream to be drained")
    finally:
        process.terminate()
        process.wait(timeout=30)
    dead = [orjson.loads(fields[b"body"]) for _, fields in client.xrange(streams["dead"])]
    assert_learned_once(db, samples, dead, bad)
    client.close()


def assert_learned_once(
    db: str, samples: list[Any], dead: list[dict[str, Any]], bad: dict[int, bytes]
) -> None:
    """Every sample learned once, in order (the metrics are river's progressive validation
    of the stream), and the malformed messages in the dead letters with their reasons."""
    reasons = sorted({d["reason"].split(":")[0] for d in dead})
    assert reasons == ["invalid_features", "malformed", "model_not_found"], dead
    assert {d["body"] for d in dead} == {b.decode() for b in bad.values()}
    with Engine(db) as engine:
        got = engine.metrics("phish")
        assert engine.stats("phish")["n_learns"] == len(samples)  # every sample once
    assert got["n"] == len(samples)
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for name in ("Accuracy", "LogLoss", "F1", "ROCAUC"):
        expected = evaluate.progressive_val_score(
            samples, copy.deepcopy(model), getattr(metrics, name)()
        ).get()
        assert got["metrics"][name] == expected, name


def test_a_message_delivered_again_is_absorbed_by_its_id(
    tmp_path: Path, streams: dict[str, str]
) -> None:
    """The same delivery handled twice (a connector that died after its writes and before
    its acknowledgement): the second time, the prediction and the label are already
    stored, so the model learns once and nothing is published again."""
    from riverbed.buses.redis_streams import RedisStreams
    from riverbed.connect import Connector

    client = redis.Redis.from_url(REDIS_URL)
    (x, y), *_ = datasets.Phishing().take(1)
    client.xadd(
        streams["in"], {"body": orjson.dumps({"model": "m", "features": x, "ground_truth": y})}
    )
    bus = RedisStreams(REDIS_URL, streams["in"], group="g", consumer="c")
    with Engine(str(tmp_path / "again.db")) as engine:
        engine.create_model("m", spec=SPEC)
        connector = Connector(engine, bus, topic=streams["in"], publish=streams["out"])
        (delivery,) = bus.receive(1) or bus.receive(1)  # its backlog (none), then new
        connector.handle(delivery)
        connector.handle(delivery)
        assert connector.counts["again"] == 2  # PredictionExists, then AlreadyLabelled
        assert engine.stats("m")["n_learns"] == 1
        assert engine.metrics("m")["n"] == 1
    assert client.xlen(streams["out"]) == 1
    assert _drained(client, streams["in"])
    bus.close()
    client.close()


def _events_published(
    target: Any, names: dict[str, str], create: Any, client: redis.Redis
) -> list[dict[str, Any]]:
    """Run a connector over ``target`` publishing label and model.created events, create a
    model with ``create`` while it runs, send it three labelled messages; the events."""
    import threading

    from riverbed.buses.redis_streams import RedisStreams
    from riverbed.connect import Connector

    bus = RedisStreams(REDIS_URL, names["in"], group="g", consumer="c")
    connector = Connector(
        target,
        bus,
        topic=names["in"],
        events=names["events"],
        event_types=["label", "model.created"],
    )
    stop = threading.Event()
    runner = threading.Thread(target=connector.run, args=(stop,), kwargs={"idle": 0.1})
    runner.start()
    try:
        time.sleep(0.5)  # a server's feed is followed from now on: let it connect
        create()
        for x, y in datasets.Phishing().take(3):
            body = {"model": "m", "features": x, "ground_truth": y}
            client.xadd(names["in"], {"body": orjson.dumps(body)})
        _wait(lambda: client.xlen(names["events"]) >= 4, "four events")
    finally:
        stop.set()
        runner.join(30)
        bus.close()
    return [orjson.loads(f[b"body"]) for _, f in client.xrange(names["events"])]


def test_the_targets_events_are_published_in_process(
    tmp_path: Path, streams: dict[str, str]
) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    with Engine(str(tmp_path / "events.db")) as engine:
        events = _events_published(
            engine, streams, lambda: engine.create_model("m", spec=SPEC), client
        )
    assert [e["type"] for e in events] == ["model.created", "label", "label", "label"]
    assert all(e["model"] == "m" for e in events)  # no predict events: filtered out
    assert events[1]["data"]["ground_truth"] is not None  # a learn by the id: a label
    client.close()


def test_a_servers_events_are_published_through_the_client(
    tmp_path: Path, streams: dict[str, str]
) -> None:
    from riverbed.client import Client
    from tests.helpers import Server

    client = redis.Redis.from_url(REDIS_URL)
    server = Server(str(tmp_path / "server.db")).start()
    try:
        with Client(server.url) as target, Client(server.url) as other:
            events = _events_published(
                target, streams, lambda: other.create_model("m", spec=SPEC), client
            )
    finally:
        server.stop()
    assert [e["type"] for e in events] == ["model.created", "label", "label", "label"]
    client.close()
