"""Authentication, scopes, rate limits and route groups, enforced from the declarations.

Every route comes from an :class:`~riverbed.server.routing.Endpoint`, and
:func:`routes_of` wraps each route's ASGI app in :func:`guard`, so a
route is protected by declaring it -- its ``scope`` says who may call it, its ``tag`` names
its route group. For each request (HTTP or WebSocket) the guard, in this order:

0. refuses a request that a web page on another site may be driving: a ``Host`` that is
   not this server's (400) or, on a state-changing request, a foreign ``Origin`` (403) --
   :mod:`riverbed.server.guard`;
1. refuses a body over the route's limit (its :class:`~riverbed.server.routing.BodyLimit`:
   ``max_body_bytes``, ``max_artifact_bytes`` or ``max_upload_bytes``) with 413 -- by its
   ``Content-Length`` before anything is read, a chunked body as soon as it has gone past
   the limit (the route's ``receive`` raises, and the answer closes the connection); on a
   WebSocket, each message (:meth:`Gate.check_message`, called by the route);
2. charges the client address's bucket of the route's group (``rate_limit_address``): the
   connection's address, or the one a trusted proxy (``forwarded_allow_ips``) names --
   :class:`~riverbed.server.guard.ProxyRule`, applied before any route is matched;
3. when auth is on and the route is not ``public``: reads the token (``Authorization:
   Bearer <token>``, ``Token <token>`` or ``Basic base64(user:token)``; for event streams and
   WebSockets, which browsers cannot give headers, also ``?token=``), verifies it (401
   otherwise) and checks that its scopes grant the route's scope (403 otherwise);
4. charges the token's bucket (``rate_limit_token``); an empty bucket answers 429 with
   ``Retry-After``;
5. calls the route with the caller's :class:`Principal` in the ASGI scope
   (:func:`principal_of`), and for an ``admin`` route publishes an ``audit`` event once the
   route has answered.

Auth is on when ``auth=on``, or ``auth=auto`` and the server is bound to a non-loopback
address (a request that arrives on a non-loopback local address also needs a token, in case
the server was started by other means than ``riverbed serve``). With auth off every caller
is the local operator and holds every scope.

Route groups that ``route_groups`` leaves out are not mounted at all (404, absent from
``/openapi.json``): see :func:`enabled_endpoints`.

The helpers at the end (:func:`credentials_of`, :func:`verify`, :func:`basic_credentials`,
:func:`token_realm_challenge`, :func:`register_challenge`) are what compatibility layers
build their own token flows from; docs/auth.md describes them.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import ClientDisconnect, HTTPConnection
from starlette.routing import BaseRoute, Route, WebSocketRoute

from riverbed.config import Settings
from riverbed.exceptions import Forbidden, RateLimited, RiverbedError, Unauthorized
from riverbed.ratelimit import RateLimiter, parse_rates, retry_after
from riverbed.server.guard import ProxyRule, WebGuard, is_loopback
from riverbed.server.http import body_too_large, check_length
from riverbed.server.routing import BODY_LIMIT_KEY, Endpoint, is_websocket
from riverbed.stores.tokens import TokenRecord
from riverbed.tokens import SCOPES, grants

__all__ = [
    "AuthPolicy",
    "Gate",
    "Principal",
    "basic_credentials",
    "credentials_of",
    "enabled_endpoints",
    "guard",
    "is_loopback",
    "principal_of",
    "register_challenge",
    "register_error_payload",
    "routes_of",
    "token_realm_challenge",
    "verify",
    "websocket_max_size",
]

log = logging.getLogger("riverbed.auth")
audit_log = logging.getLogger("riverbed.audit")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEBSOCKET_METHODS = frozenset({"WS", "WEBSOCKET"})
PRINCIPAL_KEY = "riverbed.principal"
# The scope key of the endpoint's Gate, for a route that answers many operations on one
# request (the WebSocket charges each message to the rate limits as a request of its own).
GATE_KEY = "riverbed.gate"


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: ``local`` (auth off: every scope), ``token`` or ``anonymous`` (auth on,
    a public route, no token checked)."""

    kind: str
    scopes: frozenset[str]
    token_id: str | None = None
    name: str = ""

    def grants(self, scope: str) -> bool:
        return grants(self.scopes, scope)


