"""The job store interface (training jobs' records and kept data) and its in-memory twin.

A job record is saved whole (an upsert) whenever its status, progress or logs change; the
SQLite store keeps it in the ``jobs`` table so that a restart finds every job, and the job
runner turns the ones that were queued or running into ``interrupted``.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import threading
from concurrent.futures import Future
from typing import Any

from riverbed.stores.base import done

__all__ = ["JobRecord", "JobStore", "MemoryJobs"]


@dataclasses.dataclass
class JobRecord:
    id: str
    model: str
    status: str  # queued, running, succeeded, failed, cancelled, interrupted
    created_at: float
    request: dict[str, Any] = dataclasses.field(default_factory=dict)  # the job without data
    data: dict[str, Any] = dataclasses.field(default_factory=dict)  # fingerprint, format, name
    progress: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    logs: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class JobStore(abc.ABC):
    @abc.abstractmethod
    def save_job(self, job: JobRecord) -> Future[None]:
        """Insert or replace a job's record."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> JobRecord | None: ...

    @abc.abstractmethod
    def list_jobs(self, *, model: str | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs, newest first, optionally of one model."""

    @abc.abstractmethod
    def save_job_data(self, job_id: str, format: str, data: bytes) -> Future[None]:
        """Keep a job's training data (when the job asks for it)."""

    @abc.abstractmethod
    def get_job_data(self, job_id: str) -> tuple[str, bytes] | None: ...


class MemoryJobs(JobStore):
    def __init__(self) -> None:
        self._jobs_lock = threading.Lock()
        self._jobs: dict[str, JobRecord] = {}
        self._job_data: dict[str, tuple[str, bytes]] = {}

    def save_job(self, job: JobRecord) -> Future[None]:
        with self._jobs_lock:
            self._jobs[job.id] = copy.deepcopy(job)
        return done()

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._jobs_lock:
            job = self._jobs.get(job_id)
            return copy.deepcopy(job) if job else None

    def list_jobs(self, *, model: str | None = None, limit: int = 100) -> list[JobRecord]:
        with self._jobs_lock:
            jobs = [j for j in self._jobs.values() if model is None or j.model == model]
            jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
            return [copy.deepcopy(j) for j in jobs[:limit]]

    def save_job_data(self, job_id: str, format: str, data: bytes) -> Future[None]:
        with self._jobs_lock:
            self._job_data[job_id] = (format, bytes(data))
        return done()

    def get_job_data(self, job_id: str) -> tuple[str, bytes] | None:
        with self._jobs_lock:
            return self._job_data.get(job_id)
