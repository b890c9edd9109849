"""chantilly's HTTP API (``/api/...``) over the engine.

chantilly served one "flavor" (regression, binary or multiclass) per server, a default model
(the last one uploaded), predictions stored under a caller's id until their ground truth
arrives, metrics, stats and two SSE streams. This module keeps its routes, request fields,
response shapes and status codes; ``docs/migration/chantilly.md`` lists what differs and why.

State that chantilly kept in its shelve file (the flavor, the default model, which of the
caller's ids points at which stored prediction) lives in riverbed's cache under
``riverbed:chantilly:...`` keys, so it survives a restart and is safe under concurrent
requests (chantilly's shelve store was not).
"""

from __future__ import annotations

from typing import Any

import river
from starlette.requests import Request
from starlette.responses import Response

from riverbed.engine import Engine
from riverbed.exceptions import CacheKeyNotFound, InvalidInput, ModelNotFound
from riverbed.receipts import Receipt
from riverbed.server.compat.common import (
    engine_of,
    flavor_setup,
    humanize_ns,
    legacy_errors,
    legacy_metrics,
    legacy_payload,
    load_pickled_upload,
    replace_upload,
    sse_message,
    sse_response,
    wire_prediction,
)
from riverbed.server.fast import Reply, json_route
from riverbed.server.http import JSONResponse, read_json
from riverbed.server.routing import ARTIFACT, Endpoint
from riverbed.stores import backend_name

__all__ = ["ENDPOINTS", "FLAVORS"]

STATE_KEY = "riverbed:chantilly:state"
ID_KEY = "riverbed:chantilly:id:"
TAG = {"compat": "chantilly"}

# chantilly's default metrics per flavor (riverbed's own defaults differ a little).
FLAVORS: dict[str, list[str]] = {
    "regression": ["MAE", "RMSE", "SMAPE"],
    "binary": ["Accuracy", "LogLoss", "Precision", "Recall", "F1"],
    "multiclass": [
        "Accuracy",
        "CrossEntropy",
        "MacroPrecision",
        "MacroRecall",
        "MacroF1",
        "MicroPrecision",
        "MicroRecall",
        "MicroF1",
    ],
}


def _invalid(message: Any) -> InvalidInput:
    """An InvalidInput whose legacy ``message`` may be chantilly's ``{field: [errors]}``."""
    text = (
        message
        if isinstance(message, str)
        else "; ".join(f"{field}: {', '.join(errors)}" for field, errors in message.items())
    )
    error = InvalidInput(text, detail=None if isinstance(message, str) else message)
    error.legacy_message = message  # type: ignore[attr-defined]
    return error


def _validate(body: Any, schema: dict[str, tuple[type | tuple[type, ...], bool]]) -> dict[str, Any]:
    """Check a JSON body as chantilly's validator did: unknown fields, required fields and
    types each reported per field."""
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object")
    errors: dict[str, list[str]] = {}
    for field in body:
        if field not in schema:
            errors[field] = ["unknown field"]
    for field, (types, required) in schema.items():
        value = body.get(field)
        if value is None:
            if required:
                errors[field] = ["required field"]
            continue
        if isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)
        ):
            errors[field] = ["wrong type"]
        elif not isinstance(value, types):
            errors[field] = ["wrong type"]
    if errors:
        raise _invalid(errors)
    return body


def _state_of(engine: Engine) -> dict[str, Any]:
    try:
        state: dict[str, Any] = engine.cache.get(STATE_KEY)
    except CacheKeyNotFound:
        return {"flavor": None, "default": None}
    return state


async def _state(request: Request) -> dict[str, Any]:
    return _state_of(engine_of(request))


async def _save_state(request: Request, state: dict[str, Any]) -> None:
    await engine_of(request).cache.submit_put(STATE_KEY, state)


async def _flavor(request: Request) -> str:
    flavor = (await _state(request))["flavor"]
    if flavor is None:
        raise _invalid("No flavor has been set.")
    return str(flavor)


