"""The server's HTTP protocol: uvicorn's httptools protocol, with the JSON operations answered
straight from the parser's callbacks.

For every other request uvicorn does what it always does: an ASGI scope, a task per
request, ``receive`` and ``send`` messages, the response's head and body written apart. For a
JSON operation (:class:`~riverbed.server.fast.JsonOperation`: predict, learn, learn/many)
that work costs about as much as riverbed's own, so here the complete request goes from the
parser to the operation and back in plain calls:

1. the request's head names a direct operation (:meth:`FastRoutes.lookup`), its body has a
   ``Content-Length`` within the route's body limit and nothing asks for what only the ASGI path
   does (``Expect: 100-continue``, an audited route); proxy headers are read by the same
   rule as on the ASGI path (:class:`~riverbed.server.guard.ProxyRule`);
2. once the body is in, the route's :class:`~riverbed.server.auth.Gate` admits the caller,
   the body is parsed with the same limits and the operation runs;
3. its answer -- or the answer of its receipt once the group commit is durable
   (:func:`~riverbed.receipts.call_when_committed`), or of the coroutine it returned, run
   as a task -- is written in one ``write``: status line, uvicorn's default headers,
   ``content-type``, ``content-length`` and body, with the route's status and error
   payloads (:func:`~riverbed.server.fast.json_route`).

The answers, errors and their payloads are those of the ASGI path (tests/test_protocol.py
compares them over a real socket). Requests pipelined behind a direct one wait in uvicorn's
own queue: the direct request holds the connection's cycle until it has answered, as an
ASGI request does.

What uvicorn and its WebSocket library answer themselves, before any route sees the request
-- bytes that are not HTTP, a WebSocket handshake without a valid ``Sec-WebSocket-Key`` --
is answered in the project's JSON error shape too (code ``invalid_http``), not in their
plain text: every error a client of ``riverbed serve`` gets parses the same way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Response
from websockets.server import ServerProtocol

from riverbed.exceptions import RiverbedError
from riverbed.receipts import Receipt, call_when_committed
from riverbed.server.auth import PRINCIPAL_KEY
from riverbed.server.fast import JsonOperation, answer_of, encode, failure
from riverbed.server.http import STREAM_KEY, parse_json
from riverbed.validation import MAX_INT_DIGITS

if TYPE_CHECKING:
    from riverbed.server.app import RiverbedApp

__all__ = ["RiverbedWebSockets", "protocol_for"]

log = logging.getLogger("riverbed.server")

_JSON_HEAD = b"content-type: application/json\r\ncontent-length: "
# The tasks of operations that returned a coroutine, held until they are done (the loop
# keeps only weak references to its tasks).
_TASKS: set[asyncio.Future[Any]] = set()


class RiverbedHttp(HttpToolsProtocol):
    """uvicorn's HTTP protocol, answering :attr:`app`'s direct JSON operations itself."""

    app_of_server: RiverbedApp  # set on the class made by protocol_for()

    def shutdown(self) -> None:
        """A graceful shutdown: uvicorn closes idle connections and waits for the responses
        under way, and a server-sent event stream never ends by itself, so the server would
        wait for its client to leave (a browser with the dashboard open: forever). Such a
        stream (marked by :func:`~riverbed.server.http.event_stream`) is ended here: its
        chunked body gets its last chunk, so the client reads a complete response, and the
        connection is closed, which tells the stream's task its client has gone."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and cycle.scope.get(STREAM_KEY):
            if cycle.response_started and cycle.chunked_encoding:
                self.transport.write(b"0\r\n\r\n")
            self.transport.close()
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        """What uvicorn answers to bytes its parser refuses, as a JSON error."""
        content = _error_body(f"{msg} (the request is not valid HTTP/1.1)")
        out = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            out += (name, b": ", value, b"\r\n")
        out += (_JSON_HEAD, b"%d\r\nconnection: close\r\n\r\n" % len(content), content)
        self.transport.write(b"".join(out))
        self.transport.close()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        direct = self._direct_for(cycle) if app is self.app else None
        if direct is None:
            super()._start_asgi_task(cycle, app)
            return
        cycle.riverbed_direct = direct  # type: ignore[attr-defined]
        self._unset_keepalive_if_required()  # armed by the answer before, if it was direct
        if not cycle.more_body:  # a pipelined request, started once its body was in
            self._answer(cycle, direct)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if getattr(self.cycle, "riverbed_direct", None) is not None:
            self.flow.resume_reading()  # nobody calls receive(); the body's size was checked

    def on_message_complete(self) -> None:
        super().on_message_complete()
        cycle = self.cycle
        direct = getattr(cycle, "riverbed_direct", None)
        if direct is not None and not cycle.response_complete:
            self._answer(cycle, direct)

    def _direct_for(
        self, cycle: RequestResponseCycle
    ) -> tuple[JsonOperation, dict[str, str]] | None:
        scope: Any = cycle.scope
        if cycle.waiting_for_100_continue:
            return None
        found = self.app_of_server.fast.lookup(scope["method"], scope["path"], scope["root_path"])
        if found is None or not found[0].direct:
            return None
        limit = found[0].gate.body_limit(self.app_of_server.state.settings)
        if limit is None:
            return None
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                return None
        if (
            length is None
            or not length.isdigit()
            or len(length) > MAX_INT_DIGITS
            or int(length) > limit[0]
        ):
            return None  # the ASGI path streams it, or refuses it with 413
        return found

    def _answer(
        self, cycle: RequestResponseCycle, direct: tuple[JsonOperation, dict[str, str]]
    ) -> None:
        cycle.riverbed_direct = None  # type: ignore[attr-defined]
        operation, params = direct
        app = self.app_of_server
        scope: Any = cycle.scope
        scope["app"] = app
        scope["path_params"] = params
        if app.state.auth.proxies.enabled:
            app.state.auth.proxies.apply(scope)  # as RiverbedApp does on the ASGI path
        try:
            principal = operation.gate.admit(scope)
        except RiverbedError as exc:
            status, headers = operation.gate.refusal(scope, exc)
            extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            self._write(cycle, status, extra, encode(exc.to_payload()))
            return
        scope[PRINCIPAL_KEY] = principal
        try:
            state = app.state
            result = operation.op(state, params, parse_json(bytes(cycle.body), state.settings))
        except Exception as exc:
            self._fail(cycle, operation, exc)
            return
        if type(result) is Receipt:
            if result.committed.done():
                self._answer_receipt(cycle, operation, result)
            else:
                call_when_committed(
                    result, self.loop, lambda: self._answer_receipt(cycle, operation, result)
                )
        elif hasattr(result, "__await__"):  # an operation that waits between its writes
            task = asyncio.ensure_future(result, loop=self.loop)
            _TASKS.add(task)
            task.add_done_callback(lambda done: self._answer_task(cycle, operation, done))
        else:
            self._answer_value(cycle, operation, result)

    def _answer_receipt(
        self, cycle: RequestResponseCycle, operation: JsonOperation, receipt: Receipt[Any]
    ) -> None:
        try:
            receipt.committed.result()
        except Exception as exc:
            self._fail(cycle, operation, exc)
            return
        self._answer_value(cycle, operation, receipt.value)

    def _answer_task(
        self, cycle: RequestResponseCycle, operation: JsonOperation, task: asyncio.Future[Any]
    ) -> None:
        _TASKS.discard(task)
        if task.cancelled():  # the server is shutting down
            return
        exc = task.exception()
        if exc is not None:
            self._fail(cycle, operation, exc)
            return
        self._answer_value(cycle, operation, task.result())

    def _answer_value(
        self, cycle: RequestResponseCycle, operation: JsonOperation, value: Any
    ) -> None:
        try:
            status, value = answer_of(value, operation.status)
            content = encode(value)
        except Exception as exc:
            self._fail(cycle, operation, exc)
            return
        self._write(cycle, status, [], content)

    def _fail(
        self, cycle: RequestResponseCycle, operation: JsonOperation, exc: BaseException
    ) -> None:
        scope = cycle.scope
        self._write(cycle, *failure(exc, scope["method"], scope["path"], operation.errors))

    def _write(
        self,
        cycle: RequestResponseCycle,
        status: int,
        headers: list[tuple[bytes, bytes]],
        content: bytes,
    ) -> None:
        """The whole response in one write, then what uvicorn does after a response: close a
        connection that is not kept alive, start the next pipelined request."""
        cycle.response_started = cycle.response_complete = True
        if cycle.disconnected or self.transport.is_closing():
            return
        out = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            out += (name, b": ", value, b"\r\n")
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            out.append(b"connection: close\r\n")
        out += (_JSON_HEAD, b"%d\r\n\r\n" % len(content), content)
        self.transport.write(b"".join(out))
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                f"{self.client[0]}:{self.client[1]}" if self.client else "-",
                cycle.scope["method"],
                cycle.scope["path"],
                cycle.scope["http_version"],
                status,
            )
        if not cycle.keep_alive:
            self.transport.close()
        cycle.message_event.set()
        cycle.on_response()


def _error_body(message: str, code: str = "invalid_http") -> bytes:
    return encode({"error": {"code": code, "message": message, "detail": None}})


class _JsonRefusals(ServerProtocol):
    """The WebSocket library's handshake protocol, its refusals (a malformed handshake, a
    request line or headers too long) written as JSON errors."""

    def reject(self, status: Any, text: str) -> Response:
        response = super().reject(status, text)
        code = "server_error" if response.status_code >= 500 else "invalid_http"
        message = " ".join(text.split()) or response.reason_phrase
        response.body = _error_body(message, code)
        del response.headers["Content-Length"], response.headers["Content-Type"]
        response.headers["Content-Length"] = str(len(response.body))
        response.headers["Content-Type"] = "application/json"
        return response


class RiverbedWebSockets(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, refusing handshakes in the project's error shape."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.__class__ = _JsonRefusals  # the same state; only reject() differs


def protocol_for(app: RiverbedApp) -> type[RiverbedHttp]:
    """The protocol class to give uvicorn (``http=``) for a server of ``app``."""
    return type("RiverbedHttp", (RiverbedHttp,), {"app_of_server": app})
