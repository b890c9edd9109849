"""What the scale-out cells of ``python -m benchmarks`` do not show, measured on the same
cluster after them (benchmarks/systems.py's ``riverbed-scaleout``): staleness under load,
one learner's rate on one model, and what an idle cluster costs.

- **Staleness**: ``probes`` learns with features, each acknowledged by one replica (the
  two in turn), each timed until the other replica serves a model that includes it (its
  ``n_learns``, polled every 2 ms, which the numbers include), while wrk sends predictions
  to both replicas.
- **Drain**: the learner stopped, learns with features are acknowledged for ``seconds``
  (wrk, both replicas) and wait in the stream; a learner started again takes the lease and
  applies them: its rate from its first commit to the last (the ceiling of one model's
  learner, which no number of replicas raises), its CPU and the database's per learn.
- **Idle**: the cluster without load for ``seconds``: what the followers' polls (every 0.1
  s, a heartbeat a second) and the learner's reads cost each process and the database.

docs/scale-out.md's capacity model is derived from these numbers and the cells'.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import load, reference
from benchmarks.systems import RiverbedScaleOut, call

__all__ = ["measure"]


def _spread(
    system: RiverbedScaleOut,
    wrk: str,
    *,
    model: str,
    mode: str,
    seconds: float,
    samples: Path,
    work: Path,
) -> load.Load:
    return load.run_spread(
        wrk,
        urls=system.urls(),
        samples=samples,
        system_lua=system.lua_for(model),
        mode=mode,
        connections=16,
        seconds=seconds,
        prefix=f"{model}-",
        script_path=work / f"{model}.lua",
    )


def staleness(
    system: RiverbedScaleOut, wrk: str, *, probes: int, seconds: float, samples: Path, work: Path
) -> dict[str, Any]:
    model = "bench-staleness"
    system.prepare(model)
    loaded = "bench-staleness-load"
    system.prepare(loaded)
    data = reference.samples()
    a, b = system.urls()[:2]
    found: list[float] = []
    failed = 0
    done = threading.Event()

    def probe() -> None:
        nonlocal failed
        acked = 0
        try:
            with httpx.Client(timeout=10) as client:
                for k, (x, y) in enumerate(data[:probes]):
                    here, there = (a, b) if k % 2 == 0 else (b, a)
                    body = {"features": x, "ground_truth": y}
                    answer = client.post(f"{here}/v1/models/{model}/learn", json=body)
                    at = time.perf_counter()
                    if answer.status_code != 200:
                        failed += 1
                        continue
                    acked += 1
                    while client.get(f"{there}/v1/models/{model}/stats").json()["n_learns"] < acked:
                        time.sleep(0.002)
                    found.append(time.perf_counter() - at)
        finally:
            done.set()

    prober = threading.Thread(target=probe)
    prober.start()
    while not done.is_set():
        _spread(
            system, wrk, model=loaded, mode="predict", seconds=seconds, samples=samples, work=work
        )
    prober.join()
    found.sort()
    return {
        "probes": len(found),
        "failed": failed,
        "p50_ms": 1000 * statistics.median(found) if found else None,
        "p99_ms": 1000 * found[min(len(found) - 1, int(0.99 * len(found)))] if found else None,
        "max_ms": 1000 * found[-1] if found else None,
    }


def drain(
    system: RiverbedScaleOut, wrk: str, *, seconds: float, samples: Path, work: Path
) -> dict[str, Any]:
    model = "bench-drain"
    system.prepare(model)
    system.restart_learner(running=False)  # its leases end now; learns wait in the stream
    before = system.counters()
    acked = _spread(
        system, wrk, model=model, mode="learn", seconds=seconds, samples=samples, work=work
    )
    taken = system.counters()
    waiting = system.lease(model).get("lag_learns", 0)
    system.restart_learner(running=True)
    # From the learner's first commit on (its start-up, imports and the model's load, left
    # out): the learns it applied, the time and every process's CPU.
    first: tuple[float, int, dict[str, float]] | None = None
    last = first
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        n = system.lease(model).get("n_learns", 0)
        if n > 0:
            last = (time.perf_counter(), n, system.counters())
            first = first or last
        if n >= acked.learned:
            break
        time.sleep(0.1)
    logged = system.state(model)
    rate, n = None, 1
    handed = applied = {k: 0.0 for k in before}
    if first is not None and last is not None and last[1] > first[1]:
        rate = (last[1] - first[1]) / (last[0] - first[0])
        n, handed, applied = last[1] - first[1], first[2], last[2]

    def per_learn(a: dict[str, float], b: dict[str, float], key: str, count: int) -> float:
        return 1e6 * (b[key] - a[key]) / max(1, count)

    replicas = [k for k in before if k.startswith("replica-")]
    return {
        "acknowledged": acked.learned,
        "acknowledged_per_s": acked.learned / acked.seconds,
        "errors": acked.errors,
        "waiting": waiting,
        "logged": logged["learns"],
        "lost": max(0, acked.learned - logged["learns"]),
        "problems": logged["problems"],
        "learns_per_s": rate,
        # CPU per learn while the replicas took them (no learner running)
        "handoff_replicas_us": sum(per_learn(before, taken, k, acked.learned) for k in replicas),
        "handoff_redis_us": per_learn(before, taken, "redis_cpu_s", acked.learned),
        # CPU per learn while the learner applied them (from its first commit to its last)
        "apply_learner_us": per_learn(handed, applied, "learner_cpu_s", n),
        "apply_postgres_us": per_learn(handed, applied, "postgres_cpu_s", n),
        "apply_redis_us": per_learn(handed, applied, "redis_cpu_s", n),
        "apply_replicas_us": sum(per_learn(handed, applied, k, n) for k in replicas),
    }


def idle(system: RiverbedScaleOut, *, seconds: float) -> dict[str, Any]:
    counted = system.counters()
    time.sleep(seconds)
    grown = {k: v - counted.get(k, 0.0) for k, v in system.counters().items()}
    return {k.removesuffix("_cpu_s") + "_cpu_share": v / seconds for k, v in grown.items()}


def measure(
    system: RiverbedScaleOut, wrk: str, *, probes: int, seconds: float, samples: Path, work: Path
) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    return {
        "idle": idle(system, seconds=seconds),
        "staleness": staleness(
            system, wrk, probes=probes, seconds=seconds, samples=samples, work=work
        ),
        "drain": drain(system, wrk, seconds=seconds, samples=samples, work=work),
        "models": len(call(system.port, "GET", "/v1/models")["models"]),
    }
