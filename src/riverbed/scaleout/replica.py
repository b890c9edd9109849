"""A scale-out replica: ``riverbed serve --database postgresql://... --broker redis://...``.

It serves every route and predicts from its local copy of each model. Predictions are
stored in PostgreSQL, so a label may arrive at any replica. A learn is checked here (the
engine's own checks) and handed to the model's stream on the broker; a delayed label
claims its prediction in the same broker script that adds its entry (one request wins, the
others answer 409 ``already_labelled``: :meth:`riverbed.scaleout.broker.Broker.add`), so a
replica killed mid-request leaves the label either handed over and claimed or neither. The
request is acknowledged once the broker has it; the learner's commit marks the prediction
labelled in PostgreSQL. Nothing is learned here: the follower
thread applies the learner's log (the ``learns`` table, in seq order) to the local copies
every ``staleness_seconds / 5`` (at most 0.1 s), and writes the replica's heartbeat.

A replica that loses the broker or the database keeps predicting from its last state (a
prediction is then not stored while the database is out of reach, so no label can follow
it) and answers learns with 503 and ``Retry-After``.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import psycopg

from riverbed.bulk import _LEARN_FIELDS, _refused, item_error, learn_item
from riverbed.config import Settings
from riverbed.engine import Engine
from riverbed.exceptions import (
    AlreadyLabelled,
    RiverbedError,
    Unavailable,
)
from riverbed.receipts import Receipt
from riverbed.scaleout import cluster
from riverbed.scaleout.broker import Broker
from riverbed.stores.base import PredictionRecord, dump
from riverbed.stores.futures import done
from riverbed.stores.postgres.store import PostgresStore
from riverbed.stores.postgres.writer import connect

__all__ = ["Replica", "ReplicaStore", "replica_engine"]

log = logging.getLogger(__name__)

_HEARTBEAT_SECONDS = 1.0
_MAX_HANDOFF = 512  # requests handed to the broker in one script


class ReplicaStore(PostgresStore):
    """The shared PostgreSQL store of a replica: while the replica knows the database is out
    of reach (``offline``), predictions are answered without being stored."""

    offline = False

    def add_predictions(
        self, records: list[PredictionRecord], *, one: bool = False
    ) -> Future[None]:
        if self.offline:
            return done()
        return super().add_predictions(records, one=one)


class _Handoff:
    """One request's learns: messages for the stream and the prediction ids they claim."""

    __slots__ = ("model", "messages", "claims", "future", "ids", "failed")

    def __init__(self, model: str, messages: list[bytes], claims: list[str]) -> None:
        self.model, self.messages, self.claims = model, messages, claims
        self.future: Future[None] = Future()
        self.ids: list[str] = []
        self.failed: Callable[[], None] | None = None  # gives the labels' marks back


