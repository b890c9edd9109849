"""An in-process WebSocket session over an ASGI app, for tests (no sockets, no threads)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson


class Session:
    def __init__(self) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(self, message: Any) -> None:
        text = message if isinstance(message, str) else orjson.dumps(message).decode()
        await self.incoming.put({"type": "websocket.receive", "text": text})

    async def receive(self) -> Any:
        message = await asyncio.wait_for(self.outgoing.get(), 30)
        if message["type"] != "websocket.send":
            raise AssertionError(f"the socket sent {message}")
        return orjson.loads(message.get("text") or message.get("bytes"))


@contextlib.asynccontextmanager
async def connect(
    app: Any, path: str, query: bytes = b"", host: bytes = b"testserver"
) -> AsyncIterator[Session]:
    session = Session()
    await session.incoming.put({"type": "websocket.connect"})
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", host)],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
    }
    task = asyncio.ensure_future(app(scope, session.incoming.get, session.outgoing.put))
    accepted = await asyncio.wait_for(session.outgoing.get(), 30)
    assert accepted["type"] == "websocket.accept", accepted
    try:
        yield session
    finally:
        await session.incoming.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(task, 30)
