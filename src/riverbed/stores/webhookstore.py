"""The webhook store: subscriptions and their delivery log (riverbed.webhooks).

A :class:`WebhookRecord` is one subscription (a URL, the event kinds it asked for, its
secret); a :class:`DeliveryRecord` is one event to send to one subscription, saved whole
(an upsert) whenever an attempt changes it. :class:`MemoryWebhooks` is the in-memory twin;
:class:`SQLWebhooks` is the one implementation for both SQL stores: its statements are
written with ``?`` placeholders and translated to ``%s`` for PostgreSQL, its writes go
through the store's own writer (so they share its commits and its one-writer lock) and its
reads through the store's readers. The tables are created with the rest of each
database's layout (:data:`SQLITE_SCHEMA`, :data:`POSTGRES_SCHEMA`).
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import orjson

from riverbed.stores.futures import done

__all__ = [
    "DELIVERY_STATUSES",
    "POSTGRES_SCHEMA",
    "SQLITE_SCHEMA",
    "DeliveryRecord",
    "MemoryWebhooks",
    "SQLWebhooks",
    "WebhookRecord",
    "WebhookStore",
]

DELIVERY_STATUSES = ("pending", "delivered", "failed")


@dataclasses.dataclass
class WebhookRecord:
    id: str
    url: str
    events: list[str]  # the kinds as subscribed: model.created, job.finished, version.*, *
    secret: str  # signs every delivery's body (HMAC-SHA256); shown once, at subscription
    created_at: float
    description: str = ""


@dataclasses.dataclass
class DeliveryRecord:
    id: str
    webhook: str
    event: str  # the event's type (``ping`` for a ping)
    status: str  # pending, delivered or failed
    created_at: float
    body: bytes  # the JSON sent, the same bytes (and signature) on every attempt
    next_at: float | None = None  # when a pending delivery is tried next
    tries: int = 0  # attempts since it was (re)queued: webhook_attempts of them, then failed
    attempts: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # every attempt


class WebhookStore(abc.ABC):
    @abc.abstractmethod
    def add_webhook(self, webhook: WebhookRecord) -> Future[None]: ...

    @abc.abstractmethod
    def get_webhook(self, webhook_id: str) -> WebhookRecord | None: ...

    @abc.abstractmethod
    def list_webhooks(self) -> list[WebhookRecord]:
        """Every subscription, oldest first."""

    @abc.abstractmethod
    def delete_webhook(self, webhook_id: str) -> Future[bool]:
        """Delete a subscription and its deliveries; False when there was none."""

    @abc.abstractmethod
    def save_delivery(self, delivery: DeliveryRecord) -> Future[None]:
        """Insert or replace a delivery's record."""

    @abc.abstractmethod
    def get_delivery(self, delivery_id: str) -> DeliveryRecord | None: ...

    @abc.abstractmethod
    def list_deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        """A subscription's deliveries, newest first, optionally of one status."""

    @abc.abstractmethod
    def pending_deliveries(self) -> list[DeliveryRecord]:
        """Every pending delivery, oldest first (what an engine sends once it opens)."""

    @abc.abstractmethod
    def count_deliveries(self, webhook_id: str) -> dict[str, int]:
        """A subscription's deliveries by status (every status, 0 included)."""


