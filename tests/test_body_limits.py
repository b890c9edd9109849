"""Every route has a body limit (issue 25 item 5): its Endpoint declares it
(riverbed.server.routing.BodyLimit: max_body_bytes by default, max_artifact_bytes for a model
upload, max_upload_bytes for a job's data) and the guard enforces it, so a route added later
has one by being declared. A Content-Length over it is refused with 413 before a byte is
read; a chunked body is cut once it goes past it; a WebSocket message over it is answered
payload_too_large on a connection that stays open. The routes are walked from
app.state.endpoints, with distinct limits so that the setting named is the route's own."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from riverbed import Engine
from riverbed.config import Settings
from riverbed.server import create_app
from riverbed.server.routing import Endpoint, is_websocket
from tests import wsclient
from tests.helpers import Server

LIMITS = {"max_body_bytes": 1000, "max_artifact_bytes": 3000, "max_upload_bytes": 7000}
# What each setting allows a route: an encoded artifact is base64 (4/3) plus the other fields.
SPEC = {"class": "river.linear_model.LogisticRegression"}
STREAMED = ["POST /v1/models/{name}/learn/stream"]  # read line by line, no total
CHUNK = 100


@contextlib.contextmanager
def app_of(**settings: Any) -> Iterator[Any]:
    loaded = Settings.load({"database": ":memory:", **LIMITS, **settings}, environ={})
    with Engine(settings=loaded) as engine:
        engine.create_model("m", spec=SPEC)
        yield create_app(engine)


def limit_of(endpoint: Endpoint) -> tuple[int, str]:
    declared = endpoint.body_limit
    size = declared.of(Settings(**LIMITS))
    assert size is not None
    return size, declared.setting


def path_of(template: str) -> str:
    """A path the route matches: each parameter is the model's name (or 1 where a number)."""
    return re.sub(r"\{([^}:]+)(:[^}]+)?\}", lambda m: "1" if "version" in m[1] else "m", template)


