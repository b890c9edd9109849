"""The server's own HTTP protocol (riverbed.server.protocol), over real sockets to a real
``riverbed serve``: JSON operations answered straight from the parser give the answers and
errors of the ASGI path, one response per request and in order, pipelined or not."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.helpers import Server, free_port

pytestmark = pytest.mark.slow

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("protocol") / "riverbed.db"
    running = Server(str(path), None, "--rate-limit-address", "learning=100000/s").start()
    httpx.post(running.url + "/v1/models", json={"name": "m", "spec": SPEC}).raise_for_status()
    yield running
    running.stop()


def _chunked(body: bytes) -> Iterator[bytes]:
    yield body  # no Content-Length: the request goes the ASGI way


def _both(server: Server, path: str, body: bytes) -> tuple[httpx.Response, httpx.Response]:
    direct = httpx.post(server.url + path, content=body)
    asgi = httpx.post(server.url + path, content=_chunked(body))
    return direct, asgi


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{", 400, "malformed_json"),
        (b'{"features": {"x": 1}, "color": 1}', 400, "invalid_input"),
        (b'{"features": [1]}', 400, "invalid_input"),
        (b"", 400, "invalid_input"),
        (b"[" * 40 + b"]" * 40, 400, "limit_exceeded"),
    ],
)
def test_errors_match_the_asgi_path(server: Server, body: bytes, status: int, code: str) -> None:
    direct, asgi = _both(server, "/v1/models/m/predict", body)
    assert direct.status_code == asgi.status_code == status
    assert direct.json() == asgi.json()
    assert direct.json()["error"]["code"] == code
    assert direct.headers["content-type"] == asgi.headers["content-type"] == "application/json"
    assert int(direct.headers["content-length"]) == len(direct.content)
    assert {"date", "server"} <= set(direct.headers)  # uvicorn's default headers too


def test_unknown_model_and_taken_id_match_the_asgi_path(server: Server) -> None:
    direct, asgi = _both(server, "/v1/models/nope/learn", b'{"features": {}, "ground_truth": 1}')
    assert direct.status_code == asgi.status_code == 404
    assert direct.json() == asgi.json()
    first = httpx.post(server.url + "/v1/models/m/predict", json={"id": "t1", "features": {"x": 1}})
    assert first.status_code == 200 and first.json()["id"] == "t1"
    again = b'{"id": "t1", "features": {"x": 2}}'
    direct, asgi = _both(server, "/v1/models/m/predict", again)
    assert direct.status_code == asgi.status_code == 409  # refused at the store's commit
    assert direct.json() == asgi.json()


def test_predict_then_learn_by_id(server: Server) -> None:
    before = httpx.get(server.url + "/v1/models/m/stats").json()["n_learns"]
    predicted = httpx.post(server.url + "/v1/models/m/predict", json={"features": {"x": 1.5}})
    assert predicted.status_code == 200
    body = predicted.json()
    assert set(body) == {"id", "model", "prediction", "probabilities"}
    learned = httpx.post(
        server.url + "/v1/models/m/learn", json={"id": body["id"], "ground_truth": True}
    )
    assert learned.status_code == 200, learned.text
    assert httpx.get(server.url + "/v1/models/m/stats").json()["n_learns"] == before + 1


def test_a_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    limited = Server(str(tmp_path / "r.db"), None, "--rate-limit-address", "learning=2/h").start()
    try:
        httpx.post(limited.url + "/v1/models", json={"name": "m", "spec": SPEC})
        answers = [
            httpx.post(limited.url + "/v1/models/m/predict", json={"features": {"x": 1}})
            for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].json()["error"]["code"] == "rate_limited"
        assert int(answers[2].headers["retry-after"]) > 0
    finally:
        limited.stop()


def test_a_token_is_needed_when_auth_is_on(tmp_path: Path) -> None:
    guarded = Server(str(tmp_path / "a.db"), None, "--auth", "on").start()
    try:
        missing = httpx.post(guarded.url + "/v1/models/m/predict", json={"features": {}})
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = httpx.post(
            guarded.url + "/v1/models/m/predict",
            json={"features": {}},
            headers={"authorization": "Bearer nope"},
        )
        assert wrong.status_code == 401
    finally:
        guarded.stop()


# -- the connection: raw sockets --------------------------------------------------------------


def _request(path: str, body: Any = None, *, method: str = "POST", extra: str = "") -> bytes:
    data = b"" if body is None else orjson.dumps(body)
    head = f"{method} {path} HTTP/1.1\r\nhost: t\r\n{extra}"
    if body is not None:
        head += f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], Any]]:
    """``count`` responses (status, headers, JSON body) read off ``sock``."""
    buffer = b""
    out: list[tuple[int, dict[str, str], Any]] = []
    while len(out) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed after {len(out)} responses: {buffer!r}")
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        while len(buffer) < length:
            buffer += sock.recv(65536)
        body, buffer = buffer[:length], buffer[length:]
        out.append((int(lines[0].split()[1]), headers, orjson.loads(body)))
    assert buffer == b""  # nothing more than what was asked: one answer per request
    return out


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(
            _request("/v1/models/m/predict", {"id": "pipe-1", "features": {"x": 1}})
            + _request("/health", method="GET")  # the ASGI path, between two direct ones
            + _request("/v1/models/m/learn", {"id": "pipe-1", "ground_truth": False})
            + _request("/v1/models/m/predict", {"id": "pipe-1", "features": {"x": 1}})
            + _request("/v1/models/m/predict", {"id": "pipe-2", "features": {"x": 2}})
        )
        answers = _read_responses(sock, 5)
    assert [status for status, _, _ in answers] == [200, 200, 200, 409, 200]
    assert answers[0][2]["id"] == "pipe-1" and answers[1][2]["status"] == "ok"
    assert answers[3][2]["error"]["code"] == "prediction_exists"
    assert answers[4][2]["id"] == "pipe-2"


def test_a_body_that_arrives_in_pieces(server: Server) -> None:
    request = _request("/v1/models/m/predict", {"id": "slow-1", "features": {"x": 3}})
    head, body = request.split(b"\r\n\r\n", 1)
    with _connect(server) as sock:
        sock.sendall(head + b"\r\n\r\n")
        for i in range(0, len(body), 5):
            sock.sendall(body[i : i + 5])
        [(status, _, answer)] = _read_responses(sock, 1)
    assert status == 200 and answer["id"] == "slow-1"


def test_connection_close_and_http_1_0_close_after_the_answer(server: Server) -> None:
    for request in (
        _request("/v1/models/m/predict", {"features": {"x": 1}}, extra="connection: close\r\n"),
        _request("/v1/models/m/predict", {"features": {"x": 1}}).replace(
            b"HTTP/1.1", b"HTTP/1.0", 1
        ),
    ):
        with _connect(server) as sock:
            sock.sendall(request)
            [(status, headers, _)] = _read_responses(sock, 1)
            assert status == 200 and headers["connection"] == "close"
            assert sock.recv(1) == b""  # the server closed the connection


def test_a_client_gone_before_its_answer_harms_nothing(server: Server) -> None:
    for n in range(20):
        sock = _connect(server)
        sock.sendall(_request("/v1/models/m/predict", {"id": f"gone-{n}", "features": {"x": n}}))
        sock.close()
    answer = httpx.post(server.url + "/v1/models/m/predict", json={"features": {"x": 1}})
    assert answer.status_code == 200
    # a prediction made before its client left is kept, as any acknowledged-or-not write
    assert httpx.get(server.url + "/health").status_code == 200


def test_json_operations_take_the_direct_path_and_others_do_not(tmp_path: Path) -> None:
    """In-process, with the protocol class counting what it answered itself."""
    import threading

    import uvicorn

    from riverbed import Engine
    from riverbed.server import create_app
    from riverbed.server.protocol import RiverbedHttp, protocol_for

    answered: list[str] = []

    app = create_app(Engine(str(tmp_path / "d.db")))

    class Counting(protocol_for(app)):  # type: ignore[misc]
        def _answer(self, cycle: Any, direct: Any) -> None:
            answered.append(cycle.scope["path"])
            super()._answer(cycle, direct)

    assert issubclass(Counting, RiverbedHttp)
    port = free_port()
    config = uvicorn.Config(app, port=port, http=Counting, log_level="warning", lifespan="on")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(url + "/health")
                break
            except httpx.HTTPError:
                threading.Event().wait(0.05)
        assert httpx.post(url + "/v1/models", json={"name": "m", "spec": SPEC}).status_code == 201
        predicted = httpx.post(url + "/v1/models/m/predict", json={"features": {"x": 1}})
        many = httpx.post(url + "/v1/models/m/learn/many", json={"items": []})
        streamed = httpx.post(url + "/v1/models/m/predict", content=_chunked(b'{"features": {}}'))
        assert predicted.status_code == many.status_code == streamed.status_code == 200
        assert answered == ["/v1/models/m/predict", "/v1/models/m/learn/many"]
    finally:
        running.should_exit = True
        thread.join(timeout=30)
        app.state.engine.close()


def test_a_body_over_the_read_buffer_is_read_whole(server: Server) -> None:
    """uvicorn stops reading a socket past 64 KiB of body until the app asks for more; a
    direct request asks for nothing, so the protocol keeps reading itself."""
    items = [
        {"features": {f"f{j}": float(i + j) for j in range(20)}, "ground_truth": i % 2 == 0}
        for i in range(800)
    ]
    request = _request("/v1/models/m/learn/many", {"items": items})
    assert len(request) > 2 * 65536
    before = httpx.get(server.url + "/v1/models/m/stats").json()["n_learns"]
    with _connect(server) as sock:
        sock.sendall(request)
        [(status, _, answer)] = _read_responses(sock, 1)
    assert status == 200 and len(answer["items"]) == 800
    assert httpx.get(server.url + "/v1/models/m/stats").json()["n_learns"] == before + 800


_HANDSHAKE = "upgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-version: 13\r\n"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        # bytes uvicorn's parser refuses: were a text/plain "Invalid HTTP request received."
        (
            b"GET /health HTTP/1.1\r\nhost: t\r\ncontent-length: \xc2\xb2\r\n\r\n",
            400,
            "invalid_http",
        ),
        (b"GET /he\xffalth HTTP/1.1\r\nhost: t\r\n\r\n", 400, "invalid_http"),
        (b"\x16\x03\x01 not http at all\r\n\r\n", 400, "invalid_http"),
        # handshakes the WebSocket library refuses: were text/plain
        (
            f"GET /v1/ws HTTP/1.1\r\nhost: t\r\n{_HANDSHAKE}sec-websocket-key: \xff\r\n\r\n".encode(
                "latin-1"
            ),
            400,
            "invalid_http",
        ),
        (
            f"GET /v1/ws HTTP/1.1\r\nhost: t\r\n{_HANDSHAKE}\r\n".encode(),
            400,
            "invalid_http",
        ),
        # a handshake the guard refuses: was a 403 with no body whatever the reason
        (
            f"GET /v1/ws HTTP/1.1\r\nhost: evil.example\r\n{_HANDSHAKE}"
            "sec-websocket-key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n\r\n".encode(),
            400,
            "host_not_allowed",
        ),
        (
            f"GET /v1/ws HTTP/1.1\r\nhost: t\r\norigin: http://evil.example\r\n{_HANDSHAKE}"
            "sec-websocket-key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n\r\n".encode(),
            403,
            "cross_origin_refused",
        ),
    ],
    ids=[
        "content-length superscript two",
        "a byte past ASCII",
        "TLS",
        "bad key",
        "no key",
        "host",
        "origin",
    ],
)
def test_what_the_server_refuses_before_any_route_is_a_json_error(
    server: Server, raw: bytes, status: int, code: str
) -> None:
    """Found by tests/test_fuzz.py: the refusals uvicorn and its WebSocket library answer
    themselves were plain text, and a WebSocket handshake the guard refused was a bare 403;
    each is now the project's JSON error with the status that says why."""
    with _connect(server) as sock:
        sock.sendall(raw)
        ((got, headers, body),) = _read_responses(sock, 1)
    assert (got, body["error"]["code"]) == (status, code), body
    assert headers["content-type"] == "application/json"
    assert body["error"]["message"] and "detail" in body["error"]
