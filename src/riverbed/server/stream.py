"""Server-sent event streams over the engine's event feed, and over a model's metrics.

``GET /v1/events`` streams every event (``?model=name`` for one model's, ``?types=a,b`` for
some types). Each message has ``id``, ``event`` (the event type) and ``data`` (the event as
JSON). A client that reconnects with ``Last-Event-ID`` first gets the events after that id
that are still held in memory; when some of them are not (more happened than the bus holds,
or the server restarted since), an ``event: gap`` message says so first, naming how many
were missed when that is known, so that a reader refetches the state it keeps instead of
trusting a silent hole. ``Last-Event-ID: now`` (or ``?last_event_id=now``) starts from the
next event, replaying nothing.

``GET /v1/models/{name}/metrics/stream`` sends the model's metrics (``event: metrics``, the
body of ``GET /v1/models/{name}/metrics``, ``id`` = the number of learns) at once, then
whenever they change, at most once per ``interval`` seconds. A client that reconnects with
``Last-Event-ID`` first gets the stored history points after that learn (``event: point``).

A comment line is sent every ``heartbeat`` seconds to keep proxies from closing an idle
stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from riverbed.events import Event
from riverbed.exceptions import InvalidInput, NotFound
from riverbed.server.http import event_stream
from riverbed.server.routing import Endpoint
from riverbed.validation import parse_int

__all__ = ["ENDPOINTS", "sse"]

HEARTBEAT_SECONDS = 15.0


def sse(event: Event) -> bytes:
    data = orjson.dumps(event.to_dict(), option=orjson.OPT_NON_STR_KEYS)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.type.encode(), data)


async def _follow(
    request: Request, model: str | None, after: int, types: set[str] | None
) -> AsyncIterator[bytes]:
    engine = request.app.state.engine
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=10_000)

    def wanted(event: Event) -> bool:
        return (model is None or event.model == model) and (types is None or event.type in types)

    def listener(event: Event) -> None:
        if wanted(event):
            loop.call_soon_threadsafe(_offer, queue, event)

    unsubscribe = engine.events.subscribe(listener)
    try:
        yield b": connected\n\n"
        last = after
        held, gap = engine.events.replay(model=model, after=after)
        if gap is not None:
            yield _message("gap", gap.until, gap.to_dict(model))
            last = gap.until
        for event in held:
            last = event.id
            if wanted(event):
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


def _last_event_id(request: Request, now: int) -> int:
    """The id to resume after: ``Last-Event-ID`` or ``?last_event_id=``; ``now`` gives
    ``now`` (nothing replayed); anything that is not an id (1 to 18 ASCII digits: a word,
    ``'²'``, a number past any id) replays what is held."""
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id", "0")
    raw = raw.strip()
    if raw == "now":
        return now
    return parse_int(raw) or 0


async def events(request: Request) -> Response:
    model = request.query_params.get("model")
    raw_types = request.query_params.get("types")
    types = {t.strip() for t in raw_types.split(",") if t.strip()} if raw_types else None
    last = _last_event_id(request, request.app.state.engine.events.last_id)
    return event_stream(request, _follow(request, model, last, types))


def _message(kind: str, seq: int, body: Any) -> bytes:
    data = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, kind.encode(), data)


async def _follow_metrics(
    request: Request, name: str, after: int, interval: float
) -> AsyncIterator[bytes]:
    engine = request.app.state.engine
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def listener(event: Event) -> None:
        # A deletion wakes the stream too, so that followers hear of it at once.
        if event.model == name and event.type in ("learn", "label", "model.deleted"):
            loop.call_soon_threadsafe(changed.set)

    unsubscribe = engine.events.subscribe(listener)
    try:
        yield b": connected\n\n"
        if after:
            history = await asyncio.to_thread(engine.metrics_history, name, after=after)
            for point in history["points"]:
                yield _message("point", point["seq"], {"model": name, **point})
        sent = -1
        while True:
            try:
                current = engine.metrics(name)
            except NotFound:
                yield _message("deleted", max(sent, 0), {"model": name})
                return
            if current["n_learns"] != sent:
                sent = current["n_learns"]
                yield _message("metrics", sent, current)
            try:
                await asyncio.wait_for(changed.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": heartbeat\n\n"
                continue
            changed.clear()
            await asyncio.sleep(interval)  # at most one message per interval
    finally:
        unsubscribe()


async def metrics_stream(request: Request) -> Response:
    name = request.path_params["name"]
    request.app.state.engine.metrics(name)  # 404 before the stream starts
    raw = request.query_params.get("interval", "1")
    try:
        interval = float(raw)
    except ValueError:
        raise InvalidInput(f"interval must be a number of seconds, got {raw!r}") from None
    if not 0.05 <= interval <= 3600:
        raise InvalidInput("interval must be between 0.05 and 3600 seconds")
    return event_stream(
        request, _follow_metrics(request, name, _last_event_id(request, 0), interval)
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/events",
        events,
        "Stream events (predict, learn, label, model changes) as server-sent events; "
        "?model= and ?types= filter, Last-Event-ID resumes (an event: gap message names "
        "what could not be replayed), Last-Event-ID: now replays nothing",
        "streams",
        response={"type": "string"},
        media_type="text/event-stream",
    ),
    Endpoint(
        "GET",
        "/v1/models/{name}/metrics/stream",
        metrics_stream,
        "Stream a model's metrics as server-sent events whenever they change (?interval= "
        "seconds); Last-Event-ID replays the stored history after that learn",
        "streams",
        errors=(404,),
        response={"type": "string"},
        media_type="text/event-stream",
    ),
]
