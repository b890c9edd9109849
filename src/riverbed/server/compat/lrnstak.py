"""lrnstak's HTTP APIs (its registry, predictions and cache services) over the engine.

lrnstak ran one Flask service per concern behind nginx; a riverbed server answers their
routes itself: the registry (``/models``), predictions (``/predict/model/{name}``) and the
cache (``/cache/...``); ``/health`` is riverbed's own. lrnstak named versions with strings
(``v1``); riverbed numbers them, and ``v3``, ``3``, ``latest`` and alias names all address
a version here. ``docs/migration/lrnstak.md`` lists what differs and why.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.exceptions import CacheKeyNotFound, InvalidInput, VersionNotFound
from riverbed.receipts import Receipt
from riverbed.server.compat.common import engine_of, legacy_errors, legacy_payload
from riverbed.server.fast import json_route
from riverbed.server.http import JSONResponse, query_int, read_json
from riverbed.server.routing import Endpoint

__all__ = ["ENDPOINTS"]

TAG_NAME = "lrnstak"
_VERSION = re.compile(r"v?(\d+)")


def _ref(name: str, version: Any) -> str:
    """riverbed's address of lrnstak's ``{name}/{version}``."""
    if version is None or version == "" or version == "latest":
        return name
    if not isinstance(version, str | int) or isinstance(version, bool):
        raise InvalidInput(f"version must be a string such as 'v2' or 'latest', got {version!r}")
    match = _VERSION.fullmatch(str(version))
    return f"{name}@{match.group(1) if match else version}"


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


# -- registry ----------------------------------------------------------------------------------


@legacy_errors
async def list_models(request: Request) -> Response:
    engine = engine_of(request)
    listing = []
    for model in engine.list_models():
        try:
            versions = [f"v{v['version']}" for v in engine.list_versions(model["name"])]
        except VersionNotFound:  # deleted meanwhile
            continue
        listing.append({"model": model["name"], "versions": versions})
    return JSONResponse(listing)


@legacy_errors
async def get_model(request: Request) -> Response:
    name, version = request.path_params["name"], request.path_params["version"]
    data, info = engine_of(request).get_artifact(_ref(name, version))
    return JSONResponse(
        {
            "model": base64.b64encode(data).decode(),
            "format": info["format"],
            "version": f"v{info['version']}",
            "parameters": info["params"],
        }
    )


@legacy_errors
async def model_info(request: Request) -> Response:
    name, version = request.path_params["name"], request.path_params["version"]
    info = engine_of(request).get_version(_ref(name, version))
    return JSONResponse(
        {
            "version": f"v{info['version']}",
            "parameters": info["params"],
            "hyperparameters": info["hyperparameters"],
            "training_scores": info["metrics"],
        }
    )


# -- predictions -------------------------------------------------------------------------------


_PREDICT_FIELDS = frozenset({"data", "version"})


def _predict(state: Any, params: dict[str, str], body: Any) -> Receipt[Any]:
    """``{"data": [rows], "version": "latest"}`` -> one ``{"prediction", ...row}`` per row (a
    JSON operation: riverbed.server.fast)."""
    if type(body) is not dict or not _PREDICT_FIELDS.issuperset(body):
        unknown = sorted(set(_object(body)) - _PREDICT_FIELDS)
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}; accepted: data, version")
    rows = body.get("data")
    if type(rows) is not list or not rows or not _all_objects(rows):
        raise InvalidInput("data must be a non-empty array of rows (objects)")
    version = body.get("version")
    ref = params["name"] if version is None else _ref(params["name"], version)
    receipt = state.engine.submit_predict_rows(ref, rows)
    answers = []
    for row, prediction in zip(rows, receipt.value["predictions"], strict=True):
        answer = row.copy()  # the row as sent, then the prediction's fields but its id
        answer.update(prediction)
        if "id" in row:
            answer["id"] = row["id"]
        else:
            answer.pop("id", None)
        answers.append(answer)
    receipt.value = answers  # the receipt is this call's own
    return receipt


def _all_objects(rows: list[Any]) -> bool:
    for row in rows:
        if type(row) is not dict:
            return False
    return True


predict = json_route(_predict, errors=legacy_payload)


# -- trainer -----------------------------------------------------------------------------------

# lrnstak's trainer fit scikit-learn regressors and kept the one with the lowest MSE.
CANDIDATES = [
    {"name": "linear", "spec": {"class": "sklearn.linear_model.LinearRegression"}},
    {"name": "ridge", "spec": {"class": "sklearn.linear_model.Ridge"}},
    {
        "name": "forest",
        "spec": {
            "class": "sklearn.ensemble.RandomForestRegressor",
            "params": {"n_estimators": 50, "random_state": 0},
        },
    },
]
TRAIN_TIMEOUT_SECONDS = 600.0


@legacy_errors
async def train(request: Request) -> Response:
    """``{"parameters": {"target_label", "feature_labels", "split"?}, "training_data":
    [rows]}``: a training job over lrnstak's candidate regressors, each registered as a
    version, the lowest held-out MSE aliased ``best``; answered once the job has ended."""
    from starlette.concurrency import run_in_threadpool

    body = _object(await read_json(request))
    params = body.get("parameters")
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be an object with target_label and feature_labels")
    rows = body.get("training_data", body.get("data"))
    if not isinstance(rows, list) or not rows:
        raise InvalidInput("training_data must be a non-empty array of rows (objects)")
    split = params.get("split", 0.25)
    engine = engine_of(request)
    name = request.path_params["name"]
    job = await engine.submit_train(
        name,
        rows,
        target=params.get("target_label"),
        features=params.get("feature_labels"),
        candidates=CANDIDATES,
        metrics=["MSE"],
        select={"metric": "MSE", "direction": "min", "alias": "best"},
        validation={"method": "holdout", "test_size": split},
        description=str(body.get("version", "")),
    )
    done = await run_in_threadpool(engine.jobs.wait, job["id"], TRAIN_TIMEOUT_SECONDS)
    if done["status"] != "succeeded":
        error = done.get("error") or {}
        raise InvalidInput(
            f"training {done['status']}: {error.get('message', 'see the job logs')}",
            detail={"job": done["id"], "error": error},
        )
    result = done["result"]
    return JSONResponse(
        {
            "model": name,
            "version": f"v{result['best']['version']}",
            "best": result["best"],
            "training_scores": {c["name"]: c["metrics"] for c in result["candidates"]},
            "job": done["id"],
        },
        status_code=201,
    )


# -- cache -------------------------------------------------------------------------------------


def _key(request: Request) -> str:
    key: str = request.path_params["key"]
    return key


@legacy_errors
async def cache_put(request: Request) -> Response:
    body = _object(await read_json(request))
    if "value" not in body:
        raise InvalidInput("Key and Value are required", detail={"fields": ["value"]})
    await engine_of(request).cache.submit_put(_key(request), body["value"], ttl=body.get("ttl"))
    return JSONResponse({"message": "OK"})


@legacy_errors
async def cache_get(request: Request) -> Response:
    try:
        value = engine_of(request).cache.get(_key(request))
    except CacheKeyNotFound as error:
        error.legacy_message = "not found"  # type: ignore[attr-defined]
        raise
    return JSONResponse(value)


@legacy_errors
async def cache_delete(request: Request) -> Response:
    result = await engine_of(request).cache.submit_delete(_key(request))
    return JSONResponse({"message": "OK", "value": 1 if result["deleted"] else None})


@legacy_errors
async def cache_push(request: Request) -> Response:
    body = _object(await read_json(request))
    if "value" not in body:
        raise InvalidInput("Key and Value are required", detail={"fields": ["value"]})
    result = await engine_of(request).cache.submit_push(
        _key(request), body["value"], ttl=body.get("ttl") or None
    )
    return JSONResponse({"message": "OK", "length": result["length"]})


@legacy_errors
async def cache_peek(request: Request) -> Response:
    position = query_int(request, "pos", 0)
    return JSONResponse(engine_of(request).cache.peek(_key(request), position))


@legacy_errors
async def cache_pop(request: Request) -> Response:
    return JSONResponse(await engine_of(request).cache.submit_pop(_key(request)))


@legacy_errors
async def cache_ttl(request: Request) -> Response:
    body = _object(await read_json(request))
    await engine_of(request).cache.submit_expire(_key(request), body.get("ttl"))
    return JSONResponse({"message": "OK"})


_ROW = {"type": "object", "additionalProperties": True}
_CACHE_BODY = {
    "type": "object",
    "properties": {"value": {}, "ttl": {"type": "number", "minimum": 0}},
    "required": ["value"],
}
_OK = {"type": "object", "properties": {"message": {"type": "string"}}}
_ANY: dict[str, Any] = {}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "/train/{name}",
        train,
        "lrnstak: train candidate regressors on rows; the lowest MSE is aliased best",
        TAG_NAME,
        scope="admin",
        status=201,
        errors=(404, 409),
        body={
            "type": "object",
            "properties": {
                "version": {"type": "string"},
                "parameters": {"type": "object"},
                "training_data": {"type": "array", "items": _ROW},
            },
            "required": ["parameters", "training_data"],
        },
        response={"type": "object"},
    ),
    Endpoint(
        "GET",
        "/models",
        list_models,
        "lrnstak: every model and its versions",
        TAG_NAME,
        response={"type": "array", "items": {"type": "object"}},
    ),
    Endpoint(
        "GET",
        "/models/{name}/{version}",
        get_model,
        "lrnstak: a version's artifact (base64) and parameters",
        TAG_NAME,
        errors=(404,),
        response={"type": "object", "properties": {"model": {"type": "string"}}},
    ),
    Endpoint(
        "GET",
        "/models/{name}/{version}/info",
        model_info,
        "lrnstak: a version's parameters and training scores",
        TAG_NAME,
        errors=(404,),
        response={"type": "object"},
    ),
    Endpoint(
        "POST",
        "/predict/model/{name}",
        predict,
        "lrnstak: predict rows with a version (default latest)",
        TAG_NAME,
        scope="predict",
        errors=(404, 409),
        body={
            "type": "object",
            "properties": {"data": {"type": "array", "items": _ROW}, "version": {"type": "string"}},
            "required": ["data"],
        },
        response={"type": "array", "items": _ROW},
    ),
    Endpoint(
        "PUT",
        "/cache/{key}",
        cache_put,
        "lrnstak: store a JSON value with a ttl",
        TAG_NAME,
        scope="learn",
        body=_CACHE_BODY,
        response=_OK,
    ),
    Endpoint(
        "POST",
        "/cache/{key}",
        cache_put,
        "lrnstak: store a JSON value with a ttl",
        TAG_NAME,
        scope="learn",
        body=_CACHE_BODY,
        response=_OK,
    ),
    Endpoint(
        "GET",
        "/cache/{key}",
        cache_get,
        "lrnstak: a stored value (404 when absent or expired)",
        TAG_NAME,
        errors=(404,),
        response=_ANY,
    ),
    Endpoint(
        "DELETE",
        "/cache/{key}",
        cache_delete,
        "lrnstak: delete a key",
        TAG_NAME,
        scope="learn",
        response=_OK,
    ),
    Endpoint(
        "PUT",
        "/cache/push/{key}",
        cache_push,
        "lrnstak: push onto the front of a list",
        TAG_NAME,
        scope="learn",
        errors=(409,),
        body=_CACHE_BODY,
        response=_OK,
    ),
    Endpoint(
        "GET",
        "/cache/peek/{key}",
        cache_peek,
        "lrnstak: the list item at ?pos= (0: front)",
        TAG_NAME,
        errors=(404, 409),
        response=_ANY,
    ),
    Endpoint(
        "GET",
        "/cache/pop/{key}",
        cache_pop,
        "lrnstak: remove and return a list's front item",
        TAG_NAME,
        scope="learn",
        errors=(404, 409),
        response=_ANY,
    ),
    Endpoint(
        "PUT",
        "/cache/ttl/{key}",
        cache_ttl,
        "lrnstak: a new ttl for a key",
        TAG_NAME,
        scope="learn",
        errors=(404,),
        body={"type": "object", "properties": {"ttl": {"type": "number", "minimum": 0}}},
        response=_OK,
    ),
]
