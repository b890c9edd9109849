"""Training jobs: post data and one or more candidate models, get registered versions back.

A job is validated when it is submitted (the data parsed, the target and feature columns
found, every candidate built), saved as ``queued`` and run by a background worker thread:
``running`` with a progress between 0 and 1 and log lines, then ``succeeded``, ``failed``
(with an error naming the row and column at fault), or ``cancelled``. Every candidate is
trained (see :mod:`riverbed.training`), then each becomes a new version of the job's model
(source ``job``) with its metrics, parameters and the data's fingerprint, and the best one
by the chosen metric gets the alias. A job's record is saved on every change of status and
about once a second while it runs; a server that stops while jobs are queued or running
finds them on its next start and marks them ``interrupted``, never leaving a silent hole.

Every change is published on the engine's event feed (``job.queued``, ``job.running``,
``job.progress``, ``job.succeeded``, ``job.failed``, ``job.cancelled``, ``job.interrupted``),
which the server streams as server-sent events.
"""

from __future__ import annotations

import builtins
import logging
import math
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from riverbed import cluster, jobspec, training
from riverbed.exceptions import (
    InvalidData,
    InvalidInput,
    JobNotFound,
    RiverbedError,
    VersionNotFound,
)
from riverbed.receipts import Receipt
from riverbed.stores.futures import all_done
from riverbed.stores.jobstore import JobRecord, JobStore
from riverbed.tasks import get_task, make_metrics

__all__ = ["FINISHED", "JobRunner"]

log = logging.getLogger(__name__)

FINISHED = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
MAX_LOG_LINES = 1000
SAVE_SECONDS = 1.0


class _Running:
    """What a worker needs for one job, and the signals around it."""

    def __init__(
        self, record: JobRecord, dataset: training.Dataset, candidates: list[training.Candidate]
    ) -> None:
        self.record = record
        self.dataset = dataset
        self.candidates = candidates
        self.cancel = threading.Event()
        self.finished = threading.Event()
        self.saved_at = 0.0
        self.published = -1.0


