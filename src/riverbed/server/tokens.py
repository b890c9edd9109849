"""Token management over HTTP (admin), and ``GET /v1/auth``: is auth on, who am I."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.exceptions import InvalidInput, InvalidToken
from riverbed.server.auth import credentials_of, principal_of, verify
from riverbed.server.http import JSONResponse, field, is_str, read_json, reject_unknown
from riverbed.server.routing import Endpoint
from riverbed.tokens import SCOPES, Tokens, token_info

__all__ = ["ENDPOINTS"]

_TOKEN: dict[str, Any] = {
    "type": "object",
    "required": ["id", "name", "scopes", "status"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string", "enum": list(SCOPES)}},
        "created_at": {"type": "number"},
        "expires_at": {"type": ["number", "null"]},
        "revoked_at": {"type": ["number", "null"]},
        "created_by": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
    },
}


def _tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.engine.tokens
    return tokens


async def whoami(request: Request) -> Response:
    """Whether auth is on and, if a token is presented (header or ?token=), what it grants;
    a bad token is described in ``error`` (this route is public: it never answers 401)."""
    policy = request.app.state.auth
    secret = credentials_of(request.scope, allow_query=True)
    token = error = None
    if secret is not None:
        try:
            token = token_info(verify(request, secret))
        except InvalidToken as exc:
            error = {"code": exc.code, "message": exc.message}
    return JSONResponse(
        {
            "auth": policy.required(request.scope),
            "mode": policy.mode,
            "scopes": list(SCOPES),
            "token": token,
            "error": error,
        }
    )


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise InvalidInput(f"?{name}= must be true or false, not {raw!r}")
    return raw in ("true", "1", "yes")


def _is_list(value: object) -> bool:
    return isinstance(value, list)


async def list_tokens(request: Request) -> Response:
    include = _flag(request, "all")
    return JSONResponse({"tokens": _tokens(request).list_tokens(include_inactive=include)})


async def create_token(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(body, {"scopes", "name", "expires_in"})
    scopes = field(
        body, "scopes", lambda v: isinstance(v, list), "an array of scopes", required=True
    )
    expires_in = field(
        body,
        "expires_in",
        lambda v: isinstance(v, str | int | float) and not isinstance(v, bool),
        "a number of seconds or a duration like '30d'",
    )
    receipt = _tokens(request).submit_create_token(
        scopes,
        name=field(body, "name", is_str, "a string", default=""),
        expires_in=expires_in,
        created_by=principal_of(request).token_id,
    )
    return JSONResponse(await receipt, status_code=201)


async def get_token(request: Request) -> Response:
    return JSONResponse(_tokens(request).get_token(request.path_params["id"]))


async def revoke_token(request: Request) -> Response:
    return JSONResponse(await _tokens(request).submit_revoke_token(request.path_params["id"]))


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/v1/auth",
        whoami,
        "Is auth on, and what does the presented token (header or ?token=) grant?",
        "auth",
        scope="public",
        response={
            "type": "object",
            "required": ["auth", "mode", "scopes", "token", "error"],
            "properties": {
                "auth": {"type": "boolean"},
                "mode": {"type": "string"},
                "scopes": {"type": "array", "items": {"type": "string"}},
                "token": {"anyOf": [_TOKEN, {"type": "null"}]},
                "error": {
                    "anyOf": [
                        {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                        {"type": "null"},
                    ]
                },
            },
        },
    ),
    Endpoint(
        "GET",
        "/v1/tokens",
        list_tokens,
        "List tokens (active ones; ?all=true for expired and revoked too); never secrets",
        "auth",
        scope="admin",
        response={
            "type": "object",
            "required": ["tokens"],
            "properties": {"tokens": {"type": "array", "items": _TOKEN}},
        },
    ),
    Endpoint(
        "POST",
        "/v1/tokens",
        create_token,
        "Create a token; the response's `token` is the secret, shown this once",
        "auth",
        scope="admin",
        status=201,
        errors=(413,),
        body={
            "type": "object",
            "required": ["scopes"],
            "additionalProperties": False,
            "properties": {
                "scopes": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "enum": list(SCOPES)},
                },
                "name": {"type": "string", "maxLength": 200},
                "expires_in": {
                    "description": "seconds, or a duration like '90s', '15m', '12h', '30d', '2w'",
                    "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}],
                },
            },
        },
        response={
            **_TOKEN,
            "required": [*_TOKEN["required"], "token"],
            "properties": {**_TOKEN["properties"], "token": {"type": "string"}},
        },
    ),
    Endpoint(
        "GET",
        "/v1/tokens/{id}",
        get_token,
        "Describe a token (never its secret)",
        "auth",
        scope="admin",
        errors=(404,),
        response=_TOKEN,
    ),
    Endpoint(
        "DELETE",
        "/v1/tokens/{id}",
        revoke_token,
        "Revoke a token: it verifies no more from this answer on",
        "auth",
        scope="admin",
        errors=(404,),
        response={
            "type": "object",
            "required": ["id", "revoked"],
            "properties": {"id": {"type": "string"}, "revoked": {"type": "boolean"}},
        },
    ),
]
