"""A model's challengers, promotions and promotion rule under ``/v1/models/{name}``
(riverbed.challengers, docs/monitoring.md)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.exceptions import InvalidInput
from riverbed.server.drift_api import _engine
from riverbed.server.http import JSONResponse, query_int, read_json, reject_query, reject_unknown
from riverbed.server.routing import Endpoint

__all__ = ["ENDPOINTS"]


def _by(request: Request, body: Any) -> str | None:
    by = body.get("by") if isinstance(body, dict) else None
    return by if isinstance(by, str) else None


async def list_challengers(request: Request) -> Response:
    reject_query(request, set())
    return JSONResponse(_engine(request).challengers(request.path_params["name"]))


async def add_challenger(request: Request) -> Response:
    reject_query(request, set())
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("the body is an object: {name?, version | spec | ref}")
    reject_unknown(body, {"name", "version", "spec", "ref"})
    receipt = _engine(request).submit_add_challenger(
        request.path_params["name"],
        body.get("name"),
        version=body.get("version"),
        spec=body.get("spec"),
        ref=body.get("ref"),
    )
    return JSONResponse(await receipt, status_code=201)


async def show_challenger(request: Request) -> Response:
    reject_query(request, {"history"})
    p = request.path_params
    history = query_int(request, "history", 1000)
    return JSONResponse(_engine(request).challenger(p["name"], p["challenger"], history=history))


async def remove_challenger(request: Request) -> Response:
    reject_query(request, set())
    p = request.path_params
    return JSONResponse(await _engine(request).submit_remove_challenger(p["name"], p["challenger"]))


async def promote(request: Request) -> Response:
    reject_query(request, set())
    body = await read_json(request, required=False) or {}
    if not isinstance(body, dict):
        raise InvalidInput("the body is an object: {by?}")
    reject_unknown(body, {"by"})
    p = request.path_params
    receipt = _engine(request).submit_promote(p["name"], p["challenger"], by=_by(request, body))
    return JSONResponse(await receipt)


async def rollback(request: Request) -> Response:
    reject_query(request, set())
    body = await read_json(request, required=False) or {}
    if not isinstance(body, dict):
        raise InvalidInput("the body is an object: {by?}")
    reject_unknown(body, {"by"})
    receipt = _engine(request).submit_rollback(request.path_params["name"], by=_by(request, body))
    return JSONResponse(await receipt)


async def show_rule(request: Request) -> Response:
    reject_query(request, set())
    return JSONResponse(_engine(request).promotion_rule(request.path_params["name"]))


async def set_rule(request: Request) -> Response:
    reject_query(request, set())
    body = await read_json(request)
    receipt = _engine(request).submit_set_promotion_rule(request.path_params["name"], body)
    return JSONResponse(await receipt)


async def rule_off(request: Request) -> Response:
    reject_query(request, set())
    return JSONResponse(
        await _engine(request).submit_promotion_rule_off(request.path_params["name"])
    )


_METRICS = {
    "n": {"type": "integer", "description": "labels scored"},
    "metrics": {"type": "object", "description": "running progressive metrics (null: none yet)"},
    "windows": {"type": "array"},
}
_NUMBERS = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "description": "labels both scored since the pair began"},
        "champion": {"type": ["number", "null"]},
        "challenger": {"type": ["number", "null"]},
        "improvement": {"type": ["number", "null"], "description": "relative, + is better"},
    },
}
_CHALLENGER = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "source": {"type": "object", "description": "{version} | {spec} | {ref} | {champion}"},
        "added_at": {"type": "integer", "description": "the champion's n_learns then"},
        "n_learns": {"type": "integer"},
        "n_scored": {"type": "integer"},
        "n_late": {"type": "integer", "description": "labels scored with a late prediction"},
        "error": {"type": ["string", "null"], "description": "why it stopped learning"},
        "rule": _NUMBERS,
        **_METRICS,
    },
}
_RULE = {
    "type": "object",
    "required": ["metric", "min_samples", "window"],
    "properties": {
        "metric": {"type": "string", "description": "one of the model's metrics"},
        "margin": {"type": "number", "description": "relative improvement, 0.02 = 2%"},
        "min_samples": {"type": "integer", "minimum": 1},
        "window": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}
_PROMOTION = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "n_learns": {"type": "integer"},
        "challenger": {"type": "string", "description": "the challenger made champion"},
        "demoted": {"type": "string", "description": "the old champion's challenger name"},
        "reason": {"type": "string", "enum": ["manual", "rule", "drift", "rollback"]},
        "numbers": {
            "type": ["object", "null"],
            "description": "the rule's, for 'rule' and 'drift' (with the alarm's)",
        },
        "previous_version": {"type": "integer"},
        "version": {"type": "integer", "description": "the new champion's version"},
        "time": {"type": "number"},
    },
}
_ARENA = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "n_learns": {"type": "integer"},
        "champion": {"type": "object", "properties": {"version": {"type": "integer"}, **_METRICS}},
        "challengers": {"type": "array", "items": _CHALLENGER},
        "rule": {"oneOf": [_RULE, {"type": "null"}]},
        "promotions": {"type": "array", "items": _PROMOTION},
        "n_dropped": {"type": "integer", "description": "predictions the queue had no room for"},
    },
}
_RULE_VIEW = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "rule": {"oneOf": [_RULE, {"type": "null"}]},
        "challengers": {"type": "object", "additionalProperties": _NUMBERS},
    },
}
_BY = {
    "type": "object",
    "properties": {"by": {"type": "string", "description": "who, for the alias history"}},
    "additionalProperties": False,
}
_C = "/v1/models/{name}/challengers"

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        _C,
        list_challengers,
        "The champion and its challengers side by side (metrics over the same labels), the "
        "promotion rule and the promotions",
        "monitoring",
        errors=(404, 409),
        response=_ARENA,
    ),
    Endpoint(
        "POST",
        _C,
        add_challenger,
        "Add a challenger: a version of the model, a spec, or a version of another model of "
        "the same task",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        body={
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": ["integer", "string"], "description": "number or alias"},
                "spec": {"type": "object"},
                "ref": {"type": "string", "description": "MODEL or MODEL@VERSION"},
            },
            "additionalProperties": False,
        },
        response=_ARENA,
        status=201,
    ),
    Endpoint(
        "GET",
        _C + "/{challenger}",
        show_challenger,
        "One challenger, with its metric history (?history=N newest points)",
        "monitoring",
        errors=(404, 409),
        response=_CHALLENGER,
    ),
    Endpoint(
        "DELETE",
        _C + "/{challenger}",
        remove_challenger,
        "Remove a challenger",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        response=_ARENA,
    ),
    Endpoint(
        "POST",
        _C + "/{challenger}/promote",
        promote,
        "Make a challenger the champion (a new version, name@restored moved to it); the old "
        "champion stays on as a challenger",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        body=_BY,
        response=_PROMOTION,
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/rollback",
        rollback,
        "Undo the last promotion: the champion it replaced is the champion again",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        body=_BY,
        response=_PROMOTION,
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}/promotion-rule",
        show_rule,
        "A model's promotion rule and each challenger's numbers under it",
        "monitoring",
        errors=(404, 409),
        response=_RULE_VIEW,
    ),
    Endpoint(
        "PUT",
        "/v1/models/{name}/promotion-rule",
        set_rule,
        "Promote a challenger by itself when it is better by a margin over a window of labels",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        body=_RULE,
        response=_RULE_VIEW,
    ),
    Endpoint(
        "DELETE",
        "/v1/models/{name}/promotion-rule",
        rule_off,
        "No more promotions by rule",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        response=_RULE_VIEW,
    ),
]
