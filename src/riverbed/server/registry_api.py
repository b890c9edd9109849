"""The registry's routes under ``/v1``: versions, artifacts, aliases, metadata, search.

``{version}`` in a path is a version number, ``latest`` or an alias name, and ``{name}``
may carry one too (``fraud@production``), so every version has a permanent URL
(``/v1/models/fraud/versions/3/artifact``) and aliases give moving ones.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from riverbed import artifacts, specs
from riverbed.engine import Engine
from riverbed.exceptions import Forbidden, InvalidInput
from riverbed.server.http import (
    JSONResponse,
    field,
    is_object,
    is_str,
    is_str_list,
    query_int,
    read_json,
    reject_unknown,
)
from riverbed.server.routing import ENCODED_ARTIFACT, Endpoint
from riverbed.validation import parse_int

__all__ = ["ENDPOINTS", "browser_pickle_refused", "pickle_allowed", "pickle_refused"]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def pickle_allowed(request: Request) -> bool:
    """May this request upload a pickle (which runs code on the server)? Both must hold:

    - the caller holds ``admin`` (the upload route declares ``scope="admin"``, so with auth
      on the guard lets only admin tokens through; with auth off the caller is the local
      operator);
    - the ``allow_pickle_uploads`` setting allows it (``auto``: only on a loopback address).
    """
    from riverbed.server.auth import principal_of

    admin = principal_of(request).grants("admin")
    return admin and bool(request.app.state.settings.pickle_uploads_allowed)


def pickle_refused(request: Request, format: str) -> Forbidden | None:
    """The error for a pickled upload this request may not make (None if it may): the
    caller must hold admin, the ``allow_pickle_uploads`` setting allow pickles and, with
    auth off, no browser send it (:func:`browser_pickle_refused`)."""
    if not pickle_allowed(request):
        return Forbidden(
            "this server does not accept pickled models (unpickling runs code on the server); "
            "create the model from a spec with POST /v1/models, or start the server with "
            "--allow-pickle-uploads true on a trusted network",
            detail={"format": format},
        )
    return browser_pickle_refused(request)


def browser_pickle_refused(request: Request) -> Forbidden | None:
    """With auth off, the error for a pickled upload that a web browser sends and
    ``pickle_origins`` does not list (riverbed.server.guard, rule 3); None otherwise. Every
    route that takes a pickle asks this before it reads, unpickles or stores the upload."""
    from riverbed.server.auth import principal_of

    if principal_of(request).kind != "local":  # auth on: the admin scope decides
        return None
    refusal: Forbidden | None = request.app.state.auth.web.pickle_refusal(request.scope)
    return refusal


def _ref(request: Request) -> str:
    """``name@version`` from the path: a number, ``latest`` or an alias."""
    name = request.path_params["name"]
    version = request.path_params.get("version")
    if version is None:
        return str(name)
    if "@" in name:
        raise InvalidInput("give the version in the path or after '@' in the name, not both")
    return f"{name}@{version}"


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- versions ---------------------------------------------------------------------------

_UPLOAD_FIELDS = {
    "artifact",
    "spec",
    "format",
    "filename",
    "task",
    "description",
    "tags",
    "hyperparameters",
    "params",
    "metrics",
    "dataset",
    "git",
    "created_by",
    "parent",
    "feature_names",
    "source",
}


async def upload(request: Request) -> Response:
    engine = _engine(request)
    body = await read_json(request, long_strings=True)  # an encoded artifact's limit
    reject_unknown(body, _UPLOAD_FIELDS)
    encoded = field(body, "artifact", is_str, "a base64 string")
    spec = field(body, "spec")
    if (encoded is None) == (spec is None):
        raise InvalidInput("give either an artifact (base64) or a spec, not both or neither")
    source = field(body, "source", is_str, "a string", default="upload")
    if spec is not None:
        artifact: Any = specs.build(spec, allowed=engine.settings.allowed_module_prefixes)
        source = "spec"
    else:
        try:
            artifact = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(
                "artifact is not valid base64", detail={"field": "artifact"}
            ) from None
        stated = field(body, "format", is_str, "a string")
        format = stated or artifacts.guess_format(
            artifact, field(body, "filename", is_str, "a string")
        )
        if format in artifacts.UNVETTED:
            refusal = browser_pickle_refused(request)
            if refusal is not None:
                raise refusal
    options = {
        "format": field(body, "format", is_str, "a string"),
        "filename": field(body, "filename", is_str, "a string"),
        "task": field(body, "task", is_str, "a string"),
        "description": field(body, "description", is_str, "a string", default=""),
        "tags": field(body, "tags", is_object, "an object of strings"),
        "hyperparameters": field(body, "hyperparameters", is_object, "an object"),
        "params": field(body, "params", is_object, "an object"),
        "metrics": field(body, "metrics", is_object, "an object of numbers"),
        "dataset": field(body, "dataset"),
        "git": field(body, "git", is_object, "an object"),
        "created_by": field(body, "created_by", is_str, "a string", default=""),
        "parent": field(body, "parent", _int, "an integer"),
        "feature_names": field(body, "feature_names", is_str_list, "an array of strings"),
        "source": source,
        "allow_pickle": pickle_allowed(request),
    }
    receipt = await run_in_threadpool(
        engine.submit_upload, request.path_params["name"], artifact, **options
    )
    return JSONResponse(await receipt, status_code=201)


async def list_versions(request: Request) -> Response:
    return JSONResponse({"versions": _engine(request).list_versions(request.path_params["name"])})


async def get_version(request: Request) -> Response:
    return JSONResponse(_engine(request).get_version(_ref(request)))


async def update_version(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(body, {"description", "tags", "remove_tags", "metrics"})
    receipt = _engine(request).submit_update_version(
        _ref(request),
        description=field(body, "description", is_str, "a string"),
        tags=field(body, "tags", is_object, "an object of strings"),
        remove_tags=field(body, "remove_tags", is_str_list, "an array of tag names"),
        metrics=field(body, "metrics", is_object, "an object of numbers"),
    )
    return JSONResponse(await receipt)


async def delete_version(request: Request) -> Response:
    raw = request.path_params["version"]
    number = parse_int(raw)
    if number is None:
        raise InvalidInput(f"delete a version by its number, not by {raw!r}")
    receipt = _engine(request).submit_delete_version(request.path_params["name"], number)
    return JSONResponse(await receipt)


async def download(request: Request) -> Response:
    data, info = _engine(request).get_artifact(_ref(request))
    extension = {"skops": ".skops", "joblib": ".joblib", "pickle": ".pkl", "riverbed": ".rvbd"}
    filename = info["filename"] or f"{info['model']}-{info['version']}" + extension.get(
        info["format"], ".bin"
    )
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "content-disposition": f'attachment; filename="{safe}"',
            "etag": f'"{info["checksum"]}"' if info["checksum"] else "",
            "x-riverbed-model": info["model"],
            "x-riverbed-version": str(info["version"]),
            "x-riverbed-format": info["format"],
        },
    )


async def model_json(request: Request) -> Response:
    return JSONResponse(_engine(request).model_json(_ref(request)))


async def predict_version(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(body, {"features", "rows", "id"})
    engine = _engine(request)
    rows = field(body, "rows", lambda v: isinstance(v, list), "an array of rows")
    if rows is not None:
        if "features" in body or "id" in body:
            raise InvalidInput("give features (one row) or rows (many), not both")
        return JSONResponse(await engine.submit_predict_rows(_ref(request), rows))
    receipt = engine.submit_predict(
        _ref(request),
        field(body, "features", is_object, "an object of feature values", required=True),
        id=field(body, "id", is_str, "a string"),
    )
    return JSONResponse(await receipt)


async def snapshot(request: Request) -> Response:
    body = await read_json(request, required=False) or {}
    reject_unknown(
        body, {"description", "tags", "params", "metrics", "dataset", "git", "created_by"}
    )
    receipt = _engine(request).submit_snapshot(
        request.path_params["name"],
        description=field(body, "description", is_str, "a string", default=""),
        tags=field(body, "tags", is_object, "an object of strings"),
        params=field(body, "params", is_object, "an object"),
        metrics=field(body, "metrics", is_object, "an object of numbers"),
        dataset=field(body, "dataset"),
        git=field(body, "git", is_object, "an object"),
        created_by=field(body, "created_by", is_str, "a string", default=""),
    )
    return JSONResponse(await receipt, status_code=201)


# -- models, aliases, search ---------------------------------------------------------------


async def update_model(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(body, {"description", "tags", "remove_tags"})
    receipt = _engine(request).submit_update_model(
        request.path_params["name"],
        description=field(body, "description", is_str, "a string"),
        tags=field(body, "tags", is_object, "an object of strings"),
        remove_tags=field(body, "remove_tags", is_str_list, "an array of tag names"),
    )
    return JSONResponse(await receipt)


async def list_aliases(request: Request) -> Response:
    engine = _engine(request)
    name = request.path_params["name"]
    return JSONResponse({"aliases": engine.aliases(name), "history": engine.alias_history(name)})


async def set_alias(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(body, {"version", "by"})
    receipt = _engine(request).submit_set_alias(
        request.path_params["name"],
        request.path_params["alias"],
        field(body, "version", _int, "an integer", required=True),
        by=field(body, "by", is_str, "a string", default=""),
    )
    return JSONResponse(await receipt)


async def delete_alias(request: Request) -> Response:
    unknown = set(request.query_params) - {"by"}
    if unknown:
        raise InvalidInput(f"unknown query parameter(s) {sorted(unknown)}; accepted: by")
    receipt = _engine(request).submit_set_alias(
        request.path_params["name"],
        request.path_params["alias"],
        None,
        by=request.query_params.get("by", ""),
    )
    return JSONResponse(await receipt)


async def restore(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(body, {"version", "metrics", "by"})
    receipt = _engine(request).submit_restore(
        request.path_params["name"],
        field(body, "version", _int, "an integer", required=True),
        metrics=field(body, "metrics", is_str, "'restart' or 'carry'", default="restart"),
        by=field(body, "by", is_str, "a string", default=""),
    )
    return JSONResponse(await receipt)


def _search_args(request: Request) -> dict[str, Any]:
    unknown = set(request.query_params) - {"filter", "order_by", "page_size", "page_token"}
    if unknown:
        raise InvalidInput(
            f"unknown query parameter(s) {sorted(unknown)}; accepted: filter, order_by, "
            "page_size, page_token"
        )
    return {
        "filter": request.query_params.get("filter"),
        "order_by": request.query_params.get("order_by"),
        "page_size": query_int(request, "page_size"),
        "page_token": request.query_params.get("page_token"),
    }


async def search_models(request: Request) -> Response:
    args = _search_args(request)
    return JSONResponse(_engine(request).search_models(args.pop("filter"), **args))


async def search_versions(request: Request) -> Response:
    args = _search_args(request)
    return JSONResponse(_engine(request).search_versions(args.pop("filter"), **args))


# -- declarations ----------------------------------------------------------------------------


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


_STR = {"type": "string"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_NUMBERS = {"type": "object", "additionalProperties": {"type": "number"}}
_VERSION = {
    "type": "object",
    "description": "a version: see docs/registry.md",
    "properties": {
        "model": _STR,
        "version": {"type": "integer"},
        "task": _STR,
        "flavor": {"type": "string", "enum": ["river", "sklearn", "file"]},
        "format": {"type": "string", "enum": ["riverbed", "pickle", "joblib", "skops", "file"]},
        "source": _STR,
        "description": _STR,
        "tags": _STRINGS,
        "aliases": {"type": "array", "items": _STR},
        "created_at": {"type": "number"},
        "created_by": _STR,
        "parent": {"type": ["integer", "null"]},
        "hyperparameters": {"type": "object"},
        "params": {"type": "object"},
        "metrics": _NUMBERS,
        "dataset": {"type": "object"},
        "git": {"type": "object"},
        "spec": {},
        "filename": {"type": ["string", "null"]},
        "size": {"type": "integer"},
        "checksum": {"type": "string"},
        "n_learns": {"type": ["integer", "null"]},
        "served": {"type": "boolean"},
        "url": _STR,
    },
}
_METADATA = {
    "description": _STR,
    "tags": _STRINGS,
    "params": {"type": "object"},
    "metrics": _NUMBERS,
    "dataset": {"anyOf": [_STR, _obj({"name": _STR, "description": _STR})]},
    "git": _obj({"commit": _STR, "branch": _STR, "remote": _STR, "dirty": {"type": "boolean"}}),
    "created_by": _STR,
}
_PAGE = {
    "next_page_token": {"type": ["string", "null"]},
    "total": {"type": "integer"},
}
_EDIT_TAGS = {"tags": _STRINGS, "remove_tags": {"type": "array", "items": _STR}}
V = "/v1/models/{name}/versions/{version}"

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/v1/search/models",
        search_models,
        "Search models with the registry filter syntax (?filter=&order_by=&page_size=)",
        "registry",
        response=_obj({"models": {"type": "array"}, **_PAGE}),
    ),
    Endpoint(
        "GET",
        "/v1/search/versions",
        search_versions,
        "Search versions with the registry filter syntax (?filter=&order_by=&page_size=)",
        "registry",
        response=_obj({"versions": {"type": "array", "items": _VERSION}, **_PAGE}),
    ),
    Endpoint(
        "PATCH",
        "/v1/models/{name}",
        update_model,
        "Edit a model's description and tags",
        "registry",
        scope="admin",
        errors=(404,),
        body=_obj({"description": _STR, **_EDIT_TAGS}),
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}/versions",
        list_versions,
        "List a model's versions",
        "registry",
        errors=(404,),
        response=_obj({"versions": {"type": "array", "items": _VERSION}}),
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/versions",
        upload,
        "Add a version from an artifact (base64) or a spec; creates the model if new",
        "registry",
        scope="admin",
        status=201,
        errors=(403, 409, 413),
        body_limit=ENCODED_ARTIFACT,
        pickle=True,
        body=_obj(
            {
                "artifact": {"type": "string", "contentEncoding": "base64"},
                "spec": {"description": "see docs/specs.md"},
                "format": {
                    "type": "string",
                    "enum": ["riverbed", "pickle", "joblib", "skops", "file"],
                },
                "filename": _STR,
                "task": _STR,
                "hyperparameters": {"type": "object"},
                "parent": {"type": "integer"},
                "feature_names": {"type": "array", "items": _STR},
                "source": {"type": "string", "enum": ["upload", "job"]},
                **_METADATA,
            }
        ),
        response=_VERSION,
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/snapshot",
        snapshot,
        "Freeze the live model's learned state as a new version",
        "registry",
        scope="admin",
        status=201,
        errors=(404, 409),
        body=_obj(_METADATA),
        response=_VERSION,
    ),
    Endpoint(
        "GET", V, get_version, "Describe a version", "registry", errors=(404,), response=_VERSION
    ),
    Endpoint(
        "PATCH",
        V,
        update_version,
        "Edit a version's description, tags and logged metrics",
        "registry",
        scope="admin",
        errors=(404,),
        body=_obj({"description": _STR, "metrics": _NUMBERS, **_EDIT_TAGS}),
        response=_VERSION,
    ),
    Endpoint(
        "DELETE",
        V,
        delete_version,
        "Delete a version and its artifact",
        "registry",
        scope="admin",
        errors=(404, 409),
    ),
    Endpoint(
        "GET",
        V + "/artifact",
        download,
        "Download a version's artifact, byte for byte as stored",
        "registry",
        errors=(404,),
        media_type="application/octet-stream",
    ),
    Endpoint(
        "GET",
        V + "/json",
        model_json,
        "A JSON view of a version: spec and parameters",
        "registry",
        errors=(404,),
    ),
    Endpoint(
        "POST",
        V + "/predict",
        predict_version,
        "Predict with a version: one row (features) or many (rows)",
        "registry",
        scope="predict",
        errors=(404, 409),
        body={
            "type": "object",
            "properties": {
                "features": {"type": "object"},
                "rows": {
                    "type": "array",
                    "items": {"anyOf": [{"type": "object"}, {"type": "array"}]},
                },
                "id": _STR,
            },
            "additionalProperties": False,
        },
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}/aliases",
        list_aliases,
        "A model's aliases and the history of their moves",
        "registry",
        errors=(404,),
    ),
    Endpoint(
        "PUT",
        "/v1/models/{name}/aliases/{alias}",
        set_alias,
        "Point an alias at a version (a rollback is a move back)",
        "registry",
        scope="admin",
        errors=(404,),
        body=_obj({"version": {"type": "integer"}, "by": _STR}, ["version"]),
    ),
    Endpoint(
        "DELETE",
        "/v1/models/{name}/aliases/{alias}",
        delete_alias,
        "Remove an alias",
        "registry",
        scope="admin",
        errors=(404,),
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/restore",
        restore,
        "Make a version the live model's state (a rollback of what the model learned); "
        "metrics 'restart' or 'carry'",
        "registry",
        scope="admin",
        errors=(404, 409),
        body=_obj(
            {
                "version": {"type": "integer"},
                "metrics": {"type": "string", "enum": ["restart", "carry"]},
                "by": _STR,
            },
            ["version"],
        ),
    ),
]
