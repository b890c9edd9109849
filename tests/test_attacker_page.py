"""An attacker's web page against a default ``riverbed serve``, in a real browser (Debian's
headless Chromium, driven by Playwright as in tests/test_dashboard_browser.py).

The page is served from another local port and tries what docs/security.md's threat model
says a page can try: a pickled upload on every route that takes one (a pickle whose
unpickling would make a marker directory), a learn by ``fetch`` with a ``text/plain`` body
(no preflight), a WebSocket learn, and, by DNS rebinding, all of them again from a page whose
origin is the server's own address under a foreign name (``--host-resolver-rules`` maps the
name to 127.0.0.1; the page is first served by the attacker's server on the port the riverbed
server then takes, exactly as a rebound name would send it). Afterwards nothing is stored,
nothing was unpickled, the model's counts are as they were, and the dashboard on its own
origin still works.

Chromium's own Private/Local Network Access checks could stop such a page before riverbed
sees it; they are turned off here, so that what is shown is riverbed's own defence, and each
``fetch`` the page sends is seen answered (a network error would mean the browser stopped
it).
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from river import datasets

from riverbed.server.routing import Endpoint
from tests.helpers import Server, free_port
from tests.test_dashboard_browser import chromium
from tests.test_guard import SPEC
from tests.test_pickle_rule import PICKLE_ENDPOINTS, Marker

pytestmark = pytest.mark.slow

REBOUND = "rebind.attacker.test"  # the attacker's name, re-pointed at 127.0.0.1
ARGS = [
    f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
    "--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessRespectPreflightResults,"
    "BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights",
]
PAGE = b"<!doctype html><title>cute cats</title><p>nothing to see here</p>"
PHISHING = list(datasets.Phishing().take(30))


def browser_upload(endpoint: Endpoint) -> tuple[str, str]:
    """Where a page sends a pickled upload on ``endpoint`` and as what body: ``raw`` (the
    pickle as a text/plain body), ``json`` (riverbed's JSON as text/plain), ``multipart``
    (a FormData with the file) or ``form`` (URL-encoded fields): all of them bodies a page
    sends without a preflight."""
    routes = {
        "/v1/models/{name}/versions": ("/v1/models/up/versions", "json"),
        "/api/model": ("/api/model", "raw"),
        "/api/model/{name}": ("/api/model/up", "raw"),
        "/api/model/{flavor}/": ("/api/model/binary/", "raw"),
        "/api/model/{flavor}/{name}/": ("/api/model/binary/up/", "raw"),
        "/api/v1/models/": ("/api/v1/models/", "multipart"),
        "/models/": ("/models/", "form"),
        "/models": ("/models", "form"),
    }
    assert endpoint.path in routes, f"{endpoint.path} takes pickles: give the page a body for it"
    return routes[endpoint.path]


# The attacks, run inside a page. `base` is the server's address ("" on the rebound page: its
# own origin), `mode` the fetch mode. Each result: what was sent, whether the browser got an
# answer, and (when the page may read it) the status and error code.
ATTACK = """
async ({base, mode, uploads, pickle64, features}) => {
  const bytes = Uint8Array.from(atob(pickle64), (c) => c.charCodeAt(0));
  const results = [];
  async function send(label, path, init) {
    const result = {label, path, answered: false, status: null, code: null};
    try {
      const response = await fetch(base + path, {mode, cache: "no-store", ...init});
      result.answered = true;
      if (response.type !== "opaque") {
        result.status = response.status;
        try { result.code = (await response.json()).error.code; } catch (e) {}
      }
    } catch (error) {
      result.error = String(error);
    }
    results.push(result);
  }
  for (const [path, kind] of uploads) {
    let body;
    if (kind === "raw") {
      body = new Blob([bytes], {type: "text/plain"});
    } else if (kind === "json") {
      body = JSON.stringify({artifact: pickle64, format: "pickle"});
    } else if (kind === "multipart") {
      body = new FormData();
      body.append("name", "up");
      body.append("file", new Blob([bytes]), "model.pkl");
    } else {
      body = new URLSearchParams({name: "up", model_bytes: pickle64});
    }
    const headers = kind === "json" ? {"Content-Type": "text/plain"} : {};
    await send("pickle", path, {method: "POST", body, headers});
  }
  const learn = JSON.stringify({features, ground_truth: true});
  await send("learn", "/v1/models/m/learn", {method: "POST", body: learn,
                                              headers: {"Content-Type": "text/plain"}});
  await send("chantilly learn", "/api/learn", {method: "POST",
    body: JSON.stringify({model: "m", features, ground_truth: true}),
    headers: {"Content-Type": "text/plain"}});
  await send("predict", "/v1/models/m/predict", {method: "POST",
    body: JSON.stringify({features}), headers: {"Content-Type": "text/plain"}});
  await send("read", "/v1/models", {method: "GET"});
  const wsBase = (base || location.origin).replace(/^http/, "ws");
  const ws = await new Promise((resolve) => {
    const socket = new WebSocket(wsBase + "/v1/ws");
    const seen = {label: "websocket", opened: false, messages: []};
    const timer = setTimeout(() => resolve(seen), 5000);
    socket.onopen = () => {
      seen.opened = true;
      socket.send(JSON.stringify({id: 1, op: "learn", model: "m", features, ground_truth: true}));
    };
    socket.onmessage = (event) => { seen.messages.push(event.data); };
    socket.onclose = (event) => { seen.close = event.code; clearTimeout(timer); resolve(seen); };
  });
  return {results, ws};
}
"""


class AttackerSite:
    """The attacker's web server: the same harmless-looking page on every path."""

    def __init__(self, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop, and give the port back (the browser's connections included)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@contextlib.contextmanager
def default_environment() -> Iterator[None]:
    """The server's environment without the suite's RIVERBED_* settings: a default server."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("RIVERBED_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def state(http: httpx.Client) -> dict[str, Any]:
    """What the attacks must not change: models, their versions, m's counts and metrics,
    chantilly's default model."""
    models = http.get("/v1/models").json()["models"]
    return {
        "models": sorted(m["name"] for m in models),
        "versions": {
            m["name"]: len(http.get(f"/v1/models/{m['name']}/versions").json()["versions"])
            for m in models
        },
        "stats": {
            k: http.get("/v1/models/m/stats").json()[k] for k in ("n_predictions", "n_learns")
        },
        "metrics": http.get("/v1/models/m/metrics").json(),
        "chantilly": http.get("/api/init").json(),
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(*ARGS) as launched:
        yield launched


def attack(page: Page, base: str, mode: str, marker: Path) -> dict[str, Any]:
    uploads = [browser_upload(e) for e in PICKLE_ENDPOINTS]
    result: dict[str, Any] = page.evaluate(
        ATTACK,
        {
            "base": base,
            "mode": mode,
            "uploads": uploads,
            "pickle64": base64.b64encode(pickle.dumps(Marker(marker))).decode(),
            "features": PHISHING[0][0],
        },
    )
    return result


def test_an_attackers_page_changes_nothing_and_the_dashboard_still_works(
    browser: Browser, tmp_path: Path
) -> None:
    port = free_port()
    marker = tmp_path / "pwned"
    site = AttackerSite(port)  # first the attacker's server has the port...
    rebound = browser.new_page()
    rebound.goto(f"http://{REBOUND}:{port}/")
    assert "nothing to see here" in rebound.content()
    site.close()
    with default_environment():  # ...then riverbed, under the name the page came from
        server = Server(str(tmp_path / "server.db"), port).start()
    elsewhere = AttackerSite(free_port())
    try:
        http = httpx.Client(base_url=server.url, timeout=30)
        created = http.post("/v1/models", json={"name": "m", "spec": SPEC})
        assert created.status_code == 201, created.text
        assert http.post("/api/init", json={"flavor": "binary"}).status_code == 201
        for x, y in PHISHING:
            predicted = http.post("/v1/models/m/predict", json={"features": x})
            body = {"id": predicted.json()["id"], "ground_truth": y}
            assert http.post("/v1/models/m/learn", json=body).status_code == 200
        before = state(http)

        # A page on another local port: every request is sent (and answered), none is read.
        cross = browser.new_page()
        cross.goto(f"http://127.0.0.1:{elsewhere.httpd.server_port}/")
        found = attack(cross, server.url, "no-cors", marker)
        assert len(found["results"]) == len(PICKLE_ENDPOINTS) + 4
        for result in found["results"]:
            assert result["answered"], result  # riverbed answered it: the browser let it go
        assert not found["ws"]["opened"], found["ws"]  # refused before it was accepted
        assert state(http) == before
        assert not marker.exists()

        # The rebound page is on the server's address: it may read what it is answered.
        found = attack(rebound, "", "cors", marker)
        for result in found["results"]:
            assert result["answered"], result
            assert (result["status"], result["code"]) == (400, "host_not_allowed"), result
        assert not found["ws"]["opened"], found["ws"]
        assert state(http) == before
        assert not marker.exists()

        # The dashboard, on its own origin, still shows the model and still drives it; even
        # it may not upload a pickle (auth off: pickle_origins is empty).
        dashboard = browser.new_page()
        dashboard.goto(f"{server.url}/")
        card = dashboard.locator('[data-model="m"]')
        expect(card.locator(".badge")).to_have_text("binary", timeout=30_000)
        expect(card).to_contain_text("Accuracy")
        own = dashboard.evaluate(
            """async ({features, pickle64}) => {
                const learn = await fetch("/v1/models/m/learn", {method: "POST",
                    headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({features, ground_truth: true})});
                const upload = await fetch("/v1/models/up/versions", {method: "POST",
                    headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({artifact: pickle64, format: "pickle"})});
                const opened = await new Promise((resolve) => {
                    const socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/v1/ws");
                    socket.onopen = () => { socket.close(); resolve(true); };
                    socket.onclose = () => resolve(false);
                });
                return {learn: learn.status, upload: upload.status, opened,
                        code: (await upload.json()).error.code};
            }""",
            {
                "features": PHISHING[0][0],
                "pickle64": base64.b64encode(pickle.dumps(Marker(marker))).decode(),
            },
        )
        # its own WebSocket opens: the attacker's was refused by riverbed, not by the browser
        assert own == {
            "learn": 200,
            "upload": 403,
            "opened": True,
            "code": "browser_pickle_refused",
        }
        after = state(http)
        assert after["stats"]["n_learns"] == before["stats"]["n_learns"] + 1
        assert after["models"] == before["models"] and after["versions"] == before["versions"]
        assert not marker.exists()
        http.close()
    finally:
        elsewhere.close()
        server.stop()
