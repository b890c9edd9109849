"""What the compatibility layers share: their error shape, pickled uploads, generated model
names, durations for people, JSON views of model parameters and SSE plumbing."""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from river import base, compose
from river import metrics as river_metrics
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from riverbed import serialization
from riverbed.engine import Engine
from riverbed.events import Event
from riverbed.exceptions import InvalidArtifact, ModelNotFound, RiverbedError
from riverbed.server.http import (
    JSONResponse,
    error_headers,
    event_stream,
    read_body,
    status_of,
)
from riverbed.server.registry_api import pickle_refused

__all__ = [
    "engine_of",
    "humanize_ns",
    "jsonable",
    "legacy_errors",
    "legacy_error_response",
    "legacy_metrics",
    "legacy_payload",
    "load_pickled_upload",
    "pickle_refused",
    "random_name",
    "replace_upload",
    "slug",
    "sse_response",
]

HEARTBEAT_SECONDS = 15.0
Handler = Callable[[Request], Awaitable[Response]]


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def legacy_payload(error: RiverbedError) -> dict[str, Any]:
    """riverbed's error payload plus the top-level ``message`` older clients read: the
    error's ``legacy_message`` when it has one (chantilly's ``{field: [errors]}``), else its
    message. The JSON operations of the layers answer with it (``json_route(errors=)``)."""
    body = error.to_payload()
    message = getattr(error, "legacy_message", None)
    body["message"] = error.message if message is None else message
    return body


def legacy_error_response(error: RiverbedError) -> JSONResponse:
    """:func:`legacy_payload` with the error's status and headers."""
    return JSONResponse(
        legacy_payload(error), status_code=status_of(error), headers=error_headers(error)
    )


