"""Beaver's HTTP API (the routes of its ``Dam`` server) over the engine.

Beaver's ``HTTPClient`` uploads a model as base64 dill bytes in a form (``name``,
``model_bytes``), predicts inside a *loop* (``{"event", "loop_id"}``; the answer carries the
``loop_id`` and the prediction as ``content``), sends the loop's label later by its id alone
and asks a model to train. Here a loop id is riverbed's prediction id, so a label by loop id
is a learn by prediction id: it feeds the model's progressive metrics exactly as the native
learn route does. The client joins ``models``, ``predict/{name}`` ... onto its host without a
trailing slash while Beaver's server declared some with one (``/models/``), so every route is
answered both ways.

Beaver's model names may hold spaces ("Linear regression"); riverbed's may not, so such a
name is kept as the slug riverbed allows ("Linear-regression") with the Beaver name in the
model's tag ``beaver.name``, which the listing shows. ``docs/migration/beaver.md`` says which
Beaver generation this is and what differs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from riverbed.exceptions import (
    InvalidArtifact,
    InvalidInput,
    InvalidSpec,
    ModelExists,
    NotFound,
    PredictionNotFound,
)
from riverbed.receipts import Receipt
from riverbed.server.compat.common import engine_of, pickle_refused, slug
from riverbed.server.fast import json_route
from riverbed.server.http import JSONResponse, field, is_object, read_body, reject_unknown
from riverbed.server.routing import ENCODED_ARTIFACT, Endpoint
from riverbed.tasks import detect_task
from riverbed.validation import check_name

__all__ = ["ENDPOINTS", "model_name"]

TAG_NAME = "beaver"
NAME_TAG = "beaver.name"
_PREDICT_FIELDS = frozenset({"event", "loop_id"})
_LABEL_FIELDS = frozenset({"label"})


def model_name(beaver_name: str) -> str:
    """riverbed's name for a Beaver model name: the name itself when riverbed allows it,
    else its slug (runs of other characters become '-').

    >>> model_name("my_model"), model_name("Linear regression")
    ('my_model', 'Linear-regression')
    """
    try:
        return check_name(beaver_name)
    except InvalidInput:
        return slug(beaver_name)


def _loop_id(body: Any) -> str | None:
    loop_id = body.get("loop_id")
    if loop_id is None:
        return None
    if isinstance(loop_id, int) and not isinstance(loop_id, bool):
        return str(loop_id)  # Beaver's pydantic model took numbers as strings
    if not isinstance(loop_id, str):
        raise InvalidInput("field 'loop_id' must be a string", detail={"field": "loop_id"})
    return loop_id


# -- upload, list, delete ----------------------------------------------------------------------


def _replay(body: bytes) -> Callable[[], Any]:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _form(request: Request) -> dict[str, Any]:
    """The upload's form fields (url-encoded, as Beaver's client sends them, or multipart),
    the body held to the artifact limit (base64 is a third larger than the bytes: the route
    declares an encoded artifact)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await read_body(request)
    limit = len(body)
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
    if kind == "multipart/form-data":
        fields: dict[str, Any] = {}
        async with Request(request.scope, _replay(body)).form(max_part_size=limit) as form:
            for key, value in form.multi_items():
                fields[key] = await value.read() if isinstance(value, UploadFile) else value
        return fields
    raise InvalidInput(
        "send the model as a form (application/x-www-form-urlencoded or multipart/form-data) "
        "with the fields name and model_bytes (base64 of its dill bytes)",
        detail={"fields": ["name", "model_bytes"]},
    )


async def upload(request: Request) -> Response:
    """``name`` and ``model_bytes`` (base64 dill) -> the model, served under that name."""
    form = await _form(request)
    name, encoded = form.get("name"), form.get("model_bytes")
    if not isinstance(name, str) or not name:
        raise InvalidInput("name is required: the model's name", detail={"fields": ["name"]})
    if not isinstance(encoded, str | bytes) or not encoded:
        raise InvalidInput(
            "model_bytes is required: the base64 of the model's dill bytes",
            detail={"fields": ["model_bytes"]},
        )
    refusal = pickle_refused(request, "dill")
    if refusal is not None:
        raise refusal
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArtifact("model_bytes is not base64: send base64 of the dill bytes") from None
    from riverbed import serialization

    model = serialization.loads_plain(data, "dill")  # after the check above: it runs code
    engine = engine_of(request)
    tags = {"compat": TAG_NAME, NAME_TAG: name}
    try:
        await engine.submit_create_model(model_name(name), model, tags=tags, **_serving(model))
    except ModelExists:
        raise ModelExists(
            f"'{name}' already exists; delete it first (DELETE /models/{name})",
            detail={"name": name},
        ) from None
    return JSONResponse({"name": name, "model": model_name(name)}, status_code=201)


def _serving(model: Any) -> dict[str, Any]:
    """How to serve an uploaded object: a river model by its task, detected as usual; an
    object of Beaver's own model protocol (``predict(x)``, ``learn(x, y)``), which no task
    detects, through those two methods (the custom task)."""
    try:
        detect_task(model)
    except InvalidSpec:
        if callable(getattr(model, "predict", None)) and callable(getattr(model, "learn", None)):
            return {"task": "custom", "options": {"predict": "predict", "learn": "learn"}}
    return {}


async def list_models(request: Request) -> Response:
    """Every model's name, as Beaver listed them (a Beaver name where one was given)."""
    models = engine_of(request).list_models()
    return JSONResponse(sorted(m["tags"].get(NAME_TAG, m["name"]) for m in models))


