"""Webhooks (riverbed.webhooks): deliveries to a real HTTP receiver on a local port.

Each test runs a receiver (http.server in a thread) and checks what reached it: signed
bodies that verify with the subscription's secret, the kinds subscribed and no others, a
receiver that was down getting its deliveries once it is up (also across an engine's
restart), attempts running out, retries, pings; refusals that store nothing; the HTTP API,
both clients and the CLI in a subprocess. Waits poll with a generous deadline, never a
fixed sleep.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from river import linear_model

from riverbed import AsyncClient, Client, Engine, WebhookNotFound, specs
from riverbed.exceptions import Conflict, InvalidInput
from riverbed.server import create_app
from riverbed.webhooks import EVENT_KINDS, HIGH_VOLUME, JOB_FINISHED, expand_kinds, signature
from tests.helpers import STORES, Server, database, free_port, new_database, riverbed

DEADLINE = 60.0  # seconds a poll waits before the test fails


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every POST (headers, body) and answers with
    ``status`` (settable); ``hold`` keeps each answer back until it is set."""

    def __init__(self, port: int | None = None, status: int = 204) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.status = status
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                receiver.arrived.set()
                if receiver.hold is not None:
                    receiver.hold.wait(DEADLINE)
                self.send_response(receiver.status)
                answer = b"not today" if receiver.status >= 300 else b""
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            if self.hold is not None:
                self.hold.set()
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = None

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body)["event"] for _, body in self.received]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events()]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    try:
        yield started
    finally:
        started.stop()


