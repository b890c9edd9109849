"""Helpers shared by the tests: store kinds, free ports, a real ``riverbed serve``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from river import linear_model, preprocessing

STORES = ["memory", "sqlite", "postgresql"]
# The store the HTTP tests' fixtures (conftest.py: api, server) run on: sqlite by default;
# RIVERBED_TEST_DATABASE=postgresql runs them on a database of their own on PostgreSQL
# (make test-postgresql).
TEST_DATABASE = os.environ.get("RIVERBED_TEST_DATABASE", "sqlite")

# Where .ci/services (run by `make test`) checked for PostgreSQL; trust authentication.
POSTGRES_SERVER = (
    f"postgresql://postgres@{os.environ.get('POSTGRES_HOST', '127.0.0.1')}:"
    f"{os.environ.get('POSTGRES_PORT', '5432')}"
)


class PostgresDatabase:
    """A database of its own on the test PostgreSQL server (a unique name), dropped by
    :meth:`drop` (which ends the connections still open to it first)."""

    def __init__(self) -> None:
        import uuid

        import psycopg

        self.name = f"riverbed_test_{uuid.uuid4().hex[:16]}"
        self.url = f"{POSTGRES_SERVER}/{self.name}"
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def riverbed(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``riverbed`` entry point in a subprocess, as a person runs it."""
    command = [str(Path(sys.executable).with_name("riverbed")), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_database(path: Path | str) -> str:
    """An empty riverbed database at ``path``, as ``riverbed serve`` leaves one: the CLI's
    other commands refuse a database that is not there rather than create it."""
    from riverbed import Engine

    Engine(str(path)).close()
    return str(path)


def database_for(kind: str, tmp_path: Path) -> str:
    return ":memory:" if kind == "memory" else str(tmp_path / "riverbed.db")


@contextlib.contextmanager
def database(kind: str, tmp_path: Path, name: str = "riverbed.db") -> Iterator[str]:
    """A database string of ``kind`` (memory, sqlite, postgresql): for PostgreSQL a database
    of its own, dropped afterwards."""
    if kind == "postgresql":
        made = PostgresDatabase()
        try:
            yield made.url
        finally:
            made.drop()
    elif kind == "memory":
        yield ":memory:"
    else:
        yield str(tmp_path / name)


def phishing_model() -> object:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


class Server:
    """A real ``riverbed serve`` subprocess."""

    def __init__(
        self, database: str, port: int | None = None, *extra: str, log: Path | None = None
    ) -> None:
        """``log``: a file for the server's output (else a pipe, which a server that logs a
        lot fills, and then blocks on)."""
        self.database = database
        self.log = log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        output = self.log.open("wb") if self.log is not None else subprocess.PIPE
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "riverbed",
                "serve",
                "--port",
                str(self.port),
                "--database",
                self.database,
                "--log-level",
                "warning",
                *self.extra,
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own, as a terminal's job (interrupt())
        )
        if self.log is not None:
            output.close()  # the server has its own copy
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                said = self.process.stdout.read() if self.process.stdout else b""
                if self.log is not None:
                    said = self.log.read_bytes()
                raise RuntimeError(f"riverbed serve exited early:\n{said.decode()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("riverbed serve did not answer /health within 60 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)
        if self.process.stdout:
            self.process.stdout.close()

    def interrupt(self) -> tuple[int, str]:
        """SIGINT to the server's whole process group, as Ctrl-C in a terminal sends it: the
        exit status and everything the server (and its children) printed."""
        assert self.process is not None and self.process.stdout is not None
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            output, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return self.process.returncode, output.decode()

    def stop(self) -> int:
        """SIGTERM: a clean shutdown."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> Server:
        """``with Server(db) as server:`` starts it, and stops it on the way out."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
