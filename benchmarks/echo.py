"""The machine's ceiling: a bare Starlette app that parses a JSON body and sends it back.

It runs on the same uvicorn as riverbed (same HTTP parser and event loop), so riverbed's
throughput over this one's is the share of the machine the web layer leaves to riverbed.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def echo(request: Request) -> Response:
    body = orjson.loads(await request.body())
    return Response(orjson.dumps(body), media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/health", health)])
