"""The cluster's own tables in the shared PostgreSQL database: leases and members.

``riverbed_leases`` holds one row a model: the learner that holds it (``holder``), the
lease's ``epoch`` (raised by every takeover and every move, so a learner that lost its lease
cannot commit: its commit updates the row only ``WHERE holder = me AND epoch = mine``), when
it expires, whether it was moved there by hand (``pinned``: the learners' rebalancing
leaves it alone), and what the holder committed: the stream ``position`` (the id of the last
entry applied), the model's ``seq`` (its learns) and the entries it ``refused`` (samples the
model could not learn, second labels of a prediction). The row is updated in the same
transaction as the learns it counts.

``riverbed_members`` holds a row a running replica or learner, written about once a second
(``seen_at``) with what it knows (``info``: a replica's models, how far behind each is).

Times are the database server's clock (``clock_timestamp()``), so the machines' clocks need
not agree.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
import uuid
from typing import Any

import psycopg

from riverbed.exceptions import ModelNotFound, NotFound
from riverbed.stores.base import dump, load

__all__ = [
    "TABLES",
    "Lease",
    "acquire",
    "ensure_tables",
    "heartbeat",
    "leave",
    "live_learners",
    "member_id",
    "move",
    "release",
    "renew",
    "status",
]

NOW = "extract(epoch from clock_timestamp())::double precision"

TABLES = """
CREATE TABLE IF NOT EXISTS riverbed_leases (
    model TEXT PRIMARY KEY,
    holder TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    position TEXT NOT NULL DEFAULT '0-0',
    seq BIGINT NOT NULL DEFAULT 0,
    refused BIGINT NOT NULL DEFAULT 0,
    pinned BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS riverbed_members (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    started_at DOUBLE PRECISION NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL,
    info BYTEA NOT NULL
);
"""
_CREATE_LOCK = 0x72697663  # "rivc": two processes creating the tables at once


@dataclasses.dataclass
class Lease:
    model: str
    epoch: int
    position: str
    seq: int
    pinned: bool = False


def member_id(kind: str, name: str | None = None) -> str:
    """A member's id: the name given, else kind-host-pid-random."""
    if name:
        return name
    return f"{kind}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


def ensure_tables(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
        conn.execute(TABLES)


def heartbeat(
    conn: psycopg.Connection[Any], id: str, kind: str, address: str, info: dict[str, Any]
) -> None:
    conn.execute(
        f"INSERT INTO riverbed_members (id, kind, address, started_at, seen_at, info)"
        f" VALUES (%s, %s, %s, {NOW}, {NOW}, %s) ON CONFLICT (id) DO UPDATE SET"
        f" seen_at = {NOW}, address = excluded.address, info = excluded.info",
        (id, kind, address, dump(info)),
    )


def leave(conn: psycopg.Connection[Any], id: str) -> None:
    """A member that stops: its leases end now (another learner takes them at once)."""
    with conn.transaction():
        conn.execute("UPDATE riverbed_leases SET expires_at = 0 WHERE holder = %s", (id,))
        conn.execute("DELETE FROM riverbed_members WHERE id = %s", (id,))


def live_learners(conn: psycopg.Connection[Any], lease_seconds: float) -> list[str]:
    rows = conn.execute(
        f"SELECT id FROM riverbed_members WHERE kind = 'learner' AND seen_at > {NOW} - %s"
        " ORDER BY id",
        (lease_seconds,),
    ).fetchall()
    return [r[0] for r in rows]


def acquire(
    conn: psycopg.Connection[Any], model: str, holder: str, lease_seconds: float
) -> Lease | None:
    """Take a model's lease if no one holds it (or its holder's lease expired): a new
    epoch, and what the last holder committed."""
    conn.execute("INSERT INTO riverbed_leases (model) VALUES (%s) ON CONFLICT DO NOTHING", (model,))
    row = conn.execute(
        f"UPDATE riverbed_leases SET holder = %s, epoch = epoch + 1, expires_at = {NOW} + %s,"
        f" pinned = FALSE WHERE model = %s AND (holder IS NULL OR expires_at < {NOW})"
        " RETURNING epoch, position, seq",
        (holder, lease_seconds, model),
    ).fetchone()
    return Lease(model, row[0], row[1], row[2]) if row else None


def renew(conn: psycopg.Connection[Any], holder: str, lease_seconds: float) -> dict[str, Lease]:
    """Extend every lease ``holder`` holds (and has not released); the leases it holds now
    (one moved to it by hand among them, with its new epoch)."""
    rows = conn.execute(
        f"UPDATE riverbed_leases SET expires_at = {NOW} + %s WHERE holder = %s"
        " AND expires_at > 0 RETURNING model, epoch, position, seq, pinned",
        (lease_seconds, holder),
    ).fetchall()
    return {r[0]: Lease(r[0], r[1], r[2], r[3], r[4]) for r in rows}


def release(conn: psycopg.Connection[Any], model: str, holder: str, epoch: int) -> None:
    """Give a lease up now (another learner may take it at once)."""
    conn.execute(
        "UPDATE riverbed_leases SET expires_at = 0 WHERE model = %s AND holder = %s AND epoch = %s",
        (model, holder, epoch),
    )


def move(
    conn: psycopg.Connection[Any], model: str, learner: str, lease_seconds: float
) -> dict[str, Any]:
    """Hand a model's lease to ``learner`` (a running learner) at once: a new epoch, so the
    previous holder's next commit is refused and it lets the model go."""
    if learner not in live_learners(conn, lease_seconds):
        raise NotFound(
            f"no running learner {learner!r} (riverbed cluster status lists them)",
            detail={"learner": learner},
        )
    if conn.execute("SELECT 1 FROM models WHERE name = %s", (model,)).fetchone() is None:
        raise ModelNotFound(f"no model named {model!r}")
    conn.execute("INSERT INTO riverbed_leases (model) VALUES (%s) ON CONFLICT DO NOTHING", (model,))
    row = conn.execute(
        f"UPDATE riverbed_leases SET holder = %s, epoch = epoch + 1, expires_at = {NOW} + %s,"
        " pinned = TRUE WHERE model = %s RETURNING epoch",
        (learner, lease_seconds, model),
    ).fetchone()
    assert row is not None
    return {"model": model, "learner": learner, "epoch": row[0]}


def status(conn: psycopg.Connection[Any], broker: Any, lease_seconds: float) -> dict[str, Any]:
    """Replicas, learners, leases, and per model: the learns acknowledged and not applied
    yet (``lag_learns``), how old the oldest of them is, and each replica's staleness."""
    now = conn.execute(f"SELECT {NOW}").fetchone()[0]  # type: ignore[index]
    members = conn.execute(
        "SELECT id, kind, address, started_at, seen_at, info FROM riverbed_members ORDER BY id"
    ).fetchall()
    leases = conn.execute(
        "SELECT model, holder, epoch, expires_at, position, seq, refused FROM riverbed_leases"
        " ORDER BY model"
    ).fetchall()
    models = [r[0] for r in conn.execute("SELECT name FROM models ORDER BY name").fetchall()]
    positions = {name: "0-0" for name in models}
    positions.update({r[0]: r[4] for r in leases if r[0] in positions})
    waiting: dict[str, tuple[int, int | None]] = {}
    broker_error = None
    try:
        waiting = broker.waiting(positions)
    except Exception as exc:  # the status still shows what the database knows
        broker_error = str(exc)
    wall = time.time()

    def member(row: tuple[Any, ...]) -> dict[str, Any]:
        info = load(bytes(row[5])) or {}
        return {
            "id": row[0],
            "address": row[2],
            "started_at": row[3],
            "seen_seconds_ago": round(max(0.0, now - row[4]), 3),
            "alive": now - row[4] < lease_seconds,
            **info,
        }

    by_model = {r[0]: r for r in leases}
    out_models = []
    for name in models:
        lease = by_model.get(name)
        behind, oldest = waiting.get(name, (0, None))
        out_models.append(
            {
                "model": name,
                "learner": lease[1] if lease and lease[3] > now else None,
                "n_learns": lease[5] if lease else 0,
                "refused": lease[6] if lease else 0,
                "lag_learns": behind,
                "oldest_waiting_seconds": None
                if oldest is None
                else round(max(0.0, wall - oldest / 1000), 3),
            }
        )
    return {
        "broker": broker.url,
        "broker_error": broker_error,
        "replicas": [member(r) for r in members if r[1] == "replica"],
        "learners": [member(r) for r in members if r[1] == "learner"],
        "leases": [
            {
                "model": r[0],
                "holder": r[1],
                "epoch": r[2],
                "expires_in_seconds": round(r[3] - now, 3) if r[3] > now else 0.0,
                "position": r[4],
                "n_learns": r[5],
            }
            for r in leases
        ],
        "models": out_models,
    }


def share(n_models: int, n_learners: int) -> int:
    """How many models' leases one of ``n_learners`` learners takes at most."""
    return math.ceil(n_models / max(1, n_learners))
