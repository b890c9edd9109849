"""Generated requests for every route a server answers, and two ways to send them.

The routes come from the app itself (``app.state.endpoints``: the native routes, every
compatibility layer the ``compat`` setting serves, the dashboard's, ``/metrics`` and the
``/v1/ws`` handshake); the field and query names the generated bodies and query strings use
are read from the route modules' source, so a new field is fuzzed without being listed here.
A request is raw bytes (a request target as a client would write it, headers, a body), sent

- to the ASGI app (:func:`call_asgi`): a scope built as uvicorn builds one, the body in one
  message or two, the answer collected (an event stream's head only);
- to a real ``riverbed serve`` over a socket (:func:`call_socket`): the server's own protocol
  answers the hot JSON operations from the parser's callbacks, which only a socket reaches,
  and malformed framing (a bad ``Content-Length``, bytes no client should send) too.

:func:`problem` says what is wrong with an answer: a 5xx, or an error that is not JSON in
the project's error shape (``{"error": {"code", "message", "detail"}}``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import re
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

import riverbed.server
from riverbed.server.routing import Endpoint, is_websocket

SOURCE = Path(riverbed.server.__file__).parent
SPEC = {"class": "river.linear_model.LogisticRegression"}
REGRESSOR = {"class": "river.linear_model.LinearRegression"}
WS_KEY = base64.b64encode(b"0123456789abcdef")


@dataclasses.dataclass
class Request:
    method: str
    target: bytes  # the request target as sent: a percent-encoded path and its query
    headers: list[tuple[bytes, bytes]]
    body: bytes
    websocket: bool = False
    chunks: int = 1  # the body in this many ASGI messages
    length: bytes | None = None  # a Content-Length other than the body's, when not None

    def label(self) -> str:
        extra = f" content-length {self.length!r}" if self.length is not None else ""
        return (
            f"{self.method} {self.target[:200]!r} headers {self.headers!r}{extra} "
            f"body {self.body[:200]!r}"
        )


@dataclasses.dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


# --- what the route modules read ---------------------------------------------------------


def _source() -> str:
    return "\n".join(p.read_text() for p in sorted(SOURCE.rglob("*.py")))


def _schema_properties(schema: Any, out: set[str]) -> None:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                out.update(value)
            _schema_properties(value, out)
    elif isinstance(schema, list):
        for item in schema:
            _schema_properties(item, out)


def field_names(endpoints: list[Endpoint]) -> list[str]:
    """The body fields the routes read: their schemas' properties and the names the route
    modules look up (``field(body, "x")``, ``body.get("x")``, ``body["x"]``)."""
    text = _source()
    names = set(re.findall(r'\bfield\(\s*\w+,\s*"(\w+)"', text))
    names |= set(re.findall(r'\.(?:get|pop)\(\s*"(\w+)"', text))
    names |= set(re.findall(r'\w\[\s*"(\w+)"\s*\]', text))
    for endpoint in endpoints:
        _schema_properties(endpoint.body, names)
    return sorted(names)


def query_names() -> list[str]:
    """The query parameters the route modules read."""
    text = _source()
    names = set(re.findall(r'query_int\(\s*\w+,\s*"(\w+)"', text))
    names |= set(re.findall(r'query_params(?:\.get|\.getlist)?[(\[]\s*"(\w+)"', text))
    return sorted(names)


# --- values ------------------------------------------------------------------------------

# Segments that have broken routes: digits that are not ASCII, numbers past any integer,
# dots, encoded slashes and NULs, names a file system refuses, names past every limit.
ODD_SEGMENTS = [
    "²",
    "١٢",
    "９",
    "0",
    "-1",
    "+1",
    "1_0",
    " 1",
    "1.5",
    "9" * 25,
    "9" * 5000,
    "1e400",
    "NaN",
    "inf",
    "..",
    ".",
    "\x00",
    "/",
    "a" * 300,
    "名前",
    "m@1",
    "m@latest",
    "m@²",
    "m@",
    "@1",
    "m@9999999999999999999999",
    "__init__.py",
    "con",
    "~",
    "\\",
    "\ud7ff",
    "%",
]
ODD_STRINGS = [*ODD_SEGMENTS, "", "\ufeff", "\u202e", "true", "null", "[]", "{}"]
HUGE_INTS = [2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400]
ODD_FLOATS = [1e308, -1e308, 5e-324, 0.1, -0.0, 1.7976931348623157e308]
SEEDS: dict[str, list[Any]] = {
    "name": ["m", "r", "m2", "s"],
    "model": ["m", "r", "nope"],
    "spec": [SPEC, REGRESSOR, {"class": "os.system"}, {"pipeline": []}],
    "features": [{"x": 1.0}, {"x": 1e308, "y": "a"}, {}, {"x": [1, 2]}, {"x": None}],
    "x": [{"x": 1.0}],
    "xs": [[{"x": 1.0}], []],
    "ground_truth": [True, 1.0, "a", None],
    "y": [True, 1.0],
    "label": [True, 0, "spam"],
    "items": [[{"features": {"x": 1.0}, "ground_truth": True}], [{}], [1]],
    "rows": [[{"x": 1.0, "y": 1}], [[1, 2]]],
    "version": [1, "1", "latest", 0, -1],
    "id": ["p1", 1, ""],
    "ttl": [1, -1, 0.5, 1e308],
    "scopes": [["admin"], ["nope"], "admin"],
    "horizon": [1, 0, -1, 10**6],
    "task": ["binary", "regression", "nope"],
    "format": ["pickle", "skops", "riverbed", "joblib", "file", "nope"],
    "artifact": ["", "AAAA", "not base64!"],
    "tags": [{"a": "b"}, {"a": 1}, ["a"]],
    "options": [{}, {"windows": [10]}],
    "value": [1, "a", {"a": [1]}, None],
    "event": [{"x": 1.0}, {}, [1]],
    "data": [{"x": 1.0}, [{"x": 1.0, "y": 1}], "x,y\n1,2\n"],
    "training_data": [[{"x": 1.0, "y": 1}], []],
    "parameters": [{}, {"target": "y"}],
    "flavor": ["regression", "binary", "multiclass", "nope"],
    "identifier": ["p1", 1],
    "prediction": [True, 0.5],
    "user": ["u"],
    "item": ["i"],
    "arms": [["a", "b"], []],
    "target": ["y"],
    "candidates": [[SPEC], [{"spec": SPEC}], []],
    "expires_in": ["1h", 60, "-1s", "forever"],
    "by": ["me"],
    "metrics": [["MAE"], {"accuracy": 0.5}, ["nope"]],
}


def _json_values(fields: list[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 3),
        st.sampled_from(HUGE_INTS),
        st.sampled_from(ODD_FLOATS),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(ODD_STRINGS),
        st.text(max_size=12),
    )
    keys = st.one_of(st.sampled_from(fields), st.text(max_size=8))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)
        ),
        max_leaves=8,
    )


def dumps(value: Any) -> bytes:
    """JSON as a client might write it: Python's encoder, which writes NaN, Infinity and
    integers of any size (the server must refuse those as JSON it cannot read, not fail)."""
    return json.dumps(value).encode()


MALFORMED = [
    b"{",
    b"[1,",
    b"}",
    b'{"a":1}garbage',
    b'{"a":1,}',
    b"{'a': 1}",
    b"NaN",
    b'{"features": {"x": NaN}}',
    b'{"features": {"x": Infinity}, "ground_truth": -Infinity}',
    b"1e999999",
    b'{"x": 1e999999}',
    b"9" * 5000,
    b'{"a": ' + b"9" * 5000 + b"}",
    b'"\\ud800"',
    b'{"\\ud800": 1}',
    b"\xff\xfe\x00",
    b"\xef\xbb\xbf{}",
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 2000 + b"1" + b"}" * 2000,
    b"[" * 33 + b"]" * 33,
    b"null",
    b"true",
    b"[]",
    b"0",
    b'""',
    b"\x00",
    b" ",
    b"\r\n",
]


def _form(fields: list[str]) -> st.SearchStrategy[tuple[bytes, bytes]]:
    pairs = st.lists(
        st.tuples(
            st.one_of(st.sampled_from(fields), st.text(max_size=6)),
            st.one_of(st.sampled_from(ODD_STRINGS), st.text(max_size=10)),
        ),
        max_size=4,
    )
    return pairs.map(
        lambda p: (
            b"application/x-www-form-urlencoded",
            urllib.parse.urlencode(p).encode(),
        )
    )


def _multipart(fields: list[str]) -> st.SearchStrategy[tuple[bytes, bytes]]:
    def build(parts: list[tuple[str, bytes, bool]], cut: int | None, boundary: str) -> Any:
        out = []
        for name, value, is_file in parts:
            disposition = f'form-data; name="{name}"'
            if is_file:
                disposition += '; filename="m.pkl"'
            out.append(
                f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
                + value
                + b"\r\n"
            )
        body = b"".join(out) + f"--{boundary}--\r\n".encode()
        if cut is not None:
            body = body[:cut]
        return f"multipart/form-data; boundary={boundary}".encode(), body

    values = st.one_of(
        st.sampled_from(MALFORMED),
        st.just(dumps({"name": "m2", "spec": SPEC})),
        st.binary(max_size=20),
    )
    names = st.one_of(
        st.sampled_from(["config", "data", "file", "model", "name", "flavor", *fields]),
        st.text(max_size=5),
    )
    return st.builds(
        build,
        st.lists(st.tuples(names, values, st.booleans()), max_size=4),
        st.one_of(st.none(), st.integers(0, 80)),
        st.sampled_from(["x", "b0undary", "-" * 70]),
    ) | st.tuples(
        st.sampled_from(
            [b"multipart/form-data", b"multipart/form-data; boundary=", b"multipart/x"]
        ),
        st.binary(max_size=40),
    )


@st.composite
def json_object(draw: st.DrawFn, fields: list[str]) -> bytes:
    """An object of the fields the routes read, each a value that fits it or one that does
    not."""
    values = _json_values(fields)
    keys = draw(st.lists(st.sampled_from(fields), max_size=5, unique=True))
    body: dict[str, Any] = {}
    for key in keys:
        seeds = SEEDS.get(key)
        if seeds and draw(st.booleans()):
            body[key] = draw(st.sampled_from(seeds))
        else:
            body[key] = draw(values)
    return dumps(body)


def _of_type(schema: Any, fields: list[str]) -> st.SearchStrategy[Any]:
    """A value of a property's declared type, often one that names something real."""
    if not isinstance(schema, dict):
        return _json_values(fields)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kinds = schema.get("type")
    kind = kinds[0] if isinstance(kinds, list) and kinds else kinds
    if kind == "string":
        return st.one_of(st.sampled_from(["m", "r", "x", "1"]), st.sampled_from(ODD_STRINGS))
    if kind == "integer":
        return st.one_of(st.integers(-2, 5), st.sampled_from(HUGE_INTS))
    if kind == "number":
        return st.one_of(st.floats(), st.integers(-2, 5))
    if kind == "boolean":
        return st.booleans()
    if kind == "object":
        return st.sampled_from([{"x": 1.0}, {}, {"a": "b"}])
    if kind == "array":
        return st.lists(_of_type(schema.get("items"), fields), max_size=3)
    return _json_values(fields)


