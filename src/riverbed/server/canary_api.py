"""Canary splits of a model's routes under ``/v1/models/{name}/canary``, where ``{name}`` is
the model (its live route) or ``name@alias`` (riverbed.canary, docs/monitoring.md)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.engine import Engine
from riverbed.exceptions import InvalidInput
from riverbed.server.http import (
    JSONResponse,
    field,
    query_int,
    read_json,
    reject_query,
    reject_unknown,
)
from riverbed.server.routing import Endpoint

__all__ = ["ENDPOINTS"]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _query_bool(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise InvalidInput(f"{name} is true or false, got {value!r}", detail={"field": name})


async def set_canary(request: Request) -> Response:
    reject_query(request, set())
    body = await read_json(request)
    reject_unknown(body, {"arms", "sticky", "guard", "baseline"})
    receipt = _engine(request).submit_set_canary(
        request.path_params["name"],
        field(body, "arms", required=True),
        sticky=field(body, "sticky", default="id"),
        guard=field(body, "guard"),
        baseline=field(body, "baseline"),
    )
    return JSONResponse(await receipt)


async def move_canary(request: Request) -> Response:
    reject_query(request, set())
    body = await read_json(request)
    reject_unknown(body, {"weights"})
    receipt = _engine(request).submit_update_canary(
        request.path_params["name"], field(body, "weights", required=True)
    )
    return JSONResponse(await receipt)


async def show_canary(request: Request) -> Response:
    reject_query(request, set())
    return JSONResponse(_engine(request).canary(request.path_params["name"]))


async def stop_canary(request: Request) -> Response:
    reject_query(request, {"remove"})
    receipt = _engine(request).submit_stop_canary(
        request.path_params["name"], remove=_query_bool(request, "remove")
    )
    return JSONResponse(await receipt)


async def canary_history(request: Request) -> Response:
    reject_query(request, {"limit"})
    return JSONResponse(
        _engine(request).canary_history(
            request.path_params["name"], limit=query_int(request, "limit", 1000)
        )
    )


async def list_canaries(request: Request) -> Response:
    reject_query(request, set())
    name = request.path_params["name"]
    return JSONResponse({"model": name, "canaries": _engine(request).canaries(name)})


_WEIGHTS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "number", "minimum": 0, "maximum": 100},
    "description": "arm ('live', 'v3') -> percentage; the percentages sum to 100",
}
_GUARD: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {
        "metric": {"type": "string", "description": "one of the model's metrics"},
        "margin": {"type": "number", "minimum": 0, "description": "an absolute difference"},
        "min_samples": {"type": "integer", "minimum": 1},
    },
    "required": ["metric"],
    "additionalProperties": False,
}
_ARM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "arm": {"type": "string"},
        "version": {"type": ["integer", "null"], "description": "null: the live model"},
        "weight": {"type": "number"},
        "n_predictions": {"type": "integer", "description": "predictions it answered"},
        "n_labels": {"type": "integer", "description": "labels of those predictions"},
        "n": {"type": "integer", "description": "labels scored in its metrics"},
        "metrics": {"type": "object"},
        "windows": {"type": "array"},
    },
}
_CANARY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "route": {"type": "string", "description": "name, or name@alias"},
        "alias": {"type": ["string", "null"]},
        "run": {"type": "string", "description": "a new one each time a split is set"},
        "status": {"type": "string", "enum": ["running", "stopped"]},
        "baseline": {"type": "string"},
        "sticky": {"type": "string", "description": "'id' or 'key:FEATURE'"},
        "guard": _GUARD,
        "weights": _WEIGHTS,
        "arms": {"type": "array", "items": _ARM},
        "stopped": {
            "type": ["object", "null"],
            "description": "how it stopped: by hand, or by the guard with its numbers",
        },
        "created_at": {"type": "number"},
        "updated_at": {"type": "number"},
    },
}
_PATH = "/v1/models/{name}/canary"

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "PUT",
        _PATH,
        set_canary,
        "Split a route of a model (its name: the live route; name@alias) between arms by "
        "percentage, sticky by prediction id or by a feature, with an optional guard",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        body={
            "type": "object",
            "required": ["arms"],
            "properties": {
                "arms": _WEIGHTS,
                "sticky": {"type": "string", "description": "'id' (default) or 'key:FEATURE'"},
                "guard": _GUARD,
                "baseline": {"type": ["string", "null"], "description": "default: first arm"},
            },
            "additionalProperties": False,
        },
        response=_CANARY,
    ),
    Endpoint(
        "PATCH",
        _PATH,
        move_canary,
        "Move a split's percentages (arms not named get 0; a stopped split runs again)",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        body={
            "type": "object",
            "required": ["weights"],
            "properties": {"weights": _WEIGHTS},
            "additionalProperties": False,
        },
        response=_CANARY,
    ),
    Endpoint(
        "GET",
        _PATH,
        show_canary,
        "A route's split: arms, weights, predictions and labels per arm, each arm's metrics",
        "monitoring",
        errors=(404, 409),
        response=_CANARY,
    ),
    Endpoint(
        "DELETE",
        _PATH,
        stop_canary,
        "Stop a split (every canary arm to 0%, the baseline answers); ?remove=true takes it "
        "off the route",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        response=_CANARY,
    ),
    Endpoint(
        "GET",
        _PATH + "/history",
        canary_history,
        "Each arm's metric history, oldest first (?limit= points an arm)",
        "monitoring",
        errors=(404, 409),
        response={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "route": {"type": "string"},
                "arms": {"type": "object", "additionalProperties": {"type": "array"}},
            },
        },
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}/canaries",
        list_canaries,
        "Every split of a model's routes",
        "monitoring",
        errors=(404, 409),
        response={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "canaries": {"type": "array", "items": _CANARY},
            },
        },
    ),
]
