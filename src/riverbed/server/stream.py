"""Server-sent event streams over the engine's event feed.

``GET /v1/events`` streams every event (``?model=name`` for one model's). Each message has
``id``, ``event`` (the event type) and ``data`` (the event as JSON). A client that
reconnects with ``Last-Event-ID`` first gets the events after that id that are still held
in memory. A comment line is sent every ``heartbeat`` seconds to keep proxies from closing
an idle stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from riverbed.events import Event
from riverbed.server.routing import Endpoint

__all__ = ["ENDPOINTS", "sse"]

HEARTBEAT_SECONDS = 15.0


def sse(event: Event) -> bytes:
    data = orjson.dumps(event.to_dict(), option=orjson.OPT_NON_STR_KEYS)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.type.encode(), data)


async def _follow(request: Request, model: str | None, after: int) -> AsyncIterator[bytes]:
    engine = request.app.state.engine
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=10_000)

    def listener(event: Event) -> None:
        if model is None or event.model == model:
            loop.call_soon_threadsafe(_offer, queue, event)

    unsubscribe = engine.events.subscribe(listener)
    try:
        yield b": connected\n\n"
        last = after
        for event in engine.events.recent(model=model, after=after):
            last = event.id
            yield sse(event)
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            if event.id > last:
                last = event.id
                yield sse(event)
    finally:
        unsubscribe()


def _offer(queue: asyncio.Queue[Event], event: Event) -> None:
    if queue.full():  # a stalled client loses the oldest events, never blocks the engine
        queue.get_nowait()
    queue.put_nowait(event)


async def events(request: Request) -> Response:
    model = request.query_params.get("model")
    raw = request.headers.get("last-event-id", "0")
    after = int(raw) if raw.isdigit() else 0
    headers: dict[str, Any] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _follow(request, model, after), media_type="text/event-stream", headers=headers
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/events",
        events,
        "Stream events (predict, learn, model changes) as server-sent events; "
        "?model= filters, Last-Event-ID resumes",
        "streams",
        response={"type": "string"},
        media_type="text/event-stream",
    ),
]