class JobRunner:
    """The engine's training jobs (``engine.jobs``); workers are daemon threads."""

    def __init__(self, engine: jobspec.JobHost, *, workers: int = 1) -> None:
        store = engine.store
        if not isinstance(store, JobStore):
            raise InvalidInput(f"the {type(store).__name__} cannot keep training jobs")
        self.engine = engine
        self.store: JobStore = store
        self._lock = threading.Lock()
        self._jobs: dict[str, _Running] = {}
        self._queue: queue.SimpleQueue[_Running | None] = queue.SimpleQueue()
        self._closed = False
        address = engine.settings.jobs_cluster
        self.cluster = cluster.Cluster(address) if address else None
        if not engine.store.read_only:  # the writer recovers the jobs a crash interrupted
            self._recover()
        self._workers = [
            threading.Thread(target=self._work, name=f"riverbed-jobs-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for worker in self._workers:
            worker.start()

    # -- submitting --------------------------------------------------------------------------

    def submit(
        self,
        model: str,
        data: Any,
        *,
        target: str,
        spec: Any = None,
        candidates: Any = None,
        grid: Any = None,
        warm_start: str | None = None,
        format: str | None = None,
        features: Sequence[str] | None = None,
        task: str | None = None,
        metrics: Sequence[str] | None = None,
        validation: Mapping[str, Any] | None = None,
        select: Mapping[str, Any] | None = None,
        keep_data: bool = False,
        dataset: str = "",
        description: str = "",
    ) -> Receipt[dict[str, Any]]:
        """Validate and queue a training job; the receipt's value is the job (queued)."""
        engine = self.engine
        model = engine._check_name(model)
        if not isinstance(target, str) or not target:
            raise InvalidInput("target must name the column to learn to predict")
        parsed = training.read_data(data, format, name=dataset)
        if target not in parsed.columns:
            raise training.data_error(
                f"the target column is not in the data; columns: {', '.join(parsed.columns)}",
                column=target,
            )
        chosen = jobspec.check_features(parsed, target, features)
        validation = jobspec.check_validation(validation)
        found = training.candidates_of(
            spec=spec,
            candidates=candidates,
            grid=grid,
            limit=engine.settings.max_candidates,
        )
        parent = None
        if warm_start is not None:
            if found:
                raise InvalidInput("give a spec (or candidates, or a grid) or warm_start, not both")
            found, parent = [self._warm_candidate(warm_start)], warm_start
        if not found:
            raise InvalidInput("name the model to train: spec, candidates, grid or warm_start")
        task_name = jobspec.task_of(engine, model, found, task, parsed, target)
        if metrics is not None:
            if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
                raise InvalidInput("metrics must be an array of river metric class names")
            make_metrics(get_task(task_name), metrics)
        metric_names = list(metrics) if metrics else None
        choice = jobspec.check_select(select, task_name, metrics, len(found))
        now = time.time()
        record = JobRecord(
            id=uuid.uuid4().hex[:16],
            model=model,
            status="queued",
            created_at=now,
            request={
                "model": model,
                "target": target,
                "features": chosen,
                "candidates": [{"name": c.name, "spec": c.spec, "params": c.params} for c in found],
                "warm_start": parent,
                "task": task_name,
                "metrics": metric_names,
                "validation": validation,
                "select": choice,
                "keep_data": bool(keep_data),
                "description": engine._check_text("description", description),
            },
            data={"format": parsed.format, "name": dataset, **parsed.fingerprint()},
        )
        self._log(record, f"queued: {len(found)} candidate(s) on {len(parsed.rows)} rows")
        running = _Running(record, parsed, found)
        futures = [self.store.save_job(record)]
        if keep_data:
            raw = data if isinstance(data, bytes | bytearray) else None
            kept = bytes(raw) if raw is not None else training.orjson.dumps(parsed.rows)
            futures.append(
                self.store.save_job_data(record.id, parsed.format if raw else "json", kept)
            )
        with self._lock:
            self._jobs[record.id] = running
        queued = self._describe(record)  # before a worker can pick it up
        self._publish("job.queued", record)
        self._queue.put(running)
        return Receipt(queued, all_done(futures))

    def _warm_candidate(self, ref: str) -> training.Candidate:
        engine = self.engine
        resolved = engine.resolve(ref)
        record = engine.store.get_version(resolved["model"], resolved["version"])
        if record is None:  # deleted between the two reads
            raise VersionNotFound(f"{ref!r} names no version")
        obj = engine._object_of(record)
        return training.Candidate(f"{resolved['model']}@{resolved['version']}", base=obj)

    # -- reading -----------------------------------------------------------------------------

    def get(self, job_id: str) -> dict[str, Any]:
        return self._describe(self._record(job_id))

    def list(self, *, model: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [self._describe(r) for r in self.store.list_jobs(model=model, limit=limit)]

    def logs(self, job_id: str) -> builtins.list[dict[str, Any]]:
        return list(self._record(job_id).logs)

    def data(self, job_id: str) -> tuple[str, bytes]:
        self._record(job_id)
        kept = self.store.get_job_data(job_id)
        if kept is None:
            raise JobNotFound(f"job {job_id!r} did not keep its data (keep_data)")
        return kept

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job has finished (or ``timeout`` seconds), then describe it."""
        running = self._jobs.get(job_id)
        if running is not None:
            running.finished.wait(timeout)
        return self.get(job_id)

    def _record(self, job_id: str) -> JobRecord:
        running = self._jobs.get(job_id)
        if running is not None:
            return running.record
        record = self.store.get_job(job_id) if isinstance(job_id, str) else None
        if record is None:
            raise JobNotFound(f"no job {job_id!r}")
        return record

    # -- cancelling and stopping -------------------------------------------------------------

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a job to stop; a queued job is cancelled at once, a running one at its next
        check (every half percent of its rows, or between folds)."""
        record = self._record(job_id)
        running = self._jobs.get(job_id)
        if running is None or record.status in FINISHED:
            return self._describe(record)
        running.cancel.set()
        if record.status == "queued":
            self._finish(running, "cancelled", None, "cancelled before it started")
        return self._describe(record)

    def close(self) -> None:
        """Stop the workers; jobs still queued or running are recorded as interrupted."""
        with self._lock:
            self._closed = True
            pending = list(self._jobs.values())
        for running in pending:
            running.cancel.set()
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=5)
        for running in pending:
            self._interrupt(running)
        if self.cluster is not None:
            self.cluster.close()

    def _interrupt(self, running: _Running) -> None:
        was = running.record.status
        if was in FINISHED:
            return
        error = {
            "code": "interrupted",
            "message": f"the server shut down while the job was {was}; submit it again",
            "detail": {"was": was},
        }
        self._finish(running, "interrupted", error, "interrupted: the server shut down", force=True)

    def _recover(self) -> None:
        for record in self.store.list_jobs(limit=1_000_000):
            if record.status not in FINISHED:
                was = record.status
                record.status = "interrupted"
                record.finished_at = time.time()
                record.error = {
                    "code": "interrupted",
                    "message": f"the server stopped while the job was {was}; submit it again",
                    "detail": {"was": was},
                }
                self._log(record, f"interrupted: the server stopped while the job was {was}")
                self.store.save_job(record).result()

    # -- running -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            running = self._queue.get()
            if running is None:
                return
            if running.record.status != "queued":  # cancelled while queued
                with self._lock:
                    self._jobs.pop(running.record.id, None)
                continue
            try:
                self._run(running)
            except training.Cancelled:
                if self._closed:
                    self._interrupt(running)
                else:
                    self._finish(running, "cancelled", None, "cancelled")
            except RiverbedError as exc:
                self._finish(running, "failed", exc.to_payload()["error"], f"failed: {exc}")
            except Exception as exc:  # a bug: the job says so rather than vanishing
                log.exception("training job %s failed", running.record.id)
                error: dict[str, Any] = {
                    "code": "server_error",
                    "message": f"the job failed on a server error: {type(exc).__name__}: {exc}",
                    "detail": {"traceback": traceback.format_exc(limit=5)},
                }
                self._finish(running, "failed", error, error["message"])
            finally:
                with self._lock:
                    self._jobs.pop(running.record.id, None)

    def _run(self, running: _Running) -> None:
        record, request = running.record, running.record.request
        record.status, record.started_at = "running", time.time()
        self._log(record, "running")
        self._save(running, force=True)
        self._publish("job.running", record)
        options = {
            "target": request["target"],
            "features": request["features"],
            "task": request["task"],
            "metrics": request["metrics"],
            "validation": request["validation"],
            "allowed": self.engine.settings.allowed_module_prefixes,
        }
        if self.cluster is None:
            outcomes = self._train_here(running, options)
        else:
            outcomes = self._train_there(running, options, self.cluster)
        if running.cancel.is_set():
            raise training.Cancelled
        self._register(running, outcomes)

    def _train_here(
        self, running: _Running, options: Mapping[str, Any]
    ) -> builtins.list[training.Outcome]:
        """The candidates one after another on this thread."""
        n = len(running.candidates)
        outcomes = []
        for k, candidate in enumerate(running.candidates):

            def progress(fraction: float, k: int = k) -> None:
                self._progress(running, (k + fraction) / n)

            try:
                outcome = training.train(
                    candidate,
                    running.dataset,
                    progress=progress,
                    cancelled=running.cancel.is_set,
                    **options,
                )
            except InvalidData as exc:
                raise training.blame(exc, candidate) from None
            outcomes.append(outcome)
            self._trained(running.record, candidate, outcome)
            self._progress(running, (k + 1) / n)
        return outcomes

    def _train_there(
        self, running: _Running, options: Mapping[str, Any], on: cluster.Cluster
    ) -> builtins.list[training.Outcome]:
        """The candidates at once, each a task on the cluster's workers."""
        n = len(running.candidates)
        fractions = [0.0] * n

        def progress(k: int, fraction: float) -> None:
            fractions[k] = max(fractions[k], fraction)
            self._progress(running, sum(fractions) / n)

        outcomes = on.train(
            running.record.id,
            running.candidates,
            running.dataset,
            options,
            progress=progress,
            cancelled=running.cancel.is_set,
            log=lambda message: self._log(running.record, message),
        )
        for candidate, outcome in zip(running.candidates, outcomes, strict=True):
            self._trained(running.record, candidate, outcome)
        return outcomes

    def _trained(
        self, record: JobRecord, candidate: training.Candidate, outcome: training.Outcome
    ) -> None:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in outcome.metrics.items())
        self._log(record, f"trained {candidate.name} ({outcome.flavor}): {shown}")

    def _register(self, running: _Running, outcomes: builtins.list[training.Outcome]) -> None:
        engine = self.engine
        record, request = running.record, running.record.request
        results = record.result.setdefault("candidates", [])
        parent = engine.resolve(request["warm_start"])["version"] if request["warm_start"] else None
        existed = engine.store.get_model(record.model) is not None
        try:
            self._register_all(running, outcomes, parent)
        except BaseException:
            # A job that fails registers nothing: take back the versions it registered.
            if not existed and engine.store.get_model(record.model) is not None:
                engine.delete_model(record.model)
            else:
                for result in reversed(results):
                    engine.delete_version(record.model, result["version"])
            for result in results:
                self._log(record, f"took back {record.model}@{result['version']}")
            results.clear()
            raise
        self._finish(running, "succeeded", None, "succeeded")

    def _register_all(
        self, running: _Running, outcomes: builtins.list[training.Outcome], parent: int | None
    ) -> None:
        engine = self.engine
        record, request = running.record, running.record.request
        results = record.result["candidates"]
        for candidate, outcome in zip(running.candidates, outcomes, strict=True):
            metrics = {k: v for k, v in outcome.metrics.items() if v is not None}
            version = engine.upload(
                record.model,
                outcome.model,
                source="job",
                task=outcome.task,
                description=request["description"] or f"trained by job {record.id}",
                metrics=metrics,
                params={
                    "job": record.id,
                    "candidate": candidate.name,
                    "grid": candidate.params,
                    "target": request["target"],
                    "features": request["features"],
                    "data": {k: record.data[k] for k in ("rows", "columns", "hash", "format")},
                    **(
                        {"validation": outcome.details["validation"]}
                        if "validation" in outcome.details
                        else {}
                    ),
                },
                dataset=record.data["name"] or None,
                parent=parent,
                feature_names=request["features"],
                git=False,  # the server's checkout is not where the job came from
                created_by=f"job:{record.id}",
            )["version"]
            results.append(
                {
                    "name": candidate.name,
                    "version": version,
                    "flavor": outcome.flavor,
                    "metrics": outcome.metrics,
                    "details": outcome.details,
                }
            )
            self._log(record, f"registered {candidate.name} as {record.model}@{version}")
            self._save(running, force=True)
        choice = request["select"]
        best = _best(results, choice["metric"], choice["direction"])
        record.result["best"] = best
        if best is not None and choice["alias"]:
            engine.set_alias(record.model, choice["alias"], best["version"], by=f"job:{record.id}")
            self._log(
                record,
                f"{record.model}@{choice['alias']} -> version {best['version']} "
                f"({choice['metric']}={_fmt(best['value'])}, {choice['direction']})",
            )

    def _progress(self, running: _Running, fraction: float) -> None:
        record = running.record
        record.progress = min(1.0, max(record.progress, fraction))
        if record.progress - running.published >= 0.01 or record.progress >= 1.0:
            running.published = record.progress
            self._publish("job.progress", record)
        self._save(running)

    def _finish(
        self,
        running: _Running,
        status: str,
        error: dict[str, Any] | None,
        message: str,
        *,
        force: bool = False,
    ) -> None:
        record = running.record
        with self._lock:
            if record.status in FINISHED:
                return
            record.status, record.error, record.finished_at = status, error, time.time()
        if status == "succeeded":
            record.progress = 1.0
        self._log(record, message)
        saved = self._save(running, force=True, closing=force)
        if saved is not None:
            try:  # durable before anyone is told: a reader that sees the job gone finds this
                saved.result()
            except Exception:
                log.exception("could not save job %s", record.id)
        self._publish(f"job.{status}", record)
        running.finished.set()

    def _save(
        self, running: _Running, *, force: bool = False, closing: bool = False
    ) -> Future[None] | None:
        now = time.monotonic()
        if not force and now - running.saved_at < SAVE_SECONDS:
            return None
        if self._closed and not closing:
            return None
        running.saved_at = now
        return self.store.save_job(running.record)

    def _log(self, record: JobRecord, message: str) -> None:
        record.logs.append({"time": time.time(), "message": message})
        del record.logs[:-MAX_LOG_LINES]

    def _publish(self, type: str, record: JobRecord) -> None:
        data = {"job": record.id, "status": record.status, "progress": record.progress}
        if record.error is not None:
            data["error"] = record.error
        self.engine.events.publish(type, record.model, data)

    def _describe(self, record: JobRecord) -> dict[str, Any]:
        return {
            "id": record.id,
            "model": record.model,
            "status": record.status,
            "progress": record.progress,
            "created_at": record.created_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "error": record.error,
            "data": dict(record.data),
            "request": dict(record.request),
            "result": dict(record.result),
            "n_logs": len(record.logs),
        }


def _best(results: list[dict[str, Any]], metric: str, direction: str) -> dict[str, Any] | None:
    scored = [r for r in results if r["metrics"].get(metric) is not None]
    if not scored:
        return None
    sign = 1 if direction == "min" else -1
    best = min(scored, key=lambda r: sign * r["metrics"][metric])
    return {
        "name": best["name"],
        "version": best["version"],
        "metric": metric,
        "value": best["metrics"][metric],
    }


def _fmt(value: Any) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.6g}"
