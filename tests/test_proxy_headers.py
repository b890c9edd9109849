"""Proxy headers (issue 25 item 4, docs/security.md): X-Forwarded-For and Forwarded are believed
only from the addresses of ``forwarded_allow_ips`` (none by default), so the rate limiter's key
is an address a client cannot pick -- through the ASGI app (Starlette's routes and the fast
path), a real server's direct protocol and its ASGI path, with uvicorn's own proxy handling
(which trusts 127.0.0.1, or FORWARDED_ALLOW_IPS) left out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from riverbed import Engine
from riverbed.config import Settings
from riverbed.server import create_app
from riverbed.server.guard import ProxyRule
from tests.helpers import Server

SPEC = {"pipeline": [{"class": "river.linear_model.LinearRegression"}]}
LEARN = {"features": {"x": 1.0}, "ground_truth": 1.0}
LIMIT = "learning=2/m,chantilly=2/m"


@contextlib.asynccontextmanager
async def client(peer: str = "127.0.0.1", **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    loaded = Settings.load(
        {"database": ":memory:", "rate_limit_address": LIMIT, **settings}, environ={}
    )
    with Engine(settings=loaded) as engine:
        engine.create_model("m", spec=SPEC)
        transport = httpx.ASGITransport(app=create_app(engine), client=(peer, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c


async def _statuses(c: httpx.AsyncClient, path: str, headers: list[dict[str, str]]) -> list[int]:
    return [(await c.post(path, json=LEARN, headers=h)).status_code for h in headers]


# /v1/models/m/learn is the fast path; chantilly's /api/learn too, /v1/models/m/learn/many
# is a Starlette route.
PATHS = ["/v1/models/m/learn", "/api/learn"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "header",
    [
        lambda i: {"x-forwarded-for": f"203.0.113.{i}"},
        lambda i: {"forwarded": f"for=203.0.113.{i}"},
        lambda i: {"x-real-ip": f"203.0.113.{i}"},
    ],
    ids=["x-forwarded-for", "forwarded", "x-real-ip"],
)
async def test_by_default_no_client_picks_its_own_rate_limit_key(path: str, header: Any) -> None:
    async with client() as c:
        body = {**LEARN, "model": "m"} if path == "/api/learn" else LEARN
        statuses = [
            (await c.post(path, json=body, headers=header(i))).status_code for i in range(4)
        ]
        assert statuses == [200 if path.startswith("/v1") else 201] * 2 + [429, 429]


async def test_a_trusted_proxy_names_the_client() -> None:
    async with client(forwarded_allow_ips="127.0.0.1") as c:
        # two clients behind the proxy: two buckets
        for i in (1, 2):
            got = await _statuses(c, PATHS[0], [{"x-forwarded-for": f"203.0.113.{i}"}] * 3)
            assert got == [200, 200, 429], i
        # the Forwarded header when there is no X-Forwarded-For
        got = await _statuses(c, PATHS[0], [{"forwarded": 'for="[2001:db8::7]:4711"'}] * 3)
        assert got == [200, 200, 429]


async def test_what_a_client_writes_before_the_proxy_appends_is_not_believed() -> None:
    """The proxy appends the address it saw; what the client sent in front of it changes
    nothing: the key is the last hop the trusted proxies did not add."""
    async with client(forwarded_allow_ips="127.0.0.1,10.0.0.0/8") as c:
        chains = [f"198.51.100.{i}, 203.0.113.9, 10.1.2.3" for i in range(4)]
        got = await _statuses(c, PATHS[0], [{"x-forwarded-for": x} for x in chains])
        assert got == [200, 200, 429, 429]
        forwarded = [f"for=198.51.100.{i}, for=203.0.113.9;proto=https" for i in range(3)]
        got = await _statuses(c, "/v1/models/m/learn", [{"forwarded": x} for x in forwarded])
        assert got == [429, 429, 429]  # 203.0.113.9's bucket, already empty


async def test_headers_from_an_untrusted_peer_are_ignored_even_when_a_proxy_is_set() -> None:
    async with client(peer="192.0.2.50", forwarded_allow_ips="127.0.0.1") as c:
        got = await _statuses(c, PATHS[0], [{"x-forwarded-for": f"10.0.0.{i}"} for i in range(3)])
        assert got == [200, 200, 429]


def test_the_rule_reads_the_chain_from_the_right() -> None:
    rule = ProxyRule("127.0.0.1, 10.0.0.0/8, ::1")

    def client_of(peer: str, *headers: tuple[bytes, bytes], kind: str = "http") -> Any:
        scope: dict[str, Any] = {
            "type": kind,
            "client": (peer, 5),
            "scheme": "http",
            "headers": list(headers),
        }
        rule.apply(scope)
        return scope["client"][0], scope["scheme"]

    assert client_of("127.0.0.1", (b"x-forwarded-for", b"1.2.3.4, 10.0.0.1")) == (
        "1.2.3.4",
        "http",
    )
    assert client_of("::1", (b"x-forwarded-for", b"10.0.0.2, 10.0.0.1"))[0] == "10.0.0.2"
    assert client_of("::ffff:127.0.0.1", (b"x-forwarded-for", b"5.6.7.8"))[0] == "5.6.7.8"
    assert client_of("8.8.8.8", (b"x-forwarded-for", b"5.6.7.8"))[0] == "8.8.8.8"
    # X-Forwarded-For wins over Forwarded; the port of a hop is dropped
    both = ((b"forwarded", b"for=9.9.9.9"), (b"x-forwarded-for", b"5.6.7.8:99"))
    assert client_of("127.0.0.1", *both)[0] == "5.6.7.8"
    # two header lines are one list
    lines = ((b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2"))
    assert client_of("127.0.0.1", *lines)[0] == "2.2.2.2"
    proto = ((b"forwarded", b'for=4.4.4.4;proto=https;by="[::1]"'),)
    assert client_of("127.0.0.1", *proto) == ("4.4.4.4", "https")
    assert client_of("127.0.0.1", *proto, kind="websocket") == ("4.4.4.4", "wss")
    assert client_of("127.0.0.1", (b"x-forwarded-proto", b"gopher"))[1] == "http"
    assert client_of("127.0.0.1", (b"x-forwarded-for", b" , "))[0] == "127.0.0.1"
    assert not ProxyRule("").enabled and ProxyRule("*").trusts("203.0.113.1")


def test_a_bad_forwarded_allow_ips_is_refused_at_start() -> None:
    settings = Settings.load(
        {"database": ":memory:", "forwarded_allow_ips": "10.0.0.0/8,proxy.local"}, environ={}
    )
    with Engine(settings=settings) as engine, pytest.raises(ValueError, match="proxy.local"):
        create_app(engine)
    assert Settings.load(environ={}).forwarded_allow_ips == ""


# -- a real server -------------------------------------------------------------------------------


def _serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> contextlib.AbstractContextManager[Server]:
    # uvicorn's own proxy handling would trust this; riverbed serve must not let it.
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")

    @contextlib.contextmanager
    def running() -> Iterator[Server]:
        server = Server(str(tmp_path / "p.db"), None, "--rate-limit-address", LIMIT, *extra).start()
        try:
            made = httpx.post(server.url + "/v1/models", json={"name": "m", "spec": SPEC})
            assert made.status_code == 201, made.text
            yield server
        finally:
            server.stop()

    return running()


def _real_statuses(server: Server, chunked: bool, forwarded: list[str]) -> list[int]:
    """A body with a Content-Length takes the direct protocol, a chunked one the ASGI app."""
    body = b'{"features": {"x": 1.0}, "ground_truth": 1.0}'
    statuses = []
    for value in forwarded:
        content: Any = iter([body]) if chunked else body
        answer = httpx.post(
            server.url + "/v1/models/m/learn",
            content=content,
            headers={"x-forwarded-for": value, "content-type": "application/json"},
        )
        statuses.append(answer.status_code)
    return statuses


@pytest.mark.parametrize("chunked", [False, True], ids=["direct", "asgi"])
def test_a_real_server_believes_no_proxy_header_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    with _serve(tmp_path, monkeypatch) as server:
        assert _real_statuses(server, chunked, [f"203.0.113.{i}" for i in range(3)]) == [
            200,
            200,
            429,
        ]


@pytest.mark.parametrize("chunked", [False, True], ids=["direct", "asgi"])
def test_a_real_server_behind_a_named_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    with _serve(tmp_path, monkeypatch, "--forwarded-allow-ips", "127.0.0.1") as server:
        assert _real_statuses(server, chunked, ["203.0.113.1"] * 3) == [200, 200, 429]
        assert _real_statuses(server, chunked, ["203.0.113.2"]) == [200]
        spoofed = [f"198.51.100.{i}, 203.0.113.2" for i in range(2)]
        assert _real_statuses(server, chunked, spoofed) == [200, 429]
