"""Generated requests find no 500, no crash and no error outside the JSON error shape.

1. A schemathesis run over the OpenAPI document: every operation (but the endless event
   streams), with an admin token (so requests reach the handlers) and without one (so the
   guard is fuzzed too), on an app bound as if public.
2. Every route the server answers, not only the document's (tests/fuzzing.py): each
   compatibility layer (with lrnstak and then Beaver owning the routes they share), the
   dashboard's paths, /metrics, the /v1/ws handshake; bad paths (Unicode digits, numbers
   past any integer, percent-encodings, dots), queries, headers (Content-Length,
   Content-Type, Host, Origin, Authorization) and bodies (malformed JSON, NaN, deep nesting,
   wrong types, form and multipart garbage) through the ASGI app, and as raw bytes over
   sockets to a real ``riverbed serve``, whose own protocol answers the hot JSON operations.

Hypothesis is driven directly, derandomized with a few examples per route, which keeps the
default run short (well under a minute of CPU) and repeatable. ``make fuzz`` runs the same
tests with many more examples per route (RIVERBED_FUZZ_EXAMPLES), drawn anew each run and
shrunk to the smallest failing request (RIVERBED_FUZZ_RANDOM)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from riverbed import Client, Engine
from riverbed.config import Settings
from riverbed.server import create_app
from riverbed.server.routing import Endpoint
from tests import fuzzing
from tests.helpers import Server

pytestmark = pytest.mark.fuzz

SPEC = {"class": "river.linear_model.LogisticRegression"}
# Examples per route and configuration: a few in the default run, many under `make fuzz`
# (RIVERBED_FUZZ_EXAMPLES), which also draws new examples each run (RIVERBED_FUZZ_RANDOM).
ROUTE_EXAMPLES = int(os.environ.get("RIVERBED_FUZZ_EXAMPLES", "4"))
RANDOM = os.environ.get("RIVERBED_FUZZ_RANDOM", "") not in ("", "0")
EXAMPLES = max(8, ROUTE_EXAMPLES)  # per OpenAPI operation


def check(response: Any, label: str) -> str | None:
    """What is wrong with a response, if anything."""
    if response.status_code >= 500:
        return f"{label}: {response.status_code} {response.text[:300]}"
    if 400 <= response.status_code != 405:
        if fuzzing.open_inference(urlsplit(response.request.url).path.encode()):
            answer = fuzzing.Answer(response.status_code, {}, response.content)
            return fuzzing.oip_problem(label, answer)  # the protocol's own error shape
        try:
            error = response.json()["error"]
            assert error["code"] and error["message"]
        except Exception:
            return f"{label}: {response.status_code} without a JSON error: {response.text[:300]}"
    return None


def test_no_generated_request_breaks_the_server(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "fuzz.db"), host="0.0.0.0") as engine:
        engine.create_model("m", spec=SPEC)
        admin = {"Authorization": f"Bearer {engine.tokens.create_token(['admin'])['token']}"}
        app = create_app(engine)
        streams = [e.path for e in app.state.endpoints if e.media_type == "text/event-stream"]
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        if streams:
            schema = schema.exclude(path=streams)
        problems: list[str] = []
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10

        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=not RANDOM,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                scope = case.operation.definition.raw.get("x-riverbed-scope", "public")
                label = f"{case.method} {case.formatted_path}"
                problem = check(case.call(headers=admin), label + " (admin)")
                anonymous = case.call()
                problem = problem or check(anonymous, label + " (no token)")
                if scope != "public" and anonymous.status_code not in (401, 404, 405):
                    problem = problem or f"{label}: {anonymous.status_code} without a token"
                if problem:
                    problems.append(problem)

            run()
        assert not problems, "\n".join(problems)


# --- every route the server answers, not only the OpenAPI document ------------------------

SHARED = ["lrnstak", "beaver"]  # compat_shared: which layer owns GET /models, /train/{name}


def _seed(target: Any) -> dict[str, list[str]]:
    """Models, an alias and cache keys for the generated requests to find (an Engine or a
    Client: the same methods), and the values each path parameter is drawn from."""
    for name, spec in (("m", SPEC), ("r", fuzzing.REGRESSOR)):
        with contextlib.suppress(Exception):
            target.create_model(name, spec=spec)
    with contextlib.suppress(Exception):
        target.set_alias("m", "prod", 1)
    target.cache.put("k", {"a": 1})
    with contextlib.suppress(Exception):
        target.cache.push("l", 1)
    return {
        "name": ["m", "r", "nope"],
        "version": ["1", "2", "latest"],
        "alias": ["prod", "nope"],
        "key": ["k", "l"],
        "id": ["1", "nope"],
        "flavor": ["binary", "regression", "multiclass", "cluster", "custom", "nope"],
        "loop_id": ["1", "p1"],
        "path": fuzzing.DASHBOARD_FILES,
    }


def _restore(target: Any) -> None:
    """Put back what a generated delete took away, so later requests still reach deep."""
    names = {m["name"] for m in target.list_models()}
    if not {"m", "r"} <= names:
        _seed(target)


def _fuzz_routes(routes: list[Endpoint], send: Any, make: Any, restore: Any) -> list[str]:
    """Each route's generated requests through ``send``; what went wrong, with the smallest
    input hypothesis found for it."""
    problems: list[str] = []
    for endpoint in routes:

        @given(request=make(endpoint))
        @settings(
            max_examples=ROUTE_EXAMPLES,
            deadline=None,
            derandomize=not RANDOM,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate, Phase.shrink] if RANDOM else [Phase.generate],
        )
        def run(request: fuzzing.Request) -> None:
            answer = send(request)
            if request.method != "GET" and 200 <= answer.status < 300:
                restore()
            found = fuzzing.problem(request, answer)
            assert found is None, found

        try:
            run()
        except Exception as exc:  # the smallest failing request is in the message
            problems.append(f"{endpoint.method} {endpoint.path}: {type(exc).__name__}: {exc}")
    return problems


def _generator(app: Any, seeds: dict[str, list[str]], host: bytes, tokens: list[bytes]) -> Any:
    fields = fuzzing.field_names(app.state.endpoints)
    query = fuzzing.query_names()

    def make(endpoint: Endpoint) -> Any:
        return fuzzing.requests(
            endpoint, fields=fields, query=query, seeds=seeds, host=host, tokens=tokens
        )

    return make


def _routes_of(app: Any) -> list[Endpoint]:
    routes: list[Endpoint] = app.state.endpoints
    assert len(routes) >= 100  # every compatibility layer is in
    served = {f"{e.method} " + re.sub(r"\{[^}]*\}", "{}", e.path) for e in routes}
    assert set(app.fast.paths) <= served  # the fast path's operations are among them
    return routes


@pytest.mark.parametrize("shared", SHARED)
def test_no_generated_request_to_any_route_breaks_the_app(tmp_path: Path, shared: str) -> None:
    """Every route of the app (every compatibility layer, the dashboard, /metrics, the
    WebSocket handshake), through the ASGI app: bad paths, queries, headers and bodies get
    a 4xx JSON error, never a 5xx. With lrnstak owning the shared routes auth is off (the
    default on loopback); with beaver it is on, so the guard sees the generated tokens."""
    auth = "off" if shared == "lrnstak" else "on"
    with Engine(
        str(tmp_path / "fuzz.db"), compat_shared=shared, auth=auth, job_workers=1
    ) as engine:
        seeds = _seed(engine)
        admin = f"Bearer {engine.tokens.create_token(['admin'])['token']}".encode()
        reader = f"Bearer {engine.tokens.create_token(['read'])['token']}".encode()
        tokens = [admin, admin, admin, b"", b"Bearer nope", reader, b"Basic \xff"]
        app = create_app(engine)
        with asyncio.Runner() as runner:
            problems = _fuzz_routes(
                _routes_of(app),
                lambda request: runner.run(fuzzing.call_asgi(app, request)),
                _generator(app, seeds, b"127.0.0.1:8000", tokens),
                lambda: _restore(engine),
            )
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("shared", SHARED)
def test_no_generated_request_to_any_route_breaks_a_real_server(
    tmp_path: Path, shared: str
) -> None:
    """The same requests, as bytes over sockets to a real ``riverbed serve``: the hot JSON
    operations are answered by the server's own protocol from the parser's callbacks, and
    framing only a socket carries (a Content-Length that is no number, or past the body)
    reaches uvicorn's parser too. The server answers /health afterwards and logged no
    unhandled error."""
    log = tmp_path / "server.log"
    server = Server(str(tmp_path / "fuzz.db"), None, "--compat-shared", shared, log=log).start()
    try:
        with Client(server.url) as client:
            seeds = _seed(client)
            app = create_app(settings=Settings.load({"compat_shared": shared}))
            host = f"127.0.0.1:{server.port}".encode()
            problems = _fuzz_routes(
                _routes_of(app),
                lambda request: fuzzing.call_socket(server.port, request),
                _generator(app, seeds, host, [b""]),
                lambda: _restore(client),
            )
            assert client.health()["status"] == "ok"
    finally:
        server.stop()
    logged = log.read_text()
    assert "Traceback" not in logged and "unhandled error" not in logged, logged[-3000:]
    assert not problems, "\n".join(problems)
