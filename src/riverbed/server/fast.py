"""JSON operations, and the hot routes answered without the framework's per-request layers.

A route whose handler is made with :func:`json_route` is a *JSON operation*: a function of
the app's state, the path parameters and the parsed JSON body that returns the answer (or a
receipt to await). Starlette serves it like any route. :class:`FastRoutes` also answers such
routes straight from the ASGI messages: Starlette's routing (a regular expression per route,
tried in order), its two exception middlewares and its Request and Response objects cost
about as much per request as everything riverbed itself does for a prediction. The fast path
keeps what matters -- the same :func:`~riverbed.server.auth.guard` (auth, scopes, rate
limits, audit), the same body limits and JSON checks, the same operation, the same answers
and error payloads -- and drops only the layers in between. A request it does not take
(another method, another path) goes on to Starlette.

An operation answers 200 with its value unless its route says otherwise (``json_route(op,
status=201)``) or it returns a :class:`Reply` (a value with its own status: chantilly's
predict answers 201 when the caller gave an id). A route may also render errors its own way
(``errors=``: the older systems' ``{"message": ...}`` beside riverbed's ``{"error": ...}``),
on every path alike. An operation may return a coroutine where it must wait for one write
before making the next (chantilly's id is stored once its prediction is committed).

A route is only taken here when no route declared before it could match the same paths, so
the fast path never answers a request that Starlette would have given to another route.
Paths match exactly as Starlette matches them, a trailing slash included: ``/api/predict/``
is django-river-ml's route and ``/api/predict`` chantilly's.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from riverbed.exceptions import RiverbedError
from riverbed.server.http import (
    JSONResponse,
    body_limit_of,
    error_headers,
    parse_json,
    read_asgi_body,
    read_json,
    status_of,
)
from riverbed.server.routing import Endpoint, is_websocket

if TYPE_CHECKING:
    from riverbed.server.auth import Gate

__all__ = [
    "ErrorPayload",
    "FastRoutes",
    "JsonOp",
    "JsonOperation",
    "Reply",
    "answer_of",
    "encode",
    "failure",
    "json_route",
]

log = logging.getLogger("riverbed.server")

# (app.state, path parameters, JSON body) -> the answer, or an awaitable of it.
JsonOp = Callable[[Any, dict[str, str], Any], Any]
# A riverbed error -> the JSON payload that answers it (its status and headers stay riverbed's).
ErrorPayload = Callable[[RiverbedError], Any]

_MEMO_SIZE = 4096  # remembered (method, path) answers; forgotten all at once past this
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_JSON_TYPE = (b"content-type", b"application/json")
_SERVER_ERROR = {
    "error": {
        "code": "server_error",
        "message": "the server failed to handle this request; this is a bug",
        "detail": None,
    }
}


class Reply:
    """An operation's answer with a status of its own (the route's is used otherwise)."""

    __slots__ = ("value", "status")

    def __init__(self, value: Any, status: int) -> None:
        self.value = value
        self.status = status


def answer_of(value: Any, status: int) -> tuple[int, Any]:
    """The status and value that answer an operation's (awaited) result."""
    if type(value) is Reply:
        return value.status, value.value
    return status, value


def json_route(
    op: JsonOp, *, status: int = 200, errors: ErrorPayload | None = None
) -> Callable[[Request], Any]:
    """A Starlette handler for ``op``: the JSON body in (required), ``op``'s answer out with
    ``status`` (or a :class:`Reply`'s), riverbed errors answered with ``errors(exc)`` when
    given. The handler carries ``op``, ``status`` and ``errors`` so that :class:`FastRoutes`
    and the server's protocol serve it the same way."""

    async def handler(request: Request) -> Response:
        try:
            body = await read_json(request)
            result = op(request.app.state, request.path_params, body)
            if hasattr(result, "__await__"):  # a receipt, or an async operation's coroutine
                result = await result
        except RiverbedError as exc:
            if errors is None:
                raise  # the app's handler answers it
            return JSONResponse(errors(exc), status_code=status_of(exc), headers=error_headers(exc))
        code, value = answer_of(result, status)
        return JSONResponse(value, status_code=code)

    handler.json_op = op  # type: ignore[attr-defined]
    handler.json_status = status  # type: ignore[attr-defined]
    handler.json_errors = errors  # type: ignore[attr-defined]
    handler.__name__ = handler.__qualname__ = getattr(op, "__name__", "json_route")
    handler.__doc__ = op.__doc__
    return handler