LOCAL = Principal("local", frozenset(SCOPES))
ANONYMOUS = Principal("anonymous", frozenset())


@functools.lru_cache(maxsize=256)
def _public_ip(host: str) -> bool:
    """Whether ``host`` is an IP address that is not a loopback one (a connection's local
    address: cached, as it is looked at on every request)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not is_loopback(host)


class AuthPolicy:
    """The resolved auth, rate-limit and route-group rules of one app."""

    def __init__(self, settings: Settings) -> None:
        mode = settings.auth.strip().lower()
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"RIVERBED_AUTH / --auth must be auto, on or off, not {mode!r}")
        self.mode = mode
        self.host = settings.host
        local = is_loopback(settings.host)
        self.enabled = mode == "on" or (mode == "auto" and not local)
        self._check_connection = mode == "auto" and local
        self.web = WebGuard(settings)
        self.proxies = ProxyRule(settings.forwarded_allow_ips)
        try:
            self.by_address = RateLimiter(parse_rates(settings.rate_limit_address))
            self.by_token = RateLimiter(parse_rates(settings.rate_limit_token))
        except ValueError as exc:
            raise ValueError(f"rate limit settings: {exc}") from None

    def required(self, scope: Scope) -> bool:
        """Whether this connection must present a token."""
        if self.enabled:
            return True
        if self._check_connection:
            server = scope.get("server")
            if server:
                return _public_ip(str(server[0]))
        return False

    def banner(self) -> tuple[int, str]:
        """What the server says at start about auth, and how loudly (a logging level)."""
        if self.enabled:
            return logging.INFO, (
                f"auth is ON (--auth {self.mode}, bound to {self.host}): every route but the "
                "public ones needs a token; create one with `riverbed tokens create --scope "
                "admin` (see docs/auth.md)"
            )
        if is_loopback(self.host):
            return logging.INFO, (
                f"auth is off: bound to the loopback address {self.host}, only this machine "
                "can connect (use --auth on to require tokens anyway)"
            )
        return logging.WARNING, (
            f"WARNING: AUTH IS OFF ON {self.host}, A NON-LOOPBACK ADDRESS (--auth off). Anyone "
            "who can reach this server can create and delete models and upload pickles, which "
            "runs code on this machine. Remove --auth off to require tokens."
        )


def enabled_endpoints(endpoints: Iterable[Endpoint], groups: str) -> list[Endpoint]:
    """The endpoints whose group (tag) ``groups`` enables: a comma-separated list, or ``*``."""
    endpoints = list(endpoints)
    wanted = {g.strip() for g in groups.split(",") if g.strip()}
    if not wanted or "*" in wanted:
        return endpoints
    known = {e.tag for e in endpoints}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"route_groups names unknown group(s) {', '.join(unknown)}; the groups are "
            f"{', '.join(sorted(known))}"
        )
    return [e for e in endpoints if e.tag in wanted]


def principal_of(connection: HTTPConnection) -> Principal:
    """The caller of a request that went through the guard."""
    principal = connection.scope.get(PRINCIPAL_KEY)
    return principal if isinstance(principal, Principal) else ANONYMOUS


_Challenge = Callable[[Scope], str]
_CHALLENGES: dict[str, _Challenge] = {}


def register_challenge(group: str, challenge: _Challenge) -> None:
    """Answer 401s on the routes of ``group`` with ``WWW-Authenticate: challenge(scope)``
    instead of ``Bearer realm="riverbed"`` (e.g. :func:`token_realm_challenge`)."""
    _CHALLENGES[group] = challenge


_ErrorPayload = Callable[[RiverbedError], Any]
_ERROR_PAYLOADS: dict[str, _ErrorPayload] = {}


def register_error_payload(group: str, payload: _ErrorPayload) -> None:
    """Answer the guard's refusals on the routes of ``group`` with ``payload(error)`` as the
    JSON body instead of riverbed's ``{"error": {...}}`` (a protocol with an error shape of
    its own: the Open Inference Protocol's ``{"error": "<message>"}``)."""
    _ERROR_PAYLOADS[group] = payload


def _origin(scope: Scope) -> str:
    connection = HTTPConnection(scope)
    scheme = "https" if connection.url.scheme in ("https", "wss") else "http"
    return f"{scheme}://{connection.url.netloc}"


def token_realm_challenge(scope: Scope, path: str = "/api/auth/token") -> str:
    """The challenge of a token endpoint at ``path`` on this server, in the form
    ``realm="<origin><path>",service="<origin>"``."""
    origin = _origin(scope)
    return f'realm="{origin}{path}",service="{origin}"'


def basic_credentials(header_value: str) -> tuple[str, str] | None:
    """``(user, password)`` from an ``Authorization: Basic ...`` value, or None."""
    scheme, _, value = header_value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 once decoded
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def credentials_of(scope: Scope, *, allow_query: bool = False) -> str | None:
    """The token a request presents, if any (see the module docstring for where from)."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            header = value.decode("latin-1").strip()
            scheme, _, rest = header.partition(" ")
            if scheme.lower() in ("bearer", "token"):
                return rest.strip() or None
            basic = basic_credentials(header)
            if basic is not None:
                return basic[1] or None
            return None
    if allow_query:
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if values:
            return values[0]
    return None


def verify(connection: HTTPConnection | Scope, secret: str) -> TokenRecord:
    """The active token ``secret`` names, or :class:`InvalidToken` (401)."""
    scope = connection.scope if isinstance(connection, HTTPConnection) else connection
    record: TokenRecord = scope["app"].state.engine.tokens.verify_token(secret)
    return record


class Gate:
    """The endpoint's checks (steps 0-4 of the module docstring) as plain calls, shared by
    :func:`guard` and by the server's direct path for JSON operations
    (:mod:`riverbed.server.protocol`), which answers without an ASGI round trip."""

    __slots__ = (
        "endpoint",
        "needed",
        "group",
        "allow_query",
        "audited",
        "changes_state",
        "_limits",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._limits: tuple[Any, tuple[int, str] | None] = (None, None)
        self.needed = endpoint.scope
        self.group = endpoint.tag
        self.allow_query = (
            endpoint.media_type == "text/event-stream"
            or endpoint.method.upper() in WEBSOCKET_METHODS
        )
        self.audited = self.needed == "admin"
        # Checked against the Origin: what a page could use to change something.
        safe = endpoint.method.upper() in ("GET", "HEAD")
        self.changes_state = not safe or self.needed in ("predict", "learn", "admin")
        if self.needed not in ("public", *SCOPES):
            raise ValueError(f"{endpoint.method} {endpoint.path}: unknown scope {self.needed!r}")

    def body_limit(self, settings: Any) -> tuple[int, str] | None:
        """The route's body limit under ``settings`` and the setting that sets it (None: a
        streamed body, with no total)."""
        known, limit = self._limits
        if known is not settings:
            size = self.endpoint.body_limit.of(settings)
            limit = None if size is None else (size, self.endpoint.body_limit.setting)
            self._limits = (settings, limit)
        return limit

    def admit(self, scope: Scope) -> Principal:
        """The caller, or the :class:`RiverbedError` (400, 401, 403, 413, 429) that refuses
        it. A request with a body over the route's limit by its Content-Length is refused
        here; a chunked one is the guard's to count (:func:`guard`)."""
        app = scope["app"]
        policy: AuthPolicy = app.state.auth
        policy.web.check(scope, self.changes_state)
        limit = self.body_limit(app.state.settings)
        if limit is not None:
            scope[BODY_LIMIT_KEY] = limit
            if scope["type"] == "http":
                check_length(scope, *limit)
        if policy.by_address.rates:
            _charge(policy.by_address, self.group, _address(scope), "this address")
        if not policy.required(scope):
            return LOCAL
        if self.needed == "public":
            return ANONYMOUS
        principal = _authorize(scope, self.needed, self.group, self.allow_query)
        if policy.by_token.rates and principal.token_id is not None:
            _charge(policy.by_token, self.group, principal.token_id, "this token")
        return principal

    def check_message(self, scope: Scope, size: int) -> None:
        """Refuse a message of ``size`` bytes on an open WebSocket past the route's body
        limit (``PayloadTooLarge``, answered as an error message; the connection stays
        open). ``riverbed serve`` lets uvicorn take messages up to twice the limit
        (:func:`websocket_max_size`) so that this, not a dropped connection, is the answer."""
        limit = self.body_limit(scope["app"].state.settings)
        if limit is not None and size > limit[0]:
            raise body_too_large(*limit, given=size, what="message")

    def charge(self, scope: Scope, principal: Principal) -> None:
        """Count one more request of an admitted caller against the rate limits (step 3
        only), or :class:`RateLimited`: what each message on an open WebSocket costs."""
        policy: AuthPolicy = scope["app"].state.auth
        if policy.by_address.rates:
            _charge(policy.by_address, self.group, _address(scope), "this address")
        if policy.by_token.rates and principal.token_id is not None:
            _charge(policy.by_token, self.group, principal.token_id, "this token")

    def refusal(self, scope: Scope, error: RiverbedError) -> tuple[int, dict[str, str]]:
        """The status and headers that answer ``error`` from :meth:`admit` (logged)."""
        from riverbed.server.http import error_headers, status_of

        status = status_of(error)
        headers = error_headers(error)
        if (
            isinstance(error, Unauthorized)
            and error.challenge is None
            and self.group in _CHALLENGES
        ):
            headers["WWW-Authenticate"] = _CHALLENGES[self.group](scope)
        if status in (401, 403):
            log.info(
                "denied %s %s: %s", scope.get("method", "WEBSOCKET"), scope.get("path"), error.code
            )
        return status, headers


