"""Python clients over httpx with the engine's method names.

Code written against :class:`riverbed.Engine` runs against a server by swapping one object::

    engine = Client("http://127.0.0.1:8000")   # instead of Engine("riverbed.db")

Each method is written once, in :class:`_Methods`: it describes its request and hands it to
``_request``, which the sync client runs at once and the async client returns as a
coroutine. Error payloads become the same exceptions the engine raises.

Models travel as declarative specs (:func:`riverbed.specs.to_spec`), never as pickles.

A server that does not answer (none runs at the URL) raises
:class:`~riverbed.exceptions.Unreachable`, a one-line message naming the URL, instead of
httpx's ``ConnectError``.

A server with auth on needs a token: ``Client(url, token="rbt_...")``; without ``token`` the
``RIVERBED_TOKEN`` environment variable is used, if set (see docs/auth.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson

from riverbed import specs
from riverbed.client.canary import CanaryMethods
from riverbed.client.challengers import ChallengerMethods
from riverbed.client.drift import DriftMethods
from riverbed.client.registry import RAW, RegistryMethods
from riverbed.client.webhooks import WebhookMethods
from riverbed.exceptions import ServerError, Unavailable, Unreachable, error_from_payload

if TYPE_CHECKING:
    from riverbed.client.jobs import AsyncJobs, SyncJobs

__all__ = ["AsyncClient", "CacheMethods", "Client"]

_MISSING: Any = object()
DEFAULT_URL = "http://127.0.0.1:8000"


def _path(*parts: str) -> str:
    return "/v1/" + "/".join(quote(p, safe="") for p in parts)


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _headers(headers: dict[str, str] | None, token: str | None) -> dict[str, str]:
    token = token if token is not None else os.environ.get("RIVERBED_TOKEN") or None
    merged = dict(headers or {})
    if token:
        merged.setdefault("Authorization", f"Bearer {token}")
    return merged


def _result(response: httpx.Response, pick: str | None = None) -> Any:
    if pick == RAW and response.is_success:
        return response.content
    try:
        payload = response.json() if response.content else None
    except ValueError:
        payload = None
    if response.is_success:
        return payload[pick] if pick is not None and payload is not None else payload
    if payload is None:
        raise ServerError(
            f"HTTP {response.status_code} from {response.request.url}: {response.text[:200]}"
        )
    raise error_from_payload(payload)


# A connection that could not be made: refused, a name that does not resolve, a timeout.
_NO_ANSWER = (httpx.ConnectError, httpx.ConnectTimeout)


def _unreachable(base_url: httpx.URL, exc: Exception) -> Unreachable:
    url = str(base_url).rstrip("/")
    reason = re.sub(r"^\[Errno -?\d+\] ", "", str(exc)) or type(exc).__name__
    return Unreachable(
        f"nothing answers at {url} ({reason}): is a server running there? Start one with "
        "`riverbed serve`",
        detail={"url": url},
    )


class _Http(httpx.Client):
    """httpx's client, raising :class:`Unreachable` where nothing answers."""

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return super().send(request, **kwargs)
        except _NO_ANSWER as exc:
            raise _unreachable(self.base_url, exc) from None


class _AsyncHttp(httpx.AsyncClient):
    """httpx's async client, raising :class:`Unreachable` where nothing answers."""

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        try:
            return await super().send(request, **kwargs)
        except _NO_ANSWER as exc:
            raise _unreachable(self.base_url, exc) from None


def _ndjson(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS) + b"\n"


def _learn_stream_request(name: str, chunk_size: int) -> tuple[str, dict[str, str]]:
    path = _path("models", name, "learn", "stream") + f"?chunk_size={chunk_size}"
    return path, {"content-type": "application/x-ndjson"}


def _last_event(last_event_id: int | str | None) -> dict[str, str]:
    return {"last-event-id": str(last_event_id)} if last_event_id else {}


# How long a followed event stream keeps trying to resume after its connection drops: the
# pauses between attempts, in seconds (about a minute in all), after which the error is raised.
RECONNECT_PAUSES = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0, 10.0, 10.0, 10.0)


