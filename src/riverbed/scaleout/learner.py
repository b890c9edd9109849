"""A scale-out learner: ``riverbed learner --database postgresql://... --broker redis://...``.

It holds a lease per model (:mod:`riverbed.scaleout.cluster`; at most its share of the
models among the running learners, and any model whose holder's lease expired), reads each
model's stream from the position committed with the lease, and applies the learns in stream
order with the engine's own steps (a learn with features is scored with the prediction the
model makes now, a label with the prediction stored for its id: progressive validation in
the learner's order). Each batch of a model is committed in ONE transaction: the lease row
(``position``, ``seq``; only ``WHERE holder = me AND epoch = mine``, which fences a learner
that lost its lease), the learns, the metric points and, when due, the checkpoint. After a
``kill -9`` the next holder loads the model from the checkpoint and the log and reads the
stream from the committed position, so nothing is applied twice or lost.

A sample the model cannot learn (``learn_one`` raises) is skipped and counted in the
lease's ``refused``: its learn was acknowledged by a replica before the model saw it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import psycopg

from riverbed.config import Settings
from riverbed.engine import Engine
from riverbed.evaluated import evaluated
from riverbed.exceptions import NotServable, RiverbedError, Unavailable
from riverbed.receipts import Receipt
from riverbed.scaleout import cluster
from riverbed.scaleout.broker import Broker
from riverbed.stores.base import Checkpoint, LearnRecord, MetricPoint, dump, learn_rows, load
from riverbed.stores.postgres.store import PostgresStore
from riverbed.stores.postgres.writer import connect
from riverbed.tasks import MISSING

__all__ = ["Learner"]

log = logging.getLogger(__name__)

_BATCH = 500  # entries of one model applied and committed together at most


class Fenced(Exception):
    """The lease was taken over or moved: this learner's commit is refused."""


@dataclasses.dataclass
class _Held:
    epoch: int
    position: str
    skip: str | None = None  # an entry to skip: the model refused it


