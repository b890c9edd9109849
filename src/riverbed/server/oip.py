"""The Open Inference Protocol (KServe V2, what Triton, MLServer and KServe speak), REST.

``/v2`` (server metadata), ``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{name}[/versions/{version}]`` (model metadata), ``.../ready`` and ``.../infer``
over the same engine calls as the native routes. Each input tensor is a feature (shape
``[batch]`` or ``[batch, 1]``, named after it) or several (``[batch, width]``, its columns
named by its ``columns`` parameter or, without it, by the model's features in the order the
metadata lists them); the task's other fields (``user``, ``item``, ``value``, ``arms``) are
inputs of those names. Each field of the native prediction (``prediction``,
``probabilities``, ``score``...) is an output tensor. A request's ``prediction_ids``
parameter names the predictions (one per sample), so that their ground truth can follow
through ``POST /v1/models/{name}/learn``; the response's ``prediction_ids`` parameter lists
them either way. Binary tensor data (the extension tritonclient uses by default) is read
and written. Errors are the protocol's ``{"error": "<message>"}``, with riverbed's ``code``
and ``detail`` beside it. docs/protocols.md has the whole mapping.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.engine import Engine
from riverbed.exceptions import InvalidInput, NotServable, RiverbedError
from riverbed.server.auth import register_error_payload
from riverbed.server.http import (
    JSONResponse,
    error_headers,
    parse_json,
    read_body,
    status_of,
)
from riverbed.server.routing import Endpoint
from riverbed.server.tensors import Tensor, column, encode_response, read_request
from riverbed.tasks import TASKS
from riverbed.validation import parse_int
from riverbed.version import __version__

__all__ = ["ENDPOINTS", "PREFIX", "error_payload", "owns"]

PREFIX = "/v2"
GROUP = "inference"
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = "inference-header-content-length"
_DATATYPE = {"boolean": "BOOL", "integer": "INT64", "number": "FP64", "string": "BYTES"}


def owns(path: str) -> bool:
    """Whether ``path`` is under the protocol's prefix (its errors take the protocol's shape)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_payload(error: RiverbedError) -> dict[str, Any]:
    """The protocol's error body, ``{"error": message}``, with riverbed's code and detail."""
    return {"error": error.message, "code": error.code, "detail": error.detail}


register_error_payload(GROUP, error_payload)


