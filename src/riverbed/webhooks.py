"""Webhooks: an HTTP POST to a subscriber's URL for each event of the kinds it asked for.

``engine.webhooks`` (:class:`Webhooks`) keeps the subscriptions and the delivery log in the
engine's store (:mod:`riverbed.stores.webhookstore`) and sends the deliveries::

    hook = engine.webhooks.subscribe("https://ops.example.com/riverbed", ["model.drift",
                                     "version.*", "job.finished"])
    hook["secret"]          # shown this once: the receiver checks signatures with it
    engine.webhooks.deliveries(hook["id"], status="failed")

Delivery never blocks the request path. A listener on the event bus (called on the thread
that published the event, once its change is durable) only saves a pending
:class:`~riverbed.stores.webhookstore.DeliveryRecord` for each subscription that wants the
event; once that write is committed, the delivery is queued for the dispatcher thread,
which hands due deliveries to a pool of :data:`WORKERS` threads that POST them. Each body is
the JSON ``{"delivery", "webhook", "event"}``, the same bytes on every attempt, signed with
the subscription's secret in ``X-Riverbed-Signature: sha256=<hex HMAC-SHA256 of the body>``
(:func:`signature`), beside ``X-Riverbed-Event`` and ``X-Riverbed-Delivery``.

A 2xx answer delivers it. Anything else (another status, a redirect, which is not followed,
a refused connection, no answer in ``webhook_timeout`` seconds) is a failed attempt, kept in
the delivery's log with its status code or error; the next attempt comes after
``webhook_backoff`` seconds, doubling after each failure up to an hour, and after
``webhook_attempts`` attempts the delivery is ``failed``. :meth:`Webhooks.retry` queues one
for as many attempts again, trying it at once. Pending deliveries are saved, so an engine
opening the database (after a restart, or a crash) sends the ones still pending, at the
times they were due. Deliveries are at least once (an attempt cut short by a crash is made
again) and in no promised order: a receiver dedupes on the delivery id.

The kinds a subscription may ask for are :data:`EVENT_KINDS`; ``job.finished`` stands for
the kinds of a job that ended, ``PREFIX.*`` for every kind under ``PREFIX.`` and ``*`` for
them all. The kinds there is one of for every prediction or learn (:data:`HIGH_VOLUME`) are
refused: a webhook per prediction would be a denial of service on both ends.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import hashlib
import heapq
import hmac
import ipaddress
import itertools
import logging
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import orjson

from riverbed.config import Settings
from riverbed.events import Event, EventBus
from riverbed.exceptions import Conflict, InvalidInput, Unavailable, WebhookNotFound
from riverbed.stores.webhookstore import (
    DELIVERY_STATUSES,
    DeliveryRecord,
    WebhookRecord,
    WebhookStore,
)
from riverbed.version import __version__

__all__ = [
    "EVENT_KINDS",
    "HIGH_VOLUME",
    "JOB_FINISHED",
    "MAX_BACKOFF",
    "WORKERS",
    "Webhooks",
    "check_url",
    "expand_kinds",
    "open_webhooks",
    "signature",
]

log = logging.getLogger(__name__)

# The event types a subscription may ask for (those the engine publishes, but the
# high-volume ones). model.promoted comes with challengers (docs/webhooks.md).
EVENT_KINDS = (
    "model.created",
    "model.updated",
    "model.deleted",
    "model.restored",
    "model.drift",
    "model.promoted",
    "version.created",
    "version.updated",
    "version.deleted",
    "alias.moved",
    "job.queued",
    "job.running",
    "job.succeeded",
    "job.failed",
    "job.cancelled",
    "job.interrupted",
)
JOB_FINISHED = ("job.succeeded", "job.failed", "job.cancelled", "job.interrupted")
# One of these for every prediction, learn, label, audited request or job progress report.
HIGH_VOLUME = ("predict", "learn", "label", "audit", "job.progress")
WORKERS = 4  # deliveries attempted at once
MAX_BACKOFF = 3600.0  # the longest pause between two attempts, in seconds
MAX_URL = 2048
MAX_PATTERNS = 64
MAX_DESCRIPTION = 1000
_RESPONSE_KEPT = 500  # characters of a failed attempt's response body kept in the log
_SAVE_GRACE = 30.0  # seconds a retry waits, past webhook_timeout, for an attempt's outcome


def signature(secret: str, body: bytes) -> str:
    """The ``X-Riverbed-Signature`` header's value for ``body``: ``sha256=`` and the hex
    HMAC-SHA256 of the raw body under the subscription's secret."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def expand_kinds(patterns: Any) -> frozenset[str]:
    """The event kinds a subscription's ``events`` stand for; InvalidInput for anything but a
    non-empty list of known kinds, ``job.finished``, ``PREFIX.*`` and ``*``."""
    if not isinstance(patterns, list | tuple) or not patterns:
        raise InvalidInput(
            "events is a non-empty list of event kinds (model.created, version.*, job.finished, "
            "*, ...)",
            detail={"field": "events"},
        )
    if len(patterns) > MAX_PATTERNS:
        raise InvalidInput(f"events lists at most {MAX_PATTERNS} kinds", detail={"field": "events"})
    kinds: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise InvalidInput(
                f"each event kind is a string, not {pattern!r}", detail={"field": "events"}
            )
        if pattern in HIGH_VOLUME:
            raise InvalidInput(
                f"{pattern!r} events are not sent to webhooks: there is one for every "
                f"{'progress report' if pattern == 'job.progress' else pattern + ' request'}. "
                "Follow them on the event stream (GET /v1/events) instead",
                detail={"field": "events", "kind": pattern, "reason": "high_volume"},
            )
        if pattern == "*":
            found: Iterable[str] = EVENT_KINDS
        elif pattern == "job.finished":
            found = JOB_FINISHED
        elif pattern.endswith(".*"):
            found = [k for k in EVENT_KINDS if k.startswith(pattern[:-1])]
        else:
            found = [pattern] if pattern in EVENT_KINDS else []
        if not found:
            raise InvalidInput(
                f"unknown event kind {pattern!r}; accepted: {', '.join(EVENT_KINDS)}, "
                "job.finished, model.*, version.*, alias.*, job.*, *",
                detail={"field": "events", "kind": pattern},
            )
        kinds.update(found)
    return frozenset(kinds)