def _segments(path: str) -> tuple[str | None, ...] | None:
    """A path template as its segments, None for each ``{param}`` (a trailing slash is a last,
    empty segment); None when a parameter has a converter (``{x:path}`` spans segments),
    which the fast path does not take."""
    out: list[str | None] = []
    for segment in _parts(path):
        if segment.startswith("{") and segment.endswith("}"):
            if ":" in segment:
                return None
            out.append(None)
        elif "{" in segment:
            return None
        else:
            out.append(segment)
    return tuple(out)


def _parts(path: str) -> list[str]:
    """A path's segments as Starlette matches them: ``/a/b/`` is ``a``, ``b`` and ``""``."""
    return path[1:].split("/") if path.startswith("/") else path.split("/")


def _same(x: str | None, y: str | None) -> bool:
    """Could segments ``x`` and ``y`` of two templates match the same path segment? A
    parameter matches any segment but an empty one."""
    if x is None:
        return y != ""
    if y is None:
        return x != ""
    return x == y


def _overlaps(a: Endpoint, b: tuple[str | None, ...]) -> bool:
    """Could endpoint ``a`` match a path that the template ``b`` matches?"""
    segments = _segments(a.path)
    if segments is None:  # a converter: assume it may match anything
        return True
    return len(segments) == len(b) and all(_same(x, y) for x, y in zip(segments, b, strict=True))


class FastRoutes:
    """The JSON operations among ``endpoints`` (in matching order), each behind its guard,
    matched by method and path segments."""

    def __init__(self, endpoints: Iterable[Endpoint]) -> None:
        from riverbed.server.auth import guard

        ordered = list(endpoints)
        self._table: dict[
            tuple[str, int], list[tuple[tuple[str | None, ...], tuple[str, ...], JsonOperation]]
        ] = {}
        for index, endpoint in enumerate(ordered):
            op = getattr(endpoint.handler, "json_op", None)
            segments = _segments(endpoint.path)
            if op is None or segments is None or is_websocket(endpoint):
                continue
            if any(
                e.method.upper() == endpoint.method.upper() and _overlaps(e, segments)
                for e in ordered[:index]
            ):
                continue  # an earlier route may take some of its paths: leave it to Starlette
            names = tuple(s[1:-1] for s in _parts(endpoint.path) if s.startswith("{"))
            key = (endpoint.method.upper(), len(segments))
            status: int = getattr(endpoint.handler, "json_status", 200)
            errors: ErrorPayload | None = getattr(endpoint.handler, "json_errors", None)
            app = guard(endpoint, _app(op, status, errors))
            operation = JsonOperation(op, app, status, errors)
            self._table.setdefault(key, []).append((segments, names, operation))
        self._memo: dict[tuple[str, str, str], tuple[JsonOperation | None, Any]] = {}

    @property
    def paths(self) -> list[str]:
        """The templates served here (for tests and ``riverbed routes``)."""
        return sorted(
            f"{method} /" + "/".join("{}" if s is None else s for s in segments)
            for (method, _), routes in self._table.items()
            for segments, _, _ in routes
        )

    def match(self, scope: Scope) -> ASGIApp | None:
        """The guarded app for this HTTP request, with its path parameters put in the scope,
        or None to leave it to Starlette."""
        found = self.lookup(scope["method"], scope["path"], scope.get("root_path", ""))
        if found is None:
            return None
        operation, params = found
        scope["path_params"] = params
        return operation.app

    def lookup(
        self, method: str, path: str, root_path: str = ""
    ) -> tuple[JsonOperation, dict[str, str]] | None:
        """The operation for this method and path with its path parameters, or None. Answers
        are remembered by method and path (a server sees few distinct paths: one set per
        model)."""
        key = (method, path, root_path)
        found = self._memo.get(key)
        if found is None:
            found = self._match(method, path, root_path)
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = found
        operation, params = found
        return None if operation is None else (operation, dict(params))

    def _match(
        self, method: str, path: str, root: str
    ) -> tuple[JsonOperation | None, tuple[tuple[str, str], ...]]:
        if root and path.startswith(root):
            path = path[len(root) :]
        if not path.startswith("/"):
            return None, ()
        parts = _parts(path)
        routes = self._table.get((method, len(parts)))
        if routes is None:
            return None, ()
        for segments, names, operation in routes:
            params = []
            for want, got in zip(segments, parts, strict=True):
                if want is None:
                    if not got:
                        break
                    params.append(got)
                elif want != got:
                    break
            else:
                return operation, tuple(zip(names, params, strict=True))
        return None, ()


