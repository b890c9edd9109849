"""One connection, many operations: the WebSocket at ``/v1/ws``.

Each text message is one JSON operation with a request ``id`` of the client's choosing; each
answer carries that ``id``::

    -> {"id": 1, "op": "predict", "model": "m", "features": {...}, "prediction_id": "p1"}
    <- {"id": 1, "ok": true, "result": {"id": "p1", "model": "m", "prediction": 0.8}}
    -> {"id": 2, "op": "label", "model": "m", "prediction_id": "p1", "ground_truth": true}
    <- {"id": 2, "ok": true, "result": {"model": "m", "id": "p1", "n_learns": 1}}
    -> {"id": 3, "op": "learn", "model": "m", "features": {...}, "ground_truth": false}
    <- {"id": 3, "ok": false, "error": {"code", "message", "detail"}}

Operations: ``predict``, ``learn`` (a sample with its features), ``label`` (the ground truth
of ``prediction_id``), ``predict_many`` / ``learn_many`` (``items``, as the batch routes) and
``metrics``. The fields are those of the matching HTTP body, except that a prediction's own
id is ``prediction_id`` (``id`` is the request's). Operations are applied in the order they
arrive; answers are sent once each write is committed, so they may come out of order when
commits group -- match them by ``id``. A bad message gets an error answer and the connection
stays open. Learning operations need the ``learn`` scope when auth is on. Each message is
charged to the rate limits as one request of the ``learning`` group (the handshake is one
too): a message past the limit is answered ``rate_limited`` with its ``retry_after``, and
the connection stays open. So is a message longer than ``max_body_bytes`` (the route's body
limit), answered ``payload_too_large`` with ``"id": null`` (it is not parsed).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from riverbed.engine import Engine
from riverbed.exceptions import Forbidden, InvalidInput, MalformedJSON, RiverbedError
from riverbed.server.auth import GATE_KEY, Gate, principal_of
from riverbed.server.routing import Endpoint
from riverbed.tasks import MISSING

__all__ = ["ENDPOINTS"]

_INPUTS = ("user", "item", "arms", "value")
_COMMON = {"id", "op", "model"}
_FIELDS = {
    "predict": {"features", "prediction_id", *_INPUTS},
    "learn": {"features", "ground_truth", *_INPUTS},
    "label": {"prediction_id", "ground_truth"},
    "predict_many": {"items"},
    "learn_many": {"items"},
    "metrics": set(),
}
_SCOPES = {"learn": "learn", "label": "learn", "learn_many": "learn", "metrics": "read"}
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _submit(engine: Engine, message: Any) -> Any:
    """Start one operation; returns a receipt (or a plain value for reads)."""
    if not isinstance(message, dict):
        raise InvalidInput("a message is a JSON object with 'id', 'op' and 'model'")
    op = message.get("op")
    if op not in _FIELDS:
        raise InvalidInput(f"unknown op {op!r}; one of {', '.join(_FIELDS)}")
    unknown = sorted(set(message) - _COMMON - _FIELDS[op])
    if unknown:
        raise InvalidInput(
            f"unknown field(s) for {op}: {', '.join(map(repr, unknown))}",
            detail={"fields": unknown},
        )
    name = message.get("model")
    if not isinstance(name, str):
        raise InvalidInput("'model' must be the name of a model")
    inputs = {k: message[k] for k in _INPUTS if k in message}
    features = message.get("features")
    if features is not None and not isinstance(features, dict):
        raise InvalidInput("'features' must be an object of feature values")
    prediction_id = message.get("prediction_id")
    if op == "predict":
        return engine.submit_predict(name, features, id=prediction_id, **inputs)
    if op == "learn":
        return engine.submit_learn(name, features, message.get("ground_truth", MISSING), **inputs)
    if op == "label":
        if not isinstance(prediction_id, str):
            raise InvalidInput("a label needs 'prediction_id', the id of the prediction")
        return engine.submit_learn(
            name, None, message.get("ground_truth", MISSING), id=prediction_id
        )
    if op == "predict_many":
        return engine.submit_predict_many(name, message.get("items"))  # type: ignore[arg-type]
    if op == "learn_many":
        return engine.submit_learn_many(name, message.get("items"))  # type: ignore[arg-type]
    return engine.metrics(name)


def _size(text: str | bytes | None) -> int:
    """A message's size in bytes (as it came over the wire: UTF-8 for a text message)."""
    if text is None:
        return 0
    if isinstance(text, bytes) or text.isascii():
        return len(text)
    return len(text.encode())


async def websocket(ws: WebSocket) -> None:
    engine: Engine = ws.app.state.engine
    principal = principal_of(ws)
    gate: Gate | None = ws.scope.get(GATE_KEY)
    await ws.accept()
    pending: set[asyncio.Task[None]] = set()
    lock = asyncio.Lock()

    async def answer(payload: dict[str, Any]) -> None:
        async with lock:
            await ws.send_bytes(orjson.dumps(payload, option=_OPTIONS))

    async def finish(request_id: Any, receipt: Any) -> None:
        try:
            result = await receipt
        except RiverbedError as exc:
            await answer({"id": request_id, "ok": False, **exc.to_payload()})
        else:
            await answer({"id": request_id, "ok": True, "result": result})

    try:
        while True:
            raw = await ws.receive()
            if raw["type"] == "websocket.disconnect":
                break
            text = raw.get("text") if raw.get("text") is not None else raw.get("bytes")
            request_id = None
            try:
                if gate is not None:  # the route's body limit, before parsing it
                    gate.check_message(ws.scope, _size(text))
                try:
                    message = orjson.loads(text or b"")
                except orjson.JSONDecodeError as exc:
                    raise MalformedJSON(f"malformed JSON: {exc}") from None
                request_id = message.get("id") if isinstance(message, dict) else None
                if gate is not None:
                    gate.charge(ws.scope, principal)
                op = message.get("op") if isinstance(message, dict) else None
                needed = (_SCOPES.get(op) if isinstance(op, str) else None) or "predict"
                if not principal.grants(needed):
                    granted = ", ".join(sorted(principal.scopes)) or "none"
                    raise Forbidden(
                        f"this token has scope(s) {granted}; the {op!r} operation needs the "
                        f"{needed!r} scope",
                        detail={"required": needed, "granted": sorted(principal.scopes)},
                    )
                outcome = _submit(engine, message)
            except RiverbedError as exc:
                await answer({"id": request_id, "ok": False, **exc.to_payload()})
                continue
            if hasattr(outcome, "committed"):
                task = asyncio.ensure_future(finish(request_id, outcome))
                pending.add(task)
                task.add_done_callback(pending.discard)
            else:
                await answer({"id": request_id, "ok": True, "result": outcome})
    except WebSocketDisconnect:
        pass
    finally:
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


ENDPOINTS = [
    Endpoint(
        "WS",
        "/v1/ws",
        websocket,  # type: ignore[arg-type]
        "A WebSocket of operations (predict, learn, label, predict_many, learn_many, "
        "metrics), each answered with the request's id",
        "learning",
        scope="predict",
    ),
]