async def call(
    app: Any,
    method: str,
    path: str,
    *,
    length: int | None,
    chunks: list[bytes],
) -> tuple[int, dict[str, str], Any, int]:
    """Drive one HTTP request through the ASGI app: the status, headers and JSON body of the
    answer, and how many body bytes the app pulled. Without ``length``, no Content-Length
    (a chunked body)."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/octet-stream")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    pulled = 0
    queue = list(chunks)
    answer: dict[str, Any] = {"body": b""}
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if not queue:
            await done.wait()
            return {"type": "http.disconnect"}
        chunk = queue.pop(0)
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")
            if not message.get("more_body"):
                done.set()

    task = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.wait_for(done.wait(), 60)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    try:
        body = orjson.loads(answer["body"])
    except orjson.JSONDecodeError:
        body = None
    return answer["status"], answer["headers"], body, pulled


def error_of(body: Any) -> dict[str, Any]:
    """riverbed's error, or the Open Inference Protocol's {"error": message, "code", ...}."""
    assert isinstance(body, dict), body
    error = body["error"]
    if isinstance(error, dict):
        return error
    return {"code": body["code"], "message": error, "detail": body["detail"]}


def routes(app: Any) -> list[Endpoint]:
    return [e for e in app.state.endpoints if not is_websocket(e)]


STREAMS = ("text/event-stream", "application/x-ndjson")


def answered(app: Any) -> list[Endpoint]:
    """The routes whose answer ends (an event stream answers until the client leaves, and
    stops listening when it does: what the guard tells it past the limit)."""
    return [e for e in routes(app) if e.media_type not in STREAMS]


def name(e: Endpoint) -> str:
    return f"{e.method} {e.path}"


OWNERS = ["lrnstak", "beaver"]  # who answers the routes they share: each is walked once


def test_the_declared_limits() -> None:
    """The upload routes take their setting's limit, the NDJSON stream none in total, every
    other route max_body_bytes."""
    with app_of() as app:
        declared = {name(e): e.body_limit for e in app.state.endpoints}
    assert sorted(n for n, b in declared.items() if b.streamed) == STREAMED
    artifacts = sorted(n for n, b in declared.items() if b.setting == "max_artifact_bytes")
    assert artifacts == [
        "POST /api/model",
        "POST /api/model/{flavor}/",
        "POST /api/model/{flavor}/{name}/",
        "POST /api/model/{name}",
        "POST /api/v1/models/",
        "POST /models",
        "POST /models/",
        "POST /v1/models/{name}/versions",
    ]
    assert [n for n, b in declared.items() if b.setting == "max_upload_bytes"] == ["POST /v1/jobs"]
    assert sorted(n for n, b in declared.items() if b.encoded) == [
        "POST /models",  # Beaver's form with base64, with and without the slash
        "POST /models/",
        "POST /v1/models/{name}/versions",  # JSON with base64
    ]
    assert Settings(**LIMITS).max_body_bytes == 1000
    assert limit_of(Endpoint("GET", "/", None, "", "t")) == (1000, "max_body_bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("owner", OWNERS)
async def test_a_content_length_over_the_limit_is_refused_before_reading(owner: str) -> None:
    with app_of(compat_shared=owner) as app:
        for endpoint in routes(app):
            if endpoint.body_limit.streamed:
                continue
            limit, setting = limit_of(endpoint)
            status, headers, body, pulled = await call(
                app,
                endpoint.method,
                path_of(endpoint.path),
                length=limit + 1,
                chunks=[b"x" * (limit + 1)],
            )
            where = name(endpoint)
            assert status == 413, (where, status, body)
            error = error_of(body)
            assert error["code"] == "payload_too_large", where
            assert error["detail"] == {"setting": setting, "max": limit, "given": limit + 1}
            assert setting in error["message"] and str(limit) in error["message"]
            assert pulled == 0, f"{where} read the body before refusing it"
            assert headers.get("connection") == "close", where


@pytest.mark.parametrize("owner", OWNERS)
async def test_a_chunked_body_is_cut_once_it_goes_past_the_limit(owner: str) -> None:
    """Without a Content-Length, no route is handed more than its limit: the chunk that goes
    past it raises 413 in the route's receive, whatever the route does with the body."""
    refused = set()
    with app_of(compat_shared=owner) as app:
        for endpoint in answered(app):
            if endpoint.body_limit.streamed:
                continue
            limit, setting = limit_of(endpoint)
            chunks = [b"x" * CHUNK] * (limit // CHUNK + 20)
            status, headers, body, pulled = await call(
                app, endpoint.method, path_of(endpoint.path), length=None, chunks=chunks
            )
            where = name(endpoint)
            assert pulled <= limit + CHUNK, f"{where} read {pulled} bytes past {limit}"
            assert status < 500, (where, status, body)
            if status == 413:
                error = error_of(body)
                assert error["code"] == "payload_too_large", where
                assert error["detail"]["setting"] == setting, where
                assert headers.get("connection") == "close", where
                refused.add(name(endpoint))
    # every route that reads its body before anything else refused it (not only a few)
    for expected in [
        "POST /v1/models/{name}/predict",  # the fast path
        "POST /v1/models/{name}/versions",
        "PUT /v1/cache/{key}",
        "POST /models/",  # Beaver's form upload
        "POST /v2/models/{name}/infer",
    ]:
        assert expected in refused or expected not in {name(e) for e in routes(app)}, expected
    assert len(refused) > 40, sorted(refused)


@pytest.mark.parametrize("owner", OWNERS)
async def test_a_body_at_the_limit_gets_past_the_guard(owner: str) -> None:
    """The limit enforced is the declared one, not max_body_bytes everywhere: a body of
    exactly the limit is never refused as too large."""
    with app_of(compat_shared=owner) as app:
        for endpoint in answered(app):
            if endpoint.body_limit.streamed:
                continue
            limit, _ = limit_of(endpoint)
            for length in (limit, None):
                status, _, body, _ = await call(
                    app,
                    endpoint.method,
                    path_of(endpoint.path),
                    length=length,
                    chunks=[b" " * CHUNK] * (limit // CHUNK),
                )
                assert status < 500, (name(endpoint), status, body)
                if status == 413:  # another limit, never the body's
                    assert "setting" not in (error_of(body)["detail"] or {}), name(endpoint)


async def test_a_line_of_the_ndjson_stream_is_held_to_max_body_bytes() -> None:
    with app_of() as app:
        line = orjson.dumps({"features": {"x": "y" * 1200}, "ground_truth": True})
        status, _, _, _ = await call(
            app, "POST", "/v1/models/m/learn/stream", length=None, chunks=[line + b"\n"]
        )
        assert status == 200  # the stream's own answer: the error is in its last report
        assert app.state.engine.stats("m")["n_learns"] == 0


def test_the_openapi_document_names_each_route_s_limit() -> None:
    with app_of() as app:
        document = app.state.openapi
        for endpoint in routes(app):
            operation = document["paths"][re.sub(r":[^}]+", "", endpoint.path)][
                endpoint.method.lower()
            ]
            declared = endpoint.body_limit
            assert operation["x-riverbed-body-limit"] == (
                "streamed" if declared.streamed else declared.setting
            )
            assert "413" in operation["responses"]


async def test_a_websocket_message_over_the_limit_is_answered_and_the_socket_stays_open() -> None:
    with app_of() as app:
        async with wsclient.connect(app, "/v1/ws", host=b"127.0.0.1:8000") as ws:
            big = {"id": 1, "op": "predict", "model": "m", "features": {"x": "y" * 1000}}
            await ws.send(big)
            answer = await ws.receive()
            assert answer["id"] is None and answer["ok"] is False
            assert answer["error"]["code"] == "payload_too_large"
            assert answer["error"]["detail"]["setting"] == "max_body_bytes"
            assert answer["error"]["detail"]["max"] == 1000
            await ws.send({"id": 2, "op": "predict", "model": "m", "features": {"x": 1.0}})
            assert (await ws.receive())["ok"] is True
        stats = app.state.engine.stats("m")
        assert stats["n_predictions"] == 1


# -- a real riverbed serve ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path: Path = tmp_path_factory.mktemp("limits") / "server.db"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in LIMITS.items()]
    srv = Server(str(path), None, *flags, "--compat-shared", "beaver").start()
    try:
        created = httpx.post(srv.url + "/v1/models", json={"name": "m", "spec": SPEC}, timeout=30)
        assert created.status_code == 201, created.text
        yield srv
    finally:
        srv.stop()


def _exchange(port: int, head: bytes, body_parts: list[bytes] | None = None) -> bytes:
    """Send ``head`` (and ``body_parts``, stopping at the first the server no longer takes)
    over a socket; the answer (its head and the body its Content-Length says)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        for part in body_parts or []:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
                top, sep, body = data.partition(b"\r\n\r\n")
                found = re.search(rb"content-length: (\d+)", top.lower())
                if sep and found and len(body) >= int(found[1]):
                    break
        return data


def _answer(raw: bytes) -> tuple[int, str, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), "\r\n".join(lines[1:]).lower(), orjson.loads(body)


@pytest.mark.parametrize(
    ("path", "length", "setting"),
    [
        ("/v1/models/m/predict", 5000, "max_body_bytes"),  # answered from the parser's path
        ("/api/model/x", 9000, "max_artifact_bytes"),  # chantilly's pickle upload
        ("/v1/jobs", 9000, "max_upload_bytes"),
    ],
)
def test_a_real_server_refuses_a_content_length_over_the_limit_unread(
    server: Server, path: str, length: int, setting: str
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
    status, headers, body = _answer(_exchange(server.port, head))  # no body sent at all
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["detail"]["setting"] == setting
    assert "connection: close" in headers


def test_a_real_server_cuts_a_chunked_body_past_the_limit(server: Server) -> None:
    head = (
        f"POST /v1/jobs?config=%7B%7D HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (1000, b"1," * 500)
    status, headers, body = _answer(_exchange(server.port, head, [chunk] * 50 + [b"0\r\n\r\n"]))
    assert status == 413
    assert body["error"]["detail"] == {"setting": "max_upload_bytes", "max": 7000}
    assert "connection: close" in headers


def test_a_real_server_takes_an_upload_over_max_body_bytes_on_an_upload_route(
    server: Server,
) -> None:
    """2,000 bytes of not-a-pickle to chantilly's upload: past max_body_bytes, within
    max_artifact_bytes, so the route reads it and refuses it for what it is."""
    head = (
        f"POST /api/model/x HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 2000\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    status, _, body = _answer(_exchange(server.port, head, [b"x" * 2000]))
    assert status == 400, body
    assert body["error"]["code"] != "payload_too_large"


def test_a_real_server_answers_a_long_websocket_message_and_stays_open(server: Server) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/ws"
    with ws_connect(url, open_timeout=30) as ws:
        ws.send(orjson.dumps({"id": 1, "op": "metrics", "model": "m", "x": "y" * 1500}).decode())
        answer = orjson.loads(ws.recv(timeout=30))
        assert answer["error"]["code"] == "payload_too_large"
        assert answer["error"]["detail"]["setting"] == "max_body_bytes"
        ws.send(orjson.dumps({"id": 2, "op": "metrics", "model": "m"}).decode())
        assert orjson.loads(ws.recv(timeout=30))["ok"] is True
        # past twice the limit uvicorn closes the connection (1009) without reading it all
        ws.send("y" * 2100)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