def guard(endpoint: Endpoint, app: ASGIApp) -> ASGIApp:
    """``app`` behind the endpoint's scope, group rate limits and audit (module docstring)."""
    gate = Gate(endpoint)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = gate.admit(scope)
        except RiverbedError as exc:
            await _deny(scope, receive, send, exc, gate)
            return
        scope[PRINCIPAL_KEY] = principal
        scope[GATE_KEY] = gate
        if scope["type"] == "http" and BODY_LIMIT_KEY in scope and _chunked(scope):
            await _held(scope, receive, send, gate, serve)
            return
        await serve(scope, receive, send)

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal = scope[PRINCIPAL_KEY]
        if not gate.audited:
            await app(scope, receive, send)
            return
        status: list[int] = []

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await app(scope, receive, watch)
        finally:
            _audit(scope, endpoint, principal, _address(scope), status[0] if status else None)

    guarded.riverbed_endpoint = endpoint  # type: ignore[attr-defined]
    guarded.riverbed_gate = gate  # type: ignore[attr-defined]
    return guarded


async def _held(scope: Scope, receive: Receive, send: Send, gate: Gate, app: ASGIApp) -> None:
    """``app`` on a chunked request, its body held to the route's limit (:class:`_Bounded`)."""
    bounded = _Bounded(scope[BODY_LIMIT_KEY], receive, send)
    try:
        await app(scope, bounded.receive, bounded.send)
    except ClientDisconnect:
        if not bounded.over:
            raise
    if bounded.over and not bounded.started:
        await _deny(scope, receive, send, body_too_large(*bounded.limit), gate)


def _chunked(scope: Scope) -> bool:
    """Whether the request's body has no ``Content-Length`` (chunked, or none at all): only
    then is its size unknown until it is read."""
    return all(name != b"content-length" for name, _ in scope["headers"])


class _Bounded:
    """A chunked request's ``receive`` and ``send``, held to the route's body limit. The
    chunk that takes the body past it is not handed over: the route is told the client left
    (``http.disconnect``, so it stops reading and a stream stops listening), and the guard
    answers 413 itself if the route has not started answering; that answer closes the
    connection, so the server reads no more of the body."""

    __slots__ = ("limit", "_receive", "_send", "size", "over", "started")

    def __init__(self, limit: tuple[int, str], receive: Receive, send: Send) -> None:
        self.limit = limit
        self._receive = receive
        self._send = send
        self.size = 0
        self.over = self.started = False

    async def receive(self) -> Message:
        if self.over:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit[0]:
                self.over = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _authorize(scope: Scope, needed: str, group: str, allow_query: bool) -> Principal:
    secret = credentials_of(scope, allow_query=allow_query)
    if secret is None:
        raise Unauthorized(
            f"this route needs a token with the {needed!r} scope: send "
            "'Authorization: Bearer <token>'",
            detail={"required": needed},
        )
    record = verify(scope, secret)
    if not grants(record.scopes, needed):
        raise Forbidden(
            f"token {record.id} has scope(s) {', '.join(record.scopes)}; this route needs "
            f"{needed!r}",
            detail={"required": needed, "granted": list(record.scopes)},
        )
    return Principal("token", frozenset(record.scopes), record.id, record.name)


