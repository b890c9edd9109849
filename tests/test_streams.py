"""Server-sent event streams against a real `riverbed serve`: the event feed with its
filters and Last-Event-ID, and a model's metrics stream with its history replay."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from river import datasets

from riverbed import AsyncClient, Client
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
    labels = take(client.events(model="p", types=["label"]), 3)
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


def test_resuming_past_the_window_says_how_many_events_were_missed(client: Client) -> None:
    client.create_model("g", spec=SPEC)
    client.predict("g", {"x": 1.0}, id="before")
    *_, seen = take(client.events(model="g"), 2)
    assert seen["data"]["id"] == "before", _
    client.predict_many("g", [{"id": f"n{i}", "features": {"x": float(i)}} for i in range(1500)])
    # The bus holds the latest 1,000 events: the first 500 of the batch are gone, and the
    # reader is told so before the 1,000 that are still held.
    gap, *held = take(client.events(model="g", last_event_id=seen["id"]), 1001)
    assert gap["type"] == "gap"
    assert gap["data"] == {
        "after": seen["id"],
        "until": held[0]["id"] - 1,
        "missed": 500,
        "reason": "window",
    }
    assert [e["data"]["id"] for e in held] == [f"n{i}" for i in range(500, 1500)]
    # Resuming after the gap's own id (a reconnect right after it) replays without a gap.
    again = take(client.events(model="g", last_event_id=gap["id"]), 1)
    assert again[0]["type"] == "predict" and again[0]["data"]["id"] == "n500"


def test_now_replays_nothing_and_a_restart_is_a_gap(tmp_path: Path) -> None:
    server = Server(str(tmp_path / "restart.db")).start()
    try:
        with Client(server.url) as client:
            client.create_model("r", spec=SPEC)
            client.predict("r", {"x": 1.0}, id="old")
            (created, old) = take(client.events(model="r"), 2)
            now = client.events(model="r", last_event_id="now")
            # The stream connects on its first next(), so one prediction sent meanwhile may
            # come before it: predict until the stream has seen one (else next() waits forever).
            seen = threading.Event()

            def predict_until_seen() -> None:
                for i in itertools.count():
                    if seen.is_set():
                        return
                    client.predict("r", {"x": 2.0}, id=f"new-{i}")
                    time.sleep(0.05)

            sender = in_background(predict_until_seen)
            first = next(now)
            seen.set()
            sender.join(timeout=30)
            assert first["data"]["id"].startswith("new-")  # not the held ones
            now.close()
        server.stop()
        server.start()
        with Client(server.url) as client:
            client.predict("r", {"x": 3.0}, id="after-restart")
            gap, event = take(client.events(model="r", last_event_id=old["id"]), 2)
            assert gap["type"] == "gap"
            assert gap["data"]["reason"] == "restart" and gap["data"]["missed"] is None
            assert event["data"]["id"] == "after-restart"
    finally:
        server.stop()


def test_an_id_past_any_integer_replays_what_is_held(client: Client) -> None:
    """Found by tests/test_fuzz.py: ``Last-Event-ID: 999...9`` (30 digits) answered 200 and
    then broke the stream (its gap message could not be written as JSON: an integer past 64
    bits); the metrics stream failed the same way reading the history after it. An id is 1
    to 18 ASCII digits; anything else replays what is held, as a word does."""
    client.create_model("h", spec=SPEC)
    client.predict("h", {"x": 1.0}, id="held")
    huge = "9" * 30
    created, held = take(client.events(model="h", last_event_id=huge, reconnect=False), 2)
    assert (created["type"], held["data"]["id"]) == ("model.created", "held")
    first = next(client.metrics_stream("h", interval=0.05, last_event_id=int(huge)))
    assert first["event"] == "metrics"


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


def test_the_metrics_stream_says_deleted_before_any_heartbeat(
    server: Server, client: Client
) -> None:
    """A deletion wakes the metrics stream: the next line after it is the ``deleted`` event,
    not the heartbeat that an idle stream would send first."""
    import httpx

    client.create_model("gone", spec=SPEC)
    with httpx.stream("GET", server.url + "/v1/models/gone/metrics/stream", timeout=None) as r:
        lines = (line for line in r.iter_lines() if line)
        assert next(lines) == ": connected"
        assert next(lines).startswith("id: ")  # the current metrics
        assert next(lines) == "event: metrics"
        next(lines)  # its data
        client.delete_model("gone")
        following = [next(lines), next(lines)]
    assert following[1] == "event: deleted", following


def test_the_websocket_and_the_upload_over_a_real_server(server: Server, client: Client) -> None:
    from websockets.sync.client import connect

    client.create_model("p", spec=SPEC)
    rows = list(datasets.Phishing().take(40))
    ws_url = server.url.replace("http://", "ws://") + "/v1/ws"
    with connect(ws_url) as ws:
        for i, (x, y) in enumerate(rows[:20]):
            ws.send(
                orjson.dumps(
                    {"id": i, "op": "learn", "model": "p", "features": x, "ground_truth": y}
                )
            )
        answers = [orjson.loads(ws.recv(timeout=30)) for _ in range(20)]
    assert sorted(a["id"] for a in answers) == list(range(20))
    assert max(a["result"]["n_learns"] for a in answers) == 20
    bodies = [{"features": x, "ground_truth": y} for x, y in rows[20:]]
    reports = list(client.learn_stream("p", bodies, chunk_size=8))
    assert [r["n_learned"] for r in reports] == [8, 16, 20]
    assert reports[-1]["done"] and reports[-1]["n_learns"] == 40


async def test_the_async_client_streams(server: Server, client: Client) -> None:
    """AsyncClient's events, metrics stream and NDJSON upload (from an async iterable),
    against the real server: the same messages the blocking client gets."""
    client.create_model("a", spec=SPEC, options={"history_every": 4, "history_seconds": 1e9})
    rows = list(datasets.Phishing().take(12))

    async def bodies() -> Any:
        for x, y in rows:
            yield {"features": x, "ground_truth": y}

    async with AsyncClient(server.url) as aclient:
        reports = [r async for r in aclient.learn_stream("a", bodies(), chunk_size=5)]
        assert [r["n_learned"] for r in reports] == [5, 10, 12]
        assert reports[-1]["done"] and reports[-1]["n_learns"] == 12

        events = aclient.events(model="a", types=["learn"])
        replayed = [await anext(events) for _ in range(3)]
        await events.aclose()
        assert [e["data"]["n_learns"] for e in replayed] == [1, 2, 3]
        assert replayed == take(client.events(model="a", types=["learn"]), 3)

        # Reconnecting after learn 4 replays the stored points past it, then the values.
        points = [p for p in client.metrics_history("a")["points"] if p["seq"] > 4]
        assert points  # an upload of 12 learns leaves history points past learn 4
        metrics = aclient.metrics_stream("a", last_event_id=4)
        again = [await anext(metrics) for _ in range(len(points) + 1)]
        await metrics.aclose()
        assert [m["event"] for m in again] == ["point"] * len(points) + ["metrics"]
        assert [{**p, "model": "a"} for p in points] == [m["data"] for m in again[:-1]]
        assert again[-1]["data"] == client.metrics("a")

        with pytest.raises(ModelNotFound):
            await anext(aclient.metrics_stream("nope"))
        with pytest.raises(ModelNotFound):
            await anext(aclient.learn_stream("nope", [{"features": {}, "ground_truth": 1}]))


def test_server_sent_event_lines_make_messages() -> None:
    from riverbed.client import _EventLines

    lines = _EventLines(raw=True)
    fed = [
        lines.feed(line)
        for line in [": connected", "id: 3", "event: metrics", 'data: {"a":', "data: 1}", ""]
    ]
    assert fed[:-1] == [None] * 5
    assert fed[-1] == {"event": "metrics", "id": "3", "data": {"a": 1}}
    assert lines.feed("") is None  # a blank line with no message before it
    plain = _EventLines(raw=False)
    assert [plain.feed(x) for x in ["data: [1, 2]", ""]] == [None, [1, 2]]


def test_the_learn_forecast_and_tail_commands(
    server: Server, client: Client, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from riverbed.cli import cli

    runner = CliRunner()
    data = tmp_path / "airline.csv"
    with data.open("w") as f:
        f.write("month,passengers\n")
        for x, y in datasets.AirlinePassengers():
            f.write(f"{x['month']:%Y-%m},{y}\n")
    client.create_model(
        "airline", spec={"class": "river.time_series.HoltWinters", "params": {"alpha": 0.3}}
    )
    url = ["--url", server.url]
    learned = runner.invoke(
        cli,
        [
            "learn",
            str(data),
            "--model",
            "airline",
            "--target",
            "passengers",
            "--chunk-size",
            "50",
            *url,
        ],
    )
    assert learned.exit_code == 0, learned.output
    assert "learned 144 lines; airline has 144 learns" in learned.output
    forecast = runner.invoke(cli, ["forecast", "airline", "--horizon", "3", *url])
    assert forecast.exit_code == 0, forecast.output
    assert [line.split("\t")[0] for line in forecast.output.splitlines()] == ["+1", "+2", "+3"]
    assert [float(line.split("\t")[1]) for line in forecast.output.splitlines()] == client.forecast(
        "airline", 3
    )["forecast"]
    tail = runner.invoke(
        cli, ["tail", "airline", "--types", "learn", "--replay", "--limit", "2", *url]
    )
    assert tail.exit_code == 0, tail.output
    events = [json.loads(line) for line in tail.output.splitlines()]
    assert [e["data"]["ground_truth"] for e in events] == [112, 118]
    # By default tail shows what happens from now on, not the events already held.
    proc = subprocess.Popen(
        [sys.executable, "-m", "riverbed", "tail", "airline", "--limit", "1", *url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(100):  # until the tail is connected: it then shows the next predict
            client.predict("airline", {}, id=None)
            try:
                out, _err = proc.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        proc.kill()
    (line,) = out.splitlines()
    assert json.loads(line)["type"] == "predict"
    bad = tmp_path / "bad.csv"
    bad.write_text("month,passengers\n1949-01,112\n1949-02,lots\n")
    failed = runner.invoke(
        cli, ["learn", str(bad), "--model", "airline", "--target", "passengers", *url]
    )
    # the file's line (the header is line 1); its batch, the whole file here, is not learned
    assert failed.exit_code == 1 and "Error: line 3: " in failed.output


def test_the_bus_names_each_kind_of_gap() -> None:
    from riverbed.events import EventBus

    bus = EventBus(keep=5)
    ids = [bus.publish("predict", "m", {"n": i}).id for i in range(8)]
    assert bus.last_id == ids[-1]
    held, gap = bus.replay(after=ids[0])
    assert [e.data["n"] for e in held] == [3, 4, 5, 6, 7]
    assert gap is not None and (gap.missed, gap.reason, gap.until) == (2, "window", ids[2])
    assert bus.replay(after=ids[4]) == (bus.recent(after=ids[4]), None)
    assert bus.replay(after=ids[-1]) == ([], None)
    assert bus.replay(after=0)[1] is None  # everything held, asked for: no gap
    held, gap = bus.replay(after=ids[0] - 1000)  # an id of an earlier process
    assert gap is not None and (gap.missed, gap.reason) == (None, "restart") and len(held) == 5
    held, gap = bus.replay(after=ids[-1] + 1000)  # an id this process never gave
    assert gap is not None and gap.reason == "unknown_id" and len(held) == 5
    fresh = EventBus()
    assert fresh.replay(after=fresh.last_id)[1] is None


def test_event_data_is_kept_packed_out_of_the_collectors_sight() -> None:
    import gc

    from riverbed.events import EventBus, packed

    made: list[int] = []

    def data() -> dict[str, Any]:
        made.append(1)
        return {"n": len(made), "probabilities": {False: 0.25, True: 0.75}}

    bus = EventBus(keep=10)
    event = bus.publish("learn", "m", data)
    assert made == [1]  # made once, to be kept packed
    assert event.data == {"n": 1, "probabilities": {False: 0.25, True: 0.75}}
    again = bus.recent()[0]
    assert again == event and again.data is not event.data and made == [1]
    bus.publish("learn", "m", packed({"n": 2}))  # given packed, kept as it is
    gc.collect()  # a tuple of untracked values is untracked by the collector's next pass
    assert not any(gc.is_tracked(kept) for kept in bus._recent)
    assert [e.data["n"] for e in bus.recent(model="m", after=event.id)] == [2]


def test_an_event_whose_data_does_not_pack_is_kept_as_it_is() -> None:
    import numpy as np

    from riverbed.events import EventBus, packed

    odd = {"x": np.float64(1.5), "at": object()}
    assert packed(odd) is odd
    bus = EventBus(keep=10)
    event = bus.publish("predict", "m", odd)
    assert bus.recent()[0] is event and event.data is odd


def test_a_batchs_events_are_those_of_its_learns_one_by_one(sqlite_engine: Any) -> None:
    import gc

    spec = {"pipeline": [{"class": "river.linear_model.LogisticRegression"}]}
    sqlite_engine.create_model("one", spec=spec)
    sqlite_engine.create_model("many", spec=spec)
    data = list(itertools.islice(datasets.Phishing(), 40))
    heard: list[Any] = []
    unsubscribe = sqlite_engine.events.subscribe(
        lambda e: heard.append(e) if e.model == "many" else None
    )
    for x, y in data[:30]:
        sqlite_engine.learn("one", x, y)
    sqlite_engine.learn_many("many", [{"features": x, "ground_truth": y} for x, y in data[:30]])
    ids = [sqlite_engine.predict("many", x)["id"] for x, _ in data[30:]]
    labels = [{"id": i, "ground_truth": y} for i, (_, y) in zip(ids, data[30:], strict=True)]
    sqlite_engine.learn_many("many", labels)
    unsubscribe()

    def learns(model: str) -> list[Any]:
        return [e for e in sqlite_engine.events.recent(model=model) if e.type in ("learn", "label")]

    one, many = learns("one"), learns("many")
    assert [e.data for e in one] == [e.data for e in many[:30]]  # the same data, in order
    assert [e.type for e in many] == ["learn"] * 30 + ["label"] * 10
    assert [e.data["prediction_id"] for e in many[30:]] == ids
    assert [e.data["n_learns"] for e in many] == list(range(1, 41))
    assert [e.id for e in heard if e.type != "predict"] == [e.id for e in many]  # listeners too
    assert heard[0].data == many[0].data
    gc.collect()
    tracked = [k for k in sqlite_engine.events._recent if gc.is_tracked(k)]
    assert tracked == []


def test_packed_rows_refuse_what_marshal_cannot_encode_and_read_back_in_order() -> None:
    from riverbed.events import EventBus, pack_rows

    assert pack_rows({"x": [1.0, object()]}) is None
    rows = pack_rows({"n": [1, 2]}, [{"p": "a"}, {"p": "b"}])
    assert rows is not None
    bus = EventBus(keep=3)
    bus.publish_rows("m", ["learn", "label"], rows)
    bus.publish_rows("m", ["learn", "learn"], pack_rows({"n": [3, 4]}) or b"")
    assert [(e.type, e.data) for e in bus.recent()] == [
        ("label", {"n": 2, "p": "b"}),
        ("learn", {"n": 3}),
        ("learn", {"n": 4}),
    ]