@st.composite
def schema_object(draw: st.DrawFn, schema: dict[str, Any], fields: list[str]) -> bytes:
    """An object as the route's body schema describes it -- its required fields, a few
    optional ones, each a value that fits (a seed, or of the declared type) -- with at most
    one thing wrong: a required field left out, an unknown field, a value of another
    type."""
    properties: dict[str, Any] = schema.get("properties", {})
    required = [k for k in schema.get("required", []) if k in properties]
    optional = sorted(set(properties) - set(required))
    keys = (
        required + draw(st.lists(st.sampled_from(optional), max_size=3, unique=True))
        if optional
        else list(required)
    )
    body: dict[str, Any] = {}
    for key in keys:
        seeds = SEEDS.get(key)
        if seeds and draw(st.integers(0, 2)) > 0:
            body[key] = draw(st.sampled_from(seeds))
        else:
            body[key] = draw(_of_type(properties.get(key), fields))
    wrong = draw(st.integers(0, 5))
    if wrong == 1 and body:
        del body[draw(st.sampled_from(sorted(body)))]
    elif wrong == 2:
        body[draw(st.sampled_from(fields))] = draw(_json_values(fields))
    elif wrong == 3 and body:
        body[draw(st.sampled_from(sorted(body)))] = draw(_json_values(fields))
    return dumps(body)


