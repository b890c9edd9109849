"""Routes of training jobs under ``/v1/jobs`` (see docs/training.md).

``POST /v1/jobs`` takes the job three ways: a JSON body with the rows inline (``data``), a
``multipart/form-data`` body with a ``config`` part (the job as JSON) and a ``data`` file
part (CSV, NDJSON or Parquet), or the file itself as the body (``text/csv``,
``application/x-ndjson``, ``application/vnd.apache.parquet``) with the job as JSON in the
``config`` query parameter. Uploads may be up to ``max_upload_bytes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from riverbed.events import Event
from riverbed.exceptions import InvalidInput, MalformedJSON
from riverbed.jobs import FINISHED, JobRunner
from riverbed.server.http import JSONResponse, event_stream, read_body, reject_unknown
from riverbed.server.routing import UPLOAD, Endpoint
from riverbed.server.stream import HEARTBEAT_SECONDS, sse
from riverbed.validation import parse_int

__all__ = ["ENDPOINTS"]

FIELDS = {
    "model",
    "target",
    "spec",
    "candidates",
    "grid",
    "warm_start",
    "format",
    "features",
    "task",
    "metrics",
    "validation",
    "select",
    "keep_data",
    "dataset",
    "description",
}
_CONTENT_FORMATS = {
    "text/csv": "csv",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/octet-stream": None,
}


def _jobs(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.engine.jobs
    return runner


async def _read_upload(request: Request) -> bytes:
    return await read_body(request)  # within max_upload_bytes: the route declares UPLOAD


def _json(raw: str | bytes, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"{what} is not JSON: {exc}") from None


async def _job_request(request: Request) -> tuple[dict[str, Any], Any, str | None]:
    """(config, data, file name) from any of the three body shapes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=4)  # the body within UPLOAD
        try:
            raw_config = form.get("config")
            upload = form.get("data")
            if raw_config is None or isinstance(raw_config, UploadFile):
                raise InvalidInput("the multipart body needs a 'config' field holding the job")
            if not isinstance(upload, UploadFile):
                raise InvalidInput("the multipart body needs a 'data' file part")
            data = await upload.read()
            return _json(raw_config, "the config field"), data, upload.filename
        finally:
            await form.close()
    if content_type in _CONTENT_FORMATS:
        raw = request.query_params.get("config")
        if raw is None:
            raise InvalidInput("send the job as JSON in the 'config' query parameter")
        config = _json(raw, "the config parameter")
        data = await _read_upload(request)
        if isinstance(config, dict) and _CONTENT_FORMATS[content_type]:
            config.setdefault("format", _CONTENT_FORMATS[content_type])
        return config, data, None
    body = _json(await _read_upload(request), "the body")
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object: the job and its rows in 'data'")
    if "data" not in body:
        raise InvalidInput(
            "missing field 'data' (the rows), or upload a file", detail={"field": "data"}
        )
    data = body.pop("data")
    return body, data, None


async def create_job(request: Request) -> Response:
    config, data, filename = await _job_request(request)
    if not isinstance(config, dict):
        raise InvalidInput("the job config must be a JSON object")
    reject_unknown(config, FIELDS)
    for required in ("model", "target"):
        if required not in config:
            raise InvalidInput(f"missing field {required!r}", detail={"field": required})
    options = dict(config)
    model, target = options.pop("model"), options.pop("target")
    options.setdefault("dataset", filename or "")
    if not isinstance(options.get("dataset"), str):
        raise InvalidInput("dataset is a name (a string)")
    runner = _jobs(request)
    receipt = await asyncio.to_thread(runner.submit, model, data, target=target, **options)
    return JSONResponse(await receipt, status_code=202)


async def list_jobs(request: Request) -> Response:
    limit = parse_int(request.query_params.get("limit", "100"))
    if limit is None or not 0 < limit <= 10_000:
        raise InvalidInput("limit is an integer from 1 to 10000")
    model = request.query_params.get("model")
    return JSONResponse({"jobs": _jobs(request).list(model=model, limit=limit)})


async def get_job(request: Request) -> Response:
    return JSONResponse(_jobs(request).get(request.path_params["id"]))


async def job_logs(request: Request) -> Response:
    job_id = request.path_params["id"]
    return JSONResponse({"id": job_id, "logs": _jobs(request).logs(job_id)})


async def cancel_job(request: Request) -> Response:
    return JSONResponse(_jobs(request).cancel(request.path_params["id"]))


async def job_data(request: Request) -> Response:
    fmt, data = _jobs(request).data(request.path_params["id"])
    media = {
        "csv": "text/csv",
        "ndjson": "application/x-ndjson",
        "parquet": "application/vnd.apache.parquet",
    }.get(fmt, "application/json")
    return Response(data, media_type=media)


