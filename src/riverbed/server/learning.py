"""Routes beyond one predict or learn: metric history, forecasts, rankings and batches."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.engine import Engine
from riverbed.exceptions import InvalidInput
from riverbed.server.http import JSONResponse, field, is_object, read_json, reject_unknown
from riverbed.server.routing import Endpoint

__all__ = ["ENDPOINTS"]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer, got {raw!r}") from None


def _float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {raw!r}") from None


async def metrics_history(request: Request) -> Response:
    return JSONResponse(
        _engine(request).metrics_history(
            request.path_params["name"],
            after=_int(request, "after", 0) or 0,
            since=_float(request, "since"),
            limit=_int(request, "limit", 1000) or 1000,
        )
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


async def forecast(request: Request) -> Response:
    body = await read_json(request, required=False) or {}
    reject_unknown(body, {"horizon", "xs"})
    return JSONResponse(
        _engine(request).forecast(
            request.path_params["name"],
            field(body, "horizon", _is_int, "an integer", default=1),
            field(body, "xs", _is_list, "an array of feature objects"),
        )
    )


async def rank(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(body, {"user", "items", "features"})
    return JSONResponse(
        _engine(request).rank(
            request.path_params["name"],
            field(body, "user", required=True),
            field(body, "items", _is_list, "an array of item ids", required=True),
            field(body, "features", is_object, "an object of feature values"),
        )
    )


_HISTORY = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "points": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "seq": {"type": "integer"},
                    "time": {"type": "number"},
                    "n": {"type": "integer"},
                    "metrics": {"type": "object"},
                    "windows": {"type": "array"},
                },
            },
        },
    },
}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/v1/models/{name}/metrics/history",
        metrics_history,
        "Stored metric snapshots, oldest first (?after=seq, ?since=unix time, ?limit=)",
        "learning",
        errors=(404,),
        response=_HISTORY,
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/forecast",
        forecast,
        "Forecast the next values of a forecasting model",
        "learning",
        scope="predict",
        errors=(404,),
        body={
            "type": "object",
            "properties": {
                "horizon": {"type": "integer", "minimum": 1},
                "xs": {"type": "array", "items": {"type": "object"}},
            },
            "additionalProperties": False,
        },
        response={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "horizon": {"type": "integer"},
                "forecast": {"type": "array", "items": {"type": ["number", "null"]}},
            },
        },
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/rank",
        rank,
        "Order items by a recommender's predicted preference for a user",
        "learning",
        scope="predict",
        errors=(404,),
        body={
            "type": "object",
            "properties": {
                "user": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "items": {"type": "array"},
                "features": {"type": "object"},
            },
            "required": ["user", "items"],
            "additionalProperties": False,
        },
        response={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "user": {},
                "ranking": {"type": "array"},
            },
        },
    ),
]
