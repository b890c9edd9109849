"""Training jobs over HTTP: the request ``Client.train`` sends, and ``client.jobs``.

``client.jobs`` has the names of :class:`riverbed.jobs.JobRunner` (``get``, ``list``,
``logs``, ``cancel``, ``wait``); the blocking client also ``follow``s a job's progress
events as they come (what ``riverbed train`` draws its progress bar from).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from riverbed.exceptions import ServerError, error_from_payload

__all__ = ["AsyncJobs", "JobMethods", "SyncJobs", "train_request"]

FINISHED = ("succeeded", "failed", "cancelled", "interrupted")
_EXTENSIONS = {"csv": "csv", "ndjson": "ndjson", "jsonl": "ndjson", "parquet": "parquet"}


def _path(job_id: str, *rest: str) -> str:
    return "/".join(["/v1/jobs", quote(job_id, safe=""), *rest])


def train_request(model: str, data: Any, target: str, options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the ``POST /v1/jobs`` request for this job."""
    config = {
        "model": model,
        "target": target,
        **{k: v for k, v in options.items() if v is not None},
    }
    if isinstance(data, list):
        return {"json": {**config, "data": data}}
    if isinstance(data, str | Path):
        path = Path(data)
        filename, content = path.name, path.read_bytes()
        suffix = path.suffix.lower().lstrip(".")
        if suffix in _EXTENSIONS:
            config.setdefault("format", _EXTENSIONS[suffix])
        config.setdefault("dataset", path.name)
    elif isinstance(data, bytes | bytearray):
        filename, content = f"data.{config.get('format', 'csv')}", bytes(data)
    else:
        raise TypeError("data is a list of rows, the bytes of a file, or a path")
    return {
        "files": {
            "config": (None, orjson.dumps(config), "application/json"),
            "data": (filename, content, "application/octet-stream"),
        }
    }


class JobMethods:
    """The job operations both clients share."""

    def __init__(self, request: Callable[..., Any]) -> None:
        self._request = request

    def get(self, job_id: str) -> Any:
        return self._request("GET", _path(job_id))

    def list(self, *, model: str | None = None, limit: int = 100) -> Any:
        params: dict[str, Any] = {"limit": limit}
        if model is not None:
            params["model"] = model
        return self._request("GET", "/v1/jobs", pick="jobs", params=params)

    def logs(self, job_id: str) -> Any:
        return self._request("GET", _path(job_id, "logs"), pick="logs")

    def cancel(self, job_id: str) -> Any:
        return self._request("POST", _path(job_id, "cancel"))


class SyncJobs(JobMethods):
    def __init__(self, request: Callable[..., Any], http: httpx.Client) -> None:
        super().__init__(request)
        self._http = http

    def follow(self, job_id: str) -> Iterator[dict[str, Any]]:
        """The job's events (``{"job", "status", "progress"}`` with ``type``) as they happen,
        starting with its state now; ends when the job has finished."""
        with self._http.stream("GET", _path(job_id, "events"), timeout=None) as response:
            if not response.is_success:
                response.read()
                try:
                    payload = response.json()
                except ValueError:
                    raise ServerError(
                        f"HTTP {response.status_code}: {response.text[:200]}"
                    ) from None
                raise error_from_payload(payload)
            kind = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    event = orjson.loads(line[6:])
                    yield {"type": kind, **event["data"]}

    def wait(self, job_id: str, timeout: float | None = None) -> Any:
        """Block until the job has finished (or ``timeout`` seconds), then return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                return job
            time.sleep(0.1)


class AsyncJobs(JobMethods):
    async def wait(self, job_id: str, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                return job
            await asyncio.sleep(0.1)
