"""Authentication and scopes, checked on every declared route: a server bound as if public
answers each route exactly as its declared scope says, with no token, a token of each scope,
and revoked, expired or forged tokens. Routes added later are covered by declaring them."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from riverbed import Engine
from riverbed.server import create_app
from riverbed.server.auth import (
    WEBSOCKET_METHODS,
    AuthPolicy,
    register_challenge,
    token_realm_challenge,
)
from riverbed.server.routing import Endpoint, _openapi_path
from riverbed.tokens import SCOPES, grants
from tests.asgi import status_of
from tests.wsclient import connect

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


@dataclass
class Public:
    app: Starlette
    engine: Engine
    secrets: dict[str, str]  # scope (and "revoked", "expired") -> secret


@pytest.fixture
def public(tmp_path: Path) -> Iterator[Public]:
    """The app of a server bound to 0.0.0.0 (auth auto, so on) with a token of each scope."""
    with Engine(str(tmp_path / "auth.db"), host="0.0.0.0") as engine:
        engine.create_model("m", spec=SPEC)
        secrets = {s: engine.tokens.create_token([s], name=s)["token"] for s in SCOPES}
        revoked = engine.tokens.create_token(list(SCOPES), name="revoked")
        engine.tokens.revoke_token(revoked["id"])
        secrets["revoked"] = revoked["token"]
        expired = engine.tokens.create_token(["admin"], name="expired", expires_in=1)
        secrets["expired"] = expired["token"]
        engine.tokens.clock = lambda: 4102444800.0  # 2100: every expiring token has expired
        yield Public(create_app(engine), engine, secrets)


def bearer(secret: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {secret}".encode())]


def concrete(endpoint: Endpoint) -> str:
    """The endpoint's path with its parameters filled in (the model is 'm')."""

    def fill(match: re.Match[str]) -> str:
        return "m" if match.group(1) == "name" else "x"

    return re.sub(r"\{(\w+)(?::[^}]*)?\}", fill, endpoint.path)


def body_for(endpoint: Endpoint) -> tuple[list[tuple[bytes, bytes]], bytes]:
    if endpoint.body is None:
        return [], b""
    return [(b"content-type", b"application/json")], b"{}"


async def answer(app: Any, endpoint: Endpoint, secret: str | None, **kwargs: Any) -> int:
    headers, body = body_for(endpoint)
    if secret is not None:
        headers = [*headers, *bearer(secret)]
    status, _ = await status_of(
        app, endpoint.method, concrete(endpoint), headers=headers, body=body, **kwargs
    )
    return status


Ask = Callable[[Endpoint, "str | None"], Awaitable[int]]


async def mismatches(
    endpoints: list[Endpoint], secrets: dict[str, str], ask: Ask
) -> list[tuple[str, ...]]:
    """Every (route, credential) whose answer is not what the route's scope says."""
    wrong: list[tuple[str, ...]] = []
    for e in endpoints:
        denied = e.scope != "public"
        got = await ask(e, None)
        if (got == 401) != denied or got == 403 or got >= 500:
            wrong.append((e.method, e.path, e.scope, "no token", str(got)))
        for scope in SCOPES:
            got = await ask(e, secrets[scope])
            expected_ok = grants({scope}, e.scope)
            if expected_ok and (got in (401, 403) or got >= 500):
                wrong.append((e.method, e.path, e.scope, scope, str(got)))
            if not expected_ok and got != 403:
                wrong.append((e.method, e.path, e.scope, scope, str(got)))
        for bad in ("revoked", "expired"):
            got = await ask(e, secrets[bad])
            if (got == 401) != denied or got >= 500:
                wrong.append((e.method, e.path, e.scope, bad, str(got)))
        got = await ask(e, "rbt_000000000000_" + "A" * 43)
        if (got == 401) != denied:
            wrong.append((e.method, e.path, e.scope, "forged", str(got)))
    return wrong


