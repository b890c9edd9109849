"""django-river-ml's HTTP API (``/api/.../``, trailing slashes) over the engine.

These are the routes its PyPI client ``riverapi`` calls. That client ends the program on any
status other than 200 or 201, sends metrics and stats requests as GET with a JSON body and
deletes with a form-encoded body; all of that is answered here. Where django-river-ml answered
bad input with a 500, riverbed answers with a 4xx that says what to fix;
``docs/migration/django-river-ml.md`` lists the differences.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
import river
from starlette.requests import Request
from starlette.responses import Response

from riverbed import serialization
from riverbed.exceptions import InvalidInput, MalformedJSON, ModelNotFound
from riverbed.receipts import Receipt
from riverbed.server.auth import (
    basic_credentials,
    register_challenge,
    token_realm_challenge,
    verify,
)
from riverbed.server.compat.chantilly import FLAVORS, chantilly_stats
from riverbed.server.compat.common import (
    engine_of,
    flavor_setup,
    legacy_errors,
    legacy_metrics,
    legacy_payload,
    load_pickled_upload,
    model_params,
    replace_upload,
    sse_message,
    sse_response,
    wire_prediction,
)
from riverbed.server.fast import json_route
from riverbed.server.http import JSONResponse, read_body, read_json
from riverbed.server.routing import ARTIFACT, Endpoint
from riverbed.stores import backend_name
from riverbed.tasks import TASKS
from riverbed.version import __version__

__all__ = ["ENDPOINTS"]

TAG = {"compat": "django-river-ml"}
TAG_NAME = "django-river-ml"
TOKEN_PATH = "/api/auth/token/"
NEVER_EXPIRES = 10 * 365 * 24 * 3600  # what expires_in says for a token without expiry

# A request without a token gets 401 with django-river-ml's challenge, which riverapi
# follows: Basic user:token to the realm, then the token it gets back as Bearer.
register_challenge(TAG_NAME, lambda scope: token_realm_challenge(scope, TOKEN_PATH))
# riverapi's flavors -> riverbed's task names (a flavor whose task riverbed does not serve
# yet is refused with a 400 that says so).
FLAVOR_TASKS = {
    "regression": "regression",
    "binary": "binary",
    "multiclass": "multiclass",
    "creme": "regression",
    "cluster": "clustering",
    "custom": "custom",
    "neighbor": "regression",
}


def _fields(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _required(body: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if body.get(n) in (None, "", {})]
    if missing:
        raise InvalidInput(
            f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} required.",
            detail={"fields": missing},
        )


def _model(body: dict[str, Any]) -> str:
    """The body's ``model``, the model's name: a string."""
    name = body["model"]
    if not isinstance(name, str):
        raise InvalidInput(
            f"model must be the model's name, a string; got {type(name).__name__}",
            detail={"fields": ["model"]},
        )
    return name


async def _model_from_body_or_query(request: Request) -> str:
    """riverapi sends ``{"model": name}`` as the JSON body of a GET; ``?model=`` works too."""
    name = request.query_params.get("model")
    if name is None:
        body = await read_json(request, required=False)
        if isinstance(body, dict):
            name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidInput(
            'give the model name: a JSON body {"model": name} or ?model=name',
            detail={"fields": ["model"]},
        )
    engine_of(request).get_model(name)  # 404 for an unknown model
    return name


# -- routes ------------------------------------------------------------------------------------


async def service_info(request: Request) -> Response:
    kind = backend_name(engine_of(request).settings.database)
    return JSONResponse(
        {
            "id": "django_river_ml",
            "status": "running",
            "name": "riverbed",
            "description": "riverbed, answering django-river-ml's API",
            "documentationUrl": str(request.base_url) + "openapi.json",
            "storage": f"riverbed ({kind})",
            "river_version": river.__version__,
            "version": __version__,
        }
    )


@legacy_errors
async def auth_token(request: Request) -> Response:
    """django-river-ml's token endpoint over riverbed's tokens: ``Basic user:token`` where
    the password is a riverbed token; the answer's ``token`` is that same riverbed token
    (users are not checked: riverbed tokens are not tied to users)."""
    credentials = basic_credentials(request.headers.get("authorization", ""))
    issued_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not request.app.state.auth.required(request.scope):  # auth is off: any token will do
        secret = credentials[1] if credentials else ""
        return JSONResponse({"token": secret, "expires_in": NEVER_EXPIRES, "issued_at": issued_at})
    if credentials is None:
        raise InvalidInput(
            "send Authorization: Basic base64(user:token) with a riverbed token as the password"
        )
    record = verify(request, credentials[1])
    expires_in = (
        NEVER_EXPIRES if record.expires_at is None else max(0, int(record.expires_at - time.time()))
    )
    return JSONResponse({"token": credentials[1], "expires_in": expires_in, "issued_at": issued_at})


@legacy_errors
async def upload_model(request: Request) -> Response:
    flavor = request.path_params["flavor"]
    task = FLAVOR_TASKS.get(flavor)
    if task is None:
        raise InvalidInput(f"This model flavor {flavor} is not recognized")
    if task not in TASKS:
        raise InvalidInput(
            f"the {flavor!r} flavor needs the {task!r} task, which this riverbed does not serve "
            f"yet; served: {', '.join(TASKS)}"
        )
    model = await load_pickled_upload(request)
    name = await replace_upload(
        request, model, tags=TAG, **flavor_setup(task, model, FLAVORS.get(task))
    )
    return JSONResponse({"name": name}, status_code=201)


@legacy_errors
async def model_json(request: Request) -> Response:
    return JSONResponse(model_params(engine_of(request).live_model(request.path_params["name"])))


@legacy_errors
async def download_model(request: Request) -> Response:
    model = engine_of(request).live_model(request.path_params["name"])
    return Response(serialization.dumps_plain(model), media_type="application/octet-stream")


@legacy_errors
async def delete_model(request: Request) -> Response:
    """riverapi sends ``model=<name>`` form-encoded (django-river-ml read a ``name`` field,
    so its deletes never found the model); both are accepted, and JSON too."""
    raw = await read_body(request)
    name = None
    if raw.strip().startswith(b"{"):
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedJSON(f"malformed JSON: {exc}") from None
        if isinstance(body, dict):
            name = body.get("model") or body.get("name")
    else:
        form = parse_qs(raw.decode("utf-8", "replace"))
        values = form.get("model") or form.get("name")
        name = values[0] if values else None
    name = name or request.query_params.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidInput("give the model to delete: a form field model=<name>")
    await engine_of(request).submit_delete_model(name)
    return JSONResponse({"model": name, "deleted": True})


@legacy_errors
async def list_models(request: Request) -> Response:
    return JSONResponse({"models": sorted(m["name"] for m in engine_of(request).list_models())})


# predict, learn and label are JSON operations (riverbed.server.fast): answered before
# Starlette's routing and, under `riverbed serve`, straight from the HTTP parser.


def _predict(state: Any, params: dict[str, str], body: Any) -> Receipt[dict[str, Any]]:
    body = _fields(body)
    _required(body, "model", "features")
    identifier = body.get("identifier")
    if identifier is not None and not isinstance(identifier, str):
        identifier = str(identifier)
    name = _model(body)
    receipt = state.engine.submit_predict(name, body["features"], id=identifier)
    result = receipt.value
    answer = {"model": name, "prediction": wire_prediction(result), "identifier": result["id"]}
    return Receipt(answer, receipt.committed, receipt.failed)


def _learn(state: Any, params: dict[str, str], body: Any) -> Receipt[str]:
    """Learn from features and a ground truth, or from a stored identifier. A ``prediction``
    sent by the client is accepted and not used: the metrics score the server's own
    prediction made before learning (progressive validation)."""
    body = _fields(body)
    identifier = body.get("identifier")
    engine = state.engine
    if identifier is not None:
        _required(body, "model")
        receipt = engine.submit_learn(
            _model(body), ground_truth=body.get("ground_truth"), id=str(identifier)
        )
    else:
        _required(body, "model", "features")
        receipt = engine.submit_learn(_model(body), body["features"], body.get("ground_truth"))
    return Receipt("Successful learn.", receipt.committed, receipt.failed)


def _label(state: Any, params: dict[str, str], body: Any) -> Receipt[str]:
    body = _fields(body)
    _required(body, "model", "identifier")
    if body.get("label") is None:
        raise InvalidInput("label is required.", detail={"fields": ["label"]})
    receipt = state.engine.submit_learn(
        _model(body), ground_truth=body["label"], id=str(body["identifier"])
    )
    return Receipt("Successful label.", receipt.committed, receipt.failed)


predict = json_route(_predict, status=201, errors=legacy_payload)
learn = json_route(_learn, status=201, errors=legacy_payload)
label = json_route(_label, errors=legacy_payload)


@legacy_errors
async def metrics(request: Request) -> Response:
    name = await _model_from_body_or_query(request)
    return JSONResponse(legacy_metrics(engine_of(request), name))


@legacy_errors
async def stats(request: Request) -> Response:
    name = await _model_from_body_or_query(request)
    return JSONResponse(chantilly_stats(engine_of(request).stats(name)))


@legacy_errors
async def stream_metrics(request: Request) -> Response:
    engine = engine_of(request)

    def render(event: Any) -> bytes | None:
        if event.type not in ("learn", "label"):
            return None
        try:
            return sse_message(legacy_metrics(engine, event.model))
        except ModelNotFound:
            return None

    return sse_response(request, render)


@legacy_errors
async def stream_events(request: Request) -> Response:
    def render(event: Any) -> bytes | None:
        if event.type not in ("predict", "learn", "label"):
            return None
        data = event.data
        out = {
            "model": event.model,
            "features": data["features"],
            "prediction": wire_prediction(data),
        }
        kind = event.type  # "label": ground truth that joined a stored prediction
        if kind in ("learn", "label"):
            out["ground_truth"] = data["ground_truth"]
        return sse_message(out, kind)

    return sse_response(request, render)


_OBJ = {"type": "object"}
_NAMED = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
_BINARY = {"type": "string", "format": "binary"}
_UPLOAD = "django-river-ml: upload a pickled (dill) model of a flavor (admin; pickle uploads on)"
_PREDICTION = {
    "type": "object",
    "properties": {"model": {"type": "string"}, "prediction": {}, "identifier": {"type": "string"}},
}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        TOKEN_PATH,
        auth_token,
        "django-river-ml: trade Basic user:token for the Bearer token riverapi sends",
        TAG_NAME,
        scope="public",
        errors=(400, 401),
        response={
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "expires_in": {"type": "integer"},
                "issued_at": {"type": "string"},
            },
        },
    ),
    Endpoint(
        "GET",
        "/api/",
        service_info,
        "django-river-ml: service info",
        TAG_NAME,
        scope="public",
        response=_OBJ,
    ),
    Endpoint(
        "POST",
        "/api/model/{flavor}/",
        upload_model,
        _UPLOAD,
        TAG_NAME,
        scope="admin",
        status=201,
        errors=(403, 413),
        body_limit=ARTIFACT,
        pickle=True,
        response=_NAMED,
    ),
    Endpoint(
        "POST",
        "/api/model/{flavor}/{name}/",
        upload_model,
        f"{_UPLOAD}, under a name",
        TAG_NAME,
        scope="admin",
        status=201,
        errors=(403, 413),
        body_limit=ARTIFACT,
        pickle=True,
        response=_NAMED,
    ),
    Endpoint(
        "GET",
        "/api/model/download/{name}/",
        download_model,
        "django-river-ml: download a model, pickled",
        TAG_NAME,
        errors=(404,),
        response=_BINARY,
        media_type="application/octet-stream",
    ),
    Endpoint(
        "GET",
        "/api/model/{name}/",
        model_json,
        "django-river-ml: a model's parameters as JSON",
        TAG_NAME,
        errors=(404,),
        response=_OBJ,
    ),
    Endpoint(
        "DELETE",
        "/api/model/",
        delete_model,
        "django-river-ml: delete the model named by the form field model=",
        TAG_NAME,
        scope="admin",
        errors=(404,),
        response=_OBJ,
    ),
    Endpoint(
        "GET",
        "/api/models/",
        list_models,
        "django-river-ml: model names",
        TAG_NAME,
        response={"type": "object", "properties": {"models": {"type": "array"}}},
    ),
    Endpoint(
        "POST",
        "/api/predict/",
        predict,
        "django-river-ml: predict; the answer carries the identifier to label it by",
        TAG_NAME,
        scope="predict",
        status=201,
        errors=(404, 409),
        body={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "features": _OBJ,
                "identifier": {"type": "string"},
            },
            "required": ["model", "features"],
        },
        response=_PREDICTION,
    ),
    Endpoint(
        "POST",
        "/api/learn/",
        learn,
        "django-river-ml: learn from features and ground truth, or from an identifier",
        TAG_NAME,
        scope="learn",
        status=201,
        errors=(404, 409),
        body={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "features": _OBJ,
                "ground_truth": {},
                "prediction": {},
                "identifier": {"type": "string"},
            },
            "required": ["model"],
        },
        response={"type": "string"},
    ),
    Endpoint(
        "POST",
        "/api/label/",
        label,
        "django-river-ml: the ground truth of a stored prediction, by identifier",
        TAG_NAME,
        scope="learn",
        errors=(404, 409),
        body={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "identifier": {"type": "string"},
                "label": {},
            },
            "required": ["model", "identifier", "label"],
        },
        response={"type": "string"},
    ),
    Endpoint(
        "GET",
        "/api/metrics/",
        metrics,
        "django-river-ml: a model's metrics (JSON body {model} or ?model=)",
        TAG_NAME,
        errors=(404,),
        response=_OBJ,
    ),
    Endpoint(
        "GET",
        "/api/stats/",
        stats,
        "django-river-ml: a model's timings in nanoseconds (JSON body {model} or ?model=)",
        TAG_NAME,
        errors=(404,),
        response=_OBJ,
    ),
    Endpoint(
        "GET",
        "/api/stream/metrics/",
        stream_metrics,
        "django-river-ml: server-sent metrics after every learn",
        TAG_NAME,
        response={"type": "string"},
        media_type="text/event-stream",
    ),
    Endpoint(
        "GET",
        "/api/stream/events/",
        stream_events,
        "django-river-ml: server-sent predict, learn and label events",
        TAG_NAME,
        response={"type": "string"},
        media_type="text/event-stream",
    ),
]