def check_url(url: Any) -> str:
    """``url`` if riverbed can POST to it, else InvalidInput saying why: an http(s) URL with
    a host, within 2048 characters, no whitespace, no credentials, no fragment, a valid port,
    not the unspecified address (0.0.0.0, ::) nor a multicast or broadcast one."""

    def refuse(reason: str) -> InvalidInput:
        return InvalidInput(f"the webhook URL {reason}", detail={"field": "url", "reason": reason})

    if not isinstance(url, str) or not url:
        raise refuse("is missing: give an http:// or https:// URL")
    if len(url) > MAX_URL:
        raise refuse(f"is longer than {MAX_URL} characters")
    if re.search(r"[\s\x00-\x1f\x7f]", url):
        raise refuse("holds whitespace or control characters")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme.lower() not in ("http", "https"):
        raise refuse("must start with http:// or https://")
    if "@" in parsed.netloc:
        raise refuse("holds credentials (user:password@): put none in the URL")
    if "#" in url:
        raise refuse("holds a fragment (#...), which is never sent to a server")
    host = parsed.hostname
    if not host:
        raise refuse("names no host")
    try:
        port = parsed.port
    except ValueError:
        raise refuse("has a port that is not a number from 1 to 65535") from None
    if port == 0 or (parsed.netloc.endswith(":") and port is None):
        raise refuse("has a port that is not a number from 1 to 65535")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if address.is_unspecified:
            raise refuse(f"names {host}, which is no host to send to")
        if address.is_multicast or (address.version == 4 and host == "255.255.255.255"):
            raise refuse(f"names {host}, a multicast or broadcast address")
    return url