async def test_every_route_answers_exactly_as_its_scope_says(public: Public) -> None:
    endpoints: list[Endpoint] = public.app.state.endpoints
    assert len(endpoints) >= 10

    async def ask(endpoint: Endpoint, secret: str | None) -> int:
        return await answer(public.app, endpoint, secret)

    assert await mismatches(endpoints, public.secrets, ask) == []


@pytest.mark.slow
async def test_a_real_server_answers_every_route_as_its_scope_says(tmp_path: Path) -> None:
    """The same walk against a real `riverbed serve --auth on` over sockets."""
    import time

    from riverbed.config import Settings
    from riverbed.server import compat
    from riverbed.server.app import endpoints as declared
    from riverbed.stores import open_store
    from riverbed.tokens import Tokens
    from tests.helpers import Server

    db = str(tmp_path / "real.db")
    store = open_store(db)
    tokens = Tokens(store.token_store())
    secrets = {s: tokens.create_token([s])["token"] for s in SCOPES}
    revoked = tokens.create_token(list(SCOPES))
    tokens.revoke_token(revoked["id"])
    secrets["revoked"] = revoked["token"]
    an_hour_ago = Tokens(store.token_store(), clock=lambda: time.time() - 3600)
    secrets["expired"] = an_hour_ago.create_token(["admin"], expires_in=60)["token"]
    store.close()
    server = Server(db, None, "--auth", "on").start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            created = await client.post(
                "/v1/models",
                json={"name": "m", "spec": SPEC},
                headers={"Authorization": f"Bearer {secrets['admin']}"},
            )
            assert created.status_code == 201, created.text

            async def ask(endpoint: Endpoint, secret: str | None) -> int:
                headers, body = body_for(endpoint)
                sent = {k.decode(): v.decode() for k, v in headers}
                if secret is not None:
                    sent["Authorization"] = f"Bearer {secret}"
                request = client.build_request(
                    endpoint.method, concrete(endpoint), headers=sent, content=body or None
                )
                response = await client.send(request, stream=True)  # streams never end
                await response.aclose()
                return response.status_code

            served = compat.enabled(declared(), Settings())  # one layer a shared route
            http = [e for e in served if e.method.upper() not in WEBSOCKET_METHODS]
            assert await mismatches(http, secrets, ask) == []
    finally:
        server.stop()


async def test_the_openapi_document_declares_every_route_and_its_scope(public: Public) -> None:
    doc = public.app.state.openapi
    for e in public.app.state.endpoints:
        if e.method.upper() in WEBSOCKET_METHODS:
            continue
        operation = doc["paths"][_openapi_path(e.path)][e.method.lower()]
        assert operation["x-riverbed-scope"] == e.scope
        if e.scope != "public":
            assert operation["security"] == [{"token": [e.scope]}]
            assert {"401", "403"} <= set(operation["responses"])
    assert doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"


def test_every_route_of_the_app_goes_through_the_guard(public: Public) -> None:
    for route in public.app.routes:
        endpoint = getattr(getattr(route, "app", None), "riverbed_endpoint", None)
        assert endpoint is not None, f"{route!r} is not declared as an Endpoint"


async def test_on_loopback_auth_is_off_and_every_route_is_open(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "local.db")) as engine:
        engine.create_model("m", spec=SPEC)
        app = create_app(engine)
        for e in app.state.endpoints:
            got = await answer(app, e, None, client="127.0.0.1", server=("127.0.0.1", 8000))
            assert got not in (401, 403) and got < 500, (e.method, e.path, got)


async def test_auto_asks_a_token_of_a_connection_that_arrived_on_a_public_address(
    tmp_path: Path,
) -> None:
    with Engine(str(tmp_path / "local.db")) as engine:
        app = create_app(engine)
        status, _ = await status_of(app, "GET", "/v1/models", server=("192.0.2.10", 8000))
        assert status == 401
        status, _ = await status_of(app, "GET", "/v1/models", server=("127.0.0.1", 8000))
        assert status == 200


