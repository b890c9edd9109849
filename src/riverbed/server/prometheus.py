"""``GET /metrics``: per-model counters, latency histograms and metric gauges for Prometheus.

What a scrape needs to graph and alert on each model (how many predictions and learns it
served, how long the model call takes, its progressive-validation metrics). Everything is
read from the engine; nothing here keeps state.

Two formats, chosen by the scraper's ``Accept``: Prometheus' text format 0.0.4 (the
default), and OpenMetrics 1.0.0 (``application/openmetrics-text``, which Prometheus asks for
first): counters' TYPE lines without ``_total``, ``# EOF`` at the end. The exposition is
written here rather than by ``prometheus-client``: a scrape of 300 models took half the
time (``python -m benchmarks.scrape`` measures both in one run; docs/prometheus.md), and
prometheus-client's own parsers check both formats in tests/test_prometheus.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from riverbed.engine import Engine
from riverbed.exceptions import NotFound, RiverbedError
from riverbed.live import PERCENTILES
from riverbed.server.routing import Endpoint

__all__ = ["BOUNDS", "ENDPOINTS", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

#: The latency histograms' bucket bounds (``le``), seconds: 1-2.5-5 steps from 1 µs to 10 s.
BOUNDS = tuple(float(f"{m}e{e}") for e in range(-6, 1) for m in ("1", "2.5", "5")) + (10.0,)
_LE = tuple(repr(b) for b in BOUNDS) + ("+Inf",)

# name -> (type, help)
_FAMILIES = {
    "riverbed_models": ("gauge", "Models in the registry."),
    "riverbed_predictions_total": ("counter", "Predictions served, per model."),
    "riverbed_learns_total": ("counter", "Samples learned from, per model."),
    "riverbed_scored_total": ("counter", "Learns whose prediction updated the metrics."),
    "riverbed_predict_seconds_mean": (
        "gauge",
        "Mean time spent in the model's predict call, in seconds.",
    ),
    "riverbed_learn_seconds_mean": (
        "gauge",
        "Mean time spent updating metrics and learning from one sample, in seconds.",
    ),
    "riverbed_predict_seconds": (
        "gauge",
        "Percentiles (quantile label) of the time spent in the model's predict call, seconds.",
    ),
    "riverbed_learn_seconds": (
        "gauge",
        "Percentiles (quantile label) of the time spent learning from one sample, seconds.",
    ),
    "riverbed_predict_duration_seconds": (
        "histogram",
        "Time spent in the model's predict call, seconds (buckets within ~4.4%).",
    ),
    "riverbed_learn_duration_seconds": (
        "histogram",
        "Time spent learning from one sample, seconds (buckets within ~4.4%).",
    ),
    "riverbed_drift_alarms_total": (
        "counter",
        "Drift alarms raised, per model and detector (since the detector was set).",
    ),
    "riverbed_canary_predictions_total": (
        "counter",
        "Predictions answered by an arm of a canary split, per model, route and arm.",
    ),
    "riverbed_canary_labels_total": (
        "counter",
        "Labels of the predictions an arm of a canary split answered.",
    ),
    "riverbed_canary_weight": (
        "gauge",
        "The percentage of a route's traffic an arm of its canary split answers.",
    ),
    "riverbed_canary_metric": (
        "gauge",
        "Progressive-validation metric of an arm of a canary split, over its own labels.",
    ),
    "riverbed_challenger_metric": (
        "gauge",
        "Running progressive-validation metric of a model's challenger, over the same labels "
        "as the champion's riverbed_metric.",
    ),
    "riverbed_promotions_total": (
        "counter",
        "Promotions of a challenger to champion, per model and reason (manual, rule, "
        "drift, rollback), kept with the model's live state.",
    ),
    "riverbed_replica_lag_learns": (
        "gauge",
        "Scale-out replica: acknowledged learns of a model this replica does not include yet.",
    ),
    "riverbed_replica_staleness_seconds": (
        "gauge",
        "Scale-out replica: how long ago the oldest learn it does not include yet was "
        "acknowledged (0 when it has every one).",
    ),
    "riverbed_metric": (
        "gauge",
        "Running progressive-validation metric of a model (predict, then learn).",
    ),
    "riverbed_metric_window": (
        "gauge",
        "Progressive-validation metric over a rolling window (the last n samples or seconds).",
    ),
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _samples(engine: Engine) -> Iterable[tuple[str, dict[str, str], float]]:
    models = engine.list_models()
    yield "riverbed_models", {}, len(models)
    gauges = getattr(engine.scaleout, "gauges", None)  # a scale-out replica's
    if gauges is not None:
        for name, (lag, staleness) in sorted(gauges().items()):
            yield "riverbed_replica_lag_learns", {"model": name}, lag
            yield "riverbed_replica_staleness_seconds", {"model": name}, staleness
    for model in models:
        name = model["name"]
        try:
            stats = engine.stats(name)
            metrics = engine.metrics(name)
        except NotFound:  # deleted between the listing and now
            continue
        except RiverbedError:  # a file, or a batch model of a task not evaluated online
            continue
        labels = {"model": name}
        yield "riverbed_predictions_total", labels, stats["n_predictions"]
        yield "riverbed_learns_total", labels, stats["n_learns"]
        yield "riverbed_scored_total", labels, metrics["n"]
        yield "riverbed_predict_seconds_mean", labels, stats["predict"]["mean_duration"]
        yield "riverbed_learn_seconds_mean", labels, stats["learn"]["mean_duration"]
        for op in ("predict", "learn"):
            for q in PERCENTILES:
                value = stats[op][f"p{q}_duration"]
                if value is not None:
                    quantile = {"model": name, "quantile": str(q / 100)}
                    yield f"riverbed_{op}_seconds", quantile, value
        try:
            histograms = engine._latency_histograms(name, BOUNDS)
        except RiverbedError:  # deleted since
            continue
        for op, (cumulative, count, total) in histograms.items():
            family = f"riverbed_{op}_duration_seconds"
            for le, n in zip(_LE, (*cumulative, count), strict=True):
                yield f"{family}_bucket", {"model": name, "le": le}, n
            yield f"{family}_count", labels, count
            yield f"{family}_sum", labels, total
        try:
            detectors = engine.drift(name)["detectors"]
        except RiverbedError:  # deleted since
            continue
        for detector in detectors:
            labels = {"model": name, "detector": detector["name"]}
            yield "riverbed_drift_alarms_total", labels, detector["n_alarms"]
        try:
            canaries = engine.canaries(name)
        except RiverbedError:  # deleted since
            continue
        for canary in canaries:
            for arm in canary["arms"]:
                labels = {"model": name, "route": canary["route"], "arm": arm["arm"]}
                yield "riverbed_canary_predictions_total", labels, arm["n_predictions"]
                yield "riverbed_canary_labels_total", labels, arm["n_labels"]
                yield "riverbed_canary_weight", labels, arm["weight"]
                for metric, value in arm["metrics"].items():
                    if _is_number(value):
                        yield "riverbed_canary_metric", {**labels, "metric": metric}, value
        values, promotions = engine._challenger_gauges(name)
        for challenger, metric, value in values:
            if _is_number(value):
                labels = {"model": name, "challenger": challenger, "metric": metric}
                yield "riverbed_challenger_metric", labels, value
        for reason, count in sorted(promotions.items()):
            yield "riverbed_promotions_total", {"model": name, "reason": reason}, count
        for metric, value in metrics["metrics"].items():
            if _is_number(value):
                yield "riverbed_metric", {"model": name, "metric": metric}, value
        for window in metrics.get("windows", ()):
            for metric, value in window.get("metrics", {}).items():
                if _is_number(value):
                    labels = {"model": name, "metric": metric, "window": str(window["window"])}
                    yield "riverbed_metric_window", labels, value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _family(sample: str) -> str:
    if sample in _FAMILIES:
        return sample
    base, _, suffix = sample.rpartition("_")
    if suffix in ("bucket", "count", "sum") and _FAMILIES.get(base, ("",))[0] == "histogram":
        return base
    raise KeyError(sample)


def exposition(engine: Engine, openmetrics: bool = False) -> str:
    """Every family with its HELP and TYPE lines, in text format 0.0.4 or OpenMetrics."""
    by_family: dict[str, list[str]] = {name: [] for name in _FAMILIES}
    for sample, labels, value in _samples(engine):
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        by_family[_family(sample)].append(
            f"{sample}{{{text}}} {_number(value)}" if text else f"{sample} {_number(value)}"
        )
    lines: list[str] = []
    for family, (kind, help_text) in _FAMILIES.items():
        # OpenMetrics names a counter's family without the _total its samples carry.
        shown = family.removesuffix("_total") if openmetrics and kind == "counter" else family
        lines.append(f"# HELP {shown} {help_text}")
        lines.append(f"# TYPE {shown} {kind}")
        lines.extend(by_family[family])
    if openmetrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


def wants_openmetrics(accept: str) -> bool:
    """Whether an Accept header prefers OpenMetrics (Prometheus asks for it first)."""
    for part in accept.split(","):
        kind = part.split(";")[0].strip().lower()
        if kind == "application/openmetrics-text":
            return True
        if kind in ("text/plain", "*/*"):
            return False
    return False


async def metrics(request: Request) -> Response:
    engine: Any = request.app.state.engine
    openmetrics = wants_openmetrics(request.headers.get("accept", ""))
    # Off the event loop: a scrape of many models reads each one's state under its lock.
    body = await run_in_threadpool(exposition, engine, openmetrics)
    return Response(body, media_type=OPENMETRICS if openmetrics else CONTENT_TYPE)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/metrics",
        metrics,
        "Prometheus exposition (text 0.0.4, or OpenMetrics by Accept): per-model counters, "
        "latency histograms and metric gauges",
        "service",
        response={"type": "string"},
        media_type="text/plain",
    ),
]
