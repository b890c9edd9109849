"""The cache over HTTP: routes through the ASGI app, the client, and a real server restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from riverbed import AsyncClient, CacheKeyNotFound, Client, Engine, WrongCacheKind
from riverbed.cli import cli
from riverbed.server import create_app
from tests.helpers import Server


async def test_value_routes(api: httpx.AsyncClient) -> None:
    put = await api.put("/v1/cache/user:1", json={"value": {"age": 3}, "ttl": 60})
    assert put.status_code == 200, put.text
    assert put.json()["key"] == "user:1" and put.json()["expires_at"] > time.time()
    got = (await api.get("/v1/cache/user:1")).json()
    assert got["value"] == {"age": 3} and 0 < got["ttl"] <= 60
    assert (await api.get("/v1/cache/user:1/ttl")).json()["ttl"] <= 60
    ttl = await api.put("/v1/cache/user:1/ttl", json={"ttl": None})
    assert ttl.status_code == 200 and ttl.json()["expires_at"] is None
    assert (await api.get("/v1/cache/user:1")).json()["ttl"] is None
    deleted = await api.delete("/v1/cache/user:1")
    assert deleted.json() == {"key": "user:1", "deleted": True}
    missing = await api.get("/v1/cache/user:1")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "cache_key_not_found"


async def test_list_routes(api: httpx.AsyncClient) -> None:
    for i in range(3):
        pushed = await api.post("/v1/cache/q/push", json={"value": i})
        assert pushed.json() == {"key": "q", "length": i + 1}
    assert (await api.get("/v1/cache/q/peek")).json() == {"key": "q", "position": 0, "value": 2}
    assert (await api.get("/v1/cache/q/peek?position=-1")).json()["value"] == 0
    assert (await api.get("/v1/cache/q/peek?pos=1")).json()["value"] == 1
    assert (await api.get("/v1/cache/q/length")).json()["length"] == 3
    popped = [(await api.post("/v1/cache/q/pop")).json()["value"] for _ in range(3)]
    assert popped == [2, 1, 0]
    empty = await api.post("/v1/cache/q/pop")
    assert empty.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PUT", "/v1/cache/k", {"ttl": 5}, 400, "invalid_input"),
        ("PUT", "/v1/cache/k", {"value": 1, "ttl": -1}, 400, "invalid_input"),
        ("PUT", "/v1/cache/k", {"value": 1, "ttl": "5"}, 400, "invalid_input"),
        ("PUT", "/v1/cache/k", {"value": 1, "extra": 1}, 400, "invalid_input"),
        ("PUT", "/v1/cache/k", [1], 400, "invalid_input"),
        ("POST", "/v1/cache/v/push", {"value": 1}, 409, "wrong_cache_kind"),
        ("GET", "/v1/cache/v/peek", None, 409, "wrong_cache_kind"),
        ("GET", "/v1/cache/l/peek?position=x", None, 400, "invalid_input"),
        ("GET", "/v1/cache/l/peek?position=5", None, 404, "cache_key_not_found"),
        ("GET", "/v1/cache/l", None, 409, "wrong_cache_kind"),
        ("PUT", "/v1/cache/nope/ttl", {"ttl": 5}, 404, "cache_key_not_found"),
        ("PUT", "/v1/cache/v/ttl", {}, 400, "invalid_input"),
        ("GET", "/v1/cache/nope/ttl", None, 404, "cache_key_not_found"),
    ],
)
async def test_bad_requests_are_4xx_and_change_nothing(
    api: httpx.AsyncClient, method: str, path: str, body: object, status: int, code: str
) -> None:
    await api.put("/v1/cache/v", json={"value": "value"})
    await api.post("/v1/cache/l/push", json={"value": "item"})
    response = await api.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert (await api.get("/v1/cache/v")).json()["value"] == "value"
    assert (await api.get("/v1/cache/l/length")).json()["length"] == 1
    assert (await api.get("/v1/cache/k")).status_code == 404


async def test_predict_by_cache_key_over_http(api: httpx.AsyncClient) -> None:
    spec = {"class": "river.linear_model.LinearRegression"}
    assert (await api.post("/v1/models", json={"name": "r", "spec": spec})).status_code == 201
    await api.post("/v1/models/r/learn", json={"features": {"a": 1.0}, "ground_truth": 2.0})
    await api.put("/v1/cache/e1", json={"value": {"a": 1.0}})
    by_key = await api.post("/v1/models/r/predict", json={"features_key": "e1", "id": "p1"})
    direct = await api.post("/v1/models/r/predict", json={"features": {"a": 1.0}})
    assert by_key.status_code == 200, by_key.text
    assert by_key.json()["prediction"] == direct.json()["prediction"]
    learned = await api.post("/v1/models/r/learn", json={"id": "p1", "ground_truth": 2.0})
    assert learned.status_code == 200, learned.text
    missing = await api.post("/v1/models/r/predict", json={"features_key": "e2"})
    assert missing.status_code == 404
    neither = await api.post("/v1/models/r/predict", json={})
    assert neither.status_code == 400


def client_workflow(client: Client) -> list[object]:
    client.cache.put("k", {"x": 1}, ttl=60)
    client.cache.push("q", "a")
    client.cache.push("q", "b")
    out: list[object] = [
        client.cache.get("k"),
        client.cache.peek("q", -1),
        client.cache.length("q"),
        client.cache.pop("q"),
        client.cache.ttl("k")["ttl"] is not None,
        client.cache.expire("k", None)["expires_at"],
        client.cache.delete("k")["deleted"],
    ]
    with pytest.raises(CacheKeyNotFound):
        client.cache.get("k")
    with pytest.raises(WrongCacheKind):
        client.cache.get("q")
    return out


async def test_the_async_client_has_the_cache_too(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "c.db")) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with AsyncClient("http://t", transport=transport) as client:
            await client.cache.put("k", [1, 2])
            assert await client.cache.get("k") == [1, 2]
            assert (await client.cache.delete("k"))["deleted"] is True


@pytest.mark.slow
def test_cache_entries_survive_a_server_restart_until_they_expire(tmp_path: Path) -> None:
    """A real ``riverbed serve``: the blocking client mirrors ``engine.cache``; entries are
    still there after a restart, the one whose 1-second TTL has run out is gone."""
    database = str(tmp_path / "server.db")
    server = Server(database).start()
    with Client(server.url) as client:
        assert client_workflow(client) == [{"x": 1}, "a", 2, "b", True, None, True]
    runner = CliRunner()
    for args in (["put", "cli", '{"a": 1}', "--ttl", "60"], ["push", "cli-q", "word"]):
        assert runner.invoke(cli, ["cache", *args, "--url", server.url]).exit_code == 0
    got = runner.invoke(cli, ["cache", "get", "cli", "--url", server.url])
    assert got.exit_code == 0 and json.loads(got.output) == {"a": 1}
    popped = runner.invoke(cli, ["cache", "pop", "cli-q", "--url", server.url])
    assert json.loads(popped.output) == "word"
    missing = runner.invoke(cli, ["cache", "get", "nope", "--url", server.url])
    assert missing.exit_code == 1 and "cache_key_not_found" in missing.output
    with Client(server.url) as client:
        client.cache.put("short", "v", ttl=1)
        client.cache.put("long", {"kept": True}, ttl=3600)
        client.cache.push("queue", 1)
        put_at = time.time()
    server.stop()
    server = Server(database, server.port).start()
    try:
        with Client(server.url) as client:
            assert client.cache.get("long") == {"kept": True}
            assert client.cache.pop("queue") == 1
            time.sleep(max(0.0, put_at + 1.05 - time.time()))
            with pytest.raises(CacheKeyNotFound):
                client.cache.get("short")
    finally:
        server.stop()