@pytest.mark.parametrize(
    ("host", "mode", "enabled"),
    [
        ("127.0.0.1", "auto", False),
        ("localhost", "auto", False),
        ("::1", "auto", False),
        ("0.0.0.0", "auto", True),
        ("192.168.1.20", "auto", True),
        ("127.0.0.1", "on", True),
        ("0.0.0.0", "off", False),
    ],
)
def test_auth_is_on_off_loopback_unless_turned_off(host: str, mode: str, enabled: bool) -> None:
    from riverbed.config import Settings

    policy = AuthPolicy(Settings(host=host, auth=mode))
    assert policy.enabled is enabled
    level, text = policy.banner()
    if host not in ("127.0.0.1", "localhost", "::1") and not enabled:
        assert level >= 30 and "AUTH IS OFF" in text and "pickles" in text
    else:
        assert level < 30


def test_a_bad_auth_mode_is_refused() -> None:
    from riverbed.config import Settings

    with pytest.raises(ValueError, match="auto, on or off"):
        AuthPolicy(Settings(auth="maybe"))


async def test_401_carries_a_challenge_and_a_group_can_set_its_own(public: Public) -> None:
    status, headers = await status_of(public.app, "GET", "/v1/models")
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="riverbed"'
    register_challenge("models", token_realm_challenge)
    try:
        status, headers = await status_of(public.app, "GET", "/v1/models")
    finally:
        from riverbed.server import auth

        auth._CHALLENGES.pop("models")
    assert status == 401
    assert headers["www-authenticate"] == (
        'realm="http://testserver/api/auth/token",service="http://testserver"'
    )


async def test_tokens_in_the_query_string_only_open_streams(public: Public) -> None:
    query = f"token={public.secrets['read']}".encode()
    status, _ = await status_of(public.app, "GET", "/v1/models", query=query)
    assert status == 401
    status, headers = await status_of(public.app, "GET", "/v1/events", query=query)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    status, _ = await status_of(public.app, "GET", "/v1/events", query=b"token=rbt_nope")
    assert status == 401


async def test_basic_and_token_schemes_carry_a_token(public: Public) -> None:
    secret = public.secrets["read"]
    basic = base64.b64encode(f"anyone:{secret}".encode())
    for value in (b"Basic " + basic, b"Token " + secret.encode(), b"bearer " + secret.encode()):
        status, _ = await status_of(
            public.app, "GET", "/v1/models", headers=[(b"authorization", value)]
        )
        assert status == 200, value
    status, _ = await status_of(
        public.app, "GET", "/v1/models", headers=[(b"authorization", b"Basic !!notbase64")]
    )
    assert status == 401


@pytest.mark.parametrize(
    "value", [b"Basic \xff", b"Basic \xc3\xa9", b"Basic " + base64.b64encode(b"\xff:\xfe")]
)
async def test_basic_credentials_that_are_not_ascii_are_a_401(public: Public, value: bytes) -> None:
    """Found by tests/test_fuzz.py: ``Authorization: Basic \\xff`` (a byte base64 cannot
    hold) was a 500 on every route, before any token was looked at."""
    status, _ = await status_of(
        public.app, "GET", "/v1/models", headers=[(b"authorization", value)]
    )
    assert status == 401


