"""Load over riverbed's WebSocket ``/v1/ws``: worker processes of asyncio connections, each
connection keeping a window of operations in flight.

wrk speaks no WebSocket, and one Python process would measure its own overhead rather than
the server's, so :func:`run` starts one worker process (``python -m benchmarks.wsload``) per
:data:`PER_PROCESS` connections. A worker opens its connections (``websockets``, no
compression, binary frames of JSON made by byte concatenation; answers parsed with orjson),
says it is ready, starts on the parent's word, runs for the cell's seconds, then stops
sending and waits for every answer still due (so nothing is in flight when the counts are
read), and reports its counts, latencies and its own CPU time.

Connection ``t`` of ``C`` takes samples ``t, t+C, t+2C, ...`` of the stream, as with wrk.
Two modes:

- ``ws``: the delayed-label loop one operation a message. A connection sends ``WINDOW``
  (on one connection; ``WINDOW / C`` but at least ``MIN_WINDOW`` on each of ``C``)
  ``predict`` messages (each with a fresh ``prediction_id``); when a prediction comes back
  it sends its ``label``; when a label is acknowledged it sends the next prediction. So a
  label never leaves before its prediction has been answered, and a window of samples is
  in the loop at once. The rate is acknowledged labels (pairs) a second. With a window the
  model predicts a sample before the labels just ahead of it are learned, so the metrics
  are held to river's within a tolerance, as for many connections.
- ``ws-many``: ``learn_many`` messages of ``BATCH`` items ``{features, ground_truth}`` (each
  scored with the model's prediction before it learns, like the HTTP batch cell),
  ``MANY_WINDOW`` messages in flight. The server applies a connection's messages in the
  order they arrive, so with one connection the metrics must equal river's exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks.load import Load

__all__ = ["MANY_WINDOW", "MIN_WINDOW", "PER_PROCESS", "WINDOW", "WsLoad", "run", "write_samples"]

PER_PROCESS = 4  # connections per worker process
# ws: samples in the predict -> label loop at once: WINDOW on one connection, shared by
# many (at least MIN_WINDOW each), so that a prediction is not made too many labels ahead.
WINDOW = 32
MIN_WINDOW = 4
MANY_WINDOW = 2  # ws-many: learn_many messages in flight, per connection


@dataclasses.dataclass
class WsLoad(Load):
    """What the WebSocket load measured in one cell: wrk's fields (``requests`` counts the
    messages answered, ``learned`` the labels or learn_many items acknowledged,
    ``client_cpu_seconds`` the worker processes' CPU), and how the load was made."""

    processes: int
    window: int


def write_samples(path: Path, samples: list[tuple[dict[str, Any], Any]]) -> Path:
    path.write_bytes(orjson.dumps([[x, y] for x, y in samples]))
    return path


def run(
    *,
    url: str,
    model: str,
    samples: Path,
    mode: str,
    connections: int,
    seconds: float,
    prefix: str,
    batch: int,
    window: int | None = None,
    per_process: int = PER_PROCESS,
) -> WsLoad:
    """Run ``connections`` WebSocket connections against ``url`` (``ws://host:port``)."""
    if window is None:
        window = max(MIN_WINDOW, WINDOW // connections) if mode == "ws" else MANY_WINDOW
    groups = [
        list(range(first, min(first + per_process, connections)))
        for first in range(0, connections, per_process)
    ]
    workers = []
    reports_dir = Path(tempfile.mkdtemp(prefix="riverbed-wsload-"))
    for index, tids in enumerate(groups):
        config = {
            # the report (with every latency) goes to a file: a pipe cut it at 64 KiB
            "report": str(reports_dir / f"worker-{index}.json"),
            "url": url + "/v1/ws",
            "model": model,
            "samples": str(samples),
            "mode": mode,
            "tids": tids,
            "connections": connections,
            "seconds": seconds,
            "prefix": prefix,
            "batch": batch,
            "window": window,
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.wsload", json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=Path(__file__).resolve().parent.parent,
                text=True,
            )
        )
    try:
        for w in workers:
            assert w.stdout is not None
            line = w.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"a WebSocket worker failed to start: {line}{_err(w)}")
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        reports = []
        for index, w in enumerate(workers):
            out, err = w.communicate(timeout=seconds + 120)
            report = reports_dir / f"worker-{index}.json"
            if w.returncode != 0 or not report.exists():
                raise RuntimeError(f"a WebSocket worker failed ({w.returncode}): {out}{err}")
            reports.append((json.loads(report.read_text()), err))
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        shutil.rmtree(reports_dir, ignore_errors=True)
    latencies = sorted(x for r, _ in reports for x in r.pop("latencies"))
    first = min(r["start"] for r, _ in reports)
    last = max(r["end"] for r, _ in reports)

    def total(key: str) -> int:
        return int(sum(r[key] for r, _ in reports))

    return WsLoad(
        seconds=last - first,
        requests=total("ok") + total("bad"),
        ok=total("ok"),
        bad=total("bad"),
        learned=total("learned"),
        predicted=total("predicted"),
        samples=total("samples"),
        socket_errors=total("socket_errors"),
        p50_ms=_percentile(latencies, 0.50),
        p90_ms=_percentile(latencies, 0.90),
        p99_ms=_percentile(latencies, 0.99),
        stderr="\n".join(e.strip() for _, e in reports if e.strip()),
        client_cpu_seconds=sum(r["cpu_seconds"] for r, _ in reports),
        processes=len(workers),
        window=window,
    )