def bodies(
    fields: list[str], schema: dict[str, Any] | None = None
) -> st.SearchStrategy[tuple[bytes | None, bytes]]:
    """(a content type or None, a body): as the route's schema says, half the time when it
    has one, else anything."""
    as_json = st.one_of(
        json_object(fields),
        _json_values(fields).map(dumps),
        st.sampled_from(MALFORMED),
        st.binary(max_size=30),
        st.just(b""),
    )
    ndjson = st.lists(st.one_of(json_object(fields), st.sampled_from(MALFORMED)), max_size=3).map(
        b"\n".join
    )
    json_types = st.sampled_from(
        [None, b"application/json", b"text/plain", b"application/json; charset=latin-1"]
    )
    anything = st.one_of(
        st.tuples(json_types, as_json),
        st.tuples(st.sampled_from([b"application/x-ndjson", b"text/csv"]), ndjson),
        _form(fields),
        _multipart(fields),
        st.tuples(
            st.sampled_from([b"application/octet-stream", b"\xff/\xfe", b"a" * 300, b""]),
            st.one_of(as_json, st.binary(max_size=30)),
        ),
    )
    if not schema or not schema.get("properties"):
        return anything
    fitting = st.tuples(st.sampled_from([None, b"application/json"]), schema_object(schema, fields))
    return st.one_of(fitting, anything)