@pytest.fixture
async def http(public: Public) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=public.app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_tokens_are_managed_over_http_by_admins(
    public: Public, http: httpx.AsyncClient
) -> None:
    admin = auth(public.secrets["admin"])
    made = await http.post(
        "/v1/tokens",
        json={"scopes": ["predict"], "name": "edge", "expires_in": "30d"},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    info = made.json()
    secret = info.pop("token")
    admin_id = public.engine.tokens.verify_token(public.secrets["admin"]).id
    assert info["scopes"] == ["predict"] and info["created_by"] == admin_id
    predict = await http.post(
        "/v1/models/m/predict", json={"features": {"x": 1.0}}, headers=auth(secret)
    )
    assert predict.status_code == 200
    listed = (await http.get("/v1/tokens", headers=admin)).json()["tokens"]
    assert info["id"] in [t["id"] for t in listed] and secret not in str(listed)
    assert (await http.get(f"/v1/tokens/{info['id']}", headers=admin)).json()["name"] == "edge"
    revoked = await http.delete(f"/v1/tokens/{info['id']}", headers=admin)
    assert revoked.json() == {"id": info["id"], "revoked": True}
    again = await http.post(
        "/v1/models/m/predict", json={"features": {"x": 1.0}}, headers=auth(secret)
    )
    assert again.status_code == 401 and again.json()["error"]["code"] == "token_revoked"
    everything = (await http.get("/v1/tokens?all=true", headers=admin)).json()["tokens"]
    assert {t["status"] for t in everything} >= {"active", "revoked", "expired"}
    missing = await http.delete("/v1/tokens/zzzzzzzzzzzz", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "token_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": ["root"]},
        {"scopes": []},
        {"scopes": "admin"},
        {"scopes": ["read"], "expires_in": "soon"},
        {"scopes": ["read"], "expires_in": True},
        {"scopes": ["read"], "owner": "me"},
        {},
    ],
)
async def test_a_bad_token_request_is_400_and_creates_nothing(
    public: Public, http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    before = public.engine.tokens.list_tokens(include_inactive=True)
    response = await http.post("/v1/tokens", json=body, headers=auth(public.secrets["admin"]))
    assert response.status_code == 400, response.text
    assert public.engine.tokens.list_tokens(include_inactive=True) == before


async def test_a_scope_short_of_admin_cannot_mint_tokens(
    public: Public, http: httpx.AsyncClient
) -> None:
    for scope in ("read", "predict", "learn"):
        response = await http.post(
            "/v1/tokens", json={"scopes": ["admin"]}, headers=auth(public.secrets[scope])
        )
        assert response.status_code == 403
        assert response.json()["error"]["detail"] == {"required": "admin", "granted": [scope]}


async def test_whoami_tells_the_dashboard_whether_to_ask_for_a_token(
    public: Public, http: httpx.AsyncClient
) -> None:
    anonymous = (await http.get("/v1/auth")).json()
    assert anonymous["auth"] is True and anonymous["token"] is None
    mine = (await http.get("/v1/auth", headers=auth(public.secrets["learn"]))).json()
    assert mine["token"]["scopes"] == ["learn"] and "token" not in mine["token"]
    by_query = await http.get("/v1/auth", params={"token": public.secrets["read"]})
    assert by_query.json()["token"]["scopes"] == ["read"]
    bad = await http.get("/v1/auth", headers=auth(public.secrets["revoked"]))
    assert bad.status_code == 200 and bad.json()["token"] is None
    assert bad.json()["error"]["code"] == "token_revoked"


async def test_admin_actions_leave_an_audit_trail_in_the_event_feed(
    public: Public, http: httpx.AsyncClient
) -> None:
    admin_id = public.engine.tokens.verify_token(public.secrets["admin"]).id
    denied = await http.post(
        "/v1/models", json={"name": "n", "spec": SPEC}, headers=auth(public.secrets["read"])
    )
    assert denied.status_code == 403
    await http.get("/v1/models", headers=auth(public.secrets["read"]))
    assert [e for e in public.engine.events.recent() if e.type == "audit"] == []
    created = await http.post(
        "/v1/models", json={"name": "n", "spec": SPEC}, headers=auth(public.secrets["admin"])
    )
    assert created.status_code == 201
    deleted = await http.delete("/v1/models/n", headers=auth(public.secrets["admin"]))
    assert deleted.status_code == 200
    audits = [e for e in public.engine.events.recent() if e.type == "audit"]
    assert [(e.data["action"], e.data["status"], e.model) for e in audits] == [
        ("POST /v1/models", 201, None),
        ("DELETE /v1/models/{name}", 200, "n"),
    ]
    assert {e.data["token"] for e in audits} == {admin_id}
    assert {e.data["client"] for e in audits} == {"203.0.113.7"}


async def test_disabled_route_groups_answer_404_and_leave_the_document(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "g.db"), route_groups="service,learning") as engine:
        app = create_app(engine)
        assert {e.tag for e in app.state.endpoints} == {"service", "learning"}
        assert not any(p.startswith("/v1/tokens") for p in app.state.openapi["paths"])
        for path in ("/v1/models", "/v1/tokens", "/v1/events"):
            status, _ = await status_of(app, "GET", path, server=("127.0.0.1", 80))
            assert status == 404, path
        status, _ = await status_of(app, "GET", "/health", server=("127.0.0.1", 80))
        assert status == 200
    with Engine(str(tmp_path / "h.db"), route_groups="service,lerning") as engine:
        with pytest.raises(ValueError, match="lerning"):
            create_app(engine)


