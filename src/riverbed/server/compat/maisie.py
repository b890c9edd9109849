"""Maisie's HTTP API (``/api/v1/...``), what its PyPI client ``maisie`` calls, over the
registry.

A Maisie "model" is one uploaded file with its name, dataset, hyperparameters, parameters,
metrics and git information; here it is a version in riverbed's registry, kept as an opaque
file (stored, versioned, downloadable, never unpickled). Maisie numbered models globally;
each version uploaded through these routes gets the next number, kept in the version's tag
``maisie.id``. The download link is the version's permanent artifact URL.
``docs/migration/maisie.md`` lists what differs and why.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.datastructures import FormData
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

from riverbed.exceptions import InvalidInput, NotFound
from riverbed.server.auth import principal_of
from riverbed.server.compat.common import engine_of, legacy_errors, slug
from riverbed.server.http import (
    JSONResponse,
    parse_json,
    query_int,
    read_body,
)
from riverbed.server.registry_api import browser_pickle_refused
from riverbed.server.routing import ARTIFACT, Endpoint
from riverbed.validation import parse_int

__all__ = ["ENDPOINTS"]

TAG_NAME = "maisie"
ID_TAG = "maisie.id"
COUNTER_KEY = "riverbed:compat:maisie:ids"
MAX_PER_PAGE = 100


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _origin(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _entry(request: Request, version: dict[str, Any]) -> dict[str, Any]:
    """A registry version in Maisie's shape."""
    origin = _origin(request)
    number = int(version["tags"][ID_TAG])
    params = dict(version["params"])
    project = params.pop("maisie.project_id", None)
    name = params.pop("maisie.name", version["model"])
    dataset = version["dataset"] or {}
    git = version["git"] or {}
    created = _iso(version["created_at"])
    return {
        "id": number,
        "user": {"id": 1, "login": version["created_by"] or "riverbed", "full_name": ""},
        "project_id": project,
        "name": name,
        "visibility": "public",
        "dataset": {"name": dataset.get("name", ""), "description": dataset.get("description", "")},
        "hyperparameters": version["hyperparameters"],
        "parameters": params,
        "metrics": version["metrics"],
        "tags": sorted(k for k in version["tags"] if k != ID_TAG),
        "git": {"active_branch": git.get("branch", ""), "commit_hash": git.get("commit", "")},
        "created": created,
        "updated": created,
        "_links": {
            "self": f"{origin}/api/v1/models/{number}/",
            "user": f"{origin}/api/v1/users/1/",
            "project": f"{origin}/api/v1/projects/{project}/" if project else None,
            "download": f"{origin}{version['url']}",
        },
    }


def _maisie_versions(request: Request) -> list[dict[str, Any]]:
    engine = engine_of(request)
    found: list[dict[str, Any]] = []
    for model in engine.list_models():
        try:
            versions = engine.list_versions(model["name"])
        except NotFound:  # deleted meanwhile
            continue
        # A maisie.id that is not a number was set by hand: not a version Maisie uploaded.
        found.extend(v for v in versions if parse_int(v["tags"].get(ID_TAG, "")) is not None)
    return sorted(found, key=lambda v: int(v["tags"][ID_TAG]))


def _json_field(form: Any, name: str) -> dict[str, Any]:
    raw = form.get(name)
    if raw in (None, ""):
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{name} must be a JSON object: {exc}", detail={"field": name}) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object", detail={"field": name})
    return value


# -- routes ------------------------------------------------------------------------------------


