"""Server processes under test: start, wait until they answer, measure their CPU, stop."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["Server", "Servers", "Steal", "free_port"]

_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Steal:
    """The share of this machine's CPU time that its host took away (``steal`` in
    /proc/stat) between its creation and :meth:`share`. On a virtual machine that shares its
    host, a cell run while the host was busy is slower and has a longer tail for reasons
    outside the systems measured; the report shows it so that a reader can tell."""

    def __init__(self, stat: str = "/proc/stat") -> None:
        self.stat = stat
        self._start = self._read()

    def _read(self) -> tuple[int, int]:
        with open(self.stat) as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal [guest guest_nice, inside user]
        return ticks[7] if len(ticks) > 7 else 0, sum(ticks[:8])

    def share(self) -> float | None:
        steal, total = self._read()
        elapsed = total - self._start[1]
        return (steal - self._start[0]) / elapsed if elapsed > 0 else None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


class Server:
    """One server process (and its workers), started in its own process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        health: str = "/health",
        log_path: Path,
    ) -> None:
        self.name, self.port, self.health = name, port, health
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.health)
                if conn.getresponse().status < 500:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s; see {self.log_path}")

    def pids(self) -> list[int]:
        """The server's process and every descendant (gunicorn's workers)."""
        tree = _children()
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(tree.get(pid, []))
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server and its workers (from /proc)."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / _TICK

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class Servers:
    """Several server processes measured as one system (a cluster's replicas, learner and
    broker): their CPU and memory summed, and the CPU of each by name."""

    def __init__(self, servers: Sequence[Server]) -> None:
        self.servers = list(servers)

    def cpu_seconds(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def cpu_by_name(self) -> dict[str, float]:
        return {s.name: s.cpu_seconds() for s in self.servers}

    def rss_bytes(self) -> int:
        return sum(s.rss_bytes() for s in self.servers)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