def legacy_errors(handler: Handler) -> Handler:
    """Answer riverbed errors in the older systems' shape (``{"message": ...}``), keeping
    riverbed's ``{"error": {...}}`` beside it; the status codes stay riverbed's."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except RiverbedError as error:
            return legacy_error_response(error)

    return wrapped


async def load_pickled_upload(request: Request) -> Any:
    """The model object of a pickled (dill) request body, if this server accepts pickles.

    Unpickling runs code, so these routes are declared with the admin scope and the server
    must also allow pickled uploads (the ``allow_pickle_uploads`` setting).
    """
    refusal = pickle_refused(request, "dill")
    if refusal is not None:
        raise refusal
    data = await read_body(request)  # within max_artifact_bytes: the routes declare ARTIFACT
    if not data:
        raise InvalidArtifact("the body is empty: send the pickled model as the request body")
    return serialization.loads_plain(data, "dill")


_ADJECTIVES = (
    "airy buttery creamy crispy crunchy dreamy fluffy frosted glazed golden honeyed "
    "juicy mellow milky nutty peachy silky spicy sugary sweet tangy tart toasted velvety"
).split()
_FOODS = (
    "bagel biscuit brioche brownie cannoli cheesecake churro cobbler croissant cupcake "
    "donut eclair fudge gelato macaron meringue muffin pancake parfait pastry praline "
    "pudding scone souffle strudel tiramisu truffle waffle"
).split()


def random_name(taken: Callable[[str], bool]) -> str:
    """An adjective-food-number name (``silky-eclair-4821``) not already taken."""
    while True:
        number = secrets.randbelow(9000) + 1000
        name = f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_FOODS)}-{number}"
        if not taken(name):
            return name


async def replace_upload(request: Request, model: Any, **create: Any) -> str:
    """Create ``model`` under the route's name, or a free random one, and return the name.

    As in chantilly and django-river-ml, an upload under a taken name replaces that model.
    """
    engine = engine_of(request)
    taken = {m["name"] for m in engine.list_models()}
    name = request.path_params.get("name") or random_name(taken.__contains__)
    if name in taken:
        try:
            await engine.submit_delete_model(name)
        except ModelNotFound:  # deleted meanwhile
            pass
    await engine.submit_create_model(name, model, **create)
    return name


def slug(name: str) -> str:
    """A registry model name for an older system's free-form name: runs of characters
    riverbed's names do not allow become '-'.

    >>> slug("My first model"), slug("...")
    ('My-first-model', 'model')
    """
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", name).strip("-._")[:128] or "model"


def humanize_ns(ns: int) -> str:
    """A duration in nanoseconds for people.

    >>> humanize_ns(0), humanize_ns(1_234), humanize_ns(61_500_000_000)
    ('0ns', '1μs234ns', '1m1s500ms')
    """
    if ns <= 0:
        return "0ns"
    parts = []
    for unit, size in (
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("μs", 1_000),
        ("ns", 1),
    ):
        amount, ns = divmod(ns, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def jsonable(value: Any, depth: int = 0) -> Any:
    """Model parameters (river's ``_get_params()``) as JSON: objects become their class path
    and parameters, non-finite numbers become null."""
    if depth > 32:
        return repr(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    if inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
        return f"{value.__module__}.{value.__qualname__}"
    get_params = getattr(value, "_get_params", None)
    if callable(get_params):
        try:
            params = get_params()
        except Exception:  # an object whose parameters cannot be read is shown by name
            params = {}
        cls = type(value)
        return {"class": f"{cls.__module__}.{cls.__qualname__}", **jsonable(params, depth + 1)}
    return repr(value)


def model_params(model: Any) -> dict[str, Any]:
    """A model's parameters as JSON (what django-river-ml's model view shows)."""
    get_params = getattr(model, "_get_params", None)
    params = get_params() if callable(get_params) else {}
    out = jsonable(params)
    return out if isinstance(out, dict) else {"params": out}


def flavor_setup(task: str, model: Any, metric_names: list[str] | None) -> dict[str, Any]:
    """How riverbed serves an older system's flavor for this model: ``task`` and ``metrics``
    for :meth:`Engine.create_model`.

    - chantilly's and django-river-ml's "binary" flavor took any two labels (their examples
      use 1 and 2), as river's classifiers do; riverbed's binary task takes true/false or
      0/1. A binary-flavored model that handles any labels is served by the multiclass task
      with the binary flavor's metrics, and labels pass through as they are.
    - A classifier without probabilities (``OneVsOneClassifier``) keeps only the flavor's
      metrics that need labels, so that it is scored (and served) with ``predict_one``.
    """
    if task == "binary" and getattr(model, "_multiclass", False):
        task = "multiclass"
    if metric_names is not None and task in ("binary", "multiclass") and not _has_proba(model):
        metric_names = [n for n in metric_names if getattr(river_metrics, n)().requires_labels]
    return {"task": task, "metrics": metric_names}


def _has_proba(model: Any) -> bool:
    final = model
    while isinstance(final, compose.Pipeline) and final.steps:
        final = list(final.steps.values())[-1]
    method = getattr(type(final), "predict_proba_one", None)
    return method is not None and method is not base.Classifier.predict_proba_one


def sse_response(request: Request, render: Callable[[Event], bytes | None]) -> StreamingResponse:
    """A server-sent event stream of the engine's events, each rendered by ``render`` (which
    returns None to skip one). A comment is sent every 15 s to keep proxies from closing it."""
    engine = engine_of(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=10_000)

    def offer(event: Event) -> None:
        if queue.full():  # a stalled client loses the oldest events, never blocks the engine
            queue.get_nowait()
        queue.put_nowait(event)

    def listener(event: Event) -> None:
        loop.call_soon_threadsafe(offer, event)

    async def follow() -> AsyncIterator[bytes]:
        unsubscribe = engine.events.subscribe(listener)
        try:
            yield b": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield b": heartbeat\n\n"
                    continue
                message = render(event)
                if message is not None:
                    yield message
        finally:
            unsubscribe()

    return event_stream(request, follow())


def sse_message(data: Any, event: str | None = None) -> bytes:
    payload = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    head = b"event: %s\n" % event.encode() if event else b""
    return head + b"data: " + payload + b"\n\n"


def legacy_metrics(engine: Engine, name: str) -> dict[str, float]:
    """A model's running metrics as chantilly and django-river-ml sent them: a number for
    every metric, 0.0 for one that has scored nothing yet (riverbed's own API says null)."""
    values = engine.metrics(name)["metrics"]
    return {key: 0.0 if value is None else value for key, value in values.items()}


def wire_prediction(data: dict[str, Any]) -> Any:
    """The prediction as chantilly and django-river-ml sent it: classifiers' probabilities."""
    return data["probabilities"] if "probabilities" in data else data.get("prediction")