class MemoryWebhooks(WebhookStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._webhooks: dict[str, WebhookRecord] = {}
        self._deliveries: dict[str, DeliveryRecord] = {}

    def add_webhook(self, webhook: WebhookRecord) -> Future[None]:
        with self._lock:
            self._webhooks[webhook.id] = copy.deepcopy(webhook)
        return done()

    def get_webhook(self, webhook_id: str) -> WebhookRecord | None:
        with self._lock:
            webhook = self._webhooks.get(webhook_id)
            return copy.deepcopy(webhook) if webhook else None

    def list_webhooks(self) -> list[WebhookRecord]:
        with self._lock:
            found = sorted(self._webhooks.values(), key=lambda w: (w.created_at, w.id))
            return [copy.deepcopy(w) for w in found]

    def delete_webhook(self, webhook_id: str) -> Future[bool]:
        with self._lock:
            found = self._webhooks.pop(webhook_id, None) is not None
            for key in [k for k, d in self._deliveries.items() if d.webhook == webhook_id]:
                del self._deliveries[key]
        return done(found)

    def save_delivery(self, delivery: DeliveryRecord) -> Future[None]:
        with self._lock:
            self._deliveries[delivery.id] = copy.deepcopy(delivery)
        return done()

    def get_delivery(self, delivery_id: str) -> DeliveryRecord | None:
        with self._lock:
            delivery = self._deliveries.get(delivery_id)
            return copy.deepcopy(delivery) if delivery else None

    def list_deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        with self._lock:
            found = [
                d
                for d in self._deliveries.values()
                if d.webhook == webhook_id and (status is None or d.status == status)
            ]
        found.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        return [copy.deepcopy(d) for d in found[:limit]]

    def pending_deliveries(self) -> list[DeliveryRecord]:
        with self._lock:
            found = [d for d in self._deliveries.values() if d.status == "pending"]
        found.sort(key=lambda d: (d.created_at, d.id))
        return [copy.deepcopy(d) for d in found]

    def count_deliveries(self, webhook_id: str) -> dict[str, int]:
        counts = dict.fromkeys(DELIVERY_STATUSES, 0)
        with self._lock:
            for d in self._deliveries.values():
                if d.webhook == webhook_id:
                    counts[d.status] = counts.get(d.status, 0) + 1
        return counts


_WEBHOOK_COLUMNS = "id, url, events, secret, created_at, description"
_DELIVERY_COLUMNS = "id, webhook, event, status, created_at, body, next_at, record"

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at REAL NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    body BLOB NOT NULL,
    next_at REAL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_webhook
    ON webhook_deliveries (webhook, created_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_status ON webhook_deliveries (status);
"""

POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events BYTEA NOT NULL,
    secret TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    body BYTEA NOT NULL,
    next_at DOUBLE PRECISION,
    record BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_webhook
    ON webhook_deliveries (webhook, created_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_status ON webhook_deliveries (status);
"""

Submit = Callable[[Callable[[Any], Any]], "Future[Any]"]
Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


class SQLWebhooks(WebhookStore):
    """The webhook tables of an SQLite file or a PostgreSQL database. ``submit(op)`` runs
    ``op(conn)`` in the store's writer (its next commit); ``query(sql, params)`` reads on
    the store's readers; ``placeholder`` is the driver's (``?`` or ``%s``)."""

    def __init__(self, submit: Submit, query: Query, *, placeholder: str = "?") -> None:
        self._submit, self._query, self._mark = submit, query, placeholder

    def _sql(self, sql: str) -> str:
        return sql if self._mark == "?" else sql.replace("?", self._mark)

    def _write(self, sql: str, params: Sequence[Any]) -> Future[None]:
        statement = self._sql(sql)

        def op(conn: Any) -> None:
            conn.execute(statement, params)

        return self._submit(op)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._query(self._sql(sql), params)

    def add_webhook(self, webhook: WebhookRecord) -> Future[None]:
        params = (
            webhook.id,
            webhook.url,
            orjson.dumps(webhook.events),
            webhook.secret,
            webhook.created_at,
            webhook.description,
        )
        sql = f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
        return self._write(sql, params)

    @staticmethod
    def _webhook(row: tuple[Any, ...]) -> WebhookRecord:
        return WebhookRecord(row[0], row[1], orjson.loads(bytes(row[2])), row[3], row[4], row[5])

    def get_webhook(self, webhook_id: str) -> WebhookRecord | None:
        rows = self._rows(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,))
        return self._webhook(rows[0]) if rows else None

    def list_webhooks(self) -> list[WebhookRecord]:
        rows = self._rows(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id")
        return [self._webhook(row) for row in rows]

    def delete_webhook(self, webhook_id: str) -> Future[bool]:
        deliveries = self._sql("DELETE FROM webhook_deliveries WHERE webhook = ?")
        webhooks = self._sql("DELETE FROM webhooks WHERE id = ?")

        def op(conn: Any) -> bool:
            conn.execute(deliveries, (webhook_id,))
            return bool(conn.execute(webhooks, (webhook_id,)).rowcount > 0)

        return self._submit(op)

    def save_delivery(self, delivery: DeliveryRecord) -> Future[None]:
        record = {"tries": delivery.tries, "attempts": delivery.attempts}
        params = (
            delivery.id,
            delivery.webhook,
            delivery.event,
            delivery.status,
            delivery.created_at,
            bytes(delivery.body),
            delivery.next_at,
            orjson.dumps(record),
        )
        # an upsert both SQLite and PostgreSQL read the same way
        sql = (
            f"INSERT INTO webhook_deliveries ({_DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET status = excluded.status,"
            " next_at = excluded.next_at, record = excluded.record"
        )
        return self._write(sql, params)

    @staticmethod
    def _delivery(row: tuple[Any, ...]) -> DeliveryRecord:
        record = orjson.loads(bytes(row[7]))
        return DeliveryRecord(
            id=row[0],
            webhook=row[1],
            event=row[2],
            status=row[3],
            created_at=row[4],
            body=bytes(row[5]),
            next_at=row[6],
            tries=record["tries"],
            attempts=record["attempts"],
        )

    def get_delivery(self, delivery_id: str) -> DeliveryRecord | None:
        rows = self._rows(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?", (delivery_id,)
        )
        return self._delivery(rows[0]) if rows else None

    def list_deliveries(
        self, webhook_id: str, *, status: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook = ?"
        params: list[Any] = [webhook_id]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        return [self._delivery(row) for row in self._rows(sql, (*params, limit))]

    def pending_deliveries(self) -> list[DeliveryRecord]:
        rows = self._rows(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE status = 'pending'"
            " ORDER BY created_at, id"
        )
        return [self._delivery(row) for row in rows]

    def count_deliveries(self, webhook_id: str) -> dict[str, int]:
        counts = dict.fromkeys(DELIVERY_STATUSES, 0)
        rows = self._rows(
            "SELECT status, COUNT(*) FROM webhook_deliveries WHERE webhook = ? GROUP BY status",
            (webhook_id,),
        )
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts
