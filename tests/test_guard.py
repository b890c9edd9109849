"""A web page must not drive the server (riverbed.server.guard, docs/security.md): a Host that
is not the server's is refused with 400, a state-changing request or WebSocket from another
origin with 403 and nothing changes, while requests without an Origin (the Python clients,
curl, the older systems' clients) and the server's own pages go on working. Through the ASGI
app (Starlette's routes and the fast path) and a real server's direct protocol."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from riverbed import Engine
from riverbed.config import Settings
from riverbed.server import create_app
from tests.helpers import Server

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}
EVIL = "http://evil.example"


@contextlib.asynccontextmanager
async def client(
    url_host: str = "127.0.0.1:8000", environ: dict[str, str] | None = None, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app on a fresh in-memory engine, sending ``Host: url_host`` (the default
    settings but for ``settings``; the suite's RIVERBED_ALLOWED_HOSTS is not read)."""
    loaded = Settings.load({"database": ":memory:", **settings}, environ=environ or {})
    with Engine(settings=loaded) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{url_host}") as c:
            c.engine = engine  # type: ignore[attr-defined]
            created = await c.post("/v1/models", json={"name": "m", "spec": SPEC})
            assert created.status_code == 201, created.text
            yield c


def counts(c: httpx.AsyncClient) -> tuple[int, int]:
    stats = c.engine.stats("m")  # type: ignore[attr-defined]
    return stats["n_predictions"], stats["n_learns"]


# -- Host ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/health", None),
        ("GET", "/v1/models/m", None),
        ("GET", "/dashboard/", None),
        ("POST", "/v1/models/m/predict", {"features": {"x": 1.0}}),  # the fast path
        ("POST", "/v1/models/m/learn", {"features": {"x": 1.0}, "ground_truth": True}),
        ("POST", "/api/predict", {"features": {"x": 1.0}, "model": "m"}),  # chantilly
    ],
)
async def test_a_foreign_host_is_refused_with_400_naming_the_setting(
    host: str, method: str, path: str, body: Any
) -> None:
    async with client() as c:
        before = counts(c)
        answer = await c.request(method, path, json=body, headers={"host": host})
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "host_not_allowed"
        assert "allowed_hosts" in error["message"] and "--allowed-hosts" in error["message"]
        assert error["detail"] == {"host": host, "setting": "allowed_hosts"}
        assert counts(c) == before


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.5:9", "[::1]:8000", "[::1]"]
)
async def test_loopback_names_are_answered(host: str) -> None:
    async with client() as c:
        answer = await c.post(
            "/v1/models/m/predict", json={"features": {"x": 1}}, headers={"host": host}
        )
        assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("allowed", "host", "status"),
    [
        ("models.example", "models.example:8000", 200),
        ("models.example", "other.example", 400),
        (".example.org", "a.b.example.org", 200),
        (".example.org", "example.org", 200),
        (".example.org", "badexample.org", 400),
        ("one.example, Two.Example", "two.example", 200),
        ("*", "anything.example", 200),
    ],
)
async def test_allowed_hosts_adds_names(allowed: str, host: str, status: int) -> None:
    async with client(allowed_hosts=allowed) as c:
        answer = await c.get("/v1/models/m", headers={"host": host})
        assert answer.status_code == status, answer.text


async def test_the_bound_address_is_answered() -> None:
    async with client("10.1.2.3:8000", host="10.1.2.3", auth="off") as c:
        assert (await c.get("/v1/models/m")).status_code == 200
        assert (await c.get("/v1/models/m", headers={"host": "10.9.9.9"})).status_code == 400


async def test_the_address_a_client_reached_is_answered_when_bound_to_every_address() -> None:
    """Bound to 0.0.0.0, the local address of the connection is the server's own."""
    async with client(host="0.0.0.0", auth="off") as c:
        transport = httpx.ASGITransport(app=c._transport.app, client=("10.0.0.9", 1))  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as other:
            # httpx's ASGI transport reports the URL's host as the server's address
            assert (await other.get("/v1/models/m")).status_code == 200
            foreign = await other.get("/v1/models/m", headers={"host": "evil.example"})
            assert foreign.status_code == 400


# -- Origin ------------------------------------------------------------------------------------

STATE_CHANGING = [
    ("POST", "/v1/models", {"name": "m2", "spec": SPEC}),
    ("POST", "/v1/models/m/predict", {"features": {"x": 1.0}}),
    ("POST", "/v1/models/m/learn", {"features": {"x": 1.0}, "ground_truth": True}),
    (
        "POST",
        "/v1/models/m/learn/many",
        {"items": [{"features": {"x": 1.0}, "ground_truth": True}]},
    ),
    ("POST", "/api/learn", {"features": {"x": 1.0}, "ground_truth": True, "model": "m"}),
    ("DELETE", "/v1/models/m", None),
    ("PUT", "/v1/cache/k", {"value": 1}),
    ("GET", "/cache/pop/k", None),  # lrnstak's pop is a GET that removes an item
]


@pytest.mark.parametrize(("method", "path", "body"), STATE_CHANGING)
@pytest.mark.parametrize(
    "headers",
    [
        {"origin": EVIL},
        {"origin": "null"},  # a sandboxed frame, a file:// page
        {"origin": "http://127.0.0.1:3000"},  # another local port is another origin
        {"origin": "http://localhost:8000"},  # another name for the same address, too
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "http://127.0.0.1:8000", "host": "localhost:8000"},
    ],
)
async def test_a_state_changing_request_from_another_origin_is_refused(
    method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    async with client() as c:
        c.engine.cache.push("k", 1)  # type: ignore[attr-defined]
        before = counts(c)
        content = None if body is None else orjson.dumps(body)
        headers = {"content-type": "text/plain", **headers}
        answer = await c.request(method, path, content=content, headers=headers)
        assert answer.status_code == 403, answer.text
        error = answer.json()["error"]
        assert error["code"] == "cross_origin_refused"
        assert error["detail"]["setting"] == "cors_origins"
        assert counts(c) == before
        assert (await c.get("/v1/models")).json()["models"][0]["name"] == "m"
        assert len((await c.get("/v1/models")).json()["models"]) == 1
        assert c.engine.cache.length("k") == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "headers",
    [
        {},  # the Python clients, curl, the older systems' clients
        {"origin": "http://127.0.0.1:8000"},  # the dashboard, on the server's own origin
        {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},
    ],
)
async def test_requests_without_a_foreign_origin_change_state(headers: dict[str, str]) -> None:
    async with client() as c:
        learned = await c.post(
            "/v1/models/m/learn",
            json={"features": {"x": 1.0}, "ground_truth": True},
            headers=headers,
        )
        assert learned.status_code == 200, learned.text
        assert counts(c)[1] == 1
        created = await c.post("/v1/models", json={"name": "m2", "spec": SPEC}, headers=headers)
        assert created.status_code == 201, created.text


async def test_reads_from_another_origin_are_answered() -> None:
    """A page cannot read a cross-origin answer (no CORS headers), and a read changes
    nothing: reads are not refused, so links and embeds keep working."""
    async with client() as c:
        answer = await c.get(
            "/v1/models/m", headers={"origin": EVIL, "sec-fetch-site": "cross-site"}
        )
        assert answer.status_code == 200


@pytest.mark.parametrize("listed", ["http://app.example:3000", "HTTP://App.Example:3000/"])
async def test_cors_origins_lists_pages_that_may_change_state(listed: str) -> None:
    async with client(cors_origins=listed) as c:
        allowed = await c.post(
            "/v1/models/m/learn",
            json={"features": {"x": 1.0}, "ground_truth": True},
            headers={"origin": "http://app.example:3000", "sec-fetch-site": "cross-site"},
        )
        assert allowed.status_code == 200, allowed.text
        refused = await c.post(
            "/v1/models/m/learn",
            json={"features": {"x": 1.0}, "ground_truth": True},
            headers={"origin": "http://app.example:4000"},
        )
        assert refused.status_code == 403
        assert counts(c)[1] == 1