def wait_for(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something true (returned), for up to DEADLINE s."""
    deadline = time.monotonic() + DEADLINE
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {DEADLINE} s for {what}")
        time.sleep(0.02)


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (docs/webhooks.md): the HMAC of the raw body, compared in
    constant time with the header."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-riverbed-signature"])


def test_the_docs_receiver_check_is_the_one_these_tests_use() -> None:
    """docs/webhooks.md's verifying function, run: it accepts a signed body and refuses a
    changed body or another secret."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "webhooks.md").read_text()
    code = next(b for b in text.split("```python")[1:] if "def verified" in b).split("```")[0]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    body = b'{"delivery": "whd_1"}'
    header = signature("s" * 20, body)
    assert namespace["verified"]("s" * 20, body, header)
    assert not namespace["verified"]("s" * 20, body + b" ", header)
    assert not namespace["verified"]("t" * 20, body, header)
    assert verified("s" * 20, {"x-riverbed-signature": header}, body)


def model() -> Any:
    return linear_model.LinearRegression()


def settled(engine: Engine, webhook_id: str) -> bool:
    """Every delivery of the webhook delivered or failed: none pending."""
    return engine.webhooks.get(webhook_id)["deliveries"]["pending"] == 0


@pytest.mark.parametrize("kind", STORES)
def test_every_subscribed_event_arrives_signed_once(
    kind: str, tmp_path: Path, receiver: Receiver
) -> None:
    """'*' gets every event of a webhook kind the engine published, once, signed, and no
    prediction or learn; a second subscription gets only the kind it asked for."""
    other = Receiver().start()
    try:
        with database(kind, tmp_path) as db, Engine(db) as engine:
            everything = engine.webhooks.subscribe(receiver.url, ["*"], description="all")
            deleted = engine.webhooks.subscribe(other.url, ["model.deleted"], secret="s" * 20)
            assert deleted["secret"] == "s" * 20
            assert everything["secret"].startswith("whsec_")
            assert "secret" not in engine.webhooks.get(everything["id"])
            engine.create_model("m", model())
            p = engine.predict("m", {"x": 1.0})
            engine.learn("m", ground_truth=2.0, id=p["id"])
            engine.learn("m", {"x": 2.0}, 4.0)
            engine.update_model("m", description="a line")
            engine.set_alias("m", "production", 1)
            engine.delete_model("m")
            # events follow their commit: model.deleted may come just after delete_model
            wait_for(
                lambda: any(e.type == "model.deleted" for e in engine.events.recent()),
                "model.deleted on the bus",
            )
            published = [e for e in engine.events.recent() if e.type in EVENT_KINDS]
            assert {"model.created", "model.updated", "alias.moved"} <= {e.type for e in published}
            wait_for(
                lambda: len(receiver.received) >= len(published) and other.received,
                "every delivery",
            )
            wait_for(lambda: settled(engine, everything["id"]), "the deliveries of '*'")
            wait_for(lambda: settled(engine, deleted["id"]), "the model.deleted delivery")
            log = engine.webhooks.deliveries(everything["id"])
            other_log = engine.webhooks.deliveries(deleted["id"])

        assert sorted(e["id"] for e in receiver.events()) == sorted(e.id for e in published)
        assert sorted(receiver.events(), key=lambda e: e["id"]) == [
            e.to_dict() for e in sorted(published, key=lambda e: e.id)
        ]
        assert not set(receiver.types()) & set(HIGH_VOLUME)
        assert other.types() == ["model.deleted"]
        for headers, body in receiver.received:
            payload = json.loads(body)
            assert verified(everything["secret"], headers, body)
            assert not verified(deleted["secret"], headers, body)
            assert headers["x-riverbed-event"] == payload["event"]["type"]
            assert headers["x-riverbed-delivery"] == payload["delivery"]
            assert payload["webhook"] == everything["id"]
            assert headers["content-type"] == "application/json"
        assert verified(deleted["secret"], *other.received[0])
        assert {d["status"] for d in log} == {"delivered"}
        assert {d["id"] for d in log} == {h["x-riverbed-delivery"] for h, _ in receiver.received}
        assert all(d["attempts"][0]["status_code"] == 204 for d in log)
        assert [d["event"] for d in other_log] == ["model.deleted"]
    finally:
        other.stop()


def test_kinds_and_wildcards() -> None:
    assert expand_kinds(["*"]) == frozenset(EVENT_KINDS)
    assert expand_kinds(["job.finished"]) == frozenset(JOB_FINISHED)
    assert "job.progress" not in expand_kinds(["job.*"])
    assert expand_kinds(["job.*"]) == {k for k in EVENT_KINDS if k.startswith("job.")}
    assert expand_kinds(["version.*", "alias.moved"]) == {
        "version.created",
        "version.updated",
        "version.deleted",
        "alias.moved",
    }


def test_job_finished_gets_the_end_of_a_job_only(tmp_path: Path, receiver: Receiver) -> None:
    rows = [{"x": float(i), "y": 2.0 * i} for i in range(50)]
    with Engine(str(tmp_path / "jobs.db")) as engine:
        hook = engine.webhooks.subscribe(receiver.url, ["job.finished"])
        job = engine.train("j", rows, target="y", spec=specs.to_spec(model()))
        assert engine.jobs.wait(job["id"], DEADLINE)["status"] == "succeeded"
        kinds = {e.type for e in engine.events.recent()}
        assert {"job.queued", "job.running", "job.succeeded"} <= kinds
        wait_for(lambda: receiver.received, "the job's end")
        wait_for(lambda: settled(engine, hook["id"]), "the delivery's outcome")
    assert receiver.types() == ["job.succeeded"]
    assert receiver.events()[0]["data"]["job"] == job["id"]


BAD_URLS = [
    ("ftp://example.com/hook", "http:// or https://"),
    ("example.com/hook", "http:// or https://"),
    ("http:///hook", "no host"),
    ("http://user:pw@example.com/hook", "credentials"),
    ("http://example.com/hook#part", "fragment"),
    ("http://example.com/a hook", "whitespace"),
    ("http://example.com/\nhook", "whitespace"),
    ("http://example.com:99999/hook", "port"),
    ("http://example.com:0/hook", "port"),
    ("http://example.com:http/hook", "port"),
    ("http://example.com/" + "a" * 2048, "2048"),
    ("http://0.0.0.0:8000/hook", "0.0.0.0"),
    ("http://[::]:8000/hook", "::"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://255.255.255.255/hook", "broadcast"),
    ("", "missing"),
]
BAD_KINDS: list[tuple[Any, str]] = [
    (["predict"], "not sent to webhooks"),
    (["learn"], "not sent to webhooks"),
    (["label"], "not sent to webhooks"),
    (["audit"], "not sent to webhooks"),
    (["job.progress"], "not sent to webhooks"),
    (["model.created", "predict"], "not sent to webhooks"),
    (["model.exploded"], "unknown event kind"),
    (["predict.*"], "unknown event kind"),
    ([], "non-empty list"),
    ("*", "non-empty list"),  # over HTTP a string is not a list
    ([3], "a string"),
    (None, "non-empty list"),
]


@pytest.mark.parametrize("kind", STORES)
def test_bad_urls_and_kinds_are_refused_and_nothing_is_stored(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as db, Engine(db) as engine:
        for url, says in BAD_URLS:
            with pytest.raises(InvalidInput, match=says.replace("*", r"\*")):
                engine.webhooks.subscribe(url, ["*"])
        for events, says in BAD_KINDS:
            if isinstance(events, str):
                continue  # the engine takes one kind as a string
            with pytest.raises(InvalidInput, match=says):
                engine.webhooks.subscribe("http://127.0.0.1:9/hook", events)
        with pytest.raises(InvalidInput, match="secret"):
            engine.webhooks.subscribe("http://127.0.0.1:9/hook", ["*"], secret="short")
        assert engine.webhooks.list() == []
        assert engine.store.webhook_store().list_webhooks() == []


async def test_http_refusals_are_4xx_json_and_change_nothing(api: httpx.AsyncClient) -> None:
    for url, says in BAD_URLS:
        response = await api.post("/v1/webhooks", json={"url": url, "events": ["*"]})
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"]["code"] == "invalid_input"
        assert says in response.json()["error"]["message"]
    for events, says in BAD_KINDS:
        body = {"url": "http://127.0.0.1:9/hook", "events": events}
        response = await api.post("/v1/webhooks", json=body)
        assert response.status_code == 400, (events, response.text)
        assert says in response.json()["error"]["message"]
    for body in (
        {"url": "http://127.0.0.1:9/hook"},
        {"events": ["*"]},
        {"url": "http://127.0.0.1:9/hook", "events": ["*"], "colour": "red"},
        {"url": "http://127.0.0.1:9/hook", "events": ["*"], "secret": 12345678901234567},
        {"url": "http://127.0.0.1:9/hook", "events": ["*"], "description": ["x"]},
        [1, 2],
    ):
        response = await api.post("/v1/webhooks", json=body)
        assert response.status_code == 400, (body, response.text)
    response = await api.post("/v1/webhooks", content=b"{not json")
    assert response.status_code == 400
    assert (await api.get("/v1/webhooks")).json() == {"webhooks": []}
    for method, path in (
        ("GET", "/v1/webhooks/wh_nope"),
        ("DELETE", "/v1/webhooks/wh_nope"),
        ("GET", "/v1/webhooks/wh_nope/deliveries"),
        ("POST", "/v1/webhooks/wh_nope/ping"),
        ("POST", "/v1/webhooks/wh_nope/deliveries/whd_nope/retry"),
    ):
        response = await api.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "webhook_not_found"
    created = await api.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["model.drift"]}
    )
    assert created.status_code == 201
    hook = created.json()["id"]
    for query in ("status=lost", "limit=0", "limit=x", "colour=red"):
        response = await api.get(f"/v1/webhooks/{hook}/deliveries?{query}")
        assert response.status_code == 400, query
    response = await api.post(f"/v1/webhooks/{hook}/deliveries/whd_nope/retry")
    assert response.status_code == 404
    assert (await api.get(f"/v1/webhooks/{hook}/deliveries")).json()["deliveries"] == []


@pytest.mark.parametrize("kind", STORES)
def test_a_receiver_down_then_up_gets_its_deliveries(kind: str, tmp_path: Path) -> None:
    down = Receiver()  # its port, nothing listening yet
    with (
        database(kind, tmp_path) as db,
        Engine(db, webhook_backoff=0.05, webhook_attempts=1000) as engine,
    ):
        hook = engine.webhooks.subscribe(down.url, ["model.created"])
        engine.create_model("m", model())

        def failed_twice() -> Any:
            found = engine.webhooks.deliveries(hook["id"])
            return found if found and len(found[0]["attempts"]) >= 2 else None

        (delivery,) = wait_for(failed_twice, "two failed attempts")
        assert delivery["status"] == "pending"
        assert all(a["status_code"] is None and a["error"] for a in delivery["attempts"])
        assert delivery["next_at"] is not None
        down.start()
        try:
            wait_for(lambda: settled(engine, hook["id"]), "the delivery once the receiver is up")
        finally:
            down.stop()
        (delivery,) = engine.webhooks.deliveries(hook["id"])
    assert delivery["status"] == "delivered"
    assert delivery["attempts"][-1]["status_code"] == 204
    assert all(a["error"] for a in delivery["attempts"][:-1])
    assert down.types() == ["model.created"]


def test_attempts_run_out_then_a_retry_delivers(tmp_path: Path, receiver: Receiver) -> None:
    receiver.status = 500
    with Engine(str(tmp_path / "r.db"), webhook_backoff=0.01, webhook_attempts=3) as engine:
        hook = engine.webhooks.subscribe(receiver.url, ["model.*"])
        engine.create_model("m", model())
        (delivery,) = wait_for(
            lambda: engine.webhooks.deliveries(hook["id"], status="failed"),
            "the delivery to fail",
        )
        assert engine.webhooks.deliveries(hook["id"], status="delivered") == []
        assert delivery["tries"] == 3 and delivery["next_at"] is None
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500]
        assert [a["error"] for a in delivery["attempts"]] == ["HTTP 500"] * 3
        assert delivery["attempts"][0]["response"] == "not today"
        assert len(receiver.received) == 3
        assert len({body for _, body in receiver.received}) == 1  # the same bytes each time
        first = [a["at"] for a in delivery["attempts"]]
        assert first == sorted(first)

        receiver.status = 200
        retried = engine.webhooks.retry(hook["id"], delivery["id"])
        assert retried["status"] == "delivered" and retried["tries"] == 1
        assert [a["status_code"] for a in retried["attempts"]] == [500, 500, 500, 200]
        assert engine.webhooks.get(hook["id"])["deliveries"] == {
            "pending": 0,
            "delivered": 1,
            "failed": 0,
        }
        with pytest.raises(WebhookNotFound):
            engine.webhooks.retry(hook["id"], "whd_nope")
    assert len(receiver.received) == 4
    assert receiver.received[3][1] == receiver.received[0][1]


