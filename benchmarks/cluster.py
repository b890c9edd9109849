"""Training on a Dask cluster: one 4-candidate job's wall time on threads and on a local
cluster of workers, same run.

``python -m benchmarks.cluster --workers 2 --rows 20000 --repeat 3`` starts a ``dask
scheduler`` and the workers on loopback (riverbed.testing.dask), then runs the same job,
alternately, in an engine that trains its candidates one after another on its job thread
and in one with ``jobs_cluster`` set, and prints both medians and their ratio. The cluster's
time includes everything a user waits for: connecting, checking the workers, scattering the
rows, shipping the models back. On a machine with fewer cores than workers the ratio says
so: the workers then share the cores the threads had alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

CANDIDATES = [
    {
        "name": f"tree{seed}",
        "spec": {"class": "river.tree.HoeffdingAdaptiveTreeClassifier", "params": {"seed": seed}},
    }
    for seed in range(4)
]


def _rows(count: int) -> list[dict[str, Any]]:
    from river import datasets

    base = [{**x, "y": y} for x, y in datasets.Phishing()]
    return [base[i % len(base)] for i in range(count)]


def _job(cluster: str, rows: list[dict[str, Any]]) -> float:
    from riverbed import Engine

    start = time.perf_counter()
    with Engine(":memory:", jobs_cluster=cluster) as engine:
        job = engine.train("bench", rows, target="y", candidates=CANDIDATES)
        done = engine.jobs.wait(job["id"], timeout=3600)
    took = time.perf_counter() - start
    if done["status"] != "succeeded":
        raise SystemExit(f"the job {done['status']}: {done['error']}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from riverbed.testing.dask import LocalDaskCluster

    rows = _rows(args.rows)
    print(
        f"{len(CANDIDATES)} candidates x {args.rows} rows; {args.workers} workers; "
        f"{os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}"
    )
    times: dict[str, list[float]] = {"threads": [], "cluster": []}
    with LocalDaskCluster(workers=args.workers) as cluster:
        for _ in range(args.repeat):
            times["threads"].append(_job("", rows))
            times["cluster"].append(_job(cluster.address, rows))
    threads, on_cluster = (statistics.median(times[k]) for k in ("threads", "cluster"))
    print(f"threads  median {threads:7.2f} s  {times['threads']}")
    print(f"cluster  median {on_cluster:7.2f} s  {times['cluster']}")
    print(f"speed-up (threads / cluster): {threads / on_cluster:.2f}x")


if __name__ == "__main__":
    main()