def _err(worker: subprocess.Popen[str]) -> str:
    worker.kill()
    _, err = worker.communicate()
    return err


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return 1000 * sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# -- the worker ------------------------------------------------------------------------------


class _Connection:
    """One WebSocket connection's loop: send within the window, match answers by id."""

    def __init__(self, ws: Any, tid: int, config: dict[str, Any], data: list[Any]) -> None:
        self.ws, self.tid, self.data = ws, tid, data
        self.conns, self.mode = config["connections"], config["mode"]
        self.batch, self.window = config["batch"], config["window"]
        self.model = config["model"].encode()
        self.prefix = f"{config['prefix']}{tid}-".encode()
        self.p = 0  # this connection's position in its share of the stream
        self.next_id = 0
        # request id -> (op, sample index, prediction id, time sent)
        self.pending: dict[int, tuple[str, int, bytes, float]] = {}
        self.ok = self.bad = self.learned = self.predicted = self.samples = 0
        self.latencies: list[float] = []
        self.problems: list[str] = []

    def _sample(self) -> int:
        i = (self.tid + self.p * self.conns) % len(self.data)
        self.p += 1
        return i

    async def _send(self, op: str, sample: int, prediction_id: bytes, body: bytes) -> None:
        self.next_id += 1
        rid = self.next_id
        self.pending[rid] = (op, sample, prediction_id, time.perf_counter())
        await self.ws.send(b'{"id":%d,"model":"%s",%s}' % (rid, self.model, body))

    async def _start(self) -> None:
        if self.mode == "ws":
            # The prediction id carries the position in the stream, which (unlike the
            # sample's index) never repeats when the stream wraps around.
            prediction_id = b"%s%d" % (self.prefix, self.p)
            i = self._sample()
            body = b'"op":"predict","prediction_id":"%s","features":%s' % (
                prediction_id,
                self.data[i][0],
            )
            await self._send("predict", i, prediction_id, body)
        else:
            items = []
            for _ in range(self.batch):
                x, y = self.data[self._sample()]
                items.append(b'{"features":%s,"ground_truth":%s}' % (x, y))
            body = b'"op":"learn_many","items":[%s]' % b",".join(items)
            await self._send("learn_many", -1, b"", body)

    async def go(self, deadline: float) -> None:
        for _ in range(self.window):
            await self._start()
        async for raw in self.ws:
            now = time.perf_counter()
            answer = orjson.loads(raw)
            op, sample, prediction_id, sent = self.pending.pop(answer["id"])
            self.latencies.append(now - sent)
            if answer.get("ok"):
                self.ok += 1
                if op == "predict":  # its label goes out now, in its place in the window
                    self.predicted += 1
                    body = b'"op":"label","prediction_id":"%s","ground_truth":%s' % (
                        prediction_id,
                        self.data[sample][1],
                    )
                    await self._send("label", sample, prediction_id, body)
                    continue
                n = 1 if op == "label" else self.batch
                self.learned += n
                self.samples += n
            else:
                self.bad += 1
                if len(self.problems) < 3:
                    self.problems.append(f"{op}: {str(answer.get('error'))[:300]}")
            if now < deadline:
                await self._start()
            elif not self.pending:
                break
        if self.pending:  # the server closed the connection with answers still due
            raise ConnectionError(f"closed with {len(self.pending)} answers due")


async def _worker(config: dict[str, Any]) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    rows = orjson.loads(Path(config["samples"]).read_bytes())
    data = [(orjson.dumps(x), orjson.dumps(y)) for x, y in rows]
    sockets = [
        await connect(config["url"], compression=None, max_size=None, ping_interval=None)
        for _ in config["tids"]
    ]
    conns = [
        _Connection(ws, tid, config, data) for ws, tid in zip(sockets, config["tids"], strict=True)
    ]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    cpu, start = time.process_time(), time.perf_counter()
    mono = time.monotonic()
    results = await asyncio.gather(
        *(c.go(start + config["seconds"]) for c in conns), return_exceptions=True
    )
    end = time.monotonic()
    used = time.process_time() - cpu
    socket_errors = [r for r in results if isinstance(r, BaseException)]
    for ws in sockets:
        await ws.close()
    for c in conns:
        for problem in c.problems:
            print(problem, file=sys.stderr)
    for exc in socket_errors[:3]:
        print(f"connection failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return {
        "start": mono,
        "end": end,
        "cpu_seconds": used,
        "ok": sum(c.ok for c in conns),
        "bad": sum(c.bad for c in conns),
        "learned": sum(c.learned for c in conns),
        "predicted": sum(c.predicted for c in conns),
        "samples": sum(c.samples for c in conns),
        "socket_errors": len(socket_errors),
        "latencies": [round(x, 6) for c in conns for x in c.latencies],
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with the bench extra
        runner = asyncio.run
    report = runner(_worker(config))
    with open(config["report"], "w") as f:
        f.write(json.dumps(report))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # do not wait for the stdin reader thread


if __name__ == "__main__":
    main()
