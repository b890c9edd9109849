"""Routes beyond one predict or learn: metric history, forecasts, rankings and batches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from riverbed.engine import Engine, Receipt
from riverbed.exceptions import InvalidInput, MalformedJSON, PayloadTooLarge, RiverbedError
from riverbed.server.fast import json_route
from riverbed.server.http import (
    JSONResponse,
    check_batch,
    field,
    is_object,
    query_int,
    read_json,
    reject_unknown,
)
from riverbed.server.routing import STREAMED, Endpoint

__all__ = ["ENDPOINTS"]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {raw!r}") from None


async def metrics_history(request: Request) -> Response:
    return JSONResponse(
        _engine(request).metrics_history(
            request.path_params["name"],
            after=query_int(request, "after", 0) or 0,
            since=_float(request, "since"),
            limit=query_int(request, "limit", 1000) or 1000,
        )
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_list(value: Any) -> bool:
    return isinstance(value, list)


async def forecast(request: Request) -> Response:
    body = await read_json(request, required=False) or {}
    reject_unknown(body, {"horizon", "xs"})
    return JSONResponse(
        _engine(request).forecast(
            request.path_params["name"],
            field(body, "horizon", _is_int, "an integer", default=1),
            field(body, "xs", _is_list, "an array of feature objects"),
        )
    )


async def rank(request: Request) -> Response:
    body = await read_json(request)
    reject_unknown(body, {"user", "items", "features"})
    return JSONResponse(
        _engine(request).rank(
            request.path_params["name"],
            field(body, "user", required=True),
            field(body, "items", _is_list, "an array of item ids", required=True),
            field(body, "features", is_object, "an object of feature values"),
        )
    )


# -- batches --------------------------------------------------------------------------------

_ITEMS = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": {"type": "object"}}},
    "required": ["items"],
    "additionalProperties": False,
}


def _items(state: Any, body: Any) -> list[Any]:
    reject_unknown(body, {"items"})
    return check_batch(field(body, "items", required=True), state.settings, "items")


async def _predict_many(state: Any, params: dict[str, str], body: Any) -> dict[str, Any]:
    engine: Engine = state.engine
    return {"items": await engine.submit_predict_many(params["name"], _items(state, body))}


def _learn_many(state: Any, params: dict[str, str], body: Any) -> Receipt[dict[str, Any]]:
    engine: Engine = state.engine
    return engine.submit_learn_many(params["name"], _items(state, body))


predict_many = json_route(_predict_many)
learn_many = json_route(_learn_many)


# -- NDJSON upload ----------------------------------------------------------------------------


class _Upload(Response):
    """Learns from an NDJSON request body while it arrives, answering NDJSON progress."""

    media_type = "application/x-ndjson"

    def __init__(self, engine: Engine, name: str, chunk_size: int, max_line: int) -> None:
        super().__init__(status_code=200)
        self.engine, self.name, self.chunk_size, self.max_line = engine, name, chunk_size, max_line

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-ndjson")],
            }
        )
        async for report in self._learn(receive):
            data = orjson.dumps(report, option=orjson.OPT_NON_STR_KEYS) + b"\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _learn(self, receive: Any) -> AsyncIterator[dict[str, Any]]:
        state: dict[str, Any] = {"n_learned": 0, "n_lines": 0, "n_learns": None}
        rows: list[Any] = []
        first_line = 1
        buffer = b""
        more = True
        error: dict[str, Any] | None = None
        while more and error is None:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            buffer += message.get("body", b"")
            more = message.get("more_body", False)
            *lines, buffer = buffer.split(b"\n")
            if not more and buffer:
                lines.append(buffer)
                buffer = b""
            if len(buffer) > self.max_line:
                lines.append(buffer)  # reported as too long below
                buffer, more = b"", False
            for line in lines:
                state["n_lines"] += 1
                if not line.strip():
                    continue
                try:
                    if len(line) > self.max_line:
                        raise PayloadTooLarge(f"a line is over the limit of {self.max_line} bytes")
                    try:
                        rows.append(orjson.loads(line))
                    except orjson.JSONDecodeError as exc:
                        raise MalformedJSON(f"malformed JSON: {exc}") from None
                except RiverbedError as exc:
                    error = {**exc.to_payload()["error"], "line": state["n_lines"]}
                    break
                if len(rows) == 1:
                    first_line = state["n_lines"]
                if len(rows) >= self.chunk_size:
                    error = await self._apply(rows, first_line, state)
                    rows = []
                    if error is not None:
                        break
                    yield {"n_learned": state["n_learned"], "n_learns": state["n_learns"]}
        if error is None and rows:
            error = await self._apply(rows, first_line, state)
        yield {"done": True, **state, **({"error": error} if error else {})}

    async def _apply(
        self, rows: list[Any], first_line: int, state: dict[str, Any]
    ) -> dict[str, Any] | None:
        try:
            result = await self.engine.submit_learn_many(self.name, rows)
        except RiverbedError as exc:
            error = exc.to_payload()["error"]
            errors = (exc.detail or {}).get("errors") if isinstance(exc.detail, dict) else None
            if errors:  # the first bad item, at its line of the upload (blank lines aside)
                item = errors[0]
                error = {k: item[k] for k in ("code", "message", "detail")}
                error["line"] = first_line + item["index"]
            return error
        state["n_learned"] += len(rows)
        state["n_learns"] = result["n_learns"]
        return None


async def learn_stream(request: Request) -> Response:
    engine = _engine(request)
    name = request.path_params["name"]
    engine.metrics(name)  # 404 before anything is read
    chunk_size = query_int(request, "chunk_size", 1000) or 0
    if not 1 <= chunk_size <= request.app.state.settings.max_batch_size:
        raise InvalidInput("chunk_size must be from 1 to the max_batch_size setting")
    return _Upload(engine, name, chunk_size, request.app.state.settings.max_body_bytes)


_HISTORY = {
    "type": "object",
    "properties": {
        "model": {"type": "string"},
        "points": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "seq": {"type": "integer"},
                    "time": {"type": "number"},
                    "n": {"type": "integer"},
                    "metrics": {"type": "object"},
                    "windows": {"type": "array"},
                },
            },
        },
    },
}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "GET",
        "/v1/models/{name}/metrics/history",
        metrics_history,
        "Stored metric snapshots, oldest first (?after=seq, ?since=unix time, ?limit=)",
        "learning",
        errors=(404,),
        response=_HISTORY,
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/forecast",
        forecast,
        "Forecast the next values of a forecasting model",
        "learning",
        scope="predict",
        errors=(404,),
        body={
            "type": "object",
            "properties": {
                "horizon": {"type": "integer", "minimum": 1},
                "xs": {"type": "array", "items": {"type": "object"}},
            },
            "additionalProperties": False,
        },
        response={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "horizon": {"type": "integer"},
                "forecast": {"type": "array", "items": {"type": ["number", "null"]}},
            },
        },
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/rank",
        rank,
        "Order items by a recommender's predicted preference for a user",
        "learning",
        scope="predict",
        errors=(404,),
        body={
            "type": "object",
            "properties": {
                "user": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "items": {"type": "array"},
                "features": {"type": "object"},
            },
            "required": ["user", "items"],
            "additionalProperties": False,
        },
        response={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "user": {},
                "ranking": {"type": "array"},
            },
        },
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/predict/many",
        predict_many,
        "Predict for many samples in one request, in order; all are stored or none",
        "learning",
        scope="predict",
        errors=(404, 413),
        body=_ITEMS,
        response={"type": "object", "properties": {"items": {"type": "array"}}},
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/learn/many",
        learn_many,
        "Learn from many samples in one request, in order; all are learned or none",
        "learning",
        scope="learn",
        errors=(404, 413),
        body=_ITEMS,
        response={
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "n_learns": {"type": "integer"},
                "items": {"type": "array"},
            },
        },
    ),
    Endpoint(
        "POST",
        "/v1/models/{name}/learn/stream",
        learn_stream,
        "Learn from an NDJSON upload of learn bodies, answering NDJSON progress reports",
        "learning",
        scope="learn",
        errors=(404,),
        media_type="application/x-ndjson",
        body_limit=STREAMED,
    ),
]