class _Resume:
    """Where a followed event stream is: the last id seen (sent as ``Last-Event-ID`` on the
    next connection), the attempts since the last message, and whether a connection was ever
    opened (a server that never answered is not waited for)."""

    def __init__(self, last_event_id: int | str | None, reconnect: bool) -> None:
        self.last, self.reconnect, self.failures = last_event_id, reconnect, 0
        self.opened = False

    def open(self) -> None:
        self.opened = True

    def seen(self, event: dict[str, Any]) -> None:
        self.failures = 0
        if isinstance(event.get("id"), int):
            self.last = event["id"]

    def pause(self, error: Exception | None) -> float:
        """The pause before the next attempt, or raise ``error`` when it is time to stop."""
        never = isinstance(error, Unreachable) and not self.opened
        if never or not self.reconnect or self.failures >= len(RECONNECT_PAUSES):
            if error is not None:
                raise error
            raise Unavailable("the server closed the event stream and did not take it back")
        self.failures += 1
        return RECONNECT_PAUSES[self.failures - 1]


def _events_request(
    model: str | None, types: Iterable[str] | None, last_event_id: int | str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    query = _body(model=model, types=",".join(types) if types else None)
    return query, _last_event(last_event_id)


def _metrics_stream_request(
    name: str, interval: float, last_event_id: int | None
) -> tuple[str, dict[str, Any], dict[str, str]]:
    path = _path("models", name, "metrics", "stream")
    return path, {"interval": interval}, _last_event(last_event_id)


class _EventLines:
    """Server-sent event lines in, messages out: a message's ``data`` as JSON (or, ``raw``,
    ``{"event", "id", "data"}``) once the blank line that ends it arrives. Comment lines
    (``: heartbeat``) are skipped; a message's several ``data`` lines join with newlines.
    ``opened`` is called once the stream is open, before its first line."""

    def __init__(self, raw: bool, opened: Callable[[], None] = lambda: None) -> None:
        self.raw, self.opened = raw, opened
        self.fields: dict[str, str] = {}

    def feed(self, line: str) -> dict[str, Any] | None:
        if line:
            if not line.startswith(":"):
                key, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if key == "data" and "data" in self.fields:
                    value = self.fields["data"] + "\n" + value
                self.fields[key] = value
            return None
        fields, self.fields = self.fields, {}
        if "data" not in fields:
            return None
        data = orjson.loads(fields["data"])
        if self.raw:
            return {"event": fields.get("event"), "id": fields.get("id"), "data": data}
        return data


class _Methods(RegistryMethods, DriftMethods, CanaryMethods, ChallengerMethods):
    """The operations, each described once. ``_request`` decides sync or async."""

    def _request(
        self, method: str, path: str, json: Any = None, *, pick: str | None = None, **extra: Any
    ) -> Any:
        """Send a request and return its JSON (or its field ``pick``); ``extra`` goes to
        httpx (``files``, ``content``, ``params``...)."""
        raise NotImplementedError

    def train(self, model: str, data: Any, *, target: str, **options: Any) -> Any:
        """Start a training job (see docs/training.md); ``data`` is a list of rows, the bytes
        of a CSV/NDJSON/Parquet file, or a path to one. Returns the job, queued."""
        from riverbed.client.jobs import train_request

        return self._request("POST", "/v1/jobs", **train_request(model, data, target, options))

    def health(self) -> Any:
        return self._request("GET", "/health")

    def create_model(
        self,
        name: str,
        model: Any = None,
        *,
        spec: Any = None,
        task: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        metrics: list[str] | None = None,
        options: dict[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> Any:
        """Create a model from a river object (sent as its spec) or from a spec; with
        ``exist_ok=True`` a model of that name created from the same spec is described
        instead (see :meth:`riverbed.Engine.create_model`)."""
        if (model is None) == (spec is None):
            raise TypeError("give either a model object or a spec, not both or neither")
        if model is not None:
            spec = specs.to_spec(model)
        return self._request(
            "POST",
            "/v1/models",
            _body(
                name=name,
                spec=spec,
                task=task,
                description=description,
                tags=tags,
                metrics=metrics,
                options=options,
                exist_ok=exist_ok or None,
            ),
        )

    def list_models(self) -> Any:
        return self._request("GET", "/v1/models", pick="models")

    def get_model(self, name: str) -> Any:
        return self._request("GET", _path("models", name))

    def delete_model(self, name: str) -> Any:
        return self._request("DELETE", _path("models", name))

    def predict(
        self,
        name: str,
        features: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        features_key: str | None = None,
        version: int | None = None,
        **inputs: Any,
    ) -> Any:
        """As :meth:`riverbed.Engine.predict`: ``name@alias`` or ``version`` answers with that
        version; ``inputs``: ``user``/``item`` (recommender), ``arms`` (bandit), ``value``."""
        return self._request(
            "POST",
            _path("models", name, "predict"),
            _body(features=features, id=id, features_key=features_key, version=version, **inputs),
        )

    def learn(
        self,
        name: str,
        features: dict[str, Any] | None = None,
        ground_truth: Any = _MISSING,
        *,
        id: str | None = None,
        **inputs: Any,
    ) -> Any:
        body = _body(features=features, id=id, **inputs)
        if ground_truth is not _MISSING:
            body["ground_truth"] = ground_truth
        return self._request("POST", _path("models", name, "learn"), body)

    @property
    def cache(self) -> CacheMethods:
        """The key-value cache: ``client.cache.put(key, value, ttl=60)``, as ``engine.cache``."""
        return CacheMethods(self._request)

    @property
    def webhooks(self) -> WebhookMethods:
        """Webhook subscriptions and their deliveries, as ``engine.webhooks``:
        ``client.webhooks.subscribe(url, ["model.drift"])`` (see docs/webhooks.md)."""
        return WebhookMethods(self._request)

    def predict_many(self, name: str, items: list[dict[str, Any]]) -> Any:
        """Many predictions in one request, in order: each item is a predict body."""
        return self._request(
            "POST", _path("models", name, "predict", "many"), {"items": items}, pick="items"
        )

    def learn_many(self, name: str, items: list[dict[str, Any]]) -> Any:
        """Many learns in one request, in order, all or none: each item is a learn body."""
        return self._request("POST", _path("models", name, "learn", "many"), {"items": items})

    def forecast(self, name: str, horizon: int = 1, xs: list[dict[str, Any]] | None = None) -> Any:
        return self._request(
            "POST", _path("models", name, "forecast"), _body(horizon=horizon, xs=xs)
        )

    def rank(
        self, name: str, user: Any, items: list[Any], features: dict[str, Any] | None = None
    ) -> Any:
        return self._request(
            "POST",
            _path("models", name, "rank"),
            _body(user=user, items=items, features=features),
        )

    def metrics(self, name: str) -> Any:
        return self._request("GET", _path("models", name, "metrics"))

    def metrics_history(
        self, name: str, *, after: int = 0, since: float | None = None, limit: int = 1000
    ) -> Any:
        query = f"?after={after}&limit={limit}" + (f"&since={since}" if since is not None else "")
        return self._request("GET", _path("models", name, "metrics", "history") + query)

    def stats(self, name: str) -> Any:
        return self._request("GET", _path("models", name, "stats"))

    # tokens (admin)
    def create_token(
        self, scopes: list[str], *, name: str = "", expires_in: float | str | None = None
    ) -> Any:
        """A new token; its ``token`` field is the secret, shown this once."""
        return self._request(
            "POST", "/v1/tokens", _body(scopes=list(scopes), name=name, expires_in=expires_in)
        )

    def list_tokens(self, *, include_inactive: bool = False) -> Any:
        query = "?all=true" if include_inactive else ""
        return self._request("GET", "/v1/tokens" + query, pick="tokens")

    def revoke_token(self, token_id: str) -> Any:
        return self._request("DELETE", _path("tokens", token_id))


class CacheMethods:
    """The cache's operations over HTTP, with :class:`riverbed.cache.Cache`'s names."""

    def __init__(self, request: Any) -> None:
        self._request = request

    def put(self, key: str, value: Any, *, ttl: float | None = None) -> Any:
        return self._request("PUT", _path("cache", key), _body(ttl=ttl) | {"value": value})

    def get(self, key: str) -> Any:
        return self._request("GET", _path("cache", key), pick="value")

    def delete(self, key: str) -> Any:
        return self._request("DELETE", _path("cache", key))

    def push(self, key: str, value: Any, *, ttl: float | None = None) -> Any:
        return self._request("POST", _path("cache", key, "push"), _body(ttl=ttl) | {"value": value})

    def peek(self, key: str, position: int = 0) -> Any:
        return self._request(
            "GET", _path("cache", key, "peek") + f"?position={int(position)}", pick="value"
        )

    def pop(self, key: str) -> Any:
        return self._request("POST", _path("cache", key, "pop"), pick="value")

    def length(self, key: str) -> Any:
        return self._request("GET", _path("cache", key, "length"), pick="length")

    def ttl(self, key: str) -> Any:
        return self._request("GET", _path("cache", key, "ttl"))

    def expire(self, key: str, ttl: float | None) -> Any:
        return self._request("PUT", _path("cache", key, "ttl"), {"ttl": ttl})


class Client(_Methods):
    """A blocking client. ``with Client(url) as c: c.predict(...)``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        self._http = _Http(
            base_url=base_url,
            timeout=timeout,
            headers=_headers(headers, token),
            transport=transport,
        )

    def _request(
        self, method: str, path: str, json: Any = None, *, pick: str | None = None, **extra: Any
    ) -> Any:
        return _result(self._http.request(method, path, json=json, **extra), pick)

    @property
    def jobs(self) -> SyncJobs:
        """Training jobs: ``client.jobs.get(id)``, ``.wait(id)``, ``.follow(id)``..."""
        from riverbed.client.jobs import SyncJobs

        return SyncJobs(self._request, self._http)

    def learn_stream(
        self,
        name: str,
        rows: Iterable[dict[str, Any]],
        *,
        chunk_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Learn from a stream of learn bodies sent as one NDJSON upload; yields the
        server's progress reports (``{"n_learned": ...}``), the last with ``"done": true``."""

        def body() -> Iterator[bytes]:
            for row in rows:
                yield _ndjson(row)

        path, headers = _learn_stream_request(name, chunk_size)
        with self._http.stream(
            "POST", path, content=body(), headers=headers, timeout=None
        ) as response:
            if not response.is_success:
                response.read()
                _result(response)
            for line in response.iter_lines():
                if line.strip():
                    yield orjson.loads(line)

    def events(
        self,
        model: str | None = None,
        *,
        types: Iterable[str] | None = None,
        last_event_id: int | str | None = None,
        reconnect: bool = True,
    ) -> Iterator[dict[str, Any]]:
        """Follow the event feed (server-sent events) for ever, as event dicts: the events
        the server still holds first (after ``last_event_id``; ``"now"`` replays nothing),
        then each as it happens. A dropped connection is resumed from the last event seen
        (``reconnect``, for about a minute). An event of type ``"gap"`` says that events
        after the last one could not be replayed (its ``data`` says how many, when known):
        refetch whatever state you keep (see docs/streams.md)."""
        resume = _Resume(last_event_id, reconnect)
        while True:
            error: Exception | None = None
            try:
                query, headers = _events_request(model, types, resume.last)
                for event in self._sse(
                    "/v1/events", query, headers, _EventLines(False, resume.open)
                ):
                    resume.seen(event)
                    yield event
            except (httpx.TransportError, Unreachable) as exc:
                error = exc
            time.sleep(resume.pause(error))

    def metrics_stream(
        self, name: str, *, interval: float = 1.0, last_event_id: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Follow a model's metrics: ``{"event": "metrics"|"point", "id", "data"}``."""
        path, query, headers = _metrics_stream_request(name, interval, last_event_id)
        yield from self._sse(path, query, headers, _EventLines(raw=True))

    def _sse(
        self, path: str, query: dict[str, Any], headers: dict[str, str], messages: _EventLines
    ) -> Iterator[dict[str, Any]]:
        with self._http.stream(
            "GET", path, params=query, headers=headers, timeout=httpx.Timeout(None)
        ) as response:
            if not response.is_success:
                response.read()
                _result(response)
            messages.opened()
            for line in response.iter_lines():
                message = messages.feed(line)
                if message is not None:
                    yield message

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(_Methods):
    """The same methods as :class:`Client`, to be awaited; the streams (:meth:`events`,
    :meth:`metrics_stream`, :meth:`learn_stream`) are async iterators."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 30.0,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        token: str | None = None,
    ) -> None:
        self._http = _AsyncHttp(
            base_url=base_url,
            timeout=timeout,
            headers=_headers(headers, token),
            transport=transport,
        )

    async def _request(
        self, method: str, path: str, json: Any = None, *, pick: str | None = None, **extra: Any
    ) -> Any:
        return _result(await self._http.request(method, path, json=json, **extra), pick)

    @property
    def jobs(self) -> AsyncJobs:
        """Training jobs, to be awaited: ``await client.jobs.wait(id)``."""
        from riverbed.client.jobs import AsyncJobs

        return AsyncJobs(self._request)

    async def learn_stream(
        self,
        name: str,
        rows: Iterable[dict[str, Any]] | AsyncIterable[dict[str, Any]],
        *,
        chunk_size: int = 1000,
    ) -> AsyncIterator[dict[str, Any]]:
        """Learn from a stream of learn bodies (an iterable, or an async one) sent as one
        NDJSON upload; yields the server's progress reports (``{"n_learned": ...}``), the
        last with ``"done": true``: ``async for report in client.learn_stream(...)``."""

        async def body() -> AsyncIterator[bytes]:
            if isinstance(rows, AsyncIterable):
                async for row in rows:
                    yield _ndjson(row)
            else:
                for row in rows:
                    yield _ndjson(row)

        path, headers = _learn_stream_request(name, chunk_size)
        async with self._http.stream(
            "POST", path, content=body(), headers=headers, timeout=None
        ) as response:
            if not response.is_success:
                await response.aread()
                _result(response)
            async for line in response.aiter_lines():
                if line.strip():
                    yield orjson.loads(line)

    async def events(
        self,
        model: str | None = None,
        *,
        types: Iterable[str] | None = None,
        last_event_id: int | str | None = None,
        reconnect: bool = True,
    ) -> AsyncIterator[dict[str, Any]]:
        """Follow the event feed (server-sent events) for ever, as event dicts:
        ``async for event in client.events(...)``; resumes and reports gaps as
        :meth:`Client.events` does."""
        resume = _Resume(last_event_id, reconnect)
        while True:
            error: Exception | None = None
            try:
                query, headers = _events_request(model, types, resume.last)
                async for event in self._sse(
                    "/v1/events", query, headers, _EventLines(False, resume.open)
                ):
                    resume.seen(event)
                    yield event
            except (httpx.TransportError, Unreachable) as exc:
                error = exc
            await asyncio.sleep(resume.pause(error))

    async def metrics_stream(
        self, name: str, *, interval: float = 1.0, last_event_id: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Follow a model's metrics: ``{"event": "metrics"|"point", "id", "data"}``."""
        path, query, headers = _metrics_stream_request(name, interval, last_event_id)
        async for message in self._sse(path, query, headers, _EventLines(raw=True)):
            yield message

    async def _sse(
        self, path: str, query: dict[str, Any], headers: dict[str, str], messages: _EventLines
    ) -> AsyncIterator[dict[str, Any]]:
        async with self._http.stream(
            "GET", path, params=query, headers=headers, timeout=httpx.Timeout(None)
        ) as response:
            if not response.is_success:
                await response.aread()
                _result(response)
            messages.opened()
            async for line in response.aiter_lines():
                message = messages.feed(line)
                if message is not None:
                    yield message

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
