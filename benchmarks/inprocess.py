"""The in-process cells: raw river, and riverbed's embedded engine on a durable SQLite log."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from benchmarks import reference

__all__ = ["BATCH", "embedded", "embedded_batch", "raw_river"]

BATCH = 256  # samples per predict_many / learn_many call (the receipts' window, too)

Samples = list[tuple[dict[str, Any], Any]]


def raw_river(data: Samples, mode: str, seconds: float) -> dict[str, Any]:
    """river alone: ``predict_proba_one`` (predict) or progressive validation (loop)."""
    model = reference.model()
    metric = {name: reference.metrics_by_name(name) for name in reference.METRICS}
    stream = itertools.cycle(data)
    n = 0
    start = time.perf_counter()
    cpu = time.process_time()
    deadline = start + seconds
    while True:
        for x, y in itertools.islice(stream, 256):
            y_pred = model.predict_proba_one(x)
            if mode == "loop":
                for m in metric.values():
                    m.update(y, max(y_pred, key=y_pred.get) if m.requires_labels else y_pred)
                model.learn_one(x, y)
        n += 256
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    return {
        "seconds": elapsed,
        "samples": n,
        "cpu_seconds": time.process_time() - cpu,
        "learns": n if mode == "loop" else 0,
        "metrics": {k: m.get() for k, m in metric.items()} if mode == "loop" else {},
    }


def embedded(
    data: Samples, mode: str, seconds: float, database: Path, *, window: int = 0
) -> dict[str, Any]:
    """riverbed's Engine on an SQLite file.

    ``window == 0``: the plain blocking calls, each waiting for its commit.
    ``window > 0``: ``submit_predict`` / ``submit_learn`` receipts collected and waited for
    every ``window`` samples, so that many writes share one group commit; each sample is
    still durable before the loop moves past its window.
    """
    engine = _fresh_engine(database)
    try:
        stream = itertools.cycle(data)
        n = 0
        start = time.perf_counter()
        cpu = time.process_time()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            chunk = list(itertools.islice(stream, 256))
            if window == 0:
                for x, y in chunk:
                    p = engine.predict("bench", x)
                    if mode == "loop":
                        engine.learn("bench", ground_truth=y, id=p["id"])
            else:
                receipts = []
                for x, y in chunk:
                    r = engine.submit_predict("bench", x)
                    receipts.append(r)
                    if mode == "loop":
                        receipts.append(
                            engine.submit_learn("bench", ground_truth=y, id=r.value["id"])
                        )
                for r in receipts:
                    r.wait()
            n += len(chunk)
        return _result(engine, mode, n, start, cpu)
    finally:
        engine.close()


def embedded_batch(data: Samples, mode: str, seconds: float, database: Path) -> dict[str, Any]:
    """riverbed's Engine on an SQLite file, ``BATCH`` samples a call.

    predict: ``engine.submit_predict_many`` of the features. learn: ``submit_learn_many`` of
    ``{features, ground_truth}``: for each sample a prediction, its score and ``learn_one``,
    which is river's own loop (the raw river cell) with the durable log. loop: the full
    delayed-label loop in batches: ``submit_predict_many`` with an id per sample, then
    ``submit_learn_many`` of ``{id, ground_truth}`` for those ids (each learn scored with its
    stored prediction). Each batch is one commit; the loop waits for a batch's receipts
    before it sends the batch after next, so one batch commits while the next is computed
    and no sample is more than one batch ahead of durable.
    """
    engine = _fresh_engine(database)
    try:
        stream = itertools.cycle(data)
        n = calls = 0
        start = time.perf_counter()
        cpu = time.process_time()
        deadline = start + seconds
        inflight: list[Any] = []
        while time.perf_counter() < deadline:
            chunk = list(itertools.islice(stream, BATCH))
            if mode == "loop":
                ids = [f"b{n + j}" for j in range(len(chunk))]
                receipts = [
                    engine.submit_predict_many(
                        "bench",
                        [{"features": x, "id": i} for (x, _), i in zip(chunk, ids, strict=True)],
                    ),
                    engine.submit_learn_many(
                        "bench",
                        [
                            {"id": i, "ground_truth": y}
                            for (_, y), i in zip(chunk, ids, strict=True)
                        ],
                    ),
                ]
                calls += 2
            elif mode == "learn":
                receipts = [
                    engine.submit_learn_many(
                        "bench", [{"features": x, "ground_truth": y} for x, y in chunk]
                    )
                ]
                calls += 1
            else:
                receipts = [
                    engine.submit_predict_many("bench", [{"features": x} for x, _ in chunk])
                ]
                calls += 1
            for receipt in inflight:
                receipt.wait()
            inflight = receipts
            n += len(chunk)
        for receipt in inflight:
            receipt.wait()
        return {**_result(engine, mode, n, start, cpu), "calls": calls}
    finally:
        engine.close()


def _fresh_engine(database: Path) -> Any:
    """An engine on a new SQLite file at ``database`` with the benchmark's model ``bench``."""
    from riverbed import Engine

    for suffix in ("", "-wal", "-shm"):
        Path(str(database) + suffix).unlink(missing_ok=True)
    engine = Engine(str(database))
    engine.create_model("bench", spec=_spec())
    return engine


def _result(engine: Any, mode: str, n: int, start: float, cpu: float) -> dict[str, Any]:
    """A cell's numbers: time and CPU since ``start``/``cpu``, and what the engine counted."""
    elapsed = time.perf_counter() - start
    used = time.process_time() - cpu
    stats = engine.stats("bench")
    return {
        "seconds": elapsed,
        "samples": n,
        "cpu_seconds": used,
        "learns": stats["n_learns"],
        "predictions": stats["n_predictions"],
        "metrics": engine.metrics("bench")["metrics"] if mode in ("loop", "learn") else {},
    }


def _spec() -> dict[str, Any]:
    from benchmarks.systems import RIVERBED_SPEC

    return RIVERBED_SPEC