class Replica:
    """The engine's ``scaleout`` hook on a replica (see :class:`riverbed.engine.ScaleOut`)."""

    def __init__(self, engine: Engine, settings: Settings, *, name: str | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.id = cluster.member_id("replica", name)
        self.address = f"http://{settings.host}:{settings.port}"
        self.broker = Broker(settings.broker)
        self.url = settings.database
        self.poll = min(0.1, settings.staleness_seconds / 5)
        self.broker_ok = True
        self.db_ok = True
        # per model: (learns acknowledged and not in the local copy, the oldest one's
        # acknowledgement time or None) at the last follow
        self.behind: dict[str, tuple[int, float | None]] = {}
        self._queue: queue.SimpleQueue[_Handoff | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        conn = connect(self.url)
        try:
            cluster.ensure_tables(conn)
        finally:
            conn.close()
        durability = self.broker.durability()
        if durability is not None and durability != ("yes", "always"):
            log.warning(
                "the broker %s runs with appendonly=%s appendfsync=%s: an acknowledged learn "
                "can be lost if it stops (docs/scale-out.md: appendonly yes, appendfsync always)",
                settings.broker,
                *durability,
            )
        policy = self.broker.eviction()
        if policy is not None:
            log.warning(
                "the broker %s evicts keys when full (maxmemory-policy %s): an acknowledged "
                "learn or a label's claim can be lost (docs/scale-out.md: noeviction)",
                settings.broker,
                policy,
            )
        self._threads = [
            threading.Thread(target=self._handoffs, name="riverbed-handoff", daemon=True),
            threading.Thread(target=self._follow, name="riverbed-follower", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        try:
            with connect(self.url) as conn:
                conn.execute("DELETE FROM riverbed_members WHERE id = %s", (self.id,))
        except psycopg.Error:
            pass
        self.broker.close()

    # -- operations ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The cluster's status (:func:`riverbed.scaleout.cluster.status`), and this replica."""
        try:
            with connect(self.url) as conn:
                found = cluster.status(conn, self.broker, self.settings.lease_seconds)
        except psycopg.Error as exc:
            raise Unavailable(f"the PostgreSQL database cannot be reached: {exc}") from None
        return {"replica": self.id, **found}

    def move(self, model: str, learner: str) -> dict[str, Any]:
        """Hand a model's lease to a running learner (:func:`riverbed.scaleout.cluster.move`)."""
        try:
            with connect(self.url) as conn:
                return cluster.move(conn, model, learner, self.settings.lease_seconds)
        except psycopg.Error as exc:
            raise Unavailable(f"the PostgreSQL database cannot be reached: {exc}") from None

    # -- learns: checked here, handed to the broker -----------------------------------------

    def _refuse_when_down(self) -> None:
        if not self.broker_ok:
            raise Unavailable(
                f"this replica cannot reach the broker {self.settings.broker}: nothing was "
                "learned; retry",
                detail={"cause": "broker_unreachable"},
            )
        if not self.db_ok:
            raise Unavailable(
                "this replica cannot reach the PostgreSQL database: nothing was learned; retry",
                detail={"cause": "database_unreachable"},
            )

    def _message(self, name: str, checked: tuple[Any, Any, Any, Any]) -> tuple[bytes, str | None]:
        sample, y, prediction, stored = checked
        if prediction is None:
            body = {"features": sample, "target": y, "id": None}
        else:
            body = {"features": sample, "target": y, "id": prediction.id, "prediction": stored}
        return dump(body), (prediction.id if prediction is not None else None)

    def submit_learn(
        self, name: str, features: Any, ground_truth: Any, id: str | None, inputs: Any
    ) -> Receipt[dict[str, Any]]:
        engine = self.engine
        if name not in engine._live:
            name = engine._learner_of(name)
        live = engine._get_live(name)
        self._refuse_when_down()
        with live.lock:
            checked = engine._check_learn(live, features, ground_truth, id, inputs)
            prediction = checked[2]
            if prediction is not None:
                prediction.labelled = True
                engine._mark(prediction)
        message, claim = self._message(name, checked)
        marked = [prediction] if prediction is not None else []
        job = self._hand([message], [claim] if claim else [], name, marked)
        result = {"model": name, "id": claim, "n_learns": None}
        return Receipt(result, job.future, job.failed)

    def submit_learn_many(self, name: str, items: Any) -> Receipt[dict[str, Any]]:
        engine = self.engine
        if name not in engine._live:
            name = engine._learner_of(name)
        live = engine._get_live(name)
        items = engine._check_batch(items)
        self._refuse_when_down()
        allowed = _LEARN_FIELDS | live.task.inputs
        messages, claims, marked = [], [], []
        errors: list[dict[str, Any]] = []
        with live.lock:
            checked = []
            for index, item in enumerate(items):
                try:
                    features, id, ground_truth, fields = learn_item(item, allowed)
                    if id is not None and id in claims:
                        raise AlreadyLabelled(f"prediction id {id!r} comes twice in the batch")
                    one = engine._check_learn(live, features, ground_truth, id, fields)
                    checked.append(one)
                    if one[2] is not None:
                        claims.append(one[2].id)
                except RiverbedError as exc:
                    errors.append(item_error(index, exc))
            if errors:
                raise _refused(errors, len(items))
            for one in checked:
                if one[2] is not None:
                    one[2].labelled = True
                    engine._mark(one[2])
                    marked.append(one[2])
                messages.append(self._message(name, one)[0])
        if not messages:
            return Receipt({"model": name, "n_learns": None, "items": []}, done())
        job = self._hand(messages, claims, name, marked)
        result = {
            "model": name,
            "n_learns": None,
            "items": [{"id": c[2].id if c[2] else None, "n_learns": None} for c in checked],
        }
        return Receipt(result, job.future, job.failed)

    def _unmark(self, marked: list[PredictionRecord]) -> Callable[[], None] | None:
        """What gives a failed hand-off's labels back (once), so that a retry can label
        them; called by the future's callback and by the receipt, whichever comes first
        (the server's fast path answers from the future without calling the receipt's)."""
        if not marked:
            return None
        once: list[bool] = []

        def failed() -> None:
            if once:
                return
            once.append(True)
            for prediction in marked:
                prediction.labelled = False
                self.engine._mark(prediction)

        return failed

    def _hand(
        self, messages: list[bytes], claims: list[str], name: str, marked: list[PredictionRecord]
    ) -> _Handoff:
        job = _Handoff(name, messages, claims)
        job.failed = failed = self._unmark(marked)
        if failed is not None:
            job.future.add_done_callback(lambda f: failed() if f.exception() else None)
        self._queue.put(job)
        return job

    def _handoffs(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            try:
                while len(batch) < _MAX_HANDOFF:
                    more = self._queue.get_nowait()
                    if more is None:
                        self._queue.put(None)
                        break
                    batch.append(more)
            except queue.Empty:
                pass
            self._hand_over(batch)

    def _hand_over(self, batch: list[_Handoff]) -> None:
        """Add the batch's learns to the broker in one script, each request's claims with
        its entries: a request naming a prediction claimed already fails alone (409), a
        broker that fails fails them all."""
        requests = [(job.claims, [(job.model, m) for m in job.messages]) for job in batch]
        try:
            added = self.broker.add(requests)
        except Unavailable as exc:
            if (exc.detail or {}).get("cause") == "broker_unreachable":
                self.broker_ok = False  # refused (full, read-only): the next may go through
            for job in batch:
                job.future.set_exception(exc)
            return
        except Exception as exc:  # the hand-off thread goes on; these requests fail
            log.exception("handing %d requests to the broker failed", len(batch))
            error = Unavailable(
                f"the hand-off to the broker failed ({type(exc).__name__}): not acknowledged; retry"
            )
            for job in batch:
                job.future.set_exception(error)
            return
        for job, ids in zip(batch, added, strict=True):
            if isinstance(ids, str):
                job.future.set_exception(
                    AlreadyLabelled(
                        f"prediction {ids!r} has already been labelled (its label is learned "
                        "or on its way to the learner)"
                    )
                )
                continue
            job.ids = ids
            job.future.set_result(None)

    # -- following the learners' log ----------------------------------------------------------

    def _follow(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        beat = 0.0
        while not self._stop.wait(self.poll):
            try:
                if conn is None or conn.closed or conn.broken:
                    conn = connect(self.url)
                self._follow_once(conn)
                if time.monotonic() - beat >= _HEARTBEAT_SECONDS:
                    beat = time.monotonic()
                    cluster.heartbeat(conn, self.id, "replica", self.address, self.info())
                self._set_db(True)
            except (psycopg.Error, Unavailable) as exc:
                if self.db_ok:
                    log.warning("the replica lost the database: %s", exc)
                self._set_db(False)
                if conn is not None:
                    conn.close()
                    conn = None
            except Exception:  # the follower must go on
                log.exception("following the learners' log failed")
        if conn is not None:
            conn.close()

    def _set_db(self, ok: bool) -> None:
        self.db_ok = ok
        store = self.engine.store
        if isinstance(store, ReplicaStore):
            store.offline = not ok

    def _follow_once(self, conn: psycopg.Connection[Any]) -> None:
        engine = self.engine
        names = list(engine._live)
        if not names:
            return
        rows = conn.execute(
            "SELECT model, position, seq FROM riverbed_leases WHERE model = ANY(%s)", (names,)
        ).fetchall()
        committed = {r[0]: (r[1], r[2]) for r in rows}
        for name, (_, seq) in committed.items():
            live = engine._live.get(name)
            if live is None or seq <= live.n_learns:
                continue
            records = list(engine.store.learns_after(name, live.n_learns))
            with live.lock:
                if engine._live.get(name) is not live:
                    continue
                if records and records[0].seq != live.n_learns + 1:  # retention cut the log
                    engine._live.pop(name, None)
                    continue
                for record in records:
                    if record.seq == live.n_learns + 1:
                        engine._replay_learn(live, record)
                        if record.prediction_id is not None:
                            self._labelled(record.prediction_id)
        positions = {n: committed.get(n, ("0-0", 0))[0] for n in names}
        try:
            waiting = self.broker.waiting(positions)
            self.broker_ok = True
        except Unavailable:
            if self.broker_ok:
                log.warning("the replica lost the broker %s", self.settings.broker)
            self.broker_ok = False
            return
        for name in names:
            live = engine._live.get(name)
            n, oldest = waiting.get(name, (0, None))
            pg_behind = max(0, committed.get(name, ("0-0", 0))[1] - (live.n_learns if live else 0))
            self.behind[name] = (n + pg_behind, None if oldest is None else oldest / 1000)

    def _labelled(self, id: str) -> None:
        """A label the learner committed: this replica's cached copy of its prediction is
        marked labelled too (the database's row is), so a second label sent here is refused
        by the replica's own check however long ago the broker's claim was set."""
        cached = self.engine._cache.get(id)
        if cached is not None and not cached.labelled:
            cached.labelled = True
            self.engine._mark(cached)

    def gauges(self) -> dict[str, tuple[int, float]]:
        """Per model: the acknowledged learns this replica does not include yet, and how
        long ago the oldest of them was acknowledged (0 when there is none)."""
        now = time.time()
        out = {}
        for name, (n, oldest) in list(self.behind.items()):
            out[name] = (n, 0.0 if oldest is None or not n else max(0.0, now - oldest))
        return out

    def info(self) -> dict[str, Any]:
        models = {}
        for name, (lag, staleness) in self.gauges().items():
            live = self.engine._live.get(name)
            models[name] = {
                "n_learns": live.n_learns if live is not None else None,
                "lag_learns": lag,
                "staleness_seconds": round(staleness, 3),
            }
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "broker_ok": self.broker_ok,
            "models": models,
        }


def replica_engine(settings: Settings) -> Engine:
    """An engine on the shared database with a :class:`Replica` as its ``scaleout`` hook."""
    store = ReplicaStore(settings.database, shared=True)
    engine = Engine(settings=settings, store=store)
    engine.scaleout = Replica(engine, settings)
    return engine


def close_replica(engine: Engine) -> None:
    if isinstance(engine.scaleout, Replica):
        engine.scaleout.close()


def replica_of(engine: Engine) -> Replica | None:
    """The engine's replica hook, None on a server that is not a scale-out replica."""
    return engine.scaleout if isinstance(engine.scaleout, Replica) else None