# -- WebSocket -----------------------------------------------------------------------------------


async def _handshake(app: Any, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The first message the app sends on a WebSocket connection to /v1/ws, and then a learn
    sent over it if it was accepted."""
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await incoming.put({"type": "websocket.connect"})
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/v1/ws",
        "raw_path": b"/v1/ws",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "subprotocols": [],
    }
    task = asyncio.ensure_future(app(scope, incoming.get, outgoing.put))
    first = await asyncio.wait_for(outgoing.get(), 30)
    if first["type"] == "websocket.accept":
        learn = '{"id": 1, "op": "learn", "model": "m", "features": {"x": 1}, "ground_truth": true}'
        await incoming.put({"type": "websocket.receive", "text": learn})
        first["answer"] = await asyncio.wait_for(outgoing.get(), 30)
        await incoming.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(task, 30)
    return first


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ([(b"host", b"127.0.0.1:8000"), (b"origin", EVIL.encode())], 4403),
        ([(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:3000")], 4403),
        ([(b"host", b"evil.example:8000")], 4400),
    ],
)
async def test_a_websocket_from_another_origin_or_host_is_refused(
    headers: list[tuple[bytes, bytes]], code: int
) -> None:
    async with client() as c:
        first = await _handshake(c._transport.app, headers)  # type: ignore[attr-defined]
        assert first["type"] == "websocket.close" and first["code"] == code
        assert counts(c) == (0, 0)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"host", b"127.0.0.1:8000")],
        [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")],
    ],
)
async def test_a_websocket_without_a_foreign_origin_learns(
    headers: list[tuple[bytes, bytes]],
) -> None:
    async with client() as c:
        first = await _handshake(c._transport.app, headers)  # type: ignore[attr-defined]
        assert first["type"] == "websocket.accept", first
        assert counts(c)[1] == 1


# -- a real server: the direct protocol and the ASGI path over a socket -------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(str(tmp_path_factory.mktemp("guard") / "g.db")).start()
    try:
        assert (
            httpx.post(running.url + "/v1/models", json={"name": "m", "spec": SPEC}).status_code
            == 201
        )
        yield running
    finally:
        running.stop()


def _learns(server: Server) -> int:
    return int(httpx.get(server.url + "/v1/models/m/stats").json()["n_learns"])


@pytest.mark.parametrize("chunked", [False, True], ids=["direct", "asgi"])
def test_a_real_server_refuses_foreign_hosts_and_origins(server: Server, chunked: bool) -> None:
    """A body with a Content-Length takes the server's direct protocol; a chunked one the
    ASGI app's fast path."""
    body = b'{"features": {"x": 1}, "ground_truth": true}'

    def learn(**headers: str) -> httpx.Response:
        content: Any = iter([body]) if chunked else body
        return httpx.post(server.url + "/v1/models/m/learn", content=content, headers=headers)

    before = _learns(server)
    host = learn(host="evil.example")
    assert host.status_code == 400 and host.json()["error"]["code"] == "host_not_allowed"
    origin = learn(origin=EVIL, **{"content-type": "text/plain"})
    assert origin.status_code == 403 and origin.json()["error"]["code"] == "cross_origin_refused"
    assert _learns(server) == before
    own = learn(origin=server.url)
    assert own.status_code == 200, own.text
    assert _learns(server) == before + 1


def test_the_default_allows_no_test_host(tmp_path: Path) -> None:
    """The suite allows its test hosts (tests/conftest.py); the default allows none."""
    assert Settings.load(environ={}).allowed_hosts == ""
    assert Settings.load(environ={}).cors_origins == ""
