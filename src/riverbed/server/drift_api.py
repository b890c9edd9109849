"""A model's drift detectors and their alarms under ``/v1/models/{name}/drift``
(riverbed.drift, docs/drift.md)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.drift import ACTIONS, DETECTORS
from riverbed.engine import Engine
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


async def set_drift(request: Request) -> Response:
    reject_query(request, set())
    body = await read_json(request)
    reject_unknown(body, {"detectors"})
    detectors = field(body, "detectors", required=True)
    receipt = _engine(request).submit_set_drift(request.path_params["name"], detectors)
    return JSONResponse(await receipt)


async def show_drift(request: Request) -> Response:
    reject_query(request, set())
    return JSONResponse(_engine(request).drift(request.path_params["name"]))


async def drift_off(request: Request) -> Response:
    reject_query(request, set())
    return JSONResponse(await _engine(request).submit_drift_off(request.path_params["name"]))


async def drift_alarms(request: Request) -> Response:
    reject_query(request, {"after", "limit"})
    return JSONResponse(
        _engine(request).drift_alarms(
            request.path_params["name"],
            after=query_int(request, "after", 0),
            limit=query_int(request, "limit", 1000),
        )
    )


_SCALAR = {"type": ["number", "string", "boolean", "null"]}
_DETECTOR_IN: dict[str, Any] = {
    "type": "object",
    "required": ["detector"],
    "properties": {
        "detector": {"type": "string", "enum": [*DETECTORS, "HDDM_A", "HDDM_W"]},
        "on": {
            "type": "string",
            "description": "'errors' (default: a classifier's 0/1 mistakes, a regressor's "
            "absolute error) or 'feature:NAME'",
        },
        "params": {
            "type": "object",
            "additionalProperties": _SCALAR,
            "description": "the river detector's parameters",
        },
        "name": {"type": "string", "description": "default: DETECTOR, or DETECTOR:FEATURE"},
        "action": {"type": ["string", "null"], "enum": [*ACTIONS, None]},
    },
    "additionalProperties": False,
}
_DETECTOR_OUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_DETECTOR_IN["properties"],
        "n": {"type": "integer", "description": "values fed"},
        "n_skipped": {"type": "integer", "description": "learns that had no value for it"},
        "n_alarms": {"type": "integer"},
        "last_alarm": {"type": ["integer", "null"], "description": "its latest alarm's learn"},
        "statistics": {"type": "object", "description": "the detector's state in numbers"},
    },
}
_DRIFT = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "n_learns": {"type": "integer"},
        "errors": {
            "type": ["string", "null"],
            "description": "the model's error stream: 'mistake', 'absolute error' or null",
        },
        "detectors": {"type": "array", "items": _DETECTOR_OUT},
    },
}
_ALARMS = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "alarms": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "position": {"type": "integer", "description": "the learn that raised it"},
                    "name": {"type": "string"},
                    "detector": {"type": "string"},
                    "on": {"type": "string"},
                    "index": {
                        "type": "integer",
                        "description": "where the value fell in the detector's own stream",
                    },
                    "value": {"type": "number"},
                    "mean_before": {"type": ["number", "null"]},
                    "statistics": {"type": "object"},
                    "action": {"type": ["string", "null"]},
                    "time": {"type": "number"},
                },
            },
        },
    },
}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "PUT",
        "/v1/models/{name}/drift",
        set_drift,
        "Put drift detectors on a model's errors or features (replacing those it had; one "
        "given as it was keeps its state)",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        body={
            "type": "object",
            "required": ["detectors"],
            "properties": {"detectors": {"type": "array", "items": _DETECTOR_IN}},
            "additionalProperties": False,
        },
        response=_DRIFT,
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}/drift",
        show_drift,
        "A model's drift detectors: configuration, values fed, alarms, statistics",
        "monitoring",
        errors=(404, 409),
        response=_DRIFT,
    ),
    Endpoint(
        "DELETE",
        "/v1/models/{name}/drift",
        drift_off,
        "Take every drift detector off a model (its alarms are kept)",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        response=_DRIFT,
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}/drift/alarms",
        drift_alarms,
        "A model's drift alarms, oldest first (?after=position, ?limit=)",
        "monitoring",
        errors=(404, 409),
        response=_ALARMS,
    ),
]