# --- requests ----------------------------------------------------------------------------


def _quote(segment: str) -> str:
    if segment == "%":  # a stray percent sign, sent as it is
        return "%"
    return urllib.parse.quote(segment, safe="@~")


def segments(param: str, seeds: dict[str, list[str]]) -> st.SearchStrategy[str]:
    """A path parameter, percent-encoded: a value that names something, or an odd one."""
    return st.one_of(
        st.sampled_from(seeds.get(param, ["m"])),
        st.sampled_from(seeds.get(param, ["m"])),
        st.sampled_from(ODD_SEGMENTS),
        st.text(max_size=10),
    ).map(_quote)


DASHBOARD_FILES = ["index.html", "app.js", "style.css", "favicon.svg", "__init__.py"]


@st.composite
def paths(draw: st.DrawFn, template: str, seeds: dict[str, list[str]]) -> str:
    out = []
    for part in template.split("/"):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1].split(":")[0]
            if part.endswith(":path}"):
                pieces = draw(
                    st.lists(
                        st.one_of(
                            st.sampled_from([*DASHBOARD_FILES, "..", "%2e%2e", "%2F"]),
                            segments(name, seeds),
                        ),
                        min_size=0,
                        max_size=4,
                    )
                )
                out.append("/".join(pieces))
            else:
                out.append(draw(segments(name, seeds)))
        else:
            out.append(part)
    path = "/".join(out)
    change = draw(st.integers(0, 9))
    if change == 1:
        path = path + "/" if not path.endswith("/") else path[:-1]
    elif change == 2:
        path = path.replace("/", "//", 1)
    elif change == 3:
        path += "/" + draw(segments("extra", seeds))
    return path or "/"


@st.composite
def queries(draw: st.DrawFn, names: list[str]) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return ""
    if kind == 1:
        return draw(
            st.sampled_from(["%", "a=%FF", "=&=", "&&", "a" * 5000, "limit=1&limit=x", "%00=%00"])
        )
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from([*names, "x"]),
                st.one_of(
                    st.sampled_from(["1", "0", "-1", *ODD_SEGMENTS]),
                    st.sampled_from(HUGE_INTS).map(str),
                    st.text(max_size=8),
                ),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "FOO"]


@st.composite
def requests(
    draw: st.DrawFn,
    endpoint: Endpoint,
    *,
    fields: list[str],
    query: list[str],
    seeds: dict[str, list[str]],
    host: bytes,
    tokens: list[bytes],
) -> Request:
    """A request to the route ``method template``, mostly well-formed where it counts (a
    known host, a token that admits it) so that it reaches the handler, odd elsewhere."""
    method, template = endpoint.method.upper(), endpoint.path
    websocket = is_websocket(endpoint)
    if websocket:
        method = "GET"
    elif draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(METHODS))
    target = draw(paths(template, seeds))
    q = draw(queries(query))
    if q:
        target += "?" + q
    headers: list[tuple[bytes, bytes]] = [(b"host", draw(_hosts(host)))]
    token = draw(st.sampled_from(tokens))
    if token:
        headers.append((b"authorization", token))
    content_type, body = (
        draw(bodies(fields, endpoint.body))
        if method not in ("GET", "HEAD") or draw(st.integers(0, 5)) == 0
        else (None, b"")
    )
    if content_type is not None:
        headers.append((b"content-type", content_type))
    headers += draw(st.lists(_other_headers(host), max_size=3))
    if websocket and draw(st.integers(0, 5)) != 0:
        headers += [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", draw(st.sampled_from([WS_KEY, b"", b"x", b"\xff"]))),
            (b"sec-websocket-version", draw(st.sampled_from([b"13", b"8", b"", b"x"]))),
        ]
    length = draw(
        st.one_of(
            st.none(),
            st.none(),
            st.none(),
            st.sampled_from([b"-1", b"\xc2\xb2", b"9" * 30, b"1_0", b" 1", b"0x10", b""]),
        )
    )
    return Request(
        method=method,
        target=target.encode(),
        headers=headers,
        body=body,
        websocket=websocket,
        chunks=draw(st.sampled_from([1, 1, 2])),
        length=length,
    )


