"""A real Dask cluster on loopback for tests and benchmarks: one ``dask scheduler`` and some
``dask worker`` processes, started from this Python's environment (so the workers import the
riverbed under test) and stopped, or killed one at a time, by the test.

    with LocalDaskCluster(workers=2) as cluster:
        engine = Engine(":memory:", jobs_cluster=cluster.address)
        ...
        cluster.kill_worker(0)  # SIGKILL, as a machine that vanishes
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LocalDaskCluster"]

START_SECONDS = 60.0


class LocalDaskCluster:
    """A scheduler on a free loopback port and ``workers`` single-threaded workers."""

    def __init__(self, workers: int = 2, *, threads: int = 1) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="riverbed-dask-")
        self._file = Path(self._dir.name) / "scheduler.json"
        self._logs: list[Path] = []
        self.threads = threads
        self.scheduler = self._spawn(
            "scheduler",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self._file),
        )
        self.workers: list[subprocess.Popen[bytes]] = []
        try:
            self.address = self._wait_address()
            for _ in range(workers):
                self.add_worker()
            self.wait_workers(workers)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = Path(self._dir.name) / f"{name}-{len(self._logs)}.log"
        self._logs.append(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "dask", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def _wait_address(self) -> str:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited:\n{self.log_text()}")
            try:
                return str(json.loads(self._file.read_text())["address"])
            except (FileNotFoundError, ValueError, KeyError):
                time.sleep(0.1)
        raise RuntimeError(f"dask scheduler did not start:\n{self.log_text()}")

    def add_worker(self) -> subprocess.Popen[bytes]:
        """One more worker process (``--nworkers 1``); :meth:`wait_workers` waits for it."""
        worker = self._spawn(
            f"worker{len(self.workers)}",
            "worker",
            self.address,
            "--nworkers",
            "1",
            "--nthreads",
            str(self.threads),
            "--no-dashboard",
            "--no-nanny",
            "--host",
            "127.0.0.1",
        )
        self.workers.append(worker)
        return worker

    def wait_workers(self, count: int) -> None:
        """Until the scheduler counts ``count`` workers."""
        from distributed import Client

        deadline = time.monotonic() + START_SECONDS
        with Client(self.address, timeout=START_SECONDS, set_as_default=False) as client:
            while len(client.scheduler_info()["workers"]) != count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{count} dask workers did not join:\n{self.log_text()}")
                time.sleep(0.1)

    def kill_worker(self, index: int) -> None:
        """SIGKILL one worker: no goodbye to the scheduler, its tasks and data lost."""
        worker = self.workers[index]
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)

    def log_text(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
            for log in self._logs
            if log.exists()
        )

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._dir.cleanup()

    def __enter__(self) -> LocalDaskCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
