"""The native JSON API under ``/v1``: models, predict, learn, metrics, stats, health."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.engine import Engine, Receipt
from riverbed.exceptions import ModelExists
from riverbed.server.fast import json_route
from riverbed.server.http import (
    JSONResponse,
    field,
    is_bool,
    is_object,
    is_str,
    is_str_list,
    read_json,
    reject_unknown,
)
from riverbed.server.routing import Endpoint
from riverbed.tasks import MISSING, TASKS
from riverbed.version import __version__

__all__ = ["ENDPOINTS"]

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.\\-]{0,127}$"}
_SCALAR = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
_FEATURES = {
    "type": "object",
    "additionalProperties": _SCALAR,
    "description": "feature name -> finite number, string or boolean",
}
_ID = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
_INPUTS = {
    "user": {**_ID, "description": "recommendation: the user"},
    "item": {**_ID, "description": "recommendation: the item"},
    "arms": {"type": "array", "items": _ID, "description": "bandit: the arms to pull from"},
    "value": {"type": "number", "description": "supervised anomaly detection: the value"},
}
_MODEL = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "task": {"type": "string"},
        "description": {"type": "string"},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "metrics": {"type": "array", "items": {"type": "string"}},
        "options": {"type": "object"},
        "created_at": {"type": "number"},
        "updated_at": {"type": "number"},
        "version": {"type": "integer"},
        "source": {"type": ["string", "null"]},
        "spec": {},
        "n_predictions": {"type": "integer"},
        "n_learns": {"type": "integer"},
    },
}
_PREDICTION = {
    "type": "object",
    "required": ["id", "model", "prediction"],
    "properties": {
        "id": {"type": "string"},
        "model": {"type": "string"},
        "prediction": {},
        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}
_OP_STATS = {
    "type": "object",
    "properties": {
        "n_calls": {"type": "integer"},
        "mean_duration": {"type": "number"},
        "ewm_duration": {"type": "number"},
        **{
            f"p{q}_duration": {"type": ["number", "null"], "description": "null before any call"}
            for q in (50, 95, 99)
        },
    },
}


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def health(request: Request) -> Response:
    out: dict[str, Any] = {"status": "ok", "version": __version__}
    if _engine(request).scaleout is not None:
        out["cluster"] = True  # a scale-out replica: the dashboard shows its cluster page
    return JSONResponse(out)


async def list_models(request: Request) -> Response:
    return JSONResponse({"models": _engine(request).list_models()})


async def create_model(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(
        body, {"name", "spec", "task", "description", "tags", "metrics", "options", "exist_ok"}
    )
    engine = _engine(request)
    name = field(body, "name", is_str, "a string", required=True)
    exist_ok = field(body, "exist_ok", is_bool, "true or false", default=False)
    create = {
        "spec": field(body, "spec", required=True),
        "task": field(body, "task", is_str, "a string"),
        "description": field(body, "description", is_str, "a string", default=""),
        "tags": field(body, "tags", is_object, "an object of strings"),
        "metrics": field(body, "metrics", is_str_list, "an array of metric names"),
        "options": field(body, "options", is_object, "an object"),
    }
    try:
        receipt = engine.submit_create_model(name, **create)
    except ModelExists:
        if not exist_ok:
            raise
        # 200, not 201: the model was there (if it was created from this spec).
        return JSONResponse(await engine.submit_create_model(name, **create, exist_ok=True))
    return JSONResponse(await receipt, status_code=201)


async def get_model(request: Request) -> Response:
    return JSONResponse(_engine(request).get_model(request.path_params["name"]))


async def delete_model(request: Request) -> Response:
    return JSONResponse(await _engine(request).submit_delete_model(request.path_params["name"]))


# Fields some tasks take besides the features (recommenders, bandits, supervised detectors).
TASK_INPUTS = frozenset({"user", "item", "arms", "value"})


def task_inputs(body: Any) -> dict[str, Any]:
    return {k: body[k] for k in TASK_INPUTS if k in body}


# The common bodies, whose fields need no check here beyond their types: features (an object)
# and an optional id (a string); a learn's ground truth is the engine's to check.
_PLAIN_PREDICT = frozenset({"features", "id"})
_PLAIN_LEARN = frozenset({"features", "ground_truth", "id"})
_PREDICT_FIELDS = frozenset({"features", "id", "features_key", "version", *TASK_INPUTS})
_LEARN_FIELDS = frozenset({"features", "ground_truth", "id", *TASK_INPUTS})


def _plain(body: Any, fields: frozenset[str]) -> bool:
    if type(body) is not dict or not fields.issuperset(body):
        return False
    features, id = body.get("features"), body.get("id")
    return (features is None or type(features) is dict) and (id is None or type(id) is str)


def _predict(state: Any, params: dict[str, str], body: Any) -> Receipt[dict[str, Any]]:
    engine: Engine = state.engine
    if _plain(body, _PLAIN_PREDICT):
        return engine.submit_predict(params["name"], body.get("features"), id=body.get("id"))
    reject_unknown(body, _PREDICT_FIELDS)
    return engine.submit_predict(
        params["name"],
        field(body, "features", is_object, "an object of feature values"),
        id=field(body, "id", is_str, "a string"),
        features_key=field(body, "features_key", is_str, "a string (a cache key)"),
        version=field(body, "version", is_version, "a version number (1, 2, ...)"),
        **task_inputs(body),
    )


def is_version(value: Any) -> bool:
    return type(value) is int and value >= 1


def _learn(state: Any, params: dict[str, str], body: Any) -> Receipt[dict[str, Any]]:
    engine: Engine = state.engine
    if _plain(body, _PLAIN_LEARN):
        return engine.submit_learn(
            params["name"],
            body.get("features"),
            body.get("ground_truth", MISSING),
            id=body.get("id"),
        )
    reject_unknown(body, _LEARN_FIELDS)
    return engine.submit_learn(
        params["name"],
        field(body, "features", is_object, "an object of feature values"),
        body.get("ground_truth", MISSING),
        id=field(body, "id", is_str, "a string"),
        **task_inputs(body),
    )


predict = json_route(_predict)
learn = json_route(_learn)


async def metrics(request: Request) -> Response:
    return JSONResponse(_engine(request).metrics(request.path_params["name"]))


async def stats(request: Request) -> Response:
    return JSONResponse(_engine(request).stats(request.path_params["name"]))


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/health",
        health,
        "Is the server up?",
        "service",
        scope="public",
        response=_obj(
            {
                "status": {"type": "string"},
                "version": {"type": "string"},
                "cluster": {"type": "boolean"},
            },
            ["status"],
        ),
    ),
    Endpoint(
        "GET",
        "/v1/health",
        health,
        "Is the server up?",
        "service",
        scope="public",
        response=_obj(
            {
                "status": {"type": "string"},
                "version": {"type": "string"},
                "cluster": {"type": "boolean"},
            },
            ["status"],
        ),
    ),
    Endpoint(
        "GET",
        "/v1/models",
        list_models,
        "List models",
        "models",
        response=_obj({"models": {"type": "array", "items": _MODEL}}, ["models"]),
    ),
    Endpoint(
        "POST",
        "/v1/models",
        create_model,
        "Create a model from a declarative spec",
        "models",
        scope="admin",
        status=201,
        errors=(409, 413),
        body=_obj(
            {
                "name": _NAME,
                "spec": {"description": "see docs/specs.md"},
                "task": {"type": "string", "enum": list(TASKS)},
                "description": {"type": "string"},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "metrics": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "river metric names; [] turns metrics off",
                },
                "options": {
                    "type": "object",
                    "description": "windows, history_every, history_seconds and the task's "
                    "options (see docs/tasks.md)",
                },
            },
            ["name", "spec"],
        ),
        response=_MODEL,
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}",
        get_model,
        "Describe a model",
        "models",
        errors=(404,),
        response=_MODEL,
    ),
    Endpoint(
        "DELETE",
        "/v1/models/{name}",
        delete_model,
        "Delete a model and its history",
        "models",
        scope="admin",
        errors=(404,),
        response=_obj(
            {"name": {"type": "string"}, "deleted": {"type": "boolean"}}, ["name", "deleted"]
        ),
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/predict",
        predict,
        "Predict for one sample; the prediction is stored under its id",
        "learning",
        scope="predict",
        errors=(404, 409, 413),
        body=_obj(
            {
                "features": _FEATURES,
                "id": {"type": "string", "minLength": 1},
                "features_key": {
                    "type": "string",
                    "description": "a cache key holding the features; given features override",
                },
                "version": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "answer with this version as it was frozen, not the live model",
                },
                **_INPUTS,
            },
            [],
        ),
        response=_PREDICTION,
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/learn",
        learn,
        "Learn from features and ground truth, or from a prediction id and ground truth",
        "learning",
        scope="learn",
        errors=(404, 409, 413),
        body=_obj(
            {
                "features": _FEATURES,
                "ground_truth": {
                    "description": "a number, label or boolean; an object for multi-output; "
                    "optional for clustering and anomaly detection"
                },
                "id": {"type": "string", "minLength": 1},
                **_INPUTS,
            },
            [],
        ),
        response=_obj(
            {
                "model": {"type": "string"},
                "id": {"type": ["string", "null"]},
                "n_learns": {"type": "integer"},
            },
            ["model", "n_learns"],
        ),
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}/metrics",
        metrics,
        "Progressive-validation metrics of a model",
        "learning",
        errors=(404,),
        response=_obj(
            {
                "model": {"type": "string"},
                "n_learns": {"type": "integer"},
                "n": {"type": "integer", "description": "samples scored"},
                "metrics": {"type": "object", "description": "running values by metric name"},
                "windows": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "window": {"type": "string"},
                            "size": {"type": "integer"},
                            "seconds": {"type": "number"},
                            "n": {"type": "integer"},
                            "metrics": {"type": "object"},
                        },
                    },
                },
            },
            ["model", "n", "metrics"],
        ),
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}/stats",
        stats,
        "Counts and latency of predict and learn",
        "learning",
        errors=(404,),
        response=_obj(
            {
                "model": {"type": "string"},
                "n_predictions": {"type": "integer"},
                "n_learns": {"type": "integer"},
                "predict": _OP_STATS,
                "learn": _OP_STATS,
            },
            ["model"],
        ),
    ),
]