class Interleaving:
    """Drives a retry against the dispatcher's worker, step by step: the worker is held right
    after its save of a delivery in ``status`` (committed: a reader sees it) and before it
    lets the delivery go; ``waiting`` is set once the retry thread waits for the worker."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch, status: str) -> None:
        self.saved = threading.Event()
        self.go = threading.Event()
        self.waiting = threading.Event()
        self.answer: dict[str, Any] = {}
        self.retrier: threading.Thread | None = None
        webhooks = engine.webhooks
        save, wait = webhooks.store.save_delivery, webhooks._cond.wait

        def held_save(delivery: Any) -> Any:
            future = save(delivery)
            if delivery.status == status and threading.current_thread() is not self.retrier:
                future.result()
                self.saved.set()
                self.go.wait(DEADLINE)
            return future

        def noted_wait(timeout: float | None = None) -> bool:
            if threading.current_thread() is self.retrier:
                self.waiting.set()
            return wait(timeout)

        monkeypatch.setattr(webhooks.store, "save_delivery", held_save)
        monkeypatch.setattr(webhooks._cond, "wait", noted_wait)

    def retry(self, engine: Engine, hook_id: str, delivery_id: str) -> None:
        def run() -> None:
            try:
                self.answer["delivery"] = engine.webhooks.retry(hook_id, delivery_id)
            except Exception as exc:
                self.answer["error"] = exc

        self.retrier = threading.Thread(target=run)
        self.retrier.start()

    def wait(self) -> None:
        """Until the retry waits for the worker (or has already answered)."""
        retrier = self.retrier
        assert retrier is not None
        wait_for(lambda: self.waiting.is_set() or not retrier.is_alive(), "the retry")

    def settle(self) -> dict[str, Any]:
        """Let the worker go once the retry waits for it; the retry's answer."""
        assert self.retrier is not None
        self.wait()
        self.go.set()
        self.retrier.join(DEADLINE)
        assert "error" not in self.answer, self.answer
        return self.answer["delivery"]


