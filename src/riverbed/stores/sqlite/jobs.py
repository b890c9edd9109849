"""The job store on SQLite: :class:`riverbed.stores.sqlite.store.SQLiteStore` mixes this in."""

from __future__ import annotations

import sqlite3
from concurrent.futures import Future
from typing import Any

from riverbed.stores.base import dump, load
from riverbed.stores.jobstore import JobRecord, JobStore

__all__ = ["SCHEMA", "SQLiteJobs"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_model ON jobs (model, created_at);
CREATE TABLE IF NOT EXISTS job_data (
    id TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    data BLOB NOT NULL
);
"""

_FIELDS = (
    "request",
    "data",
    "progress",
    "started_at",
    "finished_at",
    "error",
    "result",
    "logs",
)


class SQLiteJobs(JobStore):
    def _read(self) -> sqlite3.Connection:  # pragma: no cover - SQLiteStore provides it
        raise NotImplementedError

    def _submit_job_write(self, op: Any) -> Future[Any]:
        writer: Any = getattr(self, "_writer")  # noqa: B009 - set by SQLiteStore.__init__
        future: Future[Any] = writer.submit(op)
        return future

    def save_job(self, job: JobRecord) -> Future[None]:
        params = (
            job.id,
            job.model,
            job.status,
            job.created_at,
            dump({f: getattr(job, f) for f in _FIELDS}),
        )

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO jobs (id, model, status, created_at, record)"
                " VALUES (?, ?, ?, ?, ?)",
                params,
            )

        return self._submit_job_write(op)

    @staticmethod
    def _job(row: tuple[Any, ...]) -> JobRecord:
        return JobRecord(row[0], row[1], row[2], row[3], **load(row[4]))

    def get_job(self, job_id: str) -> JobRecord | None:
        row = (
            self._read()
            .execute(
                "SELECT id, model, status, created_at, record FROM jobs WHERE id = ?", (job_id,)
            )
            .fetchone()
        )
        return self._job(row) if row else None

    def list_jobs(self, *, model: str | None = None, limit: int = 100) -> list[JobRecord]:
        query = "SELECT id, model, status, created_at, record FROM jobs"
        args: tuple[Any, ...] = ()
        if model is not None:
            query += " WHERE model = ?"
            args = (model,)
        rows = (
            self._read()
            .execute(query + " ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit))
            .fetchall()
        )
        return [self._job(row) for row in rows]

    def save_job_data(self, job_id: str, format: str, data: bytes) -> Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO job_data (id, format, data) VALUES (?, ?, ?)",
                (job_id, format, data),
            )

        return self._submit_job_write(op)

    def get_job_data(self, job_id: str) -> tuple[str, bytes] | None:
        row = (
            self._read()
            .execute("SELECT format, data FROM job_data WHERE id = ?", (job_id,))
            .fetchone()
        )
        return (row[0], bytes(row[1])) if row else None