class Learner:
    """Learns the models it holds leases on until :meth:`stop`."""

    def __init__(self, settings: Settings, *, name: str | None = None) -> None:
        self.settings = settings
        self.id = cluster.member_id("learner", name)
        self.lease_seconds = settings.lease_seconds
        self.block_ms = max(1, min(100, int(settings.staleness_seconds * 100)))
        self.url = settings.database
        self.broker = Broker(settings.broker, timeout=max(2.0, self.block_ms / 1000 + 1))
        self.store = PostgresStore(settings.database, shared=True)
        self.engine = Engine(settings=settings, store=self.store)
        self.engine.scaleout = self  # no learns from elsewhere, no checkpoints but ours
        self.conn = connect(self.url)
        cluster.ensure_tables(self.conn)
        self.held: dict[str, _Held] = {}
        self.applied = 0
        self._stop = threading.Event()
        self._renewed = time.monotonic()

    # the engine's scaleout hook: a learner takes no learns but from the streams
    def submit_learn(
        self, name: str, features: Any, ground_truth: Any, id: str | None, inputs: Any
    ) -> Receipt[dict[str, Any]]:
        raise NotServable("a learner learns from the broker's streams only")

    def submit_learn_many(self, name: str, items: Any) -> Receipt[dict[str, Any]]:
        raise NotServable("a learner learns from the broker's streams only")

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Renew and take leases every ``lease_seconds / 3``, and apply what the streams
        hold, until :meth:`stop`; then give the leases up."""
        next_round = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_round:
                    next_round = time.monotonic() + self.lease_seconds / 3
                    self._lease_round()
                if not self.held:
                    self._stop.wait(0.2)
                    continue
                self._learn_round()
        finally:
            self._leave()

    def _leave(self) -> None:
        try:
            cluster.leave(self._connection(), self.id)
        except psycopg.Error:
            pass
        self.conn.close()
        self.engine.close()
        self.broker.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn.closed or self.conn.broken:
            self.conn.close()
            self.conn = connect(self.url)
        return self.conn

    # -- leases ------------------------------------------------------------------------------

    def _lease_round(self) -> None:
        try:
            conn = self._connection()
            cluster.heartbeat(
                conn, self.id, "learner", "", {"models": sorted(self.held), "applied": self.applied}
            )
            holding = cluster.renew(conn, self.id, self.lease_seconds)
            self._renewed = time.monotonic()
            for name in list(self.held):
                lease = holding.get(name)
                if lease is None or lease.epoch != self.held[name].epoch:
                    self._drop(name, "its lease was taken over or moved")
            for name, lease in holding.items():
                if name not in self.held:
                    self._take(lease)  # moved to this learner by hand
            models = [
                r.name for r in self.store.list_models() if r.flavor == "river" or evaluated(r)
            ]
            learners = cluster.live_learners(conn, self.lease_seconds)
            most = cluster.share(len(models), len(learners) or 1)
            # More than its share (a learner joined): give the extra leases up, those not
            # moved here by hand, for the others to take.
            spare = sorted(n for n in self.held if n in holding and not holding[n].pinned)
            while len(self.held) > most and spare:
                name = spare.pop()
                cluster.release(conn, name, self.id, self.held[name].epoch)
                self._drop(name, "another learner takes its share")
            for name in models:
                if len(self.held) >= most:
                    break
                if name in self.held:
                    continue
                got = cluster.acquire(conn, name, self.id, self.lease_seconds)
                if got is not None:
                    self._take(got)
        except (psycopg.Error, Unavailable) as exc:
            log.warning("the learner cannot reach the database: %s", exc)
            if time.monotonic() - self._renewed > self.lease_seconds:
                for name in list(self.held):
                    self._drop(name, "its lease could not be renewed")

    def _take(self, lease: cluster.Lease) -> None:
        engine = self.engine
        engine._live.pop(lease.model, None)  # loaded again: checkpoint + the log
        try:
            live = engine._get_live(lease.model)
        except RiverbedError as exc:
            log.warning("cannot learn %r: %s", lease.model, exc)
            return
        if live.n_learns != lease.seq:
            log.warning(
                "model %r: the log holds %d learns, its lease says %d",
                lease.model,
                live.n_learns,
                lease.seq,
            )
        self.held[lease.model] = _Held(lease.epoch, lease.position)
        log.info(
            "learner %s holds %r (epoch %d, from %s)",
            self.id,
            lease.model,
            lease.epoch,
            lease.position,
        )

    def _drop(self, name: str, why: str) -> None:
        self.held.pop(name, None)
        self.engine._live.pop(name, None)
        log.info("learner %s lets %r go: %s", self.id, name, why)

    # -- learning ----------------------------------------------------------------------------

    def _learn_round(self) -> None:
        positions = {name: held.position for name, held in self.held.items()}
        try:
            found = self.broker.read(positions, count=_BATCH, block_ms=self.block_ms)
        except Unavailable as exc:
            log.warning("the learner cannot reach the broker: %s", exc)
            self._stop.wait(0.5)
            return
        for name, entries in found:
            if name in self.held and entries:
                try:
                    self._apply(name, entries)
                except Fenced:
                    self._drop(name, "its lease was taken over or moved")
                except (psycopg.Error, Unavailable) as exc:
                    self._drop(name, f"its commit failed ({exc})")

    def _apply(self, name: str, entries: list[tuple[str, bytes]]) -> None:
        """Apply a model's entries in order and commit them together."""
        engine, held = self.engine, self.held[name]
        live = engine._get_live(name)
        records: list[LearnRecord] = []
        points: list[MetricPoint] = []
        refused = 0
        last = held.position
        messages = [(entry_id, load(raw)) for entry_id, raw in entries]
        labelled = self._labelled([m["id"] for _, m in messages if m["id"] is not None])
        with live.lock:
            for entry_id, message in messages:
                if entry_id == held.skip:
                    if records:
                        break  # commit what came before it first
                    refused, last, held.skip = refused + 1, entry_id, None
                    log.warning("model %r refused the sample of entry %s", name, entry_id)
                    continue
                pid = message["id"]
                if pid is not None and pid in labelled:
                    # A second label of a prediction (its claim on the broker expired or was
                    # lost before this learner committed the first): learned once only.
                    refused, last = refused + 1, entry_id
                    log.warning(
                        "model %r: entry %s labels prediction %r a second time; skipped",
                        name,
                        entry_id,
                        pid,
                    )
                    continue
                if pid is not None:
                    labelled.add(pid)
                stored = message["prediction"] if pid is not None else MISSING
                try:
                    record = engine._make_learn(
                        live, message["features"], message["target"], None, stored
                    )
                    record.prediction_id = pid
                    engine._apply(live, record)
                except RiverbedError:
                    # The model is as its checkpoint and log say, without this batch: learn
                    # it again up to this entry, then skip the entry.
                    engine._live.pop(name, None)
                    held.skip = entry_id
                    return
                records.append(record)
                last = entry_id
                if live.metric.point_due(record.created_at):
                    values = live.metric.values()
                    points.append(MetricPoint(name, record.seq, record.created_at, values))
            live.drift_fired = []  # drift alarms are not written by a learner (yet),
            engine._canary_fired.pop(name, None)  # nor a canary guard's stop published
            checkpoint = None
            s = self.settings
            if live.n_learns > live.checkpoint_seq and (
                live.n_learns - live.checkpoint_seq >= s.checkpoint_every
                or time.monotonic() - live.checkpoint_time >= s.checkpoint_seconds
            ):
                checkpoint = engine._take_checkpoint(live)
            try:
                self._commit(name, held, last, live.n_learns, refused, records, points, checkpoint)
            except BaseException:
                engine._live.pop(name, None)  # applied, not committed: load it again
                raise
        held.position = last
        self.applied += len(records)
        self.broker.trim(name, last)

    def _labelled(self, ids: list[str]) -> set[str]:
        """The predictions among ``ids`` already labelled in the database: only the model's
        lease holder marks them, in the transaction of their learns, so this is exact."""
        if not ids:
            return set()
        rows = (
            self._connection()
            .execute("SELECT id FROM predictions WHERE id = ANY(%s) AND labelled", (ids,))
            .fetchall()
        )
        return {r[0] for r in rows}

    def _commit(
        self,
        name: str,
        held: _Held,
        position: str,
        seq: int,
        refused: int,
        records: list[LearnRecord],
        points: list[MetricPoint],
        checkpoint: Checkpoint | None,
    ) -> None:
        conn = self._connection()
        with conn.transaction():
            updated = conn.execute(
                f"UPDATE riverbed_leases SET position = %s, seq = %s, refused = refused + %s,"
                f" updated_at = {cluster.NOW} WHERE model = %s AND holder = %s AND epoch = %s",
                (position, seq, refused, name, self.id, held.epoch),
            )
            if updated.rowcount != 1:
                raise Fenced(name)
            with conn.cursor() as cursor:
                if records:
                    cursor.executemany(
                        "INSERT INTO learns (model, seq, features, target, prediction,"
                        " prediction_id, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        learn_rows(records),
                    )
                labels = [r.prediction_id for r in records if r.prediction_id is not None]
                if labels:
                    cursor.execute(
                        "UPDATE predictions SET labelled = TRUE WHERE id = ANY(%s)", (labels,)
                    )
                if points:
                    cursor.executemany(
                        'INSERT INTO metric_points (model, seq, time, "values")'
                        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [(p.model, p.seq, p.time, dump(p.values)) for p in points],
                    )
                if checkpoint is not None:
                    cursor.execute(
                        "INSERT INTO checkpoints (model, seq, state, created_at)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (model) DO UPDATE SET"
                        " seq = excluded.seq, state = excluded.state,"
                        " created_at = excluded.created_at",
                        (name, checkpoint.seq, checkpoint.state, checkpoint.created_at),
                    )