class JsonOperation:
    """One JSON operation of the fast path: ``op``, and ``app``, the operation as a guarded
    ASGI app, with the route's ``status`` and ``errors`` (see :func:`json_route`). ``gate``
    is the guard's checks as plain calls; ``direct`` says the server's protocol may answer
    it without ASGI (:mod:`riverbed.server.protocol`): a plain function (not a coroutine
    function, so it returns its answer, a receipt or now and then a coroutine) on a route
    that is not audited."""

    __slots__ = ("op", "app", "gate", "direct", "status", "errors")

    def __init__(
        self, op: JsonOp, app: ASGIApp, status: int = 200, errors: ErrorPayload | None = None
    ) -> None:
        self.op = op
        self.app = app
        self.status = status
        self.errors = errors
        self.gate: Gate = app.riverbed_gate  # type: ignore[attr-defined]
        self.direct = not self.gate.audited and not inspect.iscoroutinefunction(op)


def encode(value: Any) -> bytes:
    """An operation's answer as JSON."""
    return orjson.dumps(value, option=_JSON_OPTIONS)


def failure(
    exc: BaseException, method: str, path: str, errors: ErrorPayload | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The status, extra headers and JSON body that answer an operation's exception
    (a riverbed error's payload made by ``errors``, when the route gives it)."""
    if isinstance(exc, RiverbedError):
        status = status_of(exc)
        if status >= 500:
            log.error("server error on %s %s: %s", method, path, exc)
        headers = [(k.lower().encode(), v.encode()) for k, v in error_headers(exc).items()]
        payload = exc.to_payload() if errors is None else errors(exc)
        return status, headers, orjson.dumps(payload, option=_JSON_OPTIONS)
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return 500, [], orjson.dumps(_SERVER_ERROR)


def _app(op: JsonOp, status: int, errors: ErrorPayload | None) -> ASGIApp:
    """``op`` as a raw ASGI app: body, JSON, the operation, the answer or its error."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        settings = state.settings
        headers: list[tuple[bytes, bytes]] = []
        try:
            limit, setting = body_limit_of(scope, settings)
            body = parse_json(await read_asgi_body(scope, receive, limit, setting), settings)
            result = op(state, scope["path_params"], body)
            if hasattr(result, "__await__"):  # a receipt, or an async operation's coroutine
                result = await result
            code, value = answer_of(result, status)
            content = encode(value)
        except ClientDisconnect:
            return
        except Exception as exc:
            code, headers, content = failure(exc, scope["method"], scope["path"], errors)
        headers += [(b"content-length", str(len(content)).encode()), _JSON_TYPE]
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    return app
