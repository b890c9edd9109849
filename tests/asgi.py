"""A bare ASGI driver for tests: the status a route answers with, even when it streams
(server-sent events) or is a WebSocket, without reading a body that never ends."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from riverbed.server.auth import WEBSOCKET_METHODS

ACCEPTED = 101  # what a WebSocket that was accepted reports


async def status_of(
    app: Any,
    method: str,
    path: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    query: bytes = b"",
    client: str = "203.0.113.7",
    server: tuple[str, int] = ("testserver", 80),
) -> tuple[int, dict[str, str]]:
    """The status (a WebSocket refused with 4000 + status reports that status) and headers."""
    websocket = method.upper() in WEBSOCKET_METHODS
    scope = {
        "type": "websocket" if websocket else "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET" if websocket else method,
        "scheme": "ws" if websocket else "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": (client, 50000),
        "server": server,
    }
    loop = asyncio.get_running_loop()
    started: asyncio.Future[tuple[int, dict[str, str]]] = loop.create_future()
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            if websocket:
                return {"type": "websocket.connect"}
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never leaves; the test cancels
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if started.done():
            return
        kind = message["type"]
        if kind == "http.response.start":
            got = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            started.set_result((message["status"], got))
        elif kind == "websocket.accept":
            started.set_result((ACCEPTED, {}))
        elif kind == "websocket.close":
            code = int(message.get("code", 1000))
            started.set_result((code - 4000 if code >= 4000 else 403, {}))

    task = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        task.result()  # raises what the app raised
        raise AssertionError(f"{method} {path} returned without answering")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return started.result()
