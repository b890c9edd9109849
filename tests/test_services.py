"""`make test` checks the services the suite talks to before anything else (issue 26 item 1):
.ci/services starts what is down when it can, and otherwise says in one line which service is
missing and the command that starts it, and exits non-zero."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / ".ci" / "services"


def closed_port() -> int:
    """A local port nothing listens on (bound once by the OS, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def services(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_with_every_service_up_the_check_is_silent() -> None:
    result = services("--check")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("service", "variable", "command"),
    [("Redis", "REDIS_PORT", "redis-server"), ("PostgreSQL", "POSTGRES_PORT", "pg_ctlcluster")],
)
def test_a_missing_service_is_one_line_naming_it_and_how_to_start_it(
    service: str, variable: str, command: str
) -> None:
    port = closed_port()
    result = services("--check", **{variable: str(port)})
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"the test suite needs {service} on 127.0.0.1:{port} and nothing answers there; "
        "start it with: "
    )
    start = lines[0].split("start it with: ", 1)[1]
    assert command in start
    if service == "Redis":
        assert f"--port {port}" in start


def test_a_service_on_another_host_is_named_with_the_variables_that_move_it() -> None:
    result = services("--check", REDIS_HOST="192.0.2.1", REDIS_PORT="6379")  # TEST-NET-1
    assert result.returncode == 1
    assert result.stderr.strip().endswith("(or set REDIS_HOST, REDIS_PORT)")
    assert "Redis on 192.0.2.1:6379" in result.stderr


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server installed")
def test_a_local_redis_that_is_down_is_started() -> None:
    port = closed_port()
    result = services(REDIS_PORT=str(port))
    try:
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        assert result.stdout == f"starting Redis on 127.0.0.1:{port}\n"
        ping = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, timeout=10
        )
        assert ping.stdout.strip() == "PONG"
    finally:
        subprocess.run(
            ["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=10
        )


def test_make_test_runs_the_service_check_first() -> None:
    """Before the venv, lint, types or pytest: `make -n` lists the commands in order."""
    # Under CI the suite itself runs inside `make test`: a nested make would print
    # "Entering directory" first and inherit the parent's flags, so start it clean.
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}}
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == "bash .ci/services"