async def test_websocket_routes_go_through_the_guard_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A route declared with method "WS" is a WebSocket behind the same guard; browsers
    cannot set headers on a WebSocket, so ?token= is accepted there."""
    from starlette.websockets import WebSocket

    from riverbed.server import app as app_module

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    declared = app_module.endpoints()
    extra = Endpoint("WS", "/v1/test-socket", echo, "test", "streams", scope="predict")  # type: ignore[arg-type]
    monkeypatch.setattr(app_module, "endpoints", lambda: [*declared, extra])
    with Engine(str(tmp_path / "ws.db"), host="0.0.0.0") as engine:
        predict = engine.tokens.create_token(["predict"])["token"]
        read = engine.tokens.create_token(["read"])["token"]
        app = create_app(engine)
        assert "/v1/test-socket" not in app.state.openapi["paths"]
        assert (await status_of(app, "WS", "/v1/test-socket"))[0] == 401
        query = f"token={predict}".encode()
        assert (await status_of(app, "WS", "/v1/test-socket", query=query))[0] == 101
        assert (await status_of(app, "WS", "/v1/test-socket", headers=bearer(predict)))[0] == 101
        query = f"token={read}".encode()
        assert (await status_of(app, "WS", "/v1/test-socket", query=query))[0] == 403


async def test_the_client_sends_its_token_and_maps_auth_errors_back(public: Public) -> None:
    from riverbed import AsyncClient, Forbidden, TokenRevoked, Unauthorized

    transport = httpx.ASGITransport(app=public.app)

    def client(token: str | None) -> AsyncClient:
        return AsyncClient("http://testserver", transport=transport, token=token)

    async with client(None) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.list_models()
    async with client(public.secrets["read"]) as reader:
        assert [m["name"] for m in await reader.list_models()] == ["m"]
        with pytest.raises(Forbidden):
            await reader.create_token(["read"])
    async with client(public.secrets["revoked"]) as revoked:
        with pytest.raises(TokenRevoked):
            await revoked.list_models()
    async with client(public.secrets["admin"]) as admin:
        made = await admin.create_token(["predict"], name="c", expires_in=60)
        assert made["token"].startswith("rbt_")
        assert made["id"] in [t["id"] for t in await admin.list_tokens()]
        assert (await admin.revoke_token(made["id"]))["revoked"] is True
        listed = await admin.list_tokens(include_inactive=True)
        assert {t["id"]: t["status"] for t in listed}[made["id"]] == "revoked"


def test_a_rate_limited_error_keeps_its_retry_after_through_the_wire() -> None:
    from riverbed.exceptions import RateLimited, error_from_payload

    sent = RateLimited("slow down", detail={"retry_after": 7}, retry_after=7)
    received = error_from_payload(sent.to_payload())
    assert isinstance(received, RateLimited) and received.retry_after == 7


async def test_a_websocket_operation_a_token_may_not_do_names_the_scope_it_needs(
    public: Public,
) -> None:
    query = f"token={public.secrets['predict']}".encode()
    async with connect(public.app, "/v1/ws", query) as ws:
        await ws.send({"id": 1, "op": "learn", "model": "m", "features": {"x": 1.0}})
        answer = await ws.receive()
    assert answer["ok"] is False and answer["error"]["code"] == "forbidden"
    message = answer["error"]["message"]
    assert (
        message == "this token has scope(s) predict; the 'learn' operation needs the 'learn' scope"
    )
    assert answer["error"]["detail"] == {"required": "learn", "granted": ["predict"]}
    assert public.engine.get_model("m")["n_learns"] == 0