def _hosts(host: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(host),
        st.just(host),
        st.just(host),
        st.sampled_from(
            [b"evil.example", b"", b"127.0.0.1:99999", b"[::1", b"localhost:x", b"a" * 300, b"\xff"]
        ),
    )


def _other_headers(host: bytes) -> st.SearchStrategy[tuple[bytes, bytes]]:
    own = b"http://" + host
    return st.one_of(
        st.tuples(
            st.just(b"origin"),
            st.sampled_from([own, b"http://evil.example", b"null", b"", b"\xff", b"http://[::1"]),
        ),
        st.tuples(
            st.just(b"sec-fetch-site"), st.sampled_from([b"cross-site", b"same-origin", b"x"])
        ),
        st.tuples(
            st.sampled_from([b"x-forwarded-for", b"forwarded", b"x-forwarded-proto"]),
            st.sampled_from([b"1.2.3.4", b"for=evil", b"\xff", b"", b"https", b"a" * 300]),
        ),
        st.tuples(st.just(b"last-event-id"), st.sampled_from([b"1", b"\xc2\xb2", b"9" * 40, b"x"])),
        st.tuples(st.just(b"accept"), st.sampled_from([b"text/event-stream", b"*/*", b"\xff"])),
        st.tuples(st.just(b"accept-encoding"), st.sampled_from([b"gzip", b"br", b"identity;q=0"])),
        st.tuples(
            st.just(b"cookie"), st.sampled_from([b"a=b", b"=", b"\xff", b"riverbed_token=x"])
        ),
    )


# --- sending -----------------------------------------------------------------------------


def _headers_for(request: Request) -> list[tuple[bytes, bytes]]:
    headers = list(request.headers)
    if request.length is not None:
        headers.append((b"content-length", request.length))
    elif request.body or request.method not in ("GET", "HEAD"):
        headers.append((b"content-length", str(len(request.body)).encode()))
    return headers


