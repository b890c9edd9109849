"""The older systems' predict and learn routes on the fast path (riverbed.server.fast and,
under ``riverbed serve``, riverbed.server.protocol) answer exactly as through Starlette's
routing: the same statuses, the same bodies (the older systems' ``{"message": ...}`` beside
riverbed's ``{"error": ...}``), the same headers, and the same guard (Host and Origin checks,
tokens and scopes, rate limits).

Each comparison sends one script of requests to two twins set up alike and compares the
answers one by one: in-process, the app with its fast path against the same app with the
fast path emptied (every request goes through Starlette); over real sockets, one ``riverbed
serve`` answered from the parser's callbacks (a body with a ``Content-Length``) against
another one answered through ASGI (the same requests with chunked bodies)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import dill
import httpx
import orjson
import pytest
from river import linear_model, preprocessing

from riverbed import Engine
from riverbed.server import create_app
from riverbed.server.fast import FastRoutes
from tests.helpers import Server

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}
LIMIT = 4096  # max_body_bytes of every twin, so that a body past it is cheap to send
SETTINGS = {"max_body_bytes": LIMIT}
# Ids and times the server makes: equal in kind, not in value, between twins.
MADE = {"identifier", "loop_id", "created_at"}
GIVEN = {"d1", "b1"}  # ids the script gives itself, compared as they are

Answer = tuple[int, dict[str, str], Any]
Send = Callable[[str, str, bytes, dict[str, str]], Awaitable[Answer]]


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _model_bytes() -> bytes:
    return dill.dumps(preprocessing.StandardScaler() | linear_model.LogisticRegression())


def _setup() -> list[tuple[str, str, bytes, dict[str, str]]]:
    """chantilly's flavor and default model (an upload), a native model for the others."""
    form = {"name": "beaver-m", "model_bytes": base64.b64encode(_model_bytes()).decode()}
    return [
        ("POST", "/api/init", _json({"flavor": "binary"}), {}),
        ("POST", "/api/model/chant", _model_bytes(), {"content-type": "application/octet-stream"}),
        ("POST", "/v1/models", _json({"name": "m", "spec": SPEC}), {}),
        (
            "POST",
            "/models",
            httpx.QueryParams(form).__str__().encode(),
            {"content-type": "application/x-www-form-urlencoded"},
        ),
    ]


# (path, body) of every moved route, answers and errors, in an order where each depends on
# the ones before it as a client's would (an id predicted, then learned, then refused).
SCRIPT: list[tuple[str, Any]] = [
    # chantilly: POST /api/predict, POST /api/learn
    ("/api/predict", {"features": {"x": 1.0}}),  # the default model, 200
    ("/api/predict", {"id": 7, "features": {"x": 2.0}}),  # kept under the id, 201
    ("/api/learn", {"id": 7, "ground_truth": True}),  # learned by the stored id, 201
    ("/api/learn", {"id": 7, "ground_truth": True}),  # the id was used up: 400
    ("/api/learn", {"model": "m", "features": {"x": 1.0}, "ground_truth": False}),
    ("/api/predict", {"features": [1]}),  # {"features": ["wrong type"]}
    ("/api/predict", {"features": {"x": 1}, "color": 1}),  # {"color": ["unknown field"]}
    ("/api/predict", {"features": {"x": 1}, "model": "nope"}),  # 404
    ("/api/predict", b"{"),  # malformed JSON
    ("/api/predict", b""),  # no body
    ("/api/predict", b"[" * 40 + b"]" * 40),  # nested too deep
    ("/api/predict", b" " * (LIMIT + 1)),  # 413
    ("/api/learn", {"features": {"x": 1}}),  # {"ground_truth": ["required field"]}
    ("/api/learn", {"ground_truth": 1}),  # features needed without an id
    ("/api/learn", {"model": "m", "features": {"x": 1}, "ground_truth": "maybe"}),
    # django-river-ml: POST /api/predict/, /api/learn/, /api/label/
    ("/api/predict/", {"model": "m", "features": {"x": 1.0}}),  # 201, an identifier made
    ("/api/predict/", {"model": "m", "features": {"x": 1.0}, "identifier": "d1"}),
    ("/api/predict/", {"model": "m", "features": {"x": 2.0}, "identifier": "d1"}),  # 409
    ("/api/label/", {"model": "m", "identifier": "d1", "label": True}),  # 200
    ("/api/label/", {"model": "m", "identifier": "d1", "label": True}),  # labelled already
    ("/api/label/", {"model": "m", "identifier": "nope", "label": True}),  # 404
    ("/api/label/", {"model": "m", "identifier": "d1"}),  # label is required
    ("/api/learn/", {"model": "m", "features": {"x": 3.0}, "ground_truth": False}),  # 201
    ("/api/learn/", {"model": "m"}),  # features required
    ("/api/learn/", {"model": 3, "features": {"x": 1}}),  # model must be a string
    ("/api/predict/", [1]),  # not an object
    ("/api/predict/", {"model": "nope", "features": {"x": 1}}),  # 404
    ("/api/learn/", b" " * (LIMIT + 1)),  # 413
    # lrnstak: POST /predict/model/{name}
    ("/predict/model/m", {"data": [{"x": 1.0}, {"x": 2.0}]}),
    ("/predict/model/m", {"data": [{"x": 1.0}], "version": "latest"}),
    ("/predict/model/m", {"data": []}),
    ("/predict/model/m", {"data": [{"x": 1.0}], "version": "v9"}),  # 404
    ("/predict/model/nope", {"data": [{"x": 1.0}]}),
    ("/predict/model/m", {"data": [{"x": 1.0}], "extra": 1}),
    ("/predict/model/m", b"{"),
    # Beaver: POST /predict/{name}, /label/{loop_id}, with and without a trailing slash
    ("/predict/beaver-m", {"event": {"x": 1.0}, "loop_id": "b1"}),
    ("/predict/beaver-m/", {"event": {"x": 2.0}}),
    ("/predict/beaver-m", {"event": {"x": 2.0}, "loop_id": "b1"}),  # 409
    ("/label/b1", {"label": True}),
    ("/label/b1/", {"label": True}),  # labelled already
    ("/label/nope/", {"label": True}),  # 404
    ("/label/b1", {"labels": True}),  # unknown field
    ("/predict/beaver-m", {"event": 1}),
    ("/predict/nope/", {"event": {"x": 1.0}}),
]
# What the script leaves behind, read back and compared too (nothing refused changed it).
READ_BACK = ["/v1/models/chant", "/v1/models/m", "/v1/models/beaver-m", "/api/metrics"]