async def _login_fields(request: Request) -> dict[str, Any]:
    """The login's fields from a JSON, form-encoded or multipart body, read within
    ``max_body_bytes`` (413 past it; malformed JSON is a 400)."""
    body = await read_body(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        value = parse_json(body, request.app.state.settings, required=False)
        return value if isinstance(value, dict) else {}

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser if content_type.startswith("multipart/") else FormParser
    try:
        form = await parser(request.headers, chunks()).parse()
    except MultiPartException as exc:
        raise InvalidInput(f"malformed form: {exc.message}") from None
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    await form.close()  # a multipart file part holds a temporary file
    return fields


@legacy_errors
async def login(request: Request) -> Response:
    """Maisie's login: ``login`` and ``password`` (form or JSON). The password is a riverbed
    token, handed back as the access token the client then sends as ``Bearer``."""
    form = await _login_fields(request)
    login_name, password = form.get("login"), form.get("password")
    if not isinstance(login_name, str) or not isinstance(password, str):
        raise InvalidInput(
            "login and password are required", detail={"fields": ["login", "password"]}
        )
    if request.app.state.auth.required(request.scope):
        from riverbed.server.auth import verify

        verify(request, password)  # 401 for a token that is not valid
    return JSONResponse(
        {"data": {"access_token": password, "token_type": "bearer", "user": {"login": login_name}}}
    )


@legacy_errors
async def list_models(request: Request) -> Response:
    query = request.query_params
    page = max(1, query_int(request, "page", 1))
    per_page = min(MAX_PER_PAGE, max(1, query_int(request, "per_page", 10)))
    entries = [_entry(request, v) for v in _maisie_versions(request)]
    if query.get("projects"):
        wanted = {p.strip() for p in query["projects"].split(",")}
        entries = [e for e in entries if str(e["project_id"]) in wanted]
    if query.get("users"):
        wanted = {u.strip() for u in query["users"].split(",")}
        entries = [e for e in entries if e["user"]["login"] in wanted or "1" in wanted]
    if query.get("metrics"):
        wanted = {m.strip() for m in query["metrics"].split(",") if m.strip()}
        entries = [e for e in entries if wanted <= set(e["metrics"])]
    total = len(entries)
    pages = max(1, math.ceil(total / per_page))
    chunk = entries[(page - 1) * per_page : page * per_page]
    return JSONResponse(
        {
            "data": chunk,
            "pagination": {
                "page": page,
                "per_page": per_page,
                "pages": pages,
                "total": total,
                "has_next": page < pages,
                "has_prev": page > 1,
            },
        }
    )


@legacy_errors
async def get_model(request: Request) -> Response:
    wanted = request.path_params["id"]
    for version in _maisie_versions(request):
        if version["tags"][ID_TAG] == str(wanted):
            return JSONResponse({"data": _entry(request, version)})
    raise NotFound(f"no model with id {wanted}")


@legacy_errors
async def upload(request: Request) -> Response:
    """A multipart upload: ``file`` and the fields Maisie's client sends (``name``,
    ``hyperparameters``/``parameters``/``metrics`` as JSON, ``git_active_branch``,
    ``git_commit_hash``, ``project_id``) plus ``dataset_name`` and ``dataset_description``.

    The file is kept opaque, and it is most often a pickle that whoever downloads it loads:
    with auth off a browser may not upload one unless ``pickle_origins`` lists its origin."""
    refusal = browser_pickle_refused(request)
    if refusal is not None:
        raise refusal  # before the body is read
    form = await request.form()  # within max_artifact_bytes: the route declares ARTIFACT
    try:
        return await _upload(request, form)
    finally:
        await form.close()  # the file part is a temporary file, refused or not


async def _upload(request: Request, form: FormData) -> Response:
    name = form.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("name is required", detail={"fields": ["name"]})
    file = form.get("file")
    if file is None or isinstance(file, str):
        raise InvalidInput("file is required: the model file, as a multipart file field")
    data = await file.read()
    if not data:
        raise InvalidInput("the uploaded file is empty")
    params = _json_field(form, "parameters")
    if slug(name) != name:
        params["maisie.name"] = name
    project = form.get("project_id")
    if isinstance(project, str) and project:
        params["maisie.project_id"] = project
    git = {
        k: v
        for k, v in (
            ("branch", form.get("git_active_branch")),
            ("commit", form.get("git_commit_hash")),
        )
        if isinstance(v, str) and v
    }
    dataset = {
        k: v
        for k, v in (
            ("name", form.get("dataset_name")),
            ("description", form.get("dataset_description")),
        )
        if isinstance(v, str) and v
    }
    engine = engine_of(request)
    number = (await engine.cache.submit_push(COUNTER_KEY, time.time()))["length"]
    principal = principal_of(request)
    await engine.submit_upload(
        slug(name),
        data,
        format="file",
        filename=getattr(file, "filename", None) or None,
        tags={ID_TAG: str(number)},
        hyperparameters=_json_field(form, "hyperparameters"),
        params=params,
        metrics=_json_field(form, "metrics"),
        dataset=dataset or None,
        git=git or None,
        created_by=principal.name or principal.kind,
    )
    for version in _maisie_versions(request):
        if version["tags"][ID_TAG] == str(number):
            return JSONResponse({"data": _entry(request, version)}, status_code=201)
    raise NotFound(f"model {name!r} was deleted while it was uploaded")  # pragma: no cover


_MODEL = {"type": "object", "properties": {"data": {"type": "object"}}}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "/api/v1/auth/login/",
        login,
        "Maisie: log in (the password is a riverbed token) for an access token",
        TAG_NAME,
        scope="public",
        errors=(401,),
        response=_MODEL,
    ),
    Endpoint(
        "GET",
        "/api/v1/models/",
        list_models,
        "Maisie: models uploaded through Maisie's routes, paginated and filtered",
        TAG_NAME,
        response={"type": "object", "properties": {"data": {"type": "array"}, "pagination": {}}},
    ),
    Endpoint(
        "POST",
        "/api/v1/models/",
        upload,
        "Maisie: upload a model file with its metadata (kept as an opaque file)",
        TAG_NAME,
        scope="admin",
        status=201,
        errors=(409, 413),
        response=_MODEL,
        body_limit=ARTIFACT,
        pickle=True,
    ),
    Endpoint(
        "GET",
        "/api/v1/models/{id}/",
        get_model,
        "Maisie: one model by id",
        TAG_NAME,
        errors=(404,),
        response=_MODEL,
    ),
]