def _model_of(engine: Engine, name: Any) -> str:
    """The model a request names, else the default model (400 when there is none)."""
    if name is not None:
        return str(name)
    default = _state_of(engine)["default"]
    if default is None:
        raise _invalid("No default model has been set.")
    return str(default)


async def _model_name(request: Request, name: Any) -> str:
    return _model_of(engine_of(request), name)


def _id_key(id: Any) -> str:
    return f"{ID_KEY}{id}"


# -- routes ------------------------------------------------------------------------------------


@legacy_errors
async def get_init(request: Request) -> Response:
    flavor = await _flavor(request)
    kind = backend_name(engine_of(request).settings.database)
    return JSONResponse(
        {"flavor": flavor, "storage": f"riverbed ({kind})", "river_version": river.__version__}
    )


@legacy_errors
async def post_init(request: Request) -> Response:
    body = _validate(await read_json(request), {"flavor": (str, True)})
    flavor = body["flavor"]
    if flavor not in FLAVORS:
        raise _invalid({"flavor": [f"unallowed value {flavor}"]})
    engine = engine_of(request)
    for model in engine.list_models():
        if model["tags"].get("compat") == TAG["compat"]:
            try:
                await engine.submit_delete_model(model["name"])
            except ModelNotFound:  # deleted meanwhile
                pass
    await _save_state(request, {"flavor": flavor, "default": None})
    return JSONResponse({}, status_code=201)


@legacy_errors
async def upload_model(request: Request) -> Response:
    flavor = await _flavor(request)
    model = await load_pickled_upload(request)
    name = await replace_upload(
        request, model, tags=TAG, **flavor_setup(flavor, model, FLAVORS[flavor])
    )
    state = await _state(request)
    await _save_state(request, {**state, "default": name})
    return JSONResponse({"name": name}, status_code=201)


@legacy_errors
async def get_model(request: Request) -> Response:
    from riverbed import serialization

    name = await _model_name(request, request.path_params.get("name"))
    model = engine_of(request).live_model(name)
    return Response(serialization.dumps_plain(model), media_type="application/octet-stream")


@legacy_errors
async def delete_model(request: Request) -> Response:
    name = request.path_params["name"]
    await engine_of(request).submit_delete_model(name)
    state = await _state(request)
    if state["default"] == name:
        await _save_state(request, {**state, "default": None})
    return Response(status_code=204)


@legacy_errors
async def list_models(request: Request) -> Response:
    names = sorted(m["name"] for m in engine_of(request).list_models())
    default = (await _state(request))["default"]
    return JSONResponse({"models": names, "default": default})


# predict and learn are JSON operations (riverbed.server.fast): answered before Starlette's
# routing and, under `riverbed serve`, straight from the HTTP parser, as the native routes are.

_PREDICT_BODY: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "features": (dict, True),
    "id": ((str, int), False),
    "model": (str, False),
}
_LEARN_BODY: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "features": (dict, False),
    "ground_truth": ((str, int, float, bool), True),
    "id": ((str, int), False),
    "model": (str, False),
}


def _predict(state: Any, params: dict[str, str], body: Any) -> Any:
    body = _validate(body, _PREDICT_BODY)
    engine: Engine = state.engine
    name = _model_of(engine, body.get("model"))
    receipt = engine.submit_predict(name, body["features"])
    answer = {"model": name, "prediction": wire_prediction(receipt.value)}
    if body.get("id") is None:
        return Receipt(answer, receipt.committed, receipt.failed)
    return _keep_id(engine, receipt, body["id"], answer)


async def _keep_id(
    engine: Engine, receipt: Receipt[dict[str, Any]], id: Any, answer: dict[str, Any]
) -> Reply:
    """chantilly keeps the features under the caller's id until the ground truth comes; the
    id may be reused once learned from, so it points at riverbed's own prediction id, stored
    once the prediction is committed (201)."""
    result = await receipt
    await engine.cache.submit_put(_id_key(id), {"model": answer["model"], "id": result["id"]})
    return Reply(answer, 201)