def _check_secret(secret: Any) -> str:
    if not isinstance(secret, str) or not 16 <= len(secret) <= 512:
        raise InvalidInput(
            "secret is a string of 16 to 512 characters (leave it out to have one made)",
            detail={"field": "secret"},
        )
    if not secret.isascii() or not secret.isprintable() or " " in secret:
        raise InvalidInput("secret is printable ASCII without spaces", detail={"field": "secret"})
    return secret


def _json(value: Any) -> bytes:
    return orjson.dumps(
        value,
        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
        default=str,
    )


@dataclasses.dataclass
class _Hook:
    record: WebhookRecord
    kinds: frozenset[str]


class Webhooks:
    """The subscriptions and deliveries of one engine (see this module's docstring)."""

    def __init__(
        self,
        store: WebhookStore,
        events: EventBus,
        settings: Settings,
        *,
        read_only: bool = False,
    ) -> None:
        self.store = store
        self.read_only = read_only
        self.timeout = float(settings.webhook_timeout)
        self.attempts = int(settings.webhook_attempts)
        self.backoff = float(settings.webhook_backoff)
        self._cond = threading.Condition()
        self._hooks: dict[str, _Hook] = {}
        self._wanted: frozenset[str] = frozenset()  # the kinds some subscription wants
        self._pending: dict[str, DeliveryRecord] = {}  # queued, by id
        self._due: list[tuple[float, int, str]] = []  # (when, turn, id), a heap
        self._turn: dict[str, int] = {}  # a delivery's latest turn: older heap entries are stale
        self._turns = itertools.count()
        self._in_flight: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.Client | None = None
        self._unsubscribe: Any = None
        if read_only:  # reads only: no listener, nothing sent
            return
        for record in store.list_webhooks():
            self._hooks[record.id] = _Hook(record, _kinds_of(record))
        self._wanted = self._union()
        for delivery in store.pending_deliveries():
            if delivery.webhook in self._hooks:
                self._queue(delivery)
        self._unsubscribe = events.subscribe(self._on_event)

    # -- the user's operations -----------------------------------------------------------------

    def subscribe(
        self,
        url: str,
        events: Iterable[str] | str,
        *,
        secret: str | None = None,
        description: str = "",
    ) -> dict[str, Any]:
        """Subscribe ``url`` to ``events`` (kinds, ``job.finished``, ``PREFIX.*``, ``*``).
        The answer holds the subscription's ``secret`` (given, or made here): the only time
        it is shown."""
        self._writable()
        url = check_url(url)
        patterns: Any = [events] if isinstance(events, str) else events
        kinds = expand_kinds(patterns)
        secret = "whsec_" + secrets.token_urlsafe(32) if secret is None else _check_secret(secret)
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidInput(
                f"description is a string of at most {MAX_DESCRIPTION} characters",
                detail={"field": "description"},
            )
        record = WebhookRecord(
            id="wh_" + secrets.token_hex(8),
            url=url,
            events=list(dict.fromkeys(patterns)),
            secret=secret,
            created_at=time.time(),
            description=description,
        )
        self.store.add_webhook(record).result()
        with self._cond:
            self._hooks[record.id] = _Hook(record, kinds)
            self._wanted = self._union()
        return {**self._describe(record, kinds), "secret": secret}

    def list(self) -> list[dict[str, Any]]:
        """Every subscription, oldest first (without their secrets)."""
        return [self._describe(r, _kinds_of(r)) for r in self.store.list_webhooks()]

    def get(self, webhook_id: str) -> dict[str, Any]:
        """A subscription and its deliveries counted by status."""
        record = self._webhook(webhook_id)
        return self._describe(record, _kinds_of(record))

    def delete(self, webhook_id: str) -> dict[str, Any]:
        """Delete a subscription and its delivery log; what was pending is not sent."""
        self._writable()
        described = self.get(webhook_id)
        if not self.store.delete_webhook(webhook_id).result():
            raise self._not_found(webhook_id)
        with self._cond:
            self._hooks.pop(webhook_id, None)
            self._wanted = self._union()
            for key in [k for k, d in self._pending.items() if d.webhook == webhook_id]:
                del self._pending[key]
        return {**described, "deleted": True}

    def deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 100
    ) -> builtins.list[dict[str, Any]]:
        """A subscription's deliveries, newest first, optionally of one status (pending,
        delivered, failed), each with its attempts."""
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidInput(
                f"status is one of {', '.join(DELIVERY_STATUSES)}, not {status!r}",
                detail={"field": "status"},
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise InvalidInput("limit is an integer from 1 to 10000", detail={"field": "limit"})
        self._webhook(webhook_id)
        found = self.store.list_deliveries(webhook_id, status=status, limit=limit)
        return [_delivery(d) for d in found]

    def retry(self, webhook_id: str, delivery_id: str) -> dict[str, Any]:
        """Try a delivery again now, whatever its status, and queue it for
        ``webhook_attempts`` attempts again if this one fails; returns it after the attempt.

        An attempt already under way (the dispatcher's, or another retry's) is waited for
        first; if it delivered the delivery, that is the answer and nothing is sent again.
        Conflict if it has not ended within ``webhook_timeout`` and the store's grace."""
        self._writable()
        hook = self._webhook(webhook_id)
        waited = self._claim(delivery_id)
        try:
            delivery = self.store.get_delivery(delivery_id)
            if delivery is None or delivery.webhook != webhook_id:
                raise WebhookNotFound(
                    f"webhook {webhook_id} has no delivery {delivery_id!r}",
                    detail={"webhook": webhook_id, "delivery": delivery_id},
                )
        except BaseException:
            self._release(delivery_id)
            raise
        if waited and delivery.status == "delivered":
            self._release(delivery_id)
            return _delivery(delivery)
        with self._cond:
            self._turn[delivery_id] = next(self._turns)  # what the heap held for it is stale
        delivery.status, delivery.tries, delivery.next_at = "pending", 0, time.time()
        return _delivery(self._attempt_now(delivery, hook))

    def ping(self, webhook_id: str) -> dict[str, Any]:
        """Send a ``ping`` delivery at once and return it with the attempt's outcome; if it
        failed it is retried as any delivery is."""
        self._writable()
        hook = self._webhook(webhook_id)
        now = time.time()
        event = {
            "id": None,
            "type": "ping",
            "model": None,
            "time": now,
            "data": {"message": "a ping from riverbed: this URL receives its webhooks"},
        }
        delivery = self._new_delivery(hook.record.id, "ping", event, now)
        self.store.save_delivery(delivery).result()
        with self._cond:
            self._in_flight.add(delivery.id)
        return _delivery(self._attempt_now(delivery, hook))

    def close(self) -> None:
        """Stop listening and sending: attempts in flight finish (within webhook_timeout);
        what is still pending is in the store for the next engine that opens it."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, pool = self._thread, self._pool
        if thread is not None:
            thread.join()
        if pool is not None:
            pool.shutdown(wait=True)
        if self._http is not None:
            self._http.close()

    # -- the listener --------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.type not in self._wanted:  # most events: predictions, learns
            return
        with self._cond:
            hooks = [h.record.id for h in self._hooks.values() if event.type in h.kinds]
        if not hooks:
            return
        payload = event.to_dict()
        for hook_id in hooks:
            delivery = self._new_delivery(hook_id, event.type, payload, time.time())
            try:
                future = self.store.save_delivery(delivery)
            except Exception:  # the store is closing: the event is not delivered
                log.exception("saving webhook delivery %s failed", delivery.id)
                continue
            future.add_done_callback(functools.partial(self._saved, delivery))

    def _saved(self, delivery: DeliveryRecord, future: Future[None]) -> None:
        error = future.exception()
        if error is not None:
            log.error("saving webhook delivery %s failed: %s", delivery.id, error)
            return
        self._queue(delivery)

    # -- the dispatcher ------------------------------------------------------------------------

    def _queue(self, delivery: DeliveryRecord) -> None:
        """Queue a pending delivery for its ``next_at`` (now when it has none)."""
        with self._cond:
            if self._stopping or delivery.webhook not in self._hooks:
                return
            turn = next(self._turns)
            self._pending[delivery.id] = delivery
            self._turn[delivery.id] = turn
            heapq.heappush(self._due, (delivery.next_at or 0.0, turn, delivery.id))
            if self._thread is None:
                self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="riverbed-webhook")
                self._thread = threading.Thread(
                    target=self._dispatch, name="riverbed-webhooks", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                taken = self._next_due()
                if taken is None:
                    return
                delivery, hook = taken
                self._in_flight.add(delivery.id)
            assert self._pool is not None
            self._pool.submit(self._attempt_queued, delivery, hook)

    def _next_due(self) -> tuple[DeliveryRecord, _Hook] | None:
        """The next delivery due, waiting for it (None once stopping). Holds the lock."""
        while not self._stopping:
            if not self._due or len(self._in_flight) >= WORKERS:
                self._cond.wait()
                continue
            when, turn, delivery_id = self._due[0]
            delivery = self._pending.get(delivery_id)
            if delivery is None or self._turn.get(delivery_id) != turn:
                heapq.heappop(self._due)  # done, deleted, or queued again since
                continue
            wait = when - time.time()
            if wait > 0:
                self._cond.wait(wait)
                continue
            heapq.heappop(self._due)
            hook = self._hooks.get(delivery.webhook)
            if hook is None or delivery_id in self._in_flight:
                continue
            return delivery, hook
        return None

    def _claim(self, delivery_id: str) -> bool:
        """Mark a delivery in flight for an attempt made by the caller, after the attempt
        under way at it, if any, has ended and its outcome is saved; True if there was one.

        Without the wait a retry racing a worker would be refused while the worker, its
        attempt over and saved (the user saw the delivery ``failed``), had not yet let go."""
        deadline = time.monotonic() + self.timeout + _SAVE_GRACE
        with self._cond:
            waited = False
            while delivery_id in self._in_flight:
                waited = True
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Conflict(
                        f"delivery {delivery_id} is being attempted now: its outcome will be in "
                        "its log",
                        detail={"delivery": delivery_id},
                    )
                self._cond.wait(left)
            self._in_flight.add(delivery_id)
            return waited

    def _release(self, delivery_id: str) -> None:
        with self._cond:
            self._in_flight.discard(delivery_id)
            self._cond.notify_all()

    def _attempt_queued(self, delivery: DeliveryRecord, hook: _Hook) -> None:
        try:
            self._attempt_now(delivery, hook)
        except Exception:
            log.exception("webhook delivery %s", delivery.id)

    def _attempt_now(self, delivery: DeliveryRecord, hook: _Hook) -> DeliveryRecord:
        """One attempt at a delivery marked in flight; it is then saved and, still pending,
        queued for its next attempt."""
        attempted = False
        try:
            outcome = self._post(hook.record, delivery)
            self._record(delivery, outcome)
            attempted = True
            with self._cond:
                deleted = self._hooks.get(delivery.webhook) is None and not self.read_only
            try:
                if not deleted:  # a subscription deleted meanwhile took its log with it
                    self.store.save_delivery(delivery).result()
            except Exception:
                log.exception("saving webhook delivery %s failed", delivery.id)
        finally:
            with self._cond:  # one step: no retry claims it between the release and the queue
                self._in_flight.discard(delivery.id)
                if delivery.status != "pending":
                    self._pending.pop(delivery.id, None)
                    self._turn.pop(delivery.id, None)
                elif attempted:
                    self._queue(delivery)
                self._cond.notify_all()
        return delivery

    def _post(self, webhook: WebhookRecord, delivery: DeliveryRecord) -> dict[str, Any]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"riverbed/{__version__}",
            "X-Riverbed-Event": delivery.event,
            "X-Riverbed-Delivery": delivery.id,
            "X-Riverbed-Signature": signature(webhook.secret, delivery.body),
        }
        attempt: dict[str, Any] = {"at": time.time(), "status_code": None, "error": None}
        started = time.monotonic()
        try:
            with self._client().stream(
                "POST", webhook.url, content=delivery.body, headers=headers
            ) as response:
                attempt["status_code"] = response.status_code
                if not response.is_success:
                    attempt["error"] = f"HTTP {response.status_code}" + (
                        " (redirects are not followed)" if response.is_redirect else ""
                    )
                    kept = b""
                    for chunk in response.iter_bytes():
                        kept += chunk
                        if len(kept) >= _RESPONSE_KEPT:
                            break
                    attempt["response"] = kept[:_RESPONSE_KEPT].decode("utf-8", "replace")
        except httpx.TimeoutException:
            attempt["error"] = f"no answer within {self.timeout:g} s (webhook_timeout)"
        except httpx.HTTPError as exc:
            attempt["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        attempt["duration"] = round(time.monotonic() - started, 6)
        return attempt

    def _record(self, delivery: DeliveryRecord, attempt: dict[str, Any]) -> None:
        delivery.attempts.append(attempt)
        delivery.tries += 1
        if attempt["error"] is None:
            delivery.status, delivery.next_at = "delivered", None
        elif delivery.tries >= self.attempts:
            delivery.status, delivery.next_at = "failed", None
        else:
            pause = min(self.backoff * 2 ** (delivery.tries - 1), MAX_BACKOFF)
            delivery.next_at = attempt["at"] + pause

    def _client(self) -> httpx.Client:
        with self._cond:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=self.timeout,
                    follow_redirects=False,
                    limits=httpx.Limits(max_connections=WORKERS * 4),
                )
            return self._http

    # -- helpers -------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise Unavailable(
                "the database is open to read only here: webhooks are changed and sent by the "
                "process that writes it"
            )

    def _union(self) -> frozenset[str]:
        return frozenset().union(*(h.kinds for h in self._hooks.values()))

    def _webhook(self, webhook_id: str) -> _Hook:
        if not isinstance(webhook_id, str):
            raise self._not_found(str(webhook_id))
        record = self.store.get_webhook(webhook_id)
        if record is None:
            raise self._not_found(webhook_id)
        return _Hook(record, _kinds_of(record))

    @staticmethod
    def _not_found(webhook_id: str) -> WebhookNotFound:
        return WebhookNotFound(f"no webhook with id {webhook_id!r}", detail={"webhook": webhook_id})

    def _new_delivery(
        self, webhook_id: str, kind: str, event: dict[str, Any], now: float
    ) -> DeliveryRecord:
        delivery_id = "whd_" + secrets.token_hex(10)
        body = _json({"delivery": delivery_id, "webhook": webhook_id, "event": event})
        return DeliveryRecord(
            id=delivery_id,
            webhook=webhook_id,
            event=kind,
            status="pending",
            created_at=now,
            body=body,
            next_at=now,
        )

    def _describe(self, record: WebhookRecord | _Hook, kinds: frozenset[str]) -> dict[str, Any]:
        if isinstance(record, _Hook):
            record = record.record
        return {
            "id": record.id,
            "url": record.url,
            "events": list(record.events),
            "kinds": [k for k in EVENT_KINDS if k in kinds],
            "description": record.description,
            "created_at": record.created_at,
            "deliveries": self.store.count_deliveries(record.id),
        }


def _kinds_of(record: WebhookRecord | _Hook) -> frozenset[str]:
    if isinstance(record, _Hook):
        return record.kinds
    try:
        return expand_kinds(record.events)
    except InvalidInput:  # a kind this version no longer sends: the others still are
        known = [p for p in record.events if _known(p)]
        return expand_kinds(known) if known else frozenset()


def _known(pattern: str) -> bool:
    try:
        expand_kinds([pattern])
    except InvalidInput:
        return False
    return True


def _delivery(delivery: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhook": delivery.webhook,
        "event": delivery.event,
        "status": delivery.status,
        "created_at": delivery.created_at,
        "next_at": delivery.next_at,
        "tries": delivery.tries,
        "attempts": list(delivery.attempts),
        "payload": orjson.loads(delivery.body),
    }


def open_webhooks(
    store: WebhookStore, events: EventBus, settings: Settings, *, read_only: bool = False
) -> Webhooks:
    """An engine's webhooks: its subscriptions loaded, its pending deliveries queued and a
    listener on its event bus (nothing of that when ``read_only``)."""
    return Webhooks(store, events, settings, read_only=read_only)
