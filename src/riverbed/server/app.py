"""The ASGI application: routes from every route module, JSON errors, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from riverbed.config import Settings
from riverbed.engine import Engine
from riverbed.exceptions import RiverbedError
from riverbed.server import (
    api,
    cache_api,
    canary_api,
    challengers_api,
    cluster_api,
    compat,
    drift_api,
    jobs_api,
    learning,
    oip,
    prometheus,
    registry_api,
    stream,
    tokens,
    web,
    webhooks_api,
    ws,
)
from riverbed.server.auth import AuthPolicy, bootstrap_admin, enabled_endpoints, routes_of
from riverbed.server.fast import FastRoutes
from riverbed.server.guard import ProxyRule
from riverbed.server.http import JSONResponse, error_headers, error_response, status_of
from riverbed.server.routing import Endpoint, openapi_document
from riverbed.version import __version__

__all__ = ["create_app", "endpoints"]

log = logging.getLogger("riverbed.server")


def endpoints() -> list[Endpoint]:
    """Every endpoint the server can answer, in the order they are matched (with every
    compatibility layer; the ``compat`` setting picks which of them a server mounts)."""
    return [
        *api.ENDPOINTS,
        *cache_api.ENDPOINTS,
        *registry_api.ENDPOINTS,
        *jobs_api.ENDPOINTS,
        *learning.ENDPOINTS,
        *drift_api.ENDPOINTS,
        *canary_api.ENDPOINTS,
        *webhooks_api.ENDPOINTS,
        *challengers_api.ENDPOINTS,
        *cluster_api.ENDPOINTS,
        *ws.ENDPOINTS,
        *stream.ENDPOINTS,
        *prometheus.ENDPOINTS,
        *web.ENDPOINTS,
        *tokens.ENDPOINTS,
        *oip.ENDPOINTS,
        Endpoint(
            "GET", "/openapi.json", _openapi, "This OpenAPI document", "service", scope="public"
        ),
        *compat.endpoints(),
    ]


async def _openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def _riverbed_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RiverbedError)
    status = status_of(exc)
    if status >= 500:
        log.error("server error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(exc.to_payload(), status_code=status, headers=error_headers(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = exc.headers
    if exc.status_code == 404:
        code = "route_not_found"
        message = f"no route {request.method} {request.url.path}; see /openapi.json for the routes"
        headers = None
    elif exc.status_code == 405:
        code, message = (
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}",
        )
    else:
        code, message = "http_error", str(exc.detail)
    if oip.owns(request.url.path):  # the Open Inference Protocol's own error shape
        return JSONResponse(
            {"error": message, "code": code, "detail": None},
            status_code=exc.status_code,
            headers=headers,
        )
    return error_response(exc.status_code, code, message, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(
        500, "server_error", "the server failed to handle this request; this is a bug"
    )


class RiverbedApp(Starlette):
    """Starlette, with the JSON operations of :mod:`riverbed.server.fast` answered before
    the framework's routing (``fast``); every other request goes the usual way."""

    fast: FastRoutes
    proxies: ProxyRule

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.proxies.enabled and scope["type"] != "lifespan":
            self.proxies.apply(scope)  # the client a trusted proxy names
        if scope["type"] == "http":
            app = self.fast.match(scope)
            if app is not None:
                scope["app"] = self
                await app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(engine: Engine | None = None, settings: Settings | None = None) -> RiverbedApp:
    """The ASGI app over ``engine``; without one, an engine is opened from ``settings`` and
    closed (checkpointing every model) when the server shuts down."""
    settings = settings or (engine.settings if engine is not None else Settings.load())
    owned = engine is None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if app.state.engine is None:
            if settings.broker:  # a scale-out replica (docs/scale-out.md)
                from riverbed.scaleout.replica import replica_engine

                app.state.engine = replica_engine(settings)
            else:
                app.state.engine = Engine(settings=settings)
        bootstrap_admin(app)
        store = app.state.engine.store
        store.serve_on(asyncio.get_running_loop())  # group commits on this loop
        try:
            yield
        finally:
            store.serve_on(None)
            if owned and app.state.engine is not None:
                if settings.broker:
                    from riverbed.scaleout.replica import close_replica

                    close_replica(app.state.engine)
                app.state.engine.close()

    policy = AuthPolicy(settings)
    all_endpoints = enabled_endpoints(compat.enabled(endpoints(), settings), settings.route_groups)
    handlers: dict[Any, Any] = {
        RiverbedError: _riverbed_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }
    app = RiverbedApp(
        routes=routes_of(all_endpoints), exception_handlers=handlers, lifespan=lifespan
    )
    app.fast = FastRoutes(all_endpoints)
    app.proxies = policy.proxies
    app.state.engine = engine
    app.state.settings = settings
    app.state.auth = policy
    app.state.endpoints = all_endpoints
    app.state.openapi = openapi_document(all_endpoints, title="riverbed", version=__version__)
    return app