def _normal(value: Any) -> Any:
    """``value`` with the ids and times the server made replaced by their kind."""
    if isinstance(value, dict):
        return {
            k: "<made>"
            if k in MADE and isinstance(v, str) and v not in GIVEN
            else "<time>"
            if k in ("created_at", "updated_at") and isinstance(v, float)
            else _normal(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _read(response: httpx.Response) -> Answer:
    kept = ("content-type", "retry-after", "www-authenticate")
    headers = {k: response.headers[k] for k in kept if k in response.headers}
    assert int(response.headers["content-length"]) == len(response.content)
    return response.status_code, headers, _normal(response.json())


async def _run(send: Send) -> list[Answer]:
    answers = [await send(method, path, body, headers) for method, path, body, headers in _setup()]
    for path, body in SCRIPT:
        raw = body if isinstance(body, bytes) else _json(body)
        answers.append(await send("POST", path, raw, {"content-type": "application/json"}))
    for path in READ_BACK:
        status, headers, value = await send("GET", path, b"", {})
        if isinstance(value, dict):
            value.pop("updated_at", None)
        answers.append((status, headers, value))
    return answers


def _compare(fast: list[Answer], slow: list[Answer], *, exact_413: bool = True) -> None:
    requests = [f"{m} {p}" for m, p, _, _ in _setup()] + [p for p, _ in SCRIPT] + READ_BACK
    assert len(fast) == len(slow) == len(requests)
    for request, a, b in zip(requests, fast, slow, strict=True):
        if not exact_413 and a[0] == 413:  # the message says how the size was found
            assert b[0] == 413 and a[2]["error"]["code"] == b[2]["error"]["code"], request
            continue
        assert a == b, request


def _expected_statuses(answers: list[Answer]) -> list[int]:
    return [status for status, _, _ in answers[len(_setup()) :][: len(SCRIPT)]]


# The statuses the script is written for: the comparison must cover answers and errors.
STATUSES = [
    *(200, 201, 201, 400, 201, 400, 400, 404, 400, 400, 400, 413, 400, 400, 400),
    *(201, 201, 409, 200, 409, 404, 400, 201, 400, 400, 400, 404, 413),
    *(200, 200, 400, 404, 404, 400, 400),
    *(200, 200, 409, 200, 409, 404, 400, 400, 404),
]


# -- in-process: the fast path against Starlette's routing -------------------------------------


@pytest.fixture
async def twins(tmp_path: Path) -> AsyncIterator[tuple[Send, Send, httpx.AsyncClient]]:
    """Two apps over two engines set up alike: one with the fast path, one without."""
    clients: list[httpx.AsyncClient] = []
    with (
        Engine(str(tmp_path / "fast.db"), **SETTINGS) as one,
        Engine(str(tmp_path / "slow.db"), **SETTINGS) as two,
    ):
        fast_app, slow_app = create_app(one), create_app(two)
        slow_app.fast = FastRoutes([])
        assert fast_app.fast.paths and not slow_app.fast.paths
        for app in (fast_app, slow_app):
            transport = httpx.ASGITransport(app=app)
            clients.append(httpx.AsyncClient(transport=transport, base_url="http://testserver"))

        def sender(client: httpx.AsyncClient) -> Send:
            async def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
                return _read(await client.request(method, path, content=body, headers=headers))

            return send

        try:
            yield sender(clients[0]), sender(clients[1]), clients[0]
        finally:
            for client in clients:
                await client.aclose()


async def test_every_moved_route_answers_as_through_starlette(
    twins: tuple[Send, Send, httpx.AsyncClient],
) -> None:
    fast, slow, _ = twins
    answers = await _run(fast)
    assert _expected_statuses(answers) == STATUSES
    _compare(answers, await _run(slow))
    script = answers[len(_setup()) :]
    # the older systems' error shape, beside riverbed's, on the fast path as before
    assert script[5][2]["message"] == {"features": ["wrong type"]}
    assert script[5][2]["error"]["code"] == "invalid_input"
    assert script[3][2]["message"].startswith("No features are stored for id 7")
    assert script[1][2]["model"] == "chant"  # the default model


def _guarded(tmp_path: Path, name: str) -> tuple[Engine, dict[str, str], dict[str, str]]:
    """An engine with auth on, a model and tokens of each scope (secrets, and each token's
    id -> a name, as the answers mention the ids)."""
    engine = Engine(str(tmp_path / f"{name}.db"), auth="on", **RATE)
    engine.create_model("m", spec=SPEC)
    secrets, names = {}, {}
    for scope in ("read", "predict", "learn"):
        made = engine.tokens.create_token([scope])
        secrets[scope], names[made["id"]] = made["token"], f"<{scope} token>"
    return engine, secrets, names


# (path, body, the scope that may call it)
GUARDED = [
    ("/api/predict", {"model": "m", "features": {"x": 1.0}}, "predict"),
    ("/api/learn", {"model": "m", "features": {"x": 1.0}, "ground_truth": True}, "learn"),
    ("/api/predict/", {"model": "m", "features": {"x": 1.0}}, "predict"),
    ("/api/learn/", {"model": "m", "features": {"x": 1.0}, "ground_truth": True}, "learn"),
    ("/api/label/", {"model": "m", "identifier": "nope", "label": True}, "learn"),
    ("/predict/model/m", {"data": [{"x": 1.0}]}, "predict"),
    ("/predict/m", {"event": {"x": 1.0}}, "predict"),
    ("/predict/m/", {"event": {"x": 1.0}}, "predict"),
    ("/label/nope", {"label": True}, "learn"),
    ("/label/nope/", {"label": True}, "learn"),
]
# Each group's bucket holds one request of a token an hour; refusals before it take none.
RATE = {"rate_limit_token": "chantilly=1/h,django-river-ml=1/h,lrnstak=1/h,beaver=1/h"}
REFUSED = [401, 403, 401, 400, 403, 403]
# The calls with the right token: the route's answer, or 429 for a token's second call of
# a group (django-river-ml's label after its learn, Beaver's routes with a slash).
ADMITTED = [200, 201, 201, 201, 429, 200, 200, 429, 404, 429]


def _guard_script(tokens: dict[str, str]) -> list[tuple[str, bytes, dict[str, str]]]:
    """For each moved route: no token, a token without the scope, an unknown token, a
    foreign Host, a foreign Origin, a cross-site fetch, then the right token."""
    out = []
    json_type = {"content-type": "application/json"}
    for path, body, scope in GUARDED:
        raw = _json(body)
        right = {**json_type, "authorization": f"Bearer {tokens[scope]}"}
        out += [
            (path, raw, json_type),
            (path, raw, {**json_type, "authorization": f"Bearer {tokens['read']}"}),
            (path, raw, {**json_type, "authorization": "Bearer not-a-token"}),
            (path, raw, {**right, "host": "evil.example"}),
            (path, raw, {**right, "origin": "http://evil.example"}),
            (path, raw, {**right, "sec-fetch-site": "cross-site"}),
            (path, raw, right),
        ]
    return out


async def _guard_run(send: Send, tokens: dict[str, str], names: dict[str, str]) -> list[Answer]:
    answers = []
    for path, raw, headers in _guard_script(tokens):
        status, kept, value = await send("POST", path, raw, headers)
        text = orjson.dumps(value).decode()
        for token_id, name in names.items():
            text = text.replace(token_id, name)
        answers.append((status, kept, orjson.loads(text)))
    return answers


def _check_guard(answers: list[Answer]) -> None:
    per = len(REFUSED) + 1
    assert len(answers) == per * len(GUARDED)
    for i, (path, _, _) in enumerate(GUARDED):
        assert [status for status, _, _ in answers[per * i : per * (i + 1)]] == [
            *REFUSED,
            ADMITTED[i],
        ], path
        challenge = answers[per * i][1]["www-authenticate"]
        if path.startswith("/api/") and path.endswith("/"):  # django-river-ml's challenge
            assert challenge.startswith('realm="http://') and "/api/auth/token/" in challenge
        else:
            assert challenge.startswith("Bearer")
        if ADMITTED[i] == 429:
            assert int(answers[per * (i + 1) - 1][1]["retry-after"]) > 0


async def test_the_guard_refuses_alike_on_the_fast_path(tmp_path: Path) -> None:
    runs: list[list[Answer]] = []
    for name in ("fast", "slow"):
        engine, tokens, names = _guarded(tmp_path, name)
        try:
            app = create_app(engine)
            if name == "slow":
                app.fast = FastRoutes([])
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:

                async def send(
                    method: str, path: str, body: bytes, headers: dict[str, str]
                ) -> Answer:
                    response = await client.request(method, path, content=body, headers=headers)
                    return _read(response)

                runs.append(await _guard_run(send, tokens, names))
        finally:
            engine.close()
    _check_guard(runs[0])
    assert runs[0] == runs[1]


# -- real servers: answered from the parser against answered through ASGI ---------------------


def _chunks(body: bytes) -> AsyncIterator[bytes]:
    async def chunks() -> AsyncIterator[bytes]:
        yield body  # no Content-Length: the request goes the ASGI way

    return chunks()


def _server_sender(server: Server, client: httpx.AsyncClient, *, direct: bool) -> Send:
    async def send(method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        content: Any = body if direct or not body else _chunks(body)
        response = await client.request(method, server.url + path, content=content, headers=headers)
        status, headers, value = _read(response)
        port = f":{server.port}"  # in django-river-ml's challenge: the twins' ports differ
        return status, {k: v.replace(port, ":<port>") for k, v in headers.items()}, value

    return send


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    flags = ("--max-body-bytes", str(LIMIT))
    one = Server(str(tmp_path / "direct.db"), None, *flags).start()
    try:
        two = Server(str(tmp_path / "asgi.db"), None, *flags).start()
        try:
            yield one, two
        finally:
            two.stop()
    finally:
        one.stop()


@pytest.mark.slow
async def test_riverbed_serve_answers_the_moved_routes_as_through_asgi(
    servers: tuple[Server, Server],
) -> None:
    one, two = servers
    async with httpx.AsyncClient(timeout=30) as client:
        direct = await _run(_server_sender(one, client, direct=True))
        asgi = await _run(_server_sender(two, client, direct=False))
    assert _expected_statuses(direct) == STATUSES
    _compare(direct, asgi, exact_413=False)


@pytest.mark.slow
async def test_riverbed_serve_guards_the_moved_routes_alike(tmp_path: Path) -> None:
    runs: list[list[Answer]] = []
    for name, direct in (("direct", True), ("asgi", False)):
        engine, tokens, names = _guarded(tmp_path, name)
        engine.close()
        server = Server(
            str(tmp_path / f"{name}.db"),
            None,
            "--auth",
            "on",
            "--rate-limit-token",
            RATE["rate_limit_token"],
        ).start()
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                send = _server_sender(server, client, direct=direct)
                runs.append(await _guard_run(send, tokens, names))
        finally:
            server.stop()
    _check_guard(runs[0])
    assert runs[0] == runs[1]


def test_riverbed_serve_answers_every_moved_route_from_the_parser(tmp_path: Path) -> None:
    """Every moved route is a direct operation of the server's protocol: a plain function on
    a route that is not audited (riverbed.server.protocol answers it without ASGI)."""
    with Engine(str(tmp_path / "d.db")) as engine:
        app = create_app(engine)
        for path in sorted({p for p, _ in SCRIPT} | {p for p, _, _ in GUARDED}):
            found = app.fast.lookup("POST", path)
            assert found is not None and found[0].direct, path