def _charge(limiter: RateLimiter, group: str, key: str, who: str) -> None:
    wait = limiter.hit(group, key)
    if wait > 0:
        rate = limiter.rate_of(group)
        seconds = retry_after(wait)
        raise RateLimited(
            f"too many requests from {who} to the {group!r} routes; retry in {seconds} s",
            detail={
                "group": group,
                "limit": rate.count if rate else None,
                "period": rate.period if rate else None,
                "retry_after": seconds,
            },
            retry_after=seconds,
        )


async def _deny(
    scope: Scope, receive: Receive, send: Send, error: RiverbedError, gate: Gate
) -> None:
    from riverbed.server.http import JSONResponse, error_response

    status, headers = gate.refusal(scope, error)
    if status == 413 and scope["type"] == "http":
        headers["Connection"] = "close"  # the body is still coming: read none of it
    render = _ERROR_PAYLOADS.get(gate.group)
    if render is None:
        response = error_response(status, error.code, error.message, error.detail, headers=headers)
    else:
        response = JSONResponse(render(error), status_code=status, headers=headers)
    if scope["type"] == "websocket":
        if "websocket.http.response" in scope.get("extensions", {}):
            # The handshake refused with this HTTP status and JSON error (uvicorn does it).
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": response.raw_headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": response.body})
            return
        # Else close before accepting: the client sees the handshake refused; 4000 + status.
        await send({"type": "websocket.close", "code": 4000 + status, "reason": error.code})
        return
    await response(scope, receive, send)


def _audit(
    scope: Scope, endpoint: Endpoint, principal: Principal, address: str, status: int | None
) -> None:
    data = {
        "action": f"{endpoint.method} {endpoint.path}",
        "path": scope.get("path"),
        "status": status,
        "token": principal.token_id,
        "principal": principal.kind,
        "client": address,
    }
    params = scope.get("path_params") or {}
    model = params.get("name") if isinstance(params.get("name"), str) else None
    audit_log.info("%s", data)
    engine = getattr(scope["app"].state, "engine", None)
    if engine is not None:
        engine.events.publish("audit", model, data)


def websocket_max_size(endpoints: Iterable[Endpoint], settings: Settings) -> int:
    """The largest WebSocket message the ASGI server should take (uvicorn's
    ``ws_max_size``): twice the largest WebSocket route's limit, so that a message over a
    limit reaches the route and is answered ``payload_too_large`` on a connection that stays
    open; past that, the server closes the connection (1009) without reading it all."""
    limits = [e.body_limit.of(settings) for e in endpoints if is_websocket(e)]
    sizes = [size for size in limits if size is not None]
    return 2 * max(sizes, default=int(settings.max_body_bytes))


def bootstrap_admin(app: Any) -> str | None:
    """At start: say how auth stands, and when auth is on but no active token grants admin,
    create one and show its secret once in the log, so a fresh server can be administered.
    Returns that secret, if one was made."""
    policy: AuthPolicy = app.state.auth
    level, text = policy.banner()
    if level >= logging.WARNING:
        log.warning("%s", text)
    if not policy.enabled:
        return None
    tokens = app.state.engine.tokens
    if tokens.has_active("admin"):
        return None
    made = tokens.create_token(["admin"], name="bootstrap admin")
    log.warning(
        "auth is on and no token granted admin: created admin token %s (id %s). It is shown "
        "this once: keep it, make narrower tokens with it (riverbed tokens create / POST "
        "/v1/tokens) and revoke it when done.",
        made["token"],
        made["id"],
    )
    return str(made["token"])


def routes_of(endpoints: Iterable[Endpoint]) -> list[BaseRoute]:
    """The Starlette routes of ``endpoints``, each behind :func:`guard`
    (scope, rate limits, audit) -- so declaring a route is what protects it."""
    routes: list[BaseRoute] = []
    for e in endpoints:
        route: Route | WebSocketRoute
        if is_websocket(e):
            route = WebSocketRoute(e.path, e.handler, name=f"{e.method} {e.path}")
        else:
            route = Route(e.path, e.handler, methods=[e.method], name=f"{e.method} {e.path}")
        route.app = guard(e, route.app)
        routes.append(route)
    return routes