def test_a_retry_as_the_worker_lets_a_failed_delivery_go_delivers_it_once(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user sees the delivery failed (the worker's save is committed) and retries before
    the worker has let it go: the retry waits for that, then delivers it, once."""
    receiver.status = 500
    with Engine(str(tmp_path / "r.db"), webhook_backoff=0.01, webhook_attempts=2) as engine:
        steps = Interleaving(engine, monkeypatch, "failed")
        hook = engine.webhooks.subscribe(receiver.url, ["model.created"])
        engine.create_model("m", model())
        wait_for(steps.saved.is_set, "the worker to save the delivery failed")
        (delivery,) = engine.webhooks.deliveries(hook["id"], status="failed")
        receiver.status = 200
        steps.retry(engine, hook["id"], delivery["id"])
        retried = steps.settle()
        assert retried["status"] == "delivered" and retried["tries"] == 1
        assert [a["status_code"] for a in retried["attempts"]] == [500, 500, 200]
        assert engine.webhooks.get(hook["id"])["deliveries"]["delivered"] == 1
    assert len(receiver.received) == 3


def test_a_retry_during_an_attempt_that_delivers_sends_nothing_more(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry while the worker's POST is under way waits for it; that POST delivered the
    delivery, so the retry answers with it delivered and the receiver gets it once."""
    receiver.status, receiver.hold = 200, threading.Event()
    with Engine(str(tmp_path / "d.db"), webhook_timeout=DEADLINE) as engine:
        steps = Interleaving(engine, monkeypatch, "delivered")
        hook = engine.webhooks.subscribe(receiver.url, ["model.created"])
        engine.create_model("m", model())
        wait_for(receiver.arrived.is_set, "the worker's POST")
        (delivery,) = engine.webhooks.deliveries(hook["id"], status="pending")
        steps.retry(engine, hook["id"], delivery["id"])
        steps.wait()
        receiver.hold.set()
        retried = steps.settle()
        assert retried["status"] == "delivered" and retried["tries"] == 1
        assert engine.webhooks.get(hook["id"])["deliveries"]["delivered"] == 1
    assert len(receiver.received) == 1


def test_a_retry_that_outwaits_the_attempt_under_way_is_a_conflict(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the attempt under way has not ended within webhook_timeout (and the grace) the
    retry gives up with a Conflict, nothing sent; the worker's outcome stands."""
    monkeypatch.setattr("riverbed.webhooks._SAVE_GRACE", 0.0)
    with Engine(str(tmp_path / "c.db"), webhook_timeout=0.2) as engine:
        steps = Interleaving(engine, monkeypatch, "delivered")
        hook = engine.webhooks.subscribe(receiver.url, ["model.created"])
        engine.create_model("m", model())
        wait_for(steps.saved.is_set, "the worker to save the delivery delivered")
        (delivery,) = engine.webhooks.deliveries(hook["id"], status="delivered")
        with pytest.raises(Conflict) as refused:
            engine.webhooks.retry(hook["id"], delivery["id"])
        assert refused.value.detail == {"delivery": delivery["id"]}
        steps.go.set()
        wait_for(lambda: not engine.webhooks._in_flight, "the worker to let the delivery go")
        again = engine.webhooks.retry(hook["id"], delivery["id"])  # by hand: sent again
        assert again["status"] == "delivered" and again["tries"] == 1
    assert len(receiver.received) == 2


def test_ping(tmp_path: Path, receiver: Receiver) -> None:
    with Engine(str(tmp_path / "p.db"), webhook_backoff=3600) as engine:
        hook = engine.webhooks.subscribe(receiver.url, ["model.drift"])
        ping = engine.webhooks.ping(hook["id"])
        assert ping["status"] == "delivered" and ping["event"] == "ping"
        assert receiver.types() == ["ping"]
        assert verified(hook["secret"], *receiver.received[0])
        assert receiver.received[0][0]["x-riverbed-event"] == "ping"

        nowhere = engine.webhooks.subscribe(Receiver().url, ["model.drift"])
        missed = engine.webhooks.ping(nowhere["id"])
        assert missed["status"] == "pending" and missed["tries"] == 1
        assert missed["attempts"][0]["error"] and missed["attempts"][0]["status_code"] is None
        assert missed["next_at"] >= missed["attempts"][0]["at"] + 3600
        assert [d["id"] for d in engine.webhooks.deliveries(nowhere["id"])] == [missed["id"]]
        with pytest.raises(WebhookNotFound):
            engine.webhooks.ping("wh_nope")


def test_a_hanging_receiver_does_not_hold_up_the_engine(tmp_path: Path, receiver: Receiver) -> None:
    """The request path only saves a delivery: while the receiver holds its first answer
    back, the engine goes on creating models and predicting."""
    receiver.hold = threading.Event()
    with Engine(str(tmp_path / "h.db"), webhook_timeout=DEADLINE) as engine:
        hook = engine.webhooks.subscribe(receiver.url, ["model.created"])
        engine.create_model("a", model())
        wait_for(receiver.arrived.is_set, "the first delivery to reach the receiver")
        for name in ("b", "c", "d"):
            engine.create_model(name, model())
            engine.predict(name, {"x": 1.0})
        assert not receiver.hold.is_set()  # the receiver still holds its first answer
        receiver.hold.set()
        wait_for(lambda: len(receiver.received) == 4, "the other three deliveries")
        wait_for(lambda: settled(engine, hook["id"]), "their outcome")
    assert sorted(e["model"] for e in receiver.events()) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_pending_deliveries_outlive_the_engine(kind: str, tmp_path: Path) -> None:
    """A delivery its receiver could not take is still pending after the engine closes;
    the next engine on the database sends it once the receiver is up."""
    down = Receiver()
    with database(kind, tmp_path) as db:
        with Engine(db, webhook_backoff=0.5) as engine:
            hook = engine.webhooks.subscribe(down.url, ["model.*"])
            engine.create_model("m", model())
            wait_for(
                lambda: any(d["attempts"] for d in engine.webhooks.deliveries(hook["id"])),
                "a failed attempt",
            )
        with Engine(db, read_only=True) as reader:
            (pending,) = reader.webhooks.deliveries(hook["id"])
        assert pending["status"] == "pending"
        down.start()
        try:
            with Engine(db, webhook_backoff=0.5) as engine:
                wait_for(lambda: settled(engine, hook["id"]), "the delivery after the restart")
                (delivery,) = engine.webhooks.deliveries(hook["id"])
        finally:
            down.stop()
    assert delivery["id"] == pending["id"] and delivery["status"] == "delivered"
    assert delivery["attempts"][: len(pending["attempts"])] == pending["attempts"]
    assert down.types() == ["model.created"]


def test_deleting_a_webhook_stops_its_deliveries(tmp_path: Path, receiver: Receiver) -> None:
    with Engine(str(tmp_path / "d.db")) as engine:
        hook = engine.webhooks.subscribe(receiver.url, ["model.created"])
        gone = engine.webhooks.delete(hook["id"])
        assert gone["deleted"] is True and gone["id"] == hook["id"]
        engine.create_model("m", model())
        kept = engine.webhooks.subscribe(receiver.url, ["model.deleted"])
        engine.delete_model("m")
        wait_for(lambda: receiver.received and settled(engine, kept["id"]), "model.deleted")
        with pytest.raises(WebhookNotFound):
            engine.webhooks.get(hook["id"])
        with pytest.raises(WebhookNotFound):
            engine.webhooks.deliveries(hook["id"])
        assert [h["id"] for h in engine.webhooks.list()] == [kept["id"]]
    assert receiver.types() == ["model.deleted"]


def test_a_read_only_engine_reads_webhooks_and_changes_none(tmp_path: Path) -> None:
    from riverbed.exceptions import Unavailable

    db = str(tmp_path / "ro.db")
    with Engine(db) as engine:
        hook = engine.webhooks.subscribe("http://127.0.0.1:9/hook", ["model.created"])
    with Engine(db, read_only=True) as reader:
        assert [h["id"] for h in reader.webhooks.list()] == [hook["id"]]
        for change in (
            lambda: reader.webhooks.subscribe("http://127.0.0.1:9/x", ["*"]),
            lambda: reader.webhooks.delete(hook["id"]),
            lambda: reader.webhooks.ping(hook["id"]),
        ):
            with pytest.raises(Unavailable):
                change()
    with Engine(db) as engine:
        assert engine.webhooks.get(hook["id"])["deliveries"]["pending"] == 0


def test_through_a_real_server_and_both_clients(tmp_path: Path, receiver: Receiver) -> None:
    db = str(tmp_path / "server.db")
    with Server(db, None, "--webhook-backoff", "0.05") as server, Client(server.url) as client:
        hook = client.webhooks.subscribe(receiver.url, ["model.*"])
        assert hook["secret"].startswith("whsec_")
        client.create_model("m", model())
        wait_for(lambda: client.webhooks.get(hook["id"])["deliveries"]["delivered"], "one")
        assert [h["id"] for h in client.webhooks.list()] == [hook["id"]]
        assert "secret" not in client.webhooks.list()[0]
        (delivery,) = client.webhooks.deliveries(hook["id"], status="delivered")
        assert receiver.types() == ["model.created"]
        assert verified(hook["secret"], *receiver.received[0])
        assert client.webhooks.ping(hook["id"])["status"] == "delivered"
        assert client.webhooks.retry(hook["id"], delivery["id"])["status"] == "delivered"
        assert receiver.types() == ["model.created", "ping", "model.created"]
        assert receiver.received[2][1] == receiver.received[0][1]
        with pytest.raises(InvalidInput, match="not sent to webhooks"):
            client.webhooks.subscribe(receiver.url, ["predict"])
        client.webhooks.delete(hook["id"])
        with pytest.raises(WebhookNotFound):
            client.webhooks.get(hook["id"])
        assert client.webhooks.list() == []


async def test_the_async_client(tmp_path: Path, receiver: Receiver) -> None:
    with Engine(str(tmp_path / "a.db")) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with AsyncClient("http://testserver", transport=transport) as client:
            hook = await client.webhooks.subscribe(receiver.url, "model.created")
            assert hook["events"] == ["model.created"]
            ping = await client.webhooks.ping(hook["id"])
            assert ping["status"] == "delivered"
            assert [d["id"] for d in await client.webhooks.deliveries(hook["id"])] == [ping["id"]]
            assert (await client.webhooks.get(hook["id"]))["deliveries"]["delivered"] == 1
            assert [h["id"] for h in await client.webhooks.list()] == [hook["id"]]
            await client.webhooks.delete(hook["id"])
            with pytest.raises(WebhookNotFound):
                await client.webhooks.get(hook["id"])
    assert receiver.types() == ["ping"]


@pytest.mark.slow
def test_the_cli_on_a_database_and_on_a_server(tmp_path: Path, receiver: Receiver) -> None:
    db = new_database(tmp_path / "cli.db")
    made = riverbed(
        "webhooks", "create", receiver.url, "-e", "model.*", "-e", "job.finished",
        "--description", "ops", "--json", "--database", db,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    hook = json.loads(made.stdout)
    assert hook["events"] == ["model.*", "job.finished"] and hook["secret"]
    listed = riverbed("webhooks", "list", "--database", db)
    assert listed.returncode == 0 and hook["id"] in listed.stdout and "ops" in listed.stdout
    shown = riverbed("webhooks", "show", hook["id"], "--database", db)
    assert "model.created" in shown.stdout and "secret" not in shown.stdout
    pinged = riverbed("webhooks", "ping", hook["id"], "--json", "--database", db)
    assert pinged.returncode == 0, pinged.stderr
    assert json.loads(pinged.stdout)["status"] == "delivered"
    assert receiver.types() == ["ping"] and verified(hook["secret"], *receiver.received[0])
    log = riverbed("webhooks", "deliveries", hook["id"], "--database", db)
    assert "ping" in log.stdout and "delivered" in log.stdout
    delivery = json.loads(pinged.stdout)["id"]
    again = riverbed("webhooks", "retry", hook["id"], delivery, "--database", db)
    assert again.returncode == 0 and len(receiver.received) == 2
    refused = riverbed("webhooks", "create", receiver.url, "-e", "predict", "--database", db)
    assert refused.returncode == 1 and "not sent to webhooks" in refused.stderr
    missing = riverbed("webhooks", "show", "wh_nope", "--database", db)
    assert missing.returncode == 1 and "webhook_not_found" in missing.stderr

    with Server(db) as server:
        # the reads work on the file beside the server that writes it
        beside = riverbed("webhooks", "deliveries", hook["id"], "--json", "--database", db)
        assert beside.returncode == 0, beside.stderr
        (logged,) = json.loads(beside.stdout)  # the ping, sent twice (ping, then retry)
        assert logged["status"] == "delivered" and len(logged["attempts"]) == 2
        shown = riverbed("webhooks", "show", hook["id"], "--json", "--url", server.url)
        assert json.loads(shown.stdout)["deliveries"]["delivered"] == 1
        down = Receiver()
        other = riverbed("webhooks", "create", down.url, "-e", "*", "--url", server.url)
        assert other.returncode == 0 and "secret: whsec_" in other.stdout
        other_id = other.stdout.split()[1]
        missed = riverbed("webhooks", "ping", other_id, "--url", server.url)
        assert missed.returncode == 1 and "pending" in missed.stdout
        gone = riverbed("webhooks", "delete", other_id, "--url", server.url)
        assert gone.returncode == 0 and other_id in gone.stdout
        listed = riverbed("webhooks", "list", "--json", "--url", server.url)
        assert [h["id"] for h in json.loads(listed.stdout)] == [hook["id"]]
