"""The Python client mirrors the engine: same calls, same results, same errors."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from river import datasets

from riverbed import (
    AsyncClient,
    Client,
    Engine,
    ModelNotFound,
    PredictionNotFound,
    Unavailable,
    Unreachable,
)
from riverbed.server import create_app
from tests.helpers import Server, free_port, phishing_model


def run_workflow(engine: Engine | Client) -> dict[str, object]:
    """The same code, for an engine or a client."""
    engine.create_model("p", phishing_model(), description="d", tags={"k": "v"})
    for x, y in datasets.Phishing().take(60):
        prediction = engine.predict("p", x)
        engine.learn("p", ground_truth=y, id=prediction["id"])
    with pytest.raises(PredictionNotFound):
        engine.learn("p", ground_truth=True, id="missing")
    with pytest.raises(ModelNotFound):
        engine.metrics("nope")
    assert [m["name"] for m in engine.list_models()] == ["p"]
    result = {"metrics": engine.metrics("p"), "model": engine.get_model("p")}
    engine.delete_model("p")
    return result


def test_client_against_a_real_server_gives_what_the_engine_gives(server: Server) -> None:
    with Engine(":memory:") as engine:
        local = run_workflow(engine)
    with Client(server.url) as client:
        remote = run_workflow(client)
        assert client.health()["status"] == "ok"
    assert remote["metrics"] == local["metrics"]
    for key in ("name", "task", "spec", "metrics", "tags", "n_learns", "n_predictions"):
        assert remote["model"][key] == local["model"][key]  # type: ignore[index]


async def test_async_client_through_the_asgi_app() -> None:
    with Engine(":memory:") as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with AsyncClient("http://t", transport=transport) as client:
            await client.create_model("p", phishing_model())
            x, y = next(iter(datasets.Phishing()))
            prediction = await client.predict("p", x, id="a1")
            assert prediction["id"] == "a1"
            learned = await client.learn("p", ground_truth=y, id="a1")
            assert learned["n_learns"] == 1
            assert [m["name"] for m in await client.list_models()] == ["p"]
            with pytest.raises(ModelNotFound):
                await client.stats("nope")


def test_a_server_that_does_not_answer_is_unreachable_naming_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing listening: each call raises Unreachable (an Unavailable) in one line naming
    the URL and how to start a server, not httpx's ConnectError; the event feed, which
    resumes a dropped connection, does not wait for a server that never answered."""
    url = f"http://127.0.0.1:{free_port()}"
    pauses: list[float] = []
    monkeypatch.setattr("riverbed.client.time.sleep", pauses.append)
    with Client(url) as client:
        for call in (client.list_models, lambda: next(client.events())):
            with pytest.raises(Unreachable) as raised:
                call()
            assert isinstance(raised.value, Unavailable)
            assert raised.value.message.startswith(f"nothing answers at {url} (")
            assert "riverbed serve" in raised.value.message
            assert "\n" not in raised.value.message
            assert raised.value.detail == {"url": url}
    assert pauses == []
    with Client(f"http://{'x' * 8}.invalid") as client, pytest.raises(Unreachable):
        client.health()


async def test_the_async_client_says_unreachable_too(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr("riverbed.client.asyncio.sleep", pause)
    async with AsyncClient(url) as client:
        with pytest.raises(Unreachable, match=f"nothing answers at {url}"):
            await client.predict("p", {"x": 1.0})
        with pytest.raises(Unreachable, match=f"nothing answers at {url}"):
            await anext(client.events())
    assert pauses == []


@pytest.mark.slow
def test_a_followed_feed_resumes_across_a_restart(tmp_path: Path) -> None:
    """Once connected, the event feed waits for a restarting server (whose port refuses for
    a while) and resumes: a gap that says so, then what happened after."""
    server = Server(str(tmp_path / "restart.db")).start()
    seen: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    try:
        with Client(server.url) as client:
            client.create_model("p", phishing_model())
            feed = client.events(model="p", types=["predict"], last_event_id="now")

            def follow() -> None:
                try:
                    for event in feed:
                        seen.put(event)
                except Exception as exc:  # the feed gave up: the test sees why
                    seen.put({"type": "error", "data": repr(exc)})

            threading.Thread(target=follow, daemon=True).start()
            while seen.empty():  # until the feed is connected it shows no predict
                client.predict("p", {"x": 1.0})
                time.sleep(0.05)
            first = seen.get()
            assert first["type"] == "predict"
            server.kill()  # a crash: the feed resumes with a gap of reason 'restart'
            server.start()
            client.predict("p", {"x": 2.0}, id="after")
            while True:
                event = seen.get(timeout=120)
                if event["type"] != "predict" or event["data"]["id"] == "after":
                    break
            assert event["type"] == "gap" and event["data"]["reason"] == "restart"
            assert seen.get(timeout=120)["data"]["id"] == "after"
    finally:
        server.stop()
