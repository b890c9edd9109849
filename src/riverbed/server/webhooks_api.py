"""Webhook subscriptions and their delivery log under ``/v1/webhooks`` (riverbed.webhooks,
docs/webhooks.md). Every route is admin scope: a subscription's URL, like its secret, is an
operator's business. The engine's calls read the store, wait for its writes or make an
attempt at a receiver (ping, retry), so they run off the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.exceptions import InvalidInput
from riverbed.server.http import JSONResponse, query_int, read_json, reject_query, reject_unknown
from riverbed.server.routing import Endpoint
from riverbed.stores.webhookstore import DELIVERY_STATUSES
from riverbed.webhooks import EVENT_KINDS, Webhooks

__all__ = ["ENDPOINTS"]


def _webhooks(request: Request) -> Webhooks:
    webhooks: Webhooks = request.app.state.engine.webhooks
    return webhooks


async def subscribe(request: Request) -> Response:
    reject_query(request, set())
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("the body is a JSON object: {url, events, secret?, description?}")
    reject_unknown(body, {"url", "events", "secret", "description"})
    for required in ("url", "events"):
        if required not in body:
            raise InvalidInput(f"missing field {required!r}", detail={"field": required})
    if not isinstance(body["events"], list):
        raise InvalidInput(
            "events is a non-empty list of event kinds (model.created, version.*, "
            "job.finished, *, ...)",
            detail={"field": "events"},
        )
    created = await asyncio.to_thread(
        _webhooks(request).subscribe,
        body["url"],
        body["events"],
        secret=body.get("secret"),
        description=body.get("description", ""),
    )
    return JSONResponse(created, status_code=201)


async def list_webhooks(request: Request) -> Response:
    reject_query(request, set())
    return JSONResponse({"webhooks": await asyncio.to_thread(_webhooks(request).list)})


async def get_webhook(request: Request) -> Response:
    reject_query(request, set())
    webhook_id = request.path_params["id"]
    return JSONResponse(await asyncio.to_thread(_webhooks(request).get, webhook_id))


async def delete_webhook(request: Request) -> Response:
    reject_query(request, set())
    webhook_id = request.path_params["id"]
    return JSONResponse(await asyncio.to_thread(_webhooks(request).delete, webhook_id))


async def list_deliveries(request: Request) -> Response:
    reject_query(request, {"status", "limit"})
    webhook_id = request.path_params["id"]
    found = await asyncio.to_thread(
        _webhooks(request).deliveries,
        webhook_id,
        status=request.query_params.get("status") or None,
        limit=query_int(request, "limit", 100),
    )
    return JSONResponse({"webhook": webhook_id, "deliveries": found})


async def retry_delivery(request: Request) -> Response:
    reject_query(request, set())
    webhook_id, delivery_id = request.path_params["id"], request.path_params["delivery"]
    return JSONResponse(await asyncio.to_thread(_webhooks(request).retry, webhook_id, delivery_id))


async def ping(request: Request) -> Response:
    reject_query(request, set())
    webhook_id = request.path_params["id"]
    return JSONResponse(await asyncio.to_thread(_webhooks(request).ping, webhook_id))


_KINDS: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "description": f"event kinds: {', '.join(EVENT_KINDS)}; job.finished; PREFIX.*; *",
}
_WEBHOOK: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "events": _KINDS,
        "kinds": {"type": "array", "items": {"type": "string"}, "description": "expanded"},
        "description": {"type": "string"},
        "created_at": {"type": "number"},
        "deliveries": {
            "type": "object",
            "description": "deliveries by status",
            "properties": {s: {"type": "integer"} for s in DELIVERY_STATUSES},
        },
    },
}
_CREATED: dict[str, Any] = {
    "type": "object",
    "properties": {
        **_WEBHOOK["properties"],
        "secret": {"type": "string", "description": "shown once: signs every delivery"},
    },
}
_DELIVERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "webhook": {"type": "string"},
        "event": {"type": "string", "description": "the event's type, or ping"},
        "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
        "created_at": {"type": "number"},
        "next_at": {"type": ["number", "null"], "description": "a pending one's next attempt"},
        "tries": {"type": "integer", "description": "attempts since it was (re)queued"},
        "attempts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "at": {"type": "number"},
                    "status_code": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"]},
                    "duration": {"type": "number"},
                    "response": {"type": "string", "description": "a failed answer's start"},
                },
            },
        },
        "payload": {"type": "object", "description": "the body sent: delivery, webhook, event"},
    },
}

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "/v1/webhooks",
        subscribe,
        "Subscribe a URL to event kinds; the answer shows the signing secret, once",
        "monitoring",
        scope="admin",
        status=201,
        body={
            "type": "object",
            "required": ["url", "events"],
            "properties": {
                "url": {"type": "string", "description": "http:// or https://, no credentials"},
                "events": _KINDS,
                "secret": {"type": "string", "description": "16-512 characters; made if absent"},
                "description": {"type": "string"},
            },
            "additionalProperties": False,
        },
        response=_CREATED,
    ),
    Endpoint(
        "GET",
        "/v1/webhooks",
        list_webhooks,
        "Every webhook subscription, oldest first (no secrets)",
        "monitoring",
        scope="admin",
        response={
            "type": "object",
            "properties": {"webhooks": {"type": "array", "items": _WEBHOOK}},
        },
    ),
    Endpoint(
        "GET",
        "/v1/webhooks/{id}",
        get_webhook,
        "A webhook subscription and its deliveries counted by status",
        "monitoring",
        scope="admin",
        errors=(404,),
        response=_WEBHOOK,
    ),
    Endpoint(
        "DELETE",
        "/v1/webhooks/{id}",
        delete_webhook,
        "Delete a webhook subscription and its delivery log (nothing pending is sent)",
        "monitoring",
        scope="admin",
        errors=(404,),
        response=_WEBHOOK,
    ),
    Endpoint(
        "GET",
        "/v1/webhooks/{id}/deliveries",
        list_deliveries,
        "A webhook's deliveries, newest first, with every attempt (?status=, ?limit=)",
        "monitoring",
        scope="admin",
        errors=(404,),
        response={
            "type": "object",
            "properties": {
                "webhook": {"type": "string"},
                "deliveries": {"type": "array", "items": _DELIVERY},
            },
        },
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/{id}/deliveries/{delivery}/retry",
        retry_delivery,
        "Attempt a delivery again now (queued for webhook_attempts more if it fails)",
        "monitoring",
        scope="admin",
        errors=(404, 409),
        response=_DELIVERY,
    ),
    Endpoint(
        "POST",
        "/v1/webhooks/{id}/ping",
        ping,
        "Send a ping delivery now and answer with its first attempt's outcome",
        "monitoring",
        scope="admin",
        errors=(404,),
        response=_DELIVERY,
    ),
]
