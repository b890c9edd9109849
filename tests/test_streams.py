"""Server-sent event streams against a real `riverbed serve`: the event feed with its
filters and Last-Event-ID, and a model's metrics stream with its history replay."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from river import datasets

from riverbed import Client
from riverbed.exceptions import ModelNotFound
from tests.helpers import Server

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(str(tmp_path_factory.mktemp("streams") / "server.db")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url) as c:
        yield c
        for model in c.list_models():
            c.delete_model(model["name"])


def take(stream: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return list(itertools.islice(stream, n))


def in_background(func: Any) -> threading.Thread:
    thread = threading.Thread(target=func, daemon=True)
    thread.start()
    return thread


def test_the_event_feed_filters_and_resumes(client: Client) -> None:
    client.create_model("p", spec=SPEC)
    client.create_model("q", spec=SPEC)
    samples = list(datasets.Phishing().take(3))
    for i, (x, y) in enumerate(samples):
        client.predict("p", x, id=f"p{i}")
        client.predict("q", x, id=f"q{i}")
        client.learn("p", ground_truth=y, id=f"p{i}")
    labels = take(client.events(model="p", types=["label"], last_event_id=1), 3)
    assert [e["type"] for e in labels] == ["label"] * 3
    assert [e["data"]["prediction_id"] for e in labels] == ["p0", "p1", "p2"]
    assert labels[0]["data"]["ground_truth"] == samples[0][1]
    # A client that dropped after the first label gets the two it missed, then new ones.
    resumed = client.events(
        model="p", types=["label", "model.deleted"], last_event_id=labels[0]["id"]
    )
    assert [e["data"]["prediction_id"] for e in take(resumed, 2)] == ["p1", "p2"]
    in_background(lambda: client.delete_model("p"))
    deleted = next(resumed)
    assert deleted["type"] == "model.deleted" and deleted["model"] == "p"


def test_the_metrics_stream_sends_changes_and_replays_history(client: Client) -> None:
    client.create_model("p", spec=SPEC, options={"history_every": 2, "history_seconds": 1e9})
    stream = client.metrics_stream("p", interval=0.05)
    first = next(stream)
    assert first["event"] == "metrics" and first["data"]["n_learns"] == 0
    rows = list(datasets.Phishing().take(6))
    in_background(lambda: [client.learn("p", x, y) for x, y in rows])
    seen = first
    while seen["data"]["n_learns"] < 6:
        seen = next(stream)
        assert seen["event"] == "metrics" and int(seen["id"]) == seen["data"]["n_learns"]
    assert seen["data"] == client.metrics("p")
    # Reconnecting after learn 2 replays the stored points 4 and 6, then the current values.
    again = take(client.metrics_stream("p", last_event_id=2), 3)
    assert [(m["event"], m["data"].get("seq")) for m in again] == [
        ("point", 4),
        ("point", 6),
        ("metrics", None),
    ]
    assert again[1]["data"]["metrics"] == seen["data"]["metrics"]
    with pytest.raises(ModelNotFound):
        next(client.metrics_stream("nope"))
