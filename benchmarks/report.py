"""Results: medians over repeats, ratios, targets; written as JSON, Markdown and a PNG."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

__all__ = ["summarize", "markdown", "chart", "update_readme"]

MODE_TEXT = {
    "echo": "JSON echo",
    "predict": "predict",
    "loop": "predict + learn by id",
    "learn": "learn with features",
    "batch": "batch predict+learn",
    "ws": "WebSocket predict+learn",
}
UNIT = {
    "echo": "req/s",
    "predict": "pred/s",
    "loop": "pairs/s",
    "learn": "learns/s",
    "batch": "samples/s",
    "ws": "samples/s",
}
SYSTEM_ORDER = [
    "river",
    "engine",
    "engine-window",
    "echo",
    "riverbed",
    "chantilly",
    "django-river-ml",
]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (system, mode, connections): medians over the repeats."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["system"], run["mode"], run["connections"]), []).append(run)
    rows = []
    for (system, mode, connections), group in groups.items():
        failed = [r for r in group if not r["ok"]]
        row = {
            "system": system,
            "label": group[0]["label"],
            "mode": mode,
            "connections": connections,
            "repeats": len(group),
            "failed": len(failed),
            "problems": sorted({p for r in failed for p in r["problems"]}),
            "rate": _median([r["rate"] for r in group]),
            "requests_per_s": _median([r["requests_per_s"] for r in group]),
            "p50_ms": _median([r["p50_ms"] for r in group if r.get("p50_ms") is not None]),
            "p99_ms": _median([r["p99_ms"] for r in group if r.get("p99_ms") is not None]),
            "cpu_us_per_request": _median(
                [r["cpu_us_per_request"] for r in group if r.get("cpu_us_per_request")]
            ),
            "errors": sum(r["errors"] for r in group),
            "lost_learns": sum(r["lost_learns"] for r in group),
        }
        rows.append(row)
    rows.sort(
        key=lambda r: (
            list(MODE_TEXT).index(r["mode"]) if r["mode"] in MODE_TEXT else 99,
            r["connections"],
            SYSTEM_ORDER.index(r["system"]) if r["system"] in SYSTEM_ORDER else 99,
        )
    )
    return rows


def _find(rows: list[dict[str, Any]], system: str, mode: str, connections: int) -> Any:
    for row in rows:
        if (row["system"], row["mode"], row["connections"]) == (system, mode, connections):
            return row
    return None


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """riverbed over each peer (same route, same connections) and over the ceiling."""
    out = []
    for row in rows:
        if row["system"] != "riverbed" or not row["rate"]:
            continue
        entry: dict[str, Any] = {"mode": row["mode"], "connections": row["connections"]}
        for peer in ("chantilly", "django-river-ml"):
            other = _find(rows, peer, row["mode"], row["connections"])
            entry[peer] = row["rate"] / other["rate"] if other and other["rate"] else None
        echo = _find(rows, "echo", "echo", row["connections"])
        entry["ceiling"] = (
            row["requests_per_s"] / echo["requests_per_s"] if echo and echo["rate"] else None
        )
        out.append(entry)
    return out


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""

    def rate(system: str, mode: str, connections: int) -> float | None:
        row = _find(rows, system, mode, connections)
        return row["rate"] if row and not row["failed"] else None

    def req(system: str, mode: str, connections: int) -> float | None:
        row = _find(rows, system, mode, connections)
        return row["requests_per_s"] if row and not row["failed"] else None

    out = []

    def add(name: str, value: float | None, goal: float, unit: str, higher: bool = True) -> None:
        met = None if value is None else (value >= goal if higher else value < goal)
        out.append({"target": name, "value": value, "goal": goal, "unit": unit, "met": met})

    predict, echo = req("riverbed", "predict", 16), req("echo", "echo", 16)
    add("predict, 16 connections / bare echo", _div(predict, echo), 0.5, "ratio")
    add("full online loop, durable, 16 connections", rate("riverbed", "loop", 16), 2000, "pairs/s")
    river = rate("river", "loop", 0)
    for mode in ("batch", "ws"):
        add(f"{MODE_TEXT[mode]} / raw river", _div(rate("riverbed", mode, 16), river), 0.5, "ratio")
    add(
        "embedded engine, durable (receipts per window) / raw river",
        _div(rate("engine-window", "loop", 0), river),
        0.5,
        "ratio",
    )
    worst = [r["p99_ms"] for r in rows if r["system"] == "riverbed" and r["connections"] == 16]
    add(
        "riverbed p99 at 16 connections (worst route)",
        max(worst) if worst else None,
        5,
        "ms",
        False,
    )
    bad = [r for r in rows if r["system"] in ("riverbed", "engine", "engine-window")]
    add(
        "riverbed errors + lost learns",
        float(sum(r["errors"] + r["lost_learns"] + r["failed"] for r in bad)) if bad else None,
        1,
        "count",
        False,
    )
    return out


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    rows, meta = result["summary"], result["meta"]
    lines = [
        f"Measured {meta['date']} on {meta['machine']}: river's Phishing stream, "
        "`StandardScaler | LogisticRegression`, wrk with one connection per thread, "
        f"{meta['seconds']:g} s per cell, median of {meta['repeats']} interleaved repeats. "
        "CPU is the server's own (from /proc), per request. Every run is checked against "
        "river's progressive validation; a failed run is marked, not ranked.",
        "",
        "| system | route | conns | throughput | p50 ms | p99 ms | server CPU µs/req "
        "| errors | check |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        conns = "in-process" if r["connections"] == 0 else str(r["connections"])
        check = "ok" if not r["failed"] else f"**FAILED** ({'; '.join(r['problems'])[:120]})"
        rate = f"{_fmt(r['rate'])} {UNIT.get(r['mode'], '/s')}"
        if r["failed"]:
            rate = f"~~{rate}~~"
        cpu_digits = 1 if (r["cpu_us_per_request"] or 0) < 100 else 0
        lines.append(
            f"| {r['label']} | {MODE_TEXT.get(r['mode'], r['mode'])} | {conns} | {rate} "
            f"| {_fmt(r['p50_ms'], 2)} | {_fmt(r['p99_ms'], 2)} "
            f"| {_fmt(r['cpu_us_per_request'], cpu_digits)} | {r['errors']} | {check} |"
        )
    lines += [
        "",
        "| riverbed over | route | conns | chantilly | django-river-ml | ceiling (echo) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for e in result["ratios"]:
        lines.append(
            f"| riverbed | {MODE_TEXT.get(e['mode'], e['mode'])} | {e['connections']} "
            f"| {_fmt(e['chantilly'], 1)}× | {_fmt(e['django-river-ml'], 1)}× "
            f"| {_fmt(e['ceiling'], 2)} |"
        )
    lines += ["", "| target | measured | goal | met |", "| --- | ---: | ---: | --- |"]
    for t in result["targets"]:
        sign = "≥" if t["target"].find("p99") < 0 and "errors" not in t["target"] else "<"
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(
            f"| {t['target']} | {_fmt(t['value'], 2)} {t['unit']} | {sign} {t['goal']:g} | {met} |"
        )
    missing = result.get("missing") or []
    if missing:
        lines += ["", "Not measured in this run: " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["summary"] if r["rate"]]
    labels = [
        f"{r['system']} · {MODE_TEXT.get(r['mode'], r['mode'])} · "
        f"{'in-proc' if r['connections'] == 0 else str(r['connections']) + 'c'}"
        for r in rows
    ]
    colors = {
        "river": "#4c72b0",
        "engine": "#55a868",
        "engine-window": "#2e8b57",
        "echo": "#8c8c8c",
        "riverbed": "#dd8452",
        "chantilly": "#c44e52",
        "django-river-ml": "#8172b3",
    }
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.5))
    y = range(len(rows))
    ax.barh(
        list(y),
        [r["rate"] for r in rows],
        color=[colors.get(r["system"], "#333333") for r in rows],
        hatch=None,
    )
    for i, r in enumerate(rows):
        text = f"{r['rate']:,.0f} {UNIT.get(r['mode'], '/s')}" + ("  FAILED" if r["failed"] else "")
        ax.text(r["rate"] * 1.05, i, text, va="center", fontsize=7)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("throughput (log scale; unit per route as labelled)")
    ax.set_title("riverbed, its predecessors, raw river and the machine's ceiling", fontsize=10)
    ax.set_xlim(right=max(r["rate"] for r in rows) * 8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def update_readme(readme: Path, table: str) -> None:
    start, end = "<!-- benchmark:start -->", "<!-- benchmark:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(f"{head}{start}\n{table}{end}{tail}")


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
