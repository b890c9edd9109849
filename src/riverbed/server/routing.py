"""Endpoints declared once as data: the Starlette routes, the OpenAPI document and
``riverbed routes`` are all built from the same list."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "ARTIFACT",
    "BODY",
    "BODY_LIMIT_KEY",
    "ENCODED_ARTIFACT",
    "STREAMED",
    "UPLOAD",
    "BodyLimit",
    "Endpoint",
    "is_websocket",
    "openapi_document",
]

Handler = Callable[[Request], Awaitable[Response]]


@dataclasses.dataclass(frozen=True)
class BodyLimit:
    """The most bytes a route's request body (or, on a WebSocket, each message) may have:
    the value of the setting ``setting``; for an artifact sent as base64 inside a JSON or
    form body (``encoded``), four thirds of it plus ``max_body_bytes`` for the other fields.

    The guard (:func:`riverbed.server.auth.guard`) enforces it on every route: a
    ``Content-Length`` over it is refused before the body is read, a chunked body once it
    has gone past it, both with 413 ``payload_too_large`` naming the limit and the setting.
    ``streamed`` is a body read line by line and never held whole (the NDJSON learn
    upload): no total, each line within the setting (the route checks its lines)."""

    setting: str = "max_body_bytes"
    encoded: bool = False
    streamed: bool = False

    def of(self, settings: Any) -> int | None:
        """The limit in bytes under ``settings`` (None: a streamed body has no total)."""
        if self.streamed:
            return None
        value = int(getattr(settings, self.setting))
        if self.encoded:
            return value * 4 // 3 + int(settings.max_body_bytes)
        return value


# The ASGI scope key under which the guard leaves a request's limit: (bytes, setting name).
BODY_LIMIT_KEY = "riverbed.body_limit"

BODY = BodyLimit()  # every route's unless it says otherwise
ARTIFACT = BodyLimit("max_artifact_bytes")  # a model file as the body, or a multipart part
# a model file as base64 in a JSON or form body
ENCODED_ARTIFACT = BodyLimit("max_artifact_bytes", encoded=True)
UPLOAD = BodyLimit("max_upload_bytes")  # training data for a job
STREAMED = BodyLimit(streamed=True)  # read line by line, each line within max_body_bytes


@dataclasses.dataclass(frozen=True)
class Endpoint:
    # An HTTP method, or "WS" for a WebSocket (the handler then takes a WebSocket; WebSocket
    # routes are listed by `riverbed routes` but have no place in the OpenAPI document).
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    # Who may call it: "public" (anyone), "read", "predict", "learn" or "admin".
    scope: str = "read"
    body: dict[str, Any] | None = None  # JSON schema of the request body
    response: dict[str, Any] | None = None  # JSON schema of the success body
    status: int = 200
    errors: tuple[int, ...] = ()
    media_type: str = "application/json"
    body_limit: BodyLimit = BODY
    # The route may take a pickled upload (which runs code when loaded): it applies the
    # pickle rule (riverbed.server.guard, rule 3) before it reads or stores the upload.
    pickle: bool = False


def is_websocket(endpoint: Endpoint) -> bool:
    return endpoint.method.upper() in ("WS", "WEBSOCKET")


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "detail": {}},
        }
    },
}
_ERROR_TEXT = {
    400: "Bad input; nothing changed",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    401: "Authentication required: no token, or an unknown, expired or revoked one",
    403: "The token's scopes do not grant this route",
    429: "Too many requests: retry after Retry-After seconds",
}


def openapi_document(endpoints: Iterable[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        if is_websocket(e):
            continue
        operation: dict[str, Any] = {
            "summary": e.summary,
            "tags": [e.tag],
            "operationId": _operation_id(e),
            "x-riverbed-scope": e.scope,
            "x-riverbed-body-limit": "streamed" if e.body_limit.streamed else e.body_limit.setting,
        }
        if e.pickle:
            operation["x-riverbed-pickle"] = True
        if e.scope != "public":
            operation["security"] = [{"token": [e.scope]}]
        params = [
            segment[1:-1].split(":")[0] for segment in e.path.split("/") if segment.startswith("{")
        ]
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if e.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": e.body}},
            }
        success: dict[str, Any] = {"description": "OK"}
        if e.response is not None:
            success["content"] = {e.media_type: {"schema": e.response}}
        responses: dict[str, Any] = {str(e.status): success}
        auth_errors = {401, 403} if e.scope != "public" else set()
        for status in sorted({400, 413, 429, *auth_errors, *e.errors}):
            responses[str(status)] = {
                "description": _ERROR_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        operation["responses"] = responses
        paths.setdefault(_openapi_path(e.path), {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A riverbed token (`riverbed tokens create`); the scope "
                    "a route needs is its x-riverbed-scope. See docs/auth.md.",
                }
            },
        },
    }


def _openapi_path(path: str) -> str:
    return "/".join(
        s.split(":")[0] + "}" if s.startswith("{") and ":" in s else s for s in path.split("/")
    )


def _operation_id(e: Endpoint) -> str:
    words = [w.strip("{}").split(":")[0] for w in e.path.strip("/").split("/") if w]
    return "_".join([e.method.lower(), *words]).replace("-", "_").replace(".", "_")