def _learn(state: Any, params: dict[str, str], body: Any) -> Any:
    body = _validate(body, _LEARN_BODY)
    engine: Engine = state.engine
    stored = None
    if body.get("id") is not None:
        try:
            stored = engine.cache.get(_id_key(body["id"]))
        except CacheKeyNotFound:
            stored = None
    if stored is not None:  # the stored id has precedence over features
        receipt = engine.submit_learn(
            stored["model"], ground_truth=body["ground_truth"], id=stored["id"]
        )
        return _forget_id(engine, receipt, body["id"])
    if body.get("features") is not None:
        name = _model_of(engine, body.get("model"))
        receipt = engine.submit_learn(name, body["features"], body["ground_truth"])
        return Receipt({}, receipt.committed, receipt.failed)
    if body.get("id") is not None:
        raise _invalid(f"No features are stored for id {body['id']!r} and none were provided.")
    raise _invalid({"features": ["required field when no id is given"]})


async def _forget_id(engine: Engine, receipt: Receipt[dict[str, Any]], id: Any) -> dict[str, Any]:
    """Once the learn by a stored id is committed, the id is free again."""
    await receipt
    await engine.cache.submit_delete(_id_key(id))
    return {}


predict = json_route(_predict, errors=legacy_payload)
learn = json_route(_learn, status=201, errors=legacy_payload)


async def _model_for_reading(request: Request) -> str | None:
    name = request.query_params.get("model")
    if name is not None:
        return name
    default = (await _state(request))["default"]
    return None if default is None else str(default)


@legacy_errors
async def metrics(request: Request) -> Response:
    name = await _model_for_reading(request)
    if name is None:
        return JSONResponse({})
    return JSONResponse(legacy_metrics(engine_of(request), name))


def _op_stats(stats: dict[str, Any]) -> dict[str, Any]:
    mean, ewm = round(stats["mean_duration"] * 1e9), round(stats["ewm_duration"] * 1e9)
    return {
        "n_calls": stats["n_calls"],
        "mean_duration": mean,
        "mean_duration_human": humanize_ns(mean),
        "ewm_duration": ewm,
        "ewm_duration_human": humanize_ns(ewm),
    }


def chantilly_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """Engine stats in chantilly's shape: nanoseconds, plus the same for people."""
    return {"predict": _op_stats(stats["predict"]), "learn": _op_stats(stats["learn"])}


@legacy_errors
async def stats(request: Request) -> Response:
    name = await _model_for_reading(request)
    if name is None:
        empty = {"n_calls": 0, "mean_duration": 0.0, "ewm_duration": 0.0}
        return JSONResponse(chantilly_stats({"predict": empty, "learn": empty}))
    return JSONResponse(chantilly_stats(engine_of(request).stats(name)))


@legacy_errors
async def stream_metrics(request: Request) -> Response:
    engine, only = engine_of(request), request.query_params.get("model")

    def render(event: Any) -> bytes | None:
        if event.type not in ("learn", "label") or (only is not None and event.model != only):
            return None
        try:
            return sse_message(legacy_metrics(engine, event.model))
        except ModelNotFound:  # deleted since
            return None

    return sse_response(request, render)


@legacy_errors
async def stream_events(request: Request) -> Response:
    only = request.query_params.get("model")

    def render(event: Any) -> bytes | None:
        if event.type not in ("predict", "learn", "label") or (
            only is not None and event.model != only
        ):
            return None
        kind = "learn" if event.type == "label" else event.type  # chantilly knows no labels
        data = event.data
        out = {
            "model": event.model,
            "features": data["features"],
            "prediction": wire_prediction(data),
        }
        if kind == "learn":
            out["ground_truth"] = data["ground_truth"]
        return sse_message(out, kind)

    return sse_response(request, render)


