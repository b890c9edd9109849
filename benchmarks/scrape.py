"""Scrape cost: what one ``GET /metrics`` exposition costs with many models, two ways.

``python -m benchmarks.scrape --models 300`` creates N river models in an embedded engine
(each with a few predictions and labels, so every family has samples), then times, in one
run and interleaved: reading the samples from the engine alone, riverbed's own text
exposition (format 0.0.4 and OpenMetrics), and prometheus-client rendering the very same
samples through a custom collector (``generate_latest``, both formats). It prints the
medians and each way's ratio to riverbed's text exposition; the decision it backs (keep
the hand-written exposition, checked by prometheus-client's parsers) is in
docs/prometheus.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def _engine(directory: Path, n_models: int) -> Any:
    from river import datasets, linear_model, preprocessing

    from riverbed import Engine

    engine = Engine(str(directory / "scrape.db"))
    samples = list(datasets.Phishing().take(5))
    for i in range(n_models):
        name = f"m{i:04d}"
        engine.create_model(
            name, preprocessing.StandardScaler() | linear_model.LogisticRegression()
        )
        for x, y in samples:
            prediction = engine.predict(name, x)
            engine.learn(name, ground_truth=y, id=prediction["id"])
    return engine


def _collector(engine: Any) -> Any:
    from prometheus_client.core import Metric

    from riverbed.server import prometheus

    class Collector:
        def collect(self) -> Iterator[Any]:
            families: dict[str, Any] = {}
            for sample, labels, value in prometheus._samples(engine):
                family = prometheus._family(sample)
                kind, help_text = prometheus._FAMILIES[family]
                if family not in families:
                    name = family.removesuffix("_total") if kind == "counter" else family
                    families[family] = Metric(name, help_text, kind)
                families[family].add_sample(sample, labels, value)
            yield from families.values()

    return Collector()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scrape", description=__doc__)
    p.add_argument("--models", type=int, default=300, help="river models in the engine")
    p.add_argument("--repeats", type=int, default=15, help="timed scrapes per way")
    args = p.parse_args()

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

    from riverbed.server import prometheus

    with tempfile.TemporaryDirectory() as tmp:
        engine = _engine(Path(tmp), args.models)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_collector(engine))
        ways: dict[str, Callable[[], object]] = {
            "samples only": lambda: list(prometheus._samples(engine)),
            "riverbed text": lambda: prometheus.exposition(engine),
            "riverbed openmetrics": lambda: prometheus.exposition(engine, True),
            "prometheus-client text": lambda: generate_latest(registry),
            "prometheus-client openmetrics": lambda: openmetrics_latest(registry),
        }
        for way in ways.values():
            way()  # warm: every model loaded
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, way in ways.items():  # interleaved: noise falls on every way alike
                start = time.perf_counter()
                way()
                times[name].append(time.perf_counter() - start)
        size = len(prometheus.exposition(engine))
        engine.close()
    base = statistics.median(times["riverbed text"])
    print(f"{args.models} models, {size:,} bytes of text exposition, {args.repeats} scrapes")
    print(f"{'way':32} {'median ms':>10} {'vs riverbed text':>17}")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:32} {median * 1e3:10.1f} {median / base:16.2f}x")


if __name__ == "__main__":
    main()
