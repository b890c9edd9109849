"""``GET /metrics``: per-model counters and metric gauges in Prometheus' text format.

Kept small on purpose: what a scrape needs to graph and alert on each model (how many
predictions and learns it served, how long the model call takes, its progressive-validation
metrics). Everything is read from the engine; nothing here keeps state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from riverbed.engine import Engine
from riverbed.exceptions import NotFound, RiverbedError
from riverbed.live import PERCENTILES
from riverbed.server.routing import Endpoint

__all__ = ["ENDPOINTS", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


def exposition(engine: Engine) -> str:
    """The text exposition of every family, each with its HELP and TYPE lines."""
    by_family: dict[str, list[str]] = {name: [] for name in _FAMILIES}
    for family, labels, value in _samples(engine):
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        by_family[family].append(
            f"{family}{{{text}}} {_number(value)}" if text else f"{family} {_number(value)}"
        )
    lines: list[str] = []
    for family, (kind, help_text) in _FAMILIES.items():
        lines.append(f"# HELP {family} {help_text}")
        lines.append(f"# TYPE {family} {kind}")
        lines.extend(by_family[family])
    return "\n".join(lines) + "\n"


async def metrics(request: Request) -> Response:
    engine: Any = request.app.state.engine
    return Response(exposition(engine), media_type=CONTENT_TYPE)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/metrics",
        metrics,
        "Prometheus text exposition: per-model counters, latencies and metric gauges",
        "service",
        response={"type": "string"},
        media_type="text/plain",
    ),
]
