"""The Python client mirrors the engine: same calls, same results, same errors."""

from __future__ import annotations

import httpx
import pytest
from river import datasets

from riverbed import AsyncClient, Client, Engine, ModelNotFound, PredictionNotFound
from riverbed.server import create_app
from tests.helpers import Server, phishing_model


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
