"""Request and response helpers shared by every route module: JSON in and out, body limits,
field checks with messages that say what to fix, and the error-to-status mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, overload

import numpy as np
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope

from riverbed.exceptions import (
    Conflict,
    Forbidden,
    InvalidInput,
    LimitExceeded,
    MalformedJSON,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RiverbedError,
    StorageFull,
    Unauthorized,
    Unavailable,
)
from riverbed.server.routing import BODY_LIMIT_KEY
from riverbed.validation import MAX_INT_DIGITS, parse_int

__all__ = [
    "JSONResponse",
    "body_limit_of",
    "body_too_large",
    "check_length",
    "check_batch",
    "check_json_limits",
    "declared_length",
    "error_response",
    "event_stream",
    "field",
    "parse_json",
    "query_int",
    "read_asgi_body",
    "read_body",
    "read_json",
    "reject_query",
    "status_of",
]

_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


# Set in the scope of a server-sent event stream: a server shutting down ends such a response
# (riverbed.server.protocol.RiverbedHttp.shutdown), where it waits for any other to finish.
STREAM_KEY = "riverbed.event_stream"
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event_stream(request: Request, body: AsyncIterator[bytes]) -> StreamingResponse:
    """A server-sent event stream of ``body``'s messages, which never ends by itself: marked
    so that a shutting-down server ends it rather than waiting for the client to leave."""
    request.scope[STREAM_KEY] = True
    return StreamingResponse(body, media_type="text/event-stream", headers=_STREAM_HEADERS)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=_JSON_OPTIONS)


def status_of(error: RiverbedError) -> int:
    if isinstance(error, PayloadTooLarge):
        return 413
    if isinstance(error, InvalidInput):
        return 400
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, Unauthorized):
        return 401
    if isinstance(error, RateLimited):
        return 429
    if isinstance(error, StorageFull):
        return 507
    if isinstance(error, Unavailable):
        return 503
    return 500


UNAVAILABLE_RETRY_AFTER = 1  # seconds a client waits before retrying a 503


def error_headers(error: RiverbedError) -> dict[str, str]:
    """The headers an error's status calls for: a challenge with 401, Retry-After with 429
    and 503."""
    if isinstance(error, Unauthorized):
        return {"WWW-Authenticate": error.challenge or 'Bearer realm="riverbed"'}
    if isinstance(error, RateLimited):
        return {"Retry-After": str(error.retry_after)}
    if isinstance(error, Unavailable) and not isinstance(error, StorageFull):
        # the database is out of reach or refused the write: nothing changed, retry soon
        return {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)}
    return {}


def error_response(
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "detail": detail}},
        status_code=status,
        headers=headers,
    )


@overload
def query_int(request: Request, name: str, default: int) -> int: ...
@overload
def query_int(request: Request, name: str, default: None = None) -> int | None: ...
def query_int(request: Request, name: str, default: int | None = None) -> int | None:
    """The query parameter ``name`` as an integer (``default`` when absent or empty); 400
    when it is not one (:func:`riverbed.validation.parse_int`: ASCII digits, an optional
    ``-``)."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = parse_int(raw, signed=True)
    if value is None:
        raise InvalidInput(f"{name} must be an integer, got {raw!r}", detail={"field": name})
    return value


def declared_length(request: Request) -> int | None:
    """The request's ``Content-Length`` when it is a number (the server checks the rest)."""
    raw = request.headers.get("content-length")
    return None if raw is None else parse_int(raw)


def body_too_large(
    limit: int, setting: str, given: int | None = None, what: str = "request body"
) -> PayloadTooLarge:
    """The 413 of a request body (or a WebSocket message) over its route's limit (see
    :class:`~riverbed.server.routing.BodyLimit`), naming the limit and the setting."""
    flag = setting.replace("_", "-")
    size = "" if given is None else f"{given} bytes, "
    return PayloadTooLarge(
        f"the {what} is {size}more than this route's limit of {limit} bytes (the "
        f"{setting} setting: --{flag} / RIVERBED_{setting.upper()})",
        detail={"setting": setting, "max": limit, **({} if given is None else {"given": given})},
    )


def check_length(scope: Scope, limit: int, setting: str) -> None:
    """413 for a ``Content-Length`` over ``limit``, before a byte of the body is read."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            # bytes.isdigit is ASCII only; that many digits is too big (and int() may refuse)
            if value.isdigit() and (len(value) > MAX_INT_DIGITS or int(value) > limit):
                given = int(value) if len(value) <= MAX_INT_DIGITS else None
                raise body_too_large(limit, setting, given)
            return


def body_limit_of(scope: Scope, settings: Any) -> tuple[int, str]:
    """The request's body limit and its setting, as the guard left them in the scope
    (``max_body_bytes`` for a request that did not go through a guard)."""
    found: tuple[int, str] | None = scope.get(BODY_LIMIT_KEY)
    return found if found is not None else (int(settings.max_body_bytes), "max_body_bytes")


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past its route's limit (:func:`body_limit_of`)."""
    limit, setting = body_limit_of(request.scope, request.app.state.settings)
    return await read_asgi_body(request.scope, request.receive, limit, setting)