async def _follow(request: Request, job_id: str) -> AsyncIterator[bytes]:
    runner = _jobs(request)
    events = runner.engine.events
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue()

    def mine(event: Event) -> bool:
        return event.type.startswith("job.") and event.data.get("job") == job_id

    def listener(event: Event) -> None:
        if mine(event):
            loop.call_soon_threadsafe(queue.put_nowait, event)

    unsubscribe = events.subscribe(listener)
    try:
        job = runner.get(job_id)
        yield b": following job %s\n\n" % job_id.encode()
        # what already happened, from the events still held in memory (a late follower sees
        # the progress so far); without any (a job from before a restart), its state now
        replayed = [e for e in events.recent(model=job["model"]) if mine(e)]
        last = 0
        for event in replayed:
            last = event.id
            yield sse(event)
        # A job read as finished may not have published its last event yet (events follow
        # the commit that the read already sees): its state stands in for that event.
        ended = any(e.type != "job.progress" and e.data.get("status") in FINISHED for e in replayed)
        if not replayed or (job["status"] in FINISHED and not ended):
            yield sse(
                Event(0, f"job.{job['status']}", job["model"], job["created_at"], _state(job))
            )
        if job["status"] in FINISHED:
            return
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            if event.id <= last:
                continue
            yield sse(event)
            if event.type != "job.progress" and event.data.get("status") in FINISHED:
                return
    finally:
        unsubscribe()


def _state(job: dict[str, Any]) -> dict[str, Any]:
    state = {"job": job["id"], "status": job["status"], "progress": job["progress"]}
    if job["error"] is not None:
        state["error"] = job["error"]
    return state


async def job_events(request: Request) -> Response:
    job_id = request.path_params["id"]
    _jobs(request).get(job_id)  # 404 before the stream starts
    return event_stream(request, _follow(request, job_id))


_JOB = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "model": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["queued", "running", "succeeded", "failed", "cancelled", "interrupted"],
        },
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "created_at": {"type": "number"},
        "started_at": {"type": ["number", "null"]},
        "finished_at": {"type": ["number", "null"]},
        "error": {"type": ["object", "null"]},
        "data": {"type": "object", "description": "format, name, rows, columns, hash"},
        "request": {"type": "object"},
        "result": {"type": "object", "description": "candidates (name, version, metrics), best"},
        "n_logs": {"type": "integer"},
    },
}
_JOB_BODY = {
    "type": "object",
    "required": ["model", "target", "data"],
    "properties": {
        "model": {"type": "string", "description": "the model the versions are added to"},
        "target": {"type": "string", "description": "the column to learn to predict"},
        "data": {"type": "array", "items": {"type": "object"}, "description": "rows"},
        "spec": {"description": "one candidate (see docs/specs.md)"},
        "candidates": {"type": "array", "description": "specs or {name, spec}"},
        "grid": {"type": "object", "description": "{spec, params: {path: [values]}}"},
        "warm_start": {"type": "string", "description": "name, name@alias or name@N"},
        "format": {"type": "string", "enum": ["json", "csv", "ndjson", "parquet"]},
        "features": {"type": "array", "items": {"type": "string"}},
        "task": {"type": "string"},
        "metrics": {"type": "array", "items": {"type": "string"}},
        "validation": {"type": "object", "description": "method, test_size, folds, seed"},
        "select": {"type": "object", "description": "metric, direction (min/max), alias"},
        "keep_data": {"type": "boolean"},
        "dataset": {"type": "string"},
        "description": {"type": "string"},
    },
}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "/v1/jobs",
        create_job,
        "Start a training job: rows inline, a multipart upload or a raw CSV/NDJSON/Parquet body",
        "jobs",
        scope="admin",
        status=202,
        errors=(404, 413),
        body=_JOB_BODY,
        body_limit=UPLOAD,
        response=_JOB,
    ),
    Endpoint(
        "GET",
        "/v1/jobs",
        list_jobs,
        "List training jobs, newest first (?model=, ?limit=)",
        "jobs",
        response={"type": "object", "properties": {"jobs": {"type": "array", "items": _JOB}}},
    ),
    Endpoint(
        "GET", "/v1/jobs/{id}", get_job, "Describe a job", "jobs", errors=(404,), response=_JOB
    ),
    Endpoint(
        "GET",
        "/v1/jobs/{id}/logs",
        job_logs,
        "A job's log lines",
        "jobs",
        errors=(404,),
        response={"type": "object", "properties": {"id": {}, "logs": {"type": "array"}}},
    ),
    Endpoint(
        "GET",
        "/v1/jobs/{id}/events",
        job_events,
        "Follow a job's progress as server-sent events until it finishes",
        "jobs",
        errors=(404,),
        response={"type": "string"},
        media_type="text/event-stream",
    ),
    Endpoint(
        "POST",
        "/v1/jobs/{id}/cancel",
        cancel_job,
        "Cancel a queued or running job",
        "jobs",
        scope="admin",
        errors=(404,),
        response=_JOB,
    ),
    Endpoint(
        "GET",
        "/v1/jobs/{id}/data",
        job_data,
        "The training data a job kept (keep_data), as it was sent",
        "jobs",
        errors=(404,),
        response={"type": "string"},
        media_type="application/octet-stream",
    ),
]