TAG_NAME = "chantilly"
_ANY: dict[str, Any] = {}
_SCALAR = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
_ID = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
_UPLOAD = "Upload a pickled (dill) model; it becomes the default (admin; pickle uploads on)"

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/api/init",
        get_init,
        "chantilly: the flavor this server was initialised with",
        TAG_NAME,
        errors=(400,),
        response={"type": "object", "properties": {"flavor": {"type": "string"}}},
    ),
    Endpoint(
        "POST",
        "/api/init",
        post_init,
        "chantilly: set the flavor and delete the models uploaded through chantilly's routes",
        TAG_NAME,
        scope="admin",
        status=201,
        body={
            "type": "object",
            "properties": {"flavor": {"type": "string", "enum": list(FLAVORS)}},
            "required": ["flavor"],
            "additionalProperties": False,
        },
        response={"type": "object"},
    ),
    Endpoint(
        "POST",
        "/api/model",
        upload_model,
        f"chantilly: {_UPLOAD}",
        TAG_NAME,
        scope="admin",
        status=201,
        errors=(403, 413),
        body_limit=ARTIFACT,
        pickle=True,
        media_type="application/json",
    ),
    Endpoint(
        "POST",
        "/api/model/{name}",
        upload_model,
        f"chantilly: {_UPLOAD}, under a name",
        TAG_NAME,
        scope="admin",
        status=201,
        errors=(403, 413),
        body_limit=ARTIFACT,
        pickle=True,
    ),
    Endpoint(
        "GET",
        "/api/model",
        get_model,
        "chantilly: download the default model, pickled",
        TAG_NAME,
        errors=(404,),
        response={"type": "string", "format": "binary"},
        media_type="application/octet-stream",
    ),
    Endpoint(
        "GET",
        "/api/model/{name}",
        get_model,
        "chantilly: download a model, pickled",
        TAG_NAME,
        errors=(404,),
        response={"type": "string", "format": "binary"},
        media_type="application/octet-stream",
    ),
    Endpoint(
        "DELETE",
        "/api/model/{name}",
        delete_model,
        "chantilly: delete a model (204)",
        TAG_NAME,
        scope="admin",
        status=204,
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/api/models",
        list_models,
        "chantilly: model names and the default model",
        TAG_NAME,
        response={
            "type": "object",
            "properties": {
                "models": {"type": "array", "items": {"type": "string"}},
                "default": {"type": ["string", "null"]},
            },
        },
    ),
    Endpoint(
        "POST",
        "/api/predict",
        predict,
        "chantilly: predict; with an id the features are kept for learning (201)",
        TAG_NAME,
        scope="predict",
        errors=(404,),
        body={
            "type": "object",
            "properties": {"features": {"type": "object"}, "id": _ID, "model": {"type": "string"}},
            "required": ["features"],
            "additionalProperties": False,
        },
        response={
            "type": "object",
            "properties": {"model": {"type": "string"}, "prediction": _ANY},
        },
    ),
    Endpoint(
        "POST",
        "/api/learn",
        learn,
        "chantilly: learn from the ground truth of a stored id, or from features",
        TAG_NAME,
        scope="learn",
        status=201,
        errors=(404, 409),
        body={
            "type": "object",
            "properties": {
                "features": {"type": "object"},
                "ground_truth": _SCALAR,
                "id": _ID,
                "model": {"type": "string"},
            },
            "required": ["ground_truth"],
            "additionalProperties": False,
        },
        response={"type": "object"},
    ),
    Endpoint(
        "GET",
        "/api/metrics",
        metrics,
        "chantilly: metrics of the default model (or ?model=)",
        TAG_NAME,
        errors=(404,),
        response={"type": "object"},
    ),
    Endpoint(
        "GET",
        "/api/stats",
        stats,
        "chantilly: predict and learn timings in nanoseconds",
        TAG_NAME,
        errors=(404,),
        response={"type": "object"},
    ),
    Endpoint(
        "GET",
        "/api/stream/metrics",
        stream_metrics,
        "chantilly: server-sent metrics after every learn",
        TAG_NAME,
        response={"type": "string"},
        media_type="text/event-stream",
    ),
    Endpoint(
        "GET",
        "/api/stream/events",
        stream_events,
        "chantilly: server-sent predict and learn events",
        TAG_NAME,
        response={"type": "string"},
        media_type="text/event-stream",
    ),
]
