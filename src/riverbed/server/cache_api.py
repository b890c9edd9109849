"""Native routes of the key-value cache under ``/v1/cache/{key}`` (see docs/cache.md).

Keys are one path segment: a key holding ``/`` cannot be addressed over HTTP.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.cache import Cache
from riverbed.exceptions import CacheKeyNotFound, InvalidInput
from riverbed.server.http import JSONResponse, field, query_int, read_json, reject_unknown
from riverbed.server.routing import Endpoint

__all__ = ["ENDPOINTS"]


def _cache(request: Request) -> Cache:
    cache: Cache = request.app.state.engine.cache
    return cache


def _key(request: Request) -> str:
    key: str = request.path_params["key"]
    return key


def _ttl(body: Any) -> Any:
    return field(body, "ttl", lambda v: isinstance(v, int | float), "a number of seconds")


async def _value_and_ttl(request: Request) -> tuple[Any, Any]:
    body = await read_json(request)
    reject_unknown(body, {"value", "ttl"})
    if not isinstance(body, dict) or "value" not in body:
        raise InvalidInput("missing field 'value'", detail={"field": "value"})
    return body["value"], _ttl(body)


async def put(request: Request) -> Response:
    value, ttl = await _value_and_ttl(request)
    return JSONResponse(await _cache(request).submit_put(_key(request), value, ttl=ttl))


async def get(request: Request) -> Response:
    cache, key = _cache(request), _key(request)
    value = cache.get(key)
    return JSONResponse({"key": key, "value": value, **_expiry(cache, key)})


def _expiry(cache: Cache, key: str) -> dict[str, Any]:
    try:
        entry = cache.ttl(key)
    except CacheKeyNotFound:  # expired between the two reads
        return {"ttl": 0.0, "expires_at": None}
    return {"ttl": entry["ttl"], "expires_at": entry["expires_at"]}


async def delete(request: Request) -> Response:
    return JSONResponse(await _cache(request).submit_delete(_key(request)))


async def push(request: Request) -> Response:
    value, ttl = await _value_and_ttl(request)
    return JSONResponse(await _cache(request).submit_push(_key(request), value, ttl=ttl))


async def peek(request: Request) -> Response:
    position = query_int(request, "position", query_int(request, "pos", 0))
    cache, key = _cache(request), _key(request)
    return JSONResponse({"key": key, "position": position, "value": cache.peek(key, position)})


async def pop(request: Request) -> Response:
    cache, key = _cache(request), _key(request)
    return JSONResponse({"key": key, "value": await cache.submit_pop(key)})


async def length(request: Request) -> Response:
    cache, key = _cache(request), _key(request)
    return JSONResponse({"key": key, "length": cache.length(key)})


async def get_ttl(request: Request) -> Response:
    return JSONResponse(_cache(request).ttl(_key(request)))


async def set_ttl(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(body, {"ttl"})
    if not isinstance(body, dict) or "ttl" not in body:
        raise InvalidInput("missing field 'ttl' (a number of seconds, or null: no expiry)")
    return JSONResponse(await _cache(request).submit_expire(_key(request), _ttl(body)))


_VALUE_BODY = {
    "type": "object",
    "required": ["value"],
    "additionalProperties": False,
    "properties": {
        "value": {"description": "any JSON value"},
        "ttl": {
            "type": ["number", "null"],
            "minimum": 0,
            "description": "seconds to live; 0 or null: no expiry",
        },
    },
}
_EXPIRY = {
    "ttl": {"type": ["number", "null"], "description": "seconds left; null: never expires"},
    "expires_at": {"type": ["number", "null"], "description": "epoch seconds"},
}


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"key": {"type": "string"}, **properties}}


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "PUT",
        "/v1/cache/{key}",
        put,
        "Store a JSON value under a key, with an optional time to live",
        "cache",
        scope="learn",
        errors=(413,),
        body=_VALUE_BODY,
        response=_obj({"expires_at": _EXPIRY["expires_at"]}),
    ),
    Endpoint(
        "GET",
        "/v1/cache/{key}",
        get,
        "Read the value under a key",
        "cache",
        errors=(404, 409),
        response=_obj({"value": {}, **_EXPIRY}),
    ),
    Endpoint(
        "DELETE",
        "/v1/cache/{key}",
        delete,
        "Delete a key (value or list)",
        "cache",
        scope="learn",
        response=_obj({"deleted": {"type": "boolean"}}),
    ),
    Endpoint(
        "POST",
        "/v1/cache/{key}/push",
        push,
        "Push a JSON value onto the front of the list under a key",
        "cache",
        scope="learn",
        errors=(409, 413),
        body=_VALUE_BODY,
        response=_obj({"length": {"type": "integer"}}),
    ),
    Endpoint(
        "GET",
        "/v1/cache/{key}/peek",
        peek,
        "Read the list item at ?position= (0: front, -1: back) without removing it",
        "cache",
        errors=(404, 409),
        response=_obj({"position": {"type": "integer"}, "value": {}}),
    ),
    Endpoint(
        "POST",
        "/v1/cache/{key}/pop",
        pop,
        "Remove and return the front item of the list under a key",
        "cache",
        scope="learn",
        errors=(404, 409),
        response=_obj({"value": {}}),
    ),
    Endpoint(
        "GET",
        "/v1/cache/{key}/length",
        length,
        "How many items the list under a key holds",
        "cache",
        errors=(409,),
        response=_obj({"length": {"type": "integer"}}),
    ),
    Endpoint(
        "GET",
        "/v1/cache/{key}/ttl",
        get_ttl,
        "Seconds left before a key expires",
        "cache",
        errors=(404,),
        response=_obj(_EXPIRY),
    ),
    Endpoint(
        "PUT",
        "/v1/cache/{key}/ttl",
        set_ttl,
        "Give a key a new time to live (null: never expire)",
        "cache",
        scope="learn",
        errors=(404,),
        body={
            "type": "object",
            "required": ["ttl"],
            "additionalProperties": False,
            "properties": {"ttl": _VALUE_BODY["properties"]["ttl"]},  # type: ignore[index]
        },
        response=_obj({"expires_at": _EXPIRY["expires_at"]}),
    ),
]