async def read_asgi_body(
    scope: Scope, receive: Receive, limit: int, setting: str = "max_body_bytes"
) -> bytes:
    """The body of an HTTP request from its ASGI messages; 413 past ``limit`` bytes (by its
    Content-Length before reading, or as it arrives). A client that goes away raises
    Starlette's ``ClientDisconnect``, as ``Request.stream`` does."""
    check_length(scope, limit, setting)
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")  # the common case: one message
        if len(body) > limit:
            raise body_too_large(limit, setting)
        return body
    chunks = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit, setting)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


async def read_json(request: Request, *, required: bool = True, long_strings: bool = False) -> Any:
    """The request's JSON body; malformed JSON is a 400 that says where it broke. Bodies
    nested deeper than ``max_json_depth`` or holding a string longer than
    ``max_string_length`` (unless ``long_strings``, e.g. for an encoded artifact) are refused
    with 400 ``limit_exceeded``; bodies over the route's limit with 413."""
    body = await read_body(request)
    return parse_json(
        body, request.app.state.settings, required=required, long_strings=long_strings
    )


def parse_json(
    body: bytes, settings: Any, *, required: bool = True, long_strings: bool = False
) -> Any:
    """A request body's JSON value, with :func:`read_json`'s errors and limits."""
    if not body.strip():
        if required:
            raise InvalidInput("the request needs a JSON body")
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc):
            raise _too_deep(settings.max_json_depth) from None
        raise MalformedJSON(f"malformed JSON: {exc}") from None
    check_json_limits(value, body, settings, long_strings=long_strings)
    return value


def _too_deep(limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"the JSON body is nested deeper than {limit} levels",
        detail={"limit": "max_json_depth", "max": limit},
    )


def check_json_limits(value: Any, raw: bytes, settings: Any, *, long_strings: bool = False) -> None:
    """Nesting depth and string lengths of a parsed body, read from the raw bytes with numpy
    (a batch of a few hundred samples would otherwise be walked value by value).

    The raw body is valid JSON (it parsed). With escaped backslashes and quotes masked, the
    real quotes pair up around the strings' encoded contents; a bracket is inside a string
    when an odd number of quotes comes before it. The nesting depth is the highest running
    count of the other brackets. A string longer than the limit in characters is at least as
    long in encoded bytes, so only a string that long calls for counting characters."""
    max_depth: int = settings.max_json_depth
    max_string: int = settings.max_string_length
    deep = raw.count(b"[") + raw.count(b"{") > max_depth
    long = not long_strings and len(raw) > max_string
    if not (deep or long):
        return
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    data = np.frombuffer(raw, dtype=np.uint8)
    quotes = np.flatnonzero(data == _QUOTE)
    if deep:
        opens = (data == _BRACKET) | (data == _BRACE)
        at = np.flatnonzero(opens | (data == _CLOSE_BRACKET) | (data == _CLOSE_BRACE))
        outside = np.searchsorted(quotes, at) % 2 == 0
        steps = np.where(opens[at], 1, -1)[outside]
        if steps.size and int(steps.cumsum().max()) > max_depth:
            raise _too_deep(max_depth)
    if long and quotes.size and int((quotes[1::2] - quotes[0::2]).max()) - 1 > max_string:
        stack: list[Any] = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for k, v in item.items():
                    if len(k) > max_string:
                        raise _too_long(max_string)
                    stack.append(v)
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, str) and len(item) > max_string:
                raise _too_long(max_string)


_QUOTE, _BRACKET, _CLOSE_BRACKET, _BRACE, _CLOSE_BRACE = b'"[]{}'


def _too_long(limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"the JSON body holds a string longer than {limit} characters",
        detail={"limit": "max_string_length", "max": limit},
    )


def check_batch(items: Any, settings: Any, what: str = "samples") -> list[Any]:
    """A batch (a JSON array) within ``max_batch_size``; 413 when over, 400 when no array."""
    if not isinstance(items, list):
        raise InvalidInput(f"{what} must be an array")
    limit: int = settings.max_batch_size
    if len(items) > limit:
        raise PayloadTooLarge(
            f"{len(items)} {what} is more than the limit of {limit} per request",
            detail={"limit": "max_batch_size", "max": limit, "given": len(items)},
        )
    return items


_MISSING: Any = object()


def field(
    body: Any,
    name: str,
    check: Callable[[Any], bool] | None = None,
    expected: str = "",
    *,
    required: bool = False,
    default: Any = None,
) -> Any:
    """One field of a JSON object body, checked. ``expected`` names the type for messages."""
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object, got {type(body).__name__}")
    value = body.get(name, _MISSING)
    if value is _MISSING or (value is None and not required):
        if required:
            raise InvalidInput(f"missing field {name!r}", detail={"field": name})
        return default
    if check is not None and not check(value):
        raise InvalidInput(
            f"field {name!r} must be {expected}, got {_kind(value)}", detail={"field": name}
        )
    return value


def reject_query(request: Request, allowed: AbstractSet[str]) -> None:
    """Refuse a query parameter the route does not take."""
    unknown = set(request.query_params) - allowed
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise InvalidInput(f"unknown query parameter(s) {sorted(unknown)}; accepted: {accepted}")


def reject_unknown(body: Any, allowed: AbstractSet[str]) -> None:
    if isinstance(body, dict):
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise InvalidInput(
                f"unknown field(s) {', '.join(map(repr, unknown))}; accepted: "
                f"{', '.join(sorted(allowed))}",
                detail={"fields": unknown},
            )


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def is_object(value: Any) -> bool:
    return isinstance(value, dict)


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
