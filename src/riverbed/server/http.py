"""Request and response helpers shared by every route module: JSON in and out, body limits,
field checks with messages that say what to fix, and the error-to-status mapping."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from riverbed.exceptions import (
    Conflict,
    Forbidden,
    InvalidInput,
    MalformedJSON,
    NotFound,
    PayloadTooLarge,
    RiverbedError,
)

__all__ = [
    "JSONResponse",
    "error_response",
    "field",
    "read_json",
    "status_of",
]

_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


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
    return 500


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


async def read_body(request: Request) -> bytes:
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, required: bool = True) -> Any:
    """The request's JSON body; malformed JSON is a 400 that says where it broke."""
    body = await read_body(request)
    if not body.strip():
        if required:
            raise InvalidInput("the request needs a JSON body")
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"malformed JSON: {exc}") from None


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


def reject_unknown(body: Any, allowed: set[str]) -> None:
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


def is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