async def call_asgi(app: Any, request: Request, *, timeout: float = 60) -> Answer:
    """``request`` through the ASGI app, its scope as uvicorn makes one."""
    raw_path, _, query = request.target.partition(b"?")
    path = raw_path.decode("latin-1")
    if "%" in path:
        path = urllib.parse.unquote(path)
    scope = {
        "type": "websocket" if request.websocket else "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "ws" if request.websocket else "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": _headers_for(request),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    if request.websocket:
        scope["extensions"] = {"websocket.http.response": {}}
    body = request.body
    cut = len(body) // 2 if request.chunks == 2 else len(body)
    messages: list[dict[str, Any]] = (
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": body.decode("utf-8", "replace")},
        ]
        if request.websocket
        else [
            {"type": "http.request", "body": body[:cut], "more_body": cut < len(body)},
            *(
                [{"type": "http.request", "body": body[cut:], "more_body": False}]
                if cut < len(body)
                else []
            ),
        ]
    )
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    answer = Answer(0, {}, b"")

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await done  # the client stays until the answer is in
        return (
            {"type": "websocket.disconnect", "code": 1000}
            if request.websocket
            else {"type": "http.disconnect"}
        )

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    async def send(message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("http.response.start", "websocket.http.response.start"):
            answer.status = message["status"]
            answer.headers = {
                k.decode("latin-1").lower(): v.decode("latin-1")
                for k, v in message.get("headers", [])
            }
            if answer.status == 200 and answer.headers.get("content-type", "").startswith(
                "text/event-stream"
            ):
                finish()
        elif kind in ("http.response.body", "websocket.http.response.body"):
            answer.body += message.get("body", b"")
            if not message.get("more_body", False):
                finish()
        elif kind == "websocket.accept":
            answer.status = 101
        elif kind == "websocket.send":
            answer.body = message.get("bytes") or message.get("text", "").encode()
            finish()
        elif kind == "websocket.close":
            code = int(message.get("code", 1000))
            if answer.status != 101:  # refused before the handshake: 4000 + the status
                answer.status = code - 4000 if code >= 4000 else 403
            answer.headers["x-websocket-close"] = str(code)
            finish()

    task = asyncio.ensure_future(app(scope, receive, send))
    try:
        await asyncio.wait_for(asyncio.shield(_first(task, done)), timeout)
    except TimeoutError:
        answer.status = 0  # no answer at all: reported as a problem
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    return answer


async def _first(task: asyncio.Future[Any], done: asyncio.Future[None]) -> None:
    await asyncio.wait({task, done}, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and not done.done():
        task.result()  # raises what the app raised


def raw_request(request: Request) -> bytes:
    """``request`` as the bytes a client writes."""
    head = [request.method.encode() + b" " + request.target + b" HTTP/1.1"]
    head += [name + b": " + value for name, value in _headers_for(request)]
    return b"\r\n".join(head) + b"\r\n\r\n" + request.body


def call_socket(port: int, request: Request, *, timeout: float = 30) -> Answer:
    """``request`` over a new connection to a server on ``port``: the first response (an
    event stream's or a WebSocket's head only). A server that waits for a body that will not
    come (a Content-Length past the body) is answered by closing our side."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw_request(request))
        if request.length is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = _recv(sock)
            if not chunk:
                if not data:
                    return Answer(-1, {}, b"")  # closed without a word
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
        if status == 101 or headers.get("content-type", "").startswith("text/event-stream"):
            return Answer(status, headers, b"")
        if request.method == "HEAD" or status in (204, 304):
            return Answer(status, headers, b"")
        if "content-length" in headers:
            want = int(headers["content-length"])
            while len(rest) < want:
                chunk = _recv(sock)
                if not chunk:
                    break
                rest += chunk
            return Answer(status, headers, rest[:want])
        if headers.get("transfer-encoding") == "chunked":
            while not rest.endswith(b"0\r\n\r\n"):
                chunk = _recv(sock)
                if not chunk:
                    break
                rest += chunk
            return Answer(status, headers, _unchunk(rest))
        while chunk := _recv(sock):
            rest += chunk
        return Answer(status, headers, rest)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out += data[:n]
        data = data[n + 2 :]
    return out


# --- judging -----------------------------------------------------------------------------


def problem(request: Request, answer: Answer) -> str | None:
    """What is wrong with ``answer`` to ``request``, if anything: no answer, a 5xx, or an
    error that is not the project's JSON error."""
    where = request.label()
    if answer.status == 0:
        return f"{where}: no answer"
    if answer.status == -1:
        if request.length is not None:  # a body shorter than it said, cut off by the client
            return None
        return f"{where}: the connection closed without an answer"
    if answer.status >= 500:
        return f"{where}: {answer.status} {answer.body[:300]!r}"
    close = answer.headers.get("x-websocket-close")
    if close is not None:  # a WebSocket closed: 1011 is the server's failure
        return f"{where}: the WebSocket closed with {close}" if close == "1011" else None
    if answer.status == 101:  # a WebSocket's answer to the body sent as a message
        if answer.body and b'"server_error"' in answer.body:
            return f"{where}: the WebSocket answered {answer.body[:300]!r}"
        return None
    if answer.status < 400:
        return None
    if request.method == "HEAD":
        return None
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return f"{where}: {answer.status} is not JSON: {answer.headers} {answer.body[:300]!r}"
    if open_inference(request.target):
        return oip_problem(where, answer)
    try:
        error = orjson.loads(answer.body)["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
        assert "detail" in error
    except Exception:
        return f"{where}: {answer.status} without the error shape: {answer.body[:300]!r}"
    if error["code"] == "server_error":
        return f"{where}: {answer.status} server_error"
    return None


def open_inference(target: bytes) -> bool:
    path = target.split(b"?", 1)[0]
    return path == b"/v2" or path.startswith(b"/v2/")


def oip_problem(where: str, answer: Answer) -> str | None:
    """The Open Inference Protocol's routes answer ``{"error": "<message>", "code", ...}``
    (docs/protocols.md); the HTTP layer's own refusals before any route (a malformed
    request) keep riverbed's shape."""
    try:
        payload = orjson.loads(answer.body)
        error = payload["error"]
        if isinstance(error, dict):
            code = error["code"]
            assert isinstance(error["message"], str) and error["message"]
        else:
            code = payload["code"]
            assert isinstance(error, str) and error
        assert isinstance(code, str) and code
    except Exception:
        return f"{where}: {answer.status} without the error shape: {answer.body[:300]!r}"
    if code == "server_error":
        return f"{where}: {answer.status} server_error"
    return None