async def delete_model(request: Request) -> Response:
    name = request.path_params["name"]
    await engine_of(request).submit_delete_model(model_name(name))
    return JSONResponse({"name": name, "deleted": True})


# -- the loop: predict, label, train -----------------------------------------------------------


def _predict(state: Any, params: dict[str, str], body: Any) -> Receipt[dict[str, Any]]:
    """``{"event", "loop_id"?}`` -> Beaver's prediction: ``content``, ``loop_id``,
    ``model_name``, ``created_at`` (and a classifier's ``probabilities``)."""
    reject_unknown(body, _PREDICT_FIELDS)
    event = field(body, "event", is_object, "an object (the event's features)", required=True)
    name = params["name"]
    receipt = state.engine.submit_predict(model_name(name), event, id=_loop_id(body))
    result = receipt.value
    answer = {
        "content": result.get("prediction"),
        "model_name": name,
        "loop_id": result["id"],
        "created_at": datetime.now(UTC).isoformat(),
    }
    if "probabilities" in result:
        answer["probabilities"] = result["probabilities"]
    return Receipt(answer, receipt.committed, receipt.failed)


def _label(state: Any, params: dict[str, str], body: Any) -> Receipt[dict[str, Any]]:
    """``{"label"}`` for the loop ``loop_id``: the model of that loop learns from it."""
    reject_unknown(body, _LABEL_FIELDS)
    field(body, "label", None, required=True)
    loop_id = params["loop_id"]
    engine = state.engine
    stored = engine.store.get_prediction(loop_id)
    if stored is None:
        raise PredictionNotFound(
            f"no loop with id {loop_id!r}: predict with that loop_id first (retention may "
            "also have removed it)",
            detail={"loop_id": loop_id},
        )
    receipt = engine.submit_learn(stored.model, ground_truth=body["label"], id=loop_id)
    result = receipt.value
    return Receipt(
        {"loop_id": loop_id, "model": result["model"], "n_learns": result["n_learns"]},
        receipt.committed,
        receipt.failed,
    )


async def train(request: Request) -> Response:
    """Beaver's manual training: learn the labels waiting for the model. riverbed learns
    each label as it arrives (Beaver's ``ASAP`` regime), so none is ever waiting."""
    name = model_name(request.path_params["name"])
    engine = engine_of(request)
    if not any(m["name"] == name for m in engine.list_models()):
        raise NotFound(f"no model named {request.path_params['name']!r}", detail={"name": name})
    return JSONResponse({"n_rows": 0})


predict = json_route(_predict)
label = json_route(_label)

# -- declarations ------------------------------------------------------------------------------

_NAMES = {"type": "array", "items": {"type": "string"}}
_PREDICTION = {
    "type": "object",
    "properties": {
        "content": {},
        "loop_id": {"type": "string"},
        "model_name": {"type": "string"},
        "created_at": {"type": "string"},
        "probabilities": {"type": "object"},
    },
}
_PREDICT_BODY = {
    "type": "object",
    "properties": {"event": {"type": "object"}, "loop_id": {"type": ["string", "integer"]}},
    "required": ["event"],
    "additionalProperties": False,
}
_LABEL_BODY = {
    "type": "object",
    "properties": {"label": {}},
    "required": ["label"],
    "additionalProperties": False,
}


def _both(endpoint: Endpoint) -> list[Endpoint]:
    """``endpoint`` and the same route with (or without) a trailing slash."""
    import dataclasses

    other = endpoint.path[:-1] if endpoint.path.endswith("/") else endpoint.path + "/"
    return [endpoint, dataclasses.replace(endpoint, path=other)]


ENDPOINTS: list[Endpoint] = [
    *_both(
        Endpoint(
            "POST",
            "/models/",
            upload,
            "Beaver: upload a model (form: name, model_bytes = base64 dill; admin, pickle "
            "uploads on)",
            TAG_NAME,
            scope="admin",
            status=201,
            errors=(403, 409, 413),
            body_limit=ENCODED_ARTIFACT,
            pickle=True,
            response={"type": "object", "properties": {"name": {"type": "string"}}},
        )
    ),
    *_both(
        Endpoint("GET", "/models/", list_models, "Beaver: model names", TAG_NAME, response=_NAMES)
    ),
    *_both(
        Endpoint(
            "DELETE",
            "/models/{name}",
            delete_model,
            "Beaver: delete a model",
            TAG_NAME,
            scope="admin",
            errors=(404,),
            response={"type": "object"},
        )
    ),
    *_both(
        Endpoint(
            "POST",
            "/predict/{name}",
            predict,
            "Beaver: predict for an event; the loop_id (given or made) labels it later",
            TAG_NAME,
            scope="predict",
            errors=(404, 409),
            body=_PREDICT_BODY,
            response=_PREDICTION,
        )
    ),
    *_both(
        Endpoint(
            "POST",
            "/label/{loop_id}",
            label,
            "Beaver: the label of a loop; its model learns from it (progressive metrics)",
            TAG_NAME,
            scope="learn",
            errors=(404, 409),
            body=_LABEL_BODY,
            response={"type": "object"},
        )
    ),
    *_both(
        Endpoint(
            "POST",
            "/train/{name}",
            train,
            "Beaver: train on waiting labels (none wait: each label is learned on arrival)",
            TAG_NAME,
            scope="learn",
            errors=(404,),
            response={"type": "object", "properties": {"n_rows": {"type": "integer"}}},
        )
    ),
]