def _answers(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` with riverbed's errors answered in the protocol's shape."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except RiverbedError as exc:
            return JSONResponse(
                error_payload(exc), status_code=status_of(exc), headers=error_headers(exc)
            )

    return wrapped


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _version(request: Request) -> int | None:
    raw = request.path_params.get("version")
    if raw is None:
        return None
    number = parse_int(raw)
    if number is None or number < 1:
        raise InvalidInput(
            f"a model version is a positive integer, got {raw!r}", detail={"field": "version"}
        )
    return number


# -- server ------------------------------------------------------------------------------------


@_answers
async def server_metadata(request: Request) -> Response:
    return JSONResponse({"name": "riverbed", "version": __version__, "extensions": EXTENSIONS})


@_answers
async def live(request: Request) -> Response:
    return JSONResponse({"live": True})


@_answers
async def ready(request: Request) -> Response:
    return JSONResponse({"ready": request.app.state.engine is not None})


# -- models ------------------------------------------------------------------------------------


def _tensor_meta(name: str, datatype: str, shape: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape}


def _label_type(target: str | None, default: str) -> str:
    return _DATATYPE.get(target or "", default)


def declared_outputs(model: dict[str, Any], target: str | None) -> list[dict[str, Any]]:
    """The outputs a model's task answers with (name, datatype, shape; -1 is any size)."""
    task = model.get("task")
    options = model.get("options") or {}
    batch, table = [-1], [-1, -1]
    if task in ("binary", "multiclass"):
        label = _label_type(target, "BOOL" if task == "binary" else "BYTES")
        if task == "binary" and label == "INT64":
            label = "BOOL"  # 0/1 labels are learned as booleans
        return [
            _tensor_meta("prediction", label, batch),
            _tensor_meta("probabilities", "FP64", table),
        ]
    if task == "multioutput":
        return [_tensor_meta("prediction", "FP64", table)]
    if task == "clustering":
        return [_tensor_meta("prediction", "INT64", batch), _tensor_meta("cluster", "INT64", batch)]
    if task == "anomaly":
        flagged = "threshold" in options or "quantile" in options
        outputs = [
            _tensor_meta("prediction", "BOOL" if flagged else "FP64", batch),
            _tensor_meta("score", "FP64", batch),
        ]
        if flagged:
            outputs.append(_tensor_meta("anomaly", "BOOL", batch))
        return outputs
    if task == "bandit":
        return [_tensor_meta("prediction", "BYTES", batch), _tensor_meta("arm", "BYTES", batch)]
    if task == "custom" or task is None:
        return [_tensor_meta("prediction", "BYTES", batch)]
    return [_tensor_meta("prediction", "FP64", batch)]  # regression, forecasting, ratings


def _inputs_meta(signature: dict[str, Any]) -> list[dict[str, Any]]:
    out = [
        _tensor_meta(f["name"], _DATATYPE.get(f["kind"], "BYTES"), [-1])
        for f in signature["features"]
    ]
    for field in signature.get("inputs") or ():
        shape = [-1, -1] if field["kind"] == "array" else [-1]
        out.append(_tensor_meta(field["name"], _DATATYPE.get(field["kind"], "BYTES"), shape))
    return out


@_answers
async def model_metadata(request: Request) -> Response:
    engine = _engine(request)
    name, version = request.path_params["name"], _version(request)
    model = engine.get_model(name)
    signature = engine.signature(name, version)
    if version is not None:
        versions = [str(version)]
    else:
        versions = [str(v["version"]) for v in engine.list_versions(name)]
    return JSONResponse(
        {
            "name": name,
            "versions": versions,
            "platform": f"riverbed_{model.get('flavor', 'river')}",
            "inputs": _inputs_meta(signature),
            "outputs": declared_outputs(model, signature["target"]),
            "parameters": {"task": model.get("task"), "features_seen": signature["seen"]},
        }
    )


@_answers
async def model_ready(request: Request) -> Response:
    engine = _engine(request)
    name, version = request.path_params["name"], _version(request)
    model = engine.get_model(name)
    if version is not None:
        engine.get_version(name, version)  # 404 when it does not exist
    elif model.get("flavor") == "file":
        raise NotServable(f"model {name!r} holds opaque files: they are kept, not served")
    return JSONResponse({"name": name, "ready": True})


# -- infer -------------------------------------------------------------------------------------


def _header_length(request: Request, size: int) -> int | None:
    raw = request.headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    n = parse_int(raw)
    if n is None or n > size:
        raise InvalidInput(
            f"Inference-Header-Content-Length {raw!r} is not a length within the body "
            f"({size} bytes)",
            detail={"header": "Inference-Header-Content-Length"},
        )
    return n


def _prediction_ids(parameters: dict[str, Any], batch: int) -> list[str | None]:
    ids = parameters.get("prediction_ids")
    one = parameters.get("prediction_id")
    if ids is not None and one is not None:
        raise InvalidInput("give prediction_ids or prediction_id, not both")
    if one is not None:
        ids = [one]
    if ids is None:
        return [None] * batch
    if isinstance(ids, str):
        ids = ids.split(",")  # a client whose parameters are scalars sends "a,b,c"
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidInput("the parameter prediction_ids is a list of strings, one per sample")
    if len(ids) != batch:
        raise InvalidInput(
            f"{len(ids)} prediction ids for a batch of {batch} samples: give one per sample",
            detail={"parameter": "prediction_ids"},
        )
    return list(ids)


def _samples(
    inputs: list[Tensor], task_inputs: frozenset[str], columns_of: Callable[[], list[str]]
) -> list[dict[str, Any]]:
    """One predict item (``features`` and the task's fields) per sample of the batch."""
    batch = inputs[0].batch
    items: list[dict[str, Any]] = [{"features": {}} for _ in range(batch)]
    for tensor in inputs:
        if tensor.name in task_inputs:
            for item, row in zip(items, tensor.rows(), strict=True):
                item[tensor.name] = row if len(tensor.shape) > 1 and tensor.width > 1 else row[0]
            continue
        if tensor.width == 1:
            names = [tensor.name]
            given = tensor.parameters.get("columns")
            if isinstance(given, list) and len(given) == 1 and isinstance(given[0], str):
                names = given
        else:
            names = _columns(tensor, columns_of)
        for item, row in zip(items, tensor.rows(), strict=True):
            features = item["features"]
            for key, value in zip(names, row, strict=True):
                if key in features:
                    raise InvalidInput(f"feature {key!r} is given by two inputs")
                features[key] = value
    return items


def _columns(tensor: Tensor, columns_of: Callable[[], list[str]]) -> list[str]:
    given = tensor.parameters.get("columns")
    if given is not None:
        if not isinstance(given, list) or not all(isinstance(c, str) for c in given):
            raise InvalidInput(f"input {tensor.name!r}: 'columns' is a list of feature names")
        names = given
    else:
        names = columns_of()
        if not names:
            raise InvalidInput(
                f"input {tensor.name!r} is [batch, {tensor.width}] but the model has seen no "
                "features to name its columns: send one input per feature, or a 'columns' "
                "parameter",
                detail={"input": tensor.name},
            )
    if len(names) != tensor.width:
        raise InvalidInput(
            f"input {tensor.name!r} has {tensor.width} columns, the feature names are "
            f"{len(names)} ({', '.join(names[:10])})",
            detail={"input": tensor.name, "columns": names},
        )
    if len(set(names)) != len(names):
        raise InvalidInput(f"input {tensor.name!r}: its column names repeat")
    return names


_NOT_OUTPUTS = frozenset({"id", "model", "version"})


def _outputs(results: list[dict[str, Any]], declared: list[dict[str, Any]]) -> list[Tensor]:
    """The answer's output tensors: one per field of the native predictions."""
    types = {d["name"]: d["datatype"] for d in declared}
    names: list[str] = []
    for result in results:
        for key in result:
            if key not in _NOT_OUTPUTS and key not in names:
                names.append(key)
    batch = len(results)
    out = []
    for name in names:
        values = [r.get(name) for r in results]
        tables = [v for v in values if isinstance(v, dict)]
        if values and len(tables) == len(values):
            keys = _sorted({k for v in tables for k in v})
            fill = 0.0 if name == "probabilities" else None
            flat = [v.get(k, fill) for v in tables for k in keys]
            datatype, data = column(flat, types.get(name))
            out.append(Tensor(name, datatype, (batch, len(keys)), data, {"columns": keys}))
        else:
            datatype, data = column(values, types.get(name))
            out.append(Tensor(name, datatype, (batch,), data))
    return out


def _sorted(keys: set[Any]) -> list[Any]:
    try:
        return sorted(keys)
    except TypeError:  # labels of several types
        return sorted(keys, key=lambda k: (type(k).__name__, str(k)))


@_answers
async def infer(request: Request) -> Response:
    engine = _engine(request)
    settings = request.app.state.settings
    name, version = request.path_params["name"], _version(request)
    body = await read_body(request)
    header = _header_length(request, len(body))
    doc = parse_json(body if header is None else body[:header], settings)
    req = read_request(
        doc, b"" if header is None else body[header:], max_batch=int(settings.max_batch_size)
    )
    if req.model_name is not None and req.model_name != name:
        raise InvalidInput(
            f"the body names model {req.model_name!r}, the path {name!r}",
            detail={"field": "model_name"},
        )
    if req.model_version not in (None, "") and str(req.model_version) != str(version or ""):
        raise InvalidInput(
            f"the body names version {req.model_version!r}, the path "
            + (f"{version}" if version else "none"),
            detail={"field": "model_version"},
        )
    model = engine.get_model(name)
    task = TASKS.get(str(model.get("task")))
    task_inputs = task.inputs if task is not None else frozenset()
    signature: dict[str, Any] = {}

    def seen() -> dict[str, Any]:
        if not signature:
            signature.update(engine.signature(name, version))
        return signature

    target = seen()["target"] if model.get("task") in ("binary", "multiclass") else None
    declared = declared_outputs(model, target)
    unknown = sorted(set(req.outputs) - {d["name"] for d in declared})
    if unknown:  # checked before anything is predicted
        raise InvalidInput(
            f"no output named {', '.join(map(repr, unknown))}; this model answers "
            f"{', '.join(d['name'] for d in declared)}",
            detail={"outputs": unknown},
        )
    items = _samples(req.inputs, task_inputs, lambda: [f["name"] for f in seen()["features"]])
    ids = _prediction_ids(req.parameters, len(items))
    for item, pid in zip(items, ids, strict=True):
        if pid is not None:
            item["id"] = pid
    if version is None and model.get("flavor") == "river":
        results = await engine.submit_predict_many(name, items)
    else:
        results = []
        for item in items:
            fields = dict(item)
            features, pid = fields.pop("features"), fields.pop("id", None)
            receipt = engine.submit_predict(name, features, id=pid, version=version, **fields)
            results.append(await receipt)
    outputs = _outputs(results, declared)
    if req.outputs:
        by_name = {t.name: t for t in outputs}
        outputs = [by_name[n] for n in req.outputs if n in by_name]
    binary = {
        t.name
        for t in outputs
        if (req.outputs.get(t.name) if req.outputs.get(t.name) is not None else req.binary_output)
    }
    head: dict[str, Any] = {"model_name": name}
    if version is not None:
        head["model_version"] = str(version)
    if req.id is not None:
        head["id"] = req.id
    prediction_ids = [r.get("id") for r in results]
    if any(i is not None for i in prediction_ids):
        head["parameters"] = {"prediction_ids": prediction_ids}
    content, length = encode_response(head, outputs, binary)
    if length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(length)},
    )


def _tensor_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string"},
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
    }


_INFER_BODY = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "description": "prediction_ids (one per sample), binary_data_output",
        },
        "inputs": {"type": "array", "items": _tensor_schema()},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "outputs": {"type": "array", "items": _tensor_schema()},
    },
}
_META = {"type": "object"}


def _model_routes(base: str, what: str) -> list[Endpoint]:
    return [
        Endpoint(
            "GET",
            base,
            model_metadata,
            f"Open Inference Protocol: {what}'s metadata (inputs and outputs)",
            GROUP,
            errors=(404,),
            response=_META,
        ),
        Endpoint(
            "GET",
            base + "/ready",
            model_ready,
            f"Open Inference Protocol: is {what} ready?",
            GROUP,
            errors=(404,),
            response=_META,
        ),
        Endpoint(
            "POST",
            base + "/infer",
            infer,
            f"Open Inference Protocol: predict with {what} from tensors",
            GROUP,
            scope="predict",
            errors=(404, 409, 413),
            body=_INFER_BODY,
            response=_INFER_RESPONSE,
        ),
    ]


ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        PREFIX,
        server_metadata,
        "Open Inference Protocol: the server's metadata",
        GROUP,
        scope="public",
        response=_META,
    ),
    Endpoint(
        "GET",
        PREFIX + "/health/live",
        live,
        "Open Inference Protocol: is the server live?",
        GROUP,
        scope="public",
        response=_META,
    ),
    Endpoint(
        "GET",
        PREFIX + "/health/ready",
        ready,
        "Open Inference Protocol: is the server ready?",
        GROUP,
        scope="public",
        response=_META,
    ),
    *_model_routes(PREFIX + "/models/{name}", "a model"),
    *_model_routes(PREFIX + "/models/{name}/versions/{version}", "a model version"),
]
