"""Results: medians over repeats, ratios, targets; written as JSON, Markdown and a PNG."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.load import BATCH_SIZE
from benchmarks.wsload import PER_PROCESS

__all__ = [
    "chart",
    "compat_ratios",
    "markdown",
    "postgres_ratios",
    "ratios",
    "scaleout_ratios",
    "summarize",
    "targets",
    "update_readme",
    "write_json",
]

MODE_TEXT = {
    "echo": "JSON echo",
    "predict": "predict",
    "loop": "predict + learn by id",
    "learn": "learn with features",
    "batch": f"learn/many ×{BATCH_SIZE} (predict+learn each)",
    "ws": "WebSocket predict(id) + label, pipelined",
    "ws-many": f"WebSocket learn_many ×{BATCH_SIZE} (predict+learn each)",
}
UNIT = {
    "echo": "req/s",
    "predict": "pred/s",
    "loop": "pairs/s",
    "learn": "learns/s",
    "batch": "samples/s",
    "ws": "pairs/s",
    "ws-many": "samples/s",
}
# Routes whose latency is that of many samples (a batch, or a window of messages queued
# behind each other), not of one request: left out of the one-request p99 target.
MANY_MODES = ("batch", "ws", "ws-many")
SYSTEM_ORDER = [
    "river",
    "engine",
    "engine-window",
    "engine-batch",
    "echo",
    "riverbed",
    "riverbed-postgresql",
    "riverbed-scaleout",
    "compat-chantilly",
    "compat-django-river-ml",
    "compat-lrnstak",
    "compat-beaver",
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
            "client_cpu_share": _median(
                [r["client_cpu_share"] for r in group if r.get("client_cpu_share") is not None]
            ),
            "steal_share": _median(
                [r["steal_share"] for r in group if r.get("steal_share") is not None]
            ),
            "errors": sum(r["errors"] for r in group),
            "lost_learns": sum(r["lost_learns"] for r in group),
        }
        costs = {k for r in group for k in r.get("costs_us_per_request") or {}}
        if costs:  # per process or outside the server (PostgreSQL's backends), by name
            row["costs_us_per_request"] = {
                k: _median(
                    [
                        r["costs_us_per_request"][k]
                        for r in group
                        if k in r.get("costs_us_per_request", {})
                    ]
                )
                for k in sorted(costs)
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
            row["requests_per_s"] / echo["requests_per_s"]
            if echo and echo["rate"] and row["mode"] not in MANY_MODES
            else None
        )
        if any(entry[k] is not None for k in ("chantilly", "django-river-ml", "ceiling")):
            out.append(entry)
    return out


# The older systems' predict routes measured on riverbed's own server (benchmarks/systems.py's
# compatibility views), with the route each one calls.
COMPAT = {
    "compat-chantilly": ("chantilly", "POST /api/predict"),
    "compat-django-river-ml": ("django-river-ml", "POST /api/predict/"),
    "compat-lrnstak": ("lrnstak", "POST /predict/model/{name}"),
    "compat-beaver": ("Beaver", "POST /predict/{name}"),
}
COMPAT_GOAL = 0.9


def compat_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each older system's predict route over riverbed's native predict route, same server,
    same connections, same run."""
    out = []
    for row in rows:
        if row["system"] not in COMPAT or row["mode"] != "predict":
            continue
        native = _find(rows, "riverbed", "predict", row["connections"])
        ok = not row["failed"] and native is not None and not native["failed"]
        older, route = COMPAT[row["system"]]
        out.append(
            {
                "system": row["system"],
                "older": older,
                "route": route,
                "connections": row["connections"],
                "rate": row["rate"],
                "native": native["rate"] if native else None,
                "ratio": _div(row["rate"], native["rate"] if native else None) if ok else None,
                "cpu_us": row["cpu_us_per_request"],
                "native_cpu_us": native["cpu_us_per_request"] if native else None,
            }
        )
    return out


# riverbed on PostgreSQL over riverbed on SQLite, same routes, same run: the goal of each
# route at 16 connections (issue 20 item 7).
POSTGRES = "riverbed-postgresql"
POSTGRES_GOALS = {"predict": 0.7, "loop": 0.4}
POSTGRES_LOOP_GOAL = 2000  # pairs/s, online loop at 16 connections


def _divided(rows: list[dict[str, Any]], system: str, by: str, name: str) -> list[dict[str, Any]]:
    """Each cell of ``system`` over the cell of ``by`` with the same route and connections
    (a failed cell on either side gets no ratio); ``by``'s numbers under ``name``."""
    out = []
    for row in rows:
        if row["system"] != system:
            continue
        base = _find(rows, by, row["mode"], row["connections"])
        ok = not row["failed"] and base is not None and not base["failed"]
        out.append(
            {
                "mode": row["mode"],
                "connections": row["connections"],
                "rate": row["rate"],
                name: base["rate"] if base else None,
                "ratio": _div(row["rate"], base["rate"] if base else None) if ok else None,
                "p99_ms": row["p99_ms"],
                f"{name}_p99_ms": base["p99_ms"] if base else None,
                "cpu_us": row["cpu_us_per_request"],
                f"{name}_cpu_us": base["cpu_us_per_request"] if base else None,
            }
        )
    return out


def postgres_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each PostgreSQL cell over the SQLite cell of the same route and connections."""
    return _divided(rows, POSTGRES, "riverbed", "sqlite")


# The scale-out cluster (2 replicas + 1 learner) over one riverbed process on PostgreSQL,
# same routes, same run (issue 21 item 4).
SCALEOUT = "riverbed-scaleout"


def scaleout_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each scale-out cell over the one-process PostgreSQL cell of the same route and
    connections, with each side's costs by process and the cluster's lost learns."""
    out = _divided(rows, SCALEOUT, POSTGRES, "one")
    for entry in out:
        row = _find(rows, SCALEOUT, entry["mode"], entry["connections"])
        one = _find(rows, POSTGRES, entry["mode"], entry["connections"]) or {}
        entry["costs_us"] = row.get("costs_us_per_request") or {}
        entry["one_costs_us"] = one.get("costs_us_per_request") or {}
        entry.update(lost_learns=row["lost_learns"], failed=row["failed"])
        entry["problems"] = row["problems"]
    return out


# The durable embedded ways that batch their commits, by (system, mode), for the target.
ENGINE_WAYS = {
    ("engine-window", "loop"): "submit_predict/submit_learn, receipts waited per 256",
    ("engine-batch", "loop"): "predict_many then learn_many by id, per 256",
    ("engine-batch", "learn"): "learn_many of features and labels per 256, river's own loop",
}
ENGINE_SYSTEMS = ("engine", "engine-window", "engine-batch")


def targets(
    rows: list[dict[str, Any]], soak: dict[str, Any] | None = None, soak_asked: int = 0
) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value, the goal, whether it is met and,
    for a missed one, by how much. ``soak`` is benchmarks/soak.py's result, if it ran."""

    def rate(system: str, mode: str, connections: int) -> float | None:
        row = _find(rows, system, mode, connections)
        return row["rate"] if row and not row["failed"] else None

    def req(system: str, mode: str, connections: int) -> float | None:
        row = _find(rows, system, mode, connections)
        return row["requests_per_s"] if row and not row["failed"] else None

    out: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float | None,
        goal: float,
        unit: str,
        higher: bool = True,
        measured: str | None = None,
        met: bool | None = None,
    ) -> None:
        if met is None and value is not None:
            met = value >= goal if higher else value < goal
        out.append(
            {
                "target": name,
                "value": value,
                "goal": goal,
                "unit": unit,
                "higher": higher,
                "met": met,
                "measured": measured,
            }
        )

    predict, echo = req("riverbed", "predict", 16), req("echo", "echo", 16)
    add("predict, 16 connections / bare echo", _div(predict, echo), 0.5, "ratio")
    add("full online loop, durable, 16 connections", rate("riverbed", "loop", 16), 2000, "pairs/s")
    river = rate("river", "loop", 0)
    add(
        f"batch route (learn/many ×{BATCH_SIZE}), 16 connections / raw river",
        _div(rate("riverbed", "batch", 16), river),
        0.5,
        "ratio",
    )
    # One predict and one label message per sample cannot approach the goal (the server's
    # work per message is the limit), so the target is the learn_many variant; the per-message
    # loop is listed beside it against the same goal.
    add(
        f"WebSocket, learn_many ×{BATCH_SIZE} messages, 16 connections / raw river",
        _div(rate("riverbed", "ws-many", 16), river),
        0.5,
        "ratio",
    )
    add(
        "(beside it) WebSocket, one predict + one label message per sample, 16 connections "
        "/ raw river",
        _div(rate("riverbed", "ws", 16), river),
        0.5,
        "ratio",
    )
    engines = {way: rate(way[0], way[1], 0) for way in ENGINE_WAYS}
    best = max(
        (s for s in engines if engines[s] is not None), key=lambda s: engines[s] or 0, default=None
    )
    add(
        "embedded engine, durable / raw river"
        + (f" (best way: {ENGINE_WAYS[best]})" if best else ""),
        _div(engines[best], river) if best else None,
        0.5,
        "ratio",
    )
    one_sample = [
        r
        for r in rows
        if r["system"] == "riverbed"
        and r["connections"] == 16
        and r["mode"] not in MANY_MODES
        and r["p99_ms"] is not None
    ]
    worst = max(one_sample, key=lambda r: r["p99_ms"], default=None)
    echo_row = _find(rows, "echo", "echo", 16)
    # The route that set it, and the bare echo's own p99 in the same run: the ceiling's tail
    # on this machine at the time.
    beside = [MODE_TEXT.get(worst["mode"], worst["mode"])] if worst else []
    if echo_row and echo_row["p99_ms"] is not None:
        beside.append(f"the echo's own: {echo_row['p99_ms']:.2f} ms")
    add(
        "riverbed p99 at 16 connections (worst one-sample HTTP route)",
        worst["p99_ms"] if worst else None,
        5,
        "ms",
        False,
        measured=f"{worst['p99_ms']:.2f} ms ({'; '.join(beside)})" if worst else None,
    )
    for entry in compat_ratios(rows):
        if entry["connections"] == 16:
            add(
                f"{entry['older']}'s {entry['route']} on riverbed, 16 connections / native predict",
                entry["ratio"],
                COMPAT_GOAL,
                "ratio",
            )
    if any(r["system"] == POSTGRES for r in rows):
        add(
            "full online loop on PostgreSQL, durable, 16 connections",
            rate(POSTGRES, "loop", 16),
            POSTGRES_LOOP_GOAL,
            "pairs/s",
        )
        for entry in postgres_ratios(rows):
            goal = POSTGRES_GOALS.get(entry["mode"])
            if entry["connections"] == 16 and goal is not None:
                add(
                    f"{MODE_TEXT[entry['mode']]} on PostgreSQL / on SQLite, 16 connections",
                    entry["ratio"],
                    goal,
                    "ratio",
                )
    bad = [
        r for r in rows if r["system"] in ("riverbed", POSTGRES, SCALEOUT, *COMPAT, *ENGINE_SYSTEMS)
    ]
    add(
        "riverbed errors + lost learns",
        float(sum(r["errors"] + r["lost_learns"] + r["failed"] for r in bad)) if bad else None,
        1,
        "count",
        False,
    )
    add(
        f"memory and database size flat over {_count(soak_asked or 1_000_000)} predictions "
        "(retention set)",
        None,
        0,
        "",
        measured="–" if soak is None else soak_text(soak, short=True),
        met=None if soak is None else bool(soak.get("flat")) and not soak.get("problems"),
    )
    return out


def _count(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n:,}"


def soak_text(soak: dict[str, Any], *, short: bool = False) -> str:
    """The soak's result in one line: counts, time, growth of memory and database after the
    warm-up (relative, as benchmarks/soak.py measures it) and their last sizes."""

    def growth(key: str) -> str:
        value = soak.get(key)
        return "–" if value is None else f"{value:+.1%}"

    if short:
        return f"RSS {growth('rss_growth')}, database {growth('db_growth')} after warm-up"

    last = (soak.get("samples") or [{}])[-1]

    def mb(key: str) -> str:
        return f" (to {last[key] / 1e6:,.0f} MB)" if key in last else ""

    text = (
        f"{soak.get('predictions', 0):,} predictions, {soak.get('learns', 0):,} learns in "
        f"{soak.get('seconds', 0):,.0f} s; after warm-up RSS {growth('rss_growth')}"
        f"{mb('rss_bytes')}, database {growth('db_growth')}{mb('db_bytes')}: "
        f"{'flat' if soak.get('flat') else 'not flat'}"
    )
    if soak.get("problems"):
        text += " (" + "; ".join(map(str, soak["problems"]))[:200] + ")"
    return text


def steal_text(runs: list[dict[str, Any]]) -> str | None:
    """How much of the machine's CPU time its host took during the cells (steal)."""
    measured = [r for r in runs if r.get("steal_share") is not None]
    if not measured:
        return None
    worst = max(measured, key=lambda r: r["steal_share"])
    median = statistics.median(r["steal_share"] for r in measured)
    return (
        f"Steal (the share of this virtual machine's CPU time that its host took, from "
        f"/proc/stat) over the {len(measured)} cells: median {_percent(median, 1)}, at most "
        f"{_percent(worst['steal_share'], 1)} ({worst['label']}, "
        f"{MODE_TEXT.get(worst['mode'], worst['mode'])}, repeat {worst['repeat'] + 1}). A cell "
        "run while the host was busy is slower and has a longer tail for reasons outside "
        "the systems measured; each cell's share is in latest.json."
    )


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
        "The WebSocket load comes from `benchmarks/wsload.py` (asyncio worker processes, "
        f"{PER_PROCESS} connections each). "
        "Server CPU is the server's own (from /proc), per request or WebSocket message; "
        "load CPU is the load generator's (wrk, or the WebSocket workers) in % of one core. "
        "Every run is checked against river's progressive validation; a failed run is "
        "marked, not ranked.",
        "",
        "| system | route | conns | throughput | p50 ms | p99 ms | server CPU µs/req "
        "| load CPU | errors | check |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
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
            f"| {_fmt(r['cpu_us_per_request'], cpu_digits)} | {_percent(r['client_cpu_share'])} "
            f"| {r['errors']} | {check} |"
        )
    steal = steal_text(result.get("runs", []))
    if steal:
        lines += ["", steal]
    lines += [
        "",
        "| riverbed over | route | conns | chantilly | django-river-ml | ceiling (echo) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for e in result["ratios"]:
        lines.append(
            f"| riverbed | {MODE_TEXT.get(e['mode'], e['mode'])} | {e['connections']} "
            f"| {_times(e['chantilly'])} | {_times(e['django-river-ml'])} "
            f"| {_fmt(e['ceiling'], 2)} |"
        )
    compat = result.get("compat") or []
    if compat:
        lines += [
            "",
            "The older systems' predict routes on riverbed's own server, over its native "
            "`POST /v1/models/{name}/predict` (which writes the prediction too), same model, "
            "same run:",
            "",
            "| older system | route | conns | throughput | native | ratio "
            "| server CPU µs/req | native's |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for e in compat:
            lines.append(
                f"| {e['older']} | `{e['route']}` | {e['connections']} | {_fmt(e['rate'])} "
                f"pred/s | {_fmt(e['native'])} pred/s | {_fmt(e['ratio'], 2)} "
                f"| {_fmt(e['cpu_us'])} | {_fmt(e['native_cpu_us'])} |"
            )
    postgres = result.get("postgres") or []
    if postgres:
        lines += [
            "",
            "riverbed on PostgreSQL (a database on the local server, group commits through "
            "psycopg) over riverbed on its SQLite file, same routes, same run:",
            "",
            "| route | conns | PostgreSQL | SQLite | ratio | p99 ms | SQLite's "
            "| server CPU µs/req | SQLite's |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for e in postgres:
            unit = UNIT.get(e["mode"], "/s")
            lines.append(
                f"| {MODE_TEXT.get(e['mode'], e['mode'])} | {e['connections']} "
                f"| {_fmt(e['rate'])} {unit} | {_fmt(e['sqlite'])} {unit} | {_fmt(e['ratio'], 2)} "
                f"| {_fmt(e['p99_ms'], 2)} | {_fmt(e['sqlite_p99_ms'], 2)} "
                f"| {_fmt(e['cpu_us'])} | {_fmt(e['sqlite_cpu_us'])} |"
            )
    lines += scaleout_text(result)
    lines += ["", "| target | measured | goal | met |", "| --- | ---: | ---: | --- |"]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {_measured(t)} | {_goal(t)} | {_met(t)} |")
    missed = [
        (t["target"], note)
        for t in result["targets"]
        if t["met"] is False
        for prefix, note in PROFILE_NOTES.items()
        if t["target"].startswith(prefix)
    ]
    if missed:
        lines += ["", "Where a target is missed, what the profile shows (docs/benchmarks.md,"]
        lines[-1] += ' "Where the time goes", has the measurements):'
        lines += [""] + [f"- {target}: {note}" for target, note in missed]
    soak = result.get("soak")
    if soak is not None:
        lines += ["", f"Soak (`benchmarks/soak.py`, 16 connections): {soak_text(soak)}."]
    return "\n".join(lines) + "\n"


# What profiling (py-spy on the server under this benchmark's load) showed for each target
# that the last full runs missed; printed under the table when the target is missed again.
PROFILE_NOTES = {
    "predict, 16 connections": (
        "the event loop's thread is busy all the time; the largest shares of its samples are "
        "the answer's one socket write (10-14%), the loop's own polling (14%) and the group "
        "commit's INSERT (10%); riverbed's checks, model call, record, cache entry and "
        "event each hold 1-3%"
    ),
    "batch route": (
        "riverbed runs 292,000 instructions a sample where river's own loop runs 236,000 "
        "(valgrind; 0.81), and the route costs over HTTP what it costs embedded; in time "
        "its instructions run slower than river's tight loop (0.53-0.66 of river in "
        "alternating runs), and river's own rate moves by a third from second to second on "
        "this shared machine; what is left per sample is spread: the feature checks "
        "(15,000 instructions), the log's batch row (13,000), the events (10,000)"
    ),
    "WebSocket, learn_many": "the batch route's work per sample, less the HTTP framing",
    "(beside it) WebSocket, one predict": (
        "one message a sample: the websockets protocol's frame handling and an answer per "
        "message cost about 70 µs of server CPU, a river prediction 2 µs"
    ),
    "riverbed p99": (
        "queueing in the server, in proportion to its CPU a request: a loop pass reads every "
        "waiting request, runs them, commits them together and writes the answers, and a "
        "request spans a little under two passes of about 16 requests each, so p99 comes to "
        "about 30 times the server's CPU a request plus the scheduler's jitter (about 3.2 ms "
        "at the 107 µs of a fast machine, 6.5 ms at the 214 µs of a slow one; Little's law "
        "fixes the mean at 16 connections over the throughput, and the echo's own p99 moves "
        "the same way). Traced on 2026-12-03: the tail was requests that arrived just after "
        "the loop's poll and waited a whole pass to be read; the loop's commit now waits for "
        "one more poll so that they share it (p99 3.62 to 3.25 ms on the loop route, 3.07 to "
        "2.62 on learn, alternating runs). Not the cause, each measured: the load generator "
        "(2 threads instead of 16, or pinned apart from the server), the collector, model "
        "checkpoints, the WAL's restarts, the table layout. Before that change the same code "
        "met it (4.41 ms) where the echo served 20,400 req/s at 16 connections and missed it "
        "at 6.23 and 9.20 ms (14,700 and 11,600 req/s) within the hour, steal 0.0% every time"
    ),
    "chantilly's POST /api/predict": (
        "the compatibility route runs the native predict's code behind the same fast path "
        "(riverbed.server.fast); py-spy on the server (2026-12-07) put each older system's "
        "predict op within a percent of the native op's samples, so a miss on this loaded "
        "2-core machine is the run's noise: compare the server CPU a request beside it"
    ),
    "django-river-ml's POST /api/predict/": "as chantilly's route: the same op, the same path",
    "lrnstak's POST /predict/model/{name}": (
        "a batch route (rows in, rows out, each row echoed in the answer): a larger answer "
        "to build and write. Since 2026-12-08 one row of a river model goes straight to the "
        "live model's predict (no second feature check, address lookup or per-row copies): "
        "185,000 instructions an op where the native op is 164,000 (was 220,000)"
    ),
    "Beaver's POST /predict/{name}": "as chantilly's route, plus the answer's ISO time",
    "full online loop on PostgreSQL": (
        "the commit's disk flush, which the SQLite cells do not pay: PostgreSQL's "
        "synchronous_commit=on flushes the WAL at every commit, where riverbed's SQLite "
        "default (synchronous=NORMAL) does not. Measured 2026-12-07 at 16 connections on "
        "the 2-core machine: pg_stat_wal with track_wal_io_timing put the flush at 2.2 ms "
        "a commit on average (pg_test_fsync: 0.4-2.9 ms), a commit's one round trip at "
        "2.8-3.5 ms and the whole commit at 4.6 ms; groups of 8 writes in two halves of the "
        "16 connections, one half committing while the loop answers the other (waiting to "
        "gather all 16 in one commit made fewer commits, not more writes a second). The "
        "same run with synchronous_commit=off on the bench database (diagnosis only: it "
        "loses acknowledged writes when PostgreSQL crashes) measured 0.68 of SQLite's "
        "predict and 0.47 of its loop; docs/postgresql.md, 'How fast'"
    ),
    "predict + learn by id on PostgreSQL": "as the online loop on PostgreSQL",
    "predict on PostgreSQL": "as the online loop on PostgreSQL: the predict's one write",
    "embedded engine": (
        "the batch route's work per sample without HTTP: 292,000 instructions a sample "
        "against river's 236,000 (valgrind), river's own cell moving by a third between runs"
    ),
    "full online loop": (
        "an absolute rate, so it moves with the machine; read a miss beside river alone and "
        "the echo in the same table: the run of 2026-12-02 13:10 that missed it (1,401 "
        "pairs/s, 0.52 of the echo's requests) measured river alone at 15,300 pairs/s and the "
        "echo at 5,400 req/s, where the morning's run that met it (3,160 pairs/s, 0.45 of the "
        "echo) measured 29,800 and 14,200"
    ),
}


def scaleout_text(result: dict[str, Any]) -> list[str]:
    """The scale-out section: the cluster's cells over one process's, and what
    benchmarks/scaleout.py measured on the cluster after them."""
    entries = result.get("scaleout") or []
    cluster = result.get("cluster")
    if not entries and not cluster:
        return []
    lines = [
        "",
        "riverbed scale-out (2 replicas + 1 learner on one PostgreSQL database and a Redis "
        "of its own, appendfsync always; the load spread over both replicas) over one "
        "riverbed process on PostgreSQL, same routes, same run. CPU: the cluster's "
        "processes (replicas, learner, Redis) to the end of the load; PostgreSQL: its "
        "backends for the system's database, to when the learner has applied everything:",
        "",
        "| route | conns | cluster | one process | ratio | p99 ms | one's | CPU µs/req "
        "| one's | PostgreSQL µs/req | one's | lost learns |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in entries:
        unit = UNIT.get(e["mode"], "/s")
        rate = f"{_fmt(e['rate'])} {unit}"
        if e["failed"]:
            rate = f"~~{rate}~~ **FAILED** ({'; '.join(e['problems'])[:80]})"
        lines.append(
            f"| {MODE_TEXT.get(e['mode'], e['mode'])} | {e['connections']} | {rate} "
            f"| {_fmt(e['one'])} {unit} | {_fmt(e['ratio'], 2)} | {_fmt(e['p99_ms'], 2)} "
            f"| {_fmt(e['one_p99_ms'], 2)} | {_fmt(e['cpu_us'])} | {_fmt(e['one_cpu_us'])} "
            f"| {_fmt(e['costs_us'].get('postgres_cpu_s'))} "
            f"| {_fmt(e['one_costs_us'].get('postgres_cpu_s'))} | {e['lost_learns']} |"
        )
    by_process = [e for e in entries if e["costs_us"]]
    if by_process:
        lines += [
            "",
            "The cluster's CPU per request by process (µs, to when the learner has applied "
            "everything):",
            "",
        ]
        for e in by_process:
            parts = ", ".join(
                f"{k.removesuffix('_cpu_s')} {_fmt(v)}" for k, v in e["costs_us"].items()
            )
            lines.append(f"- {MODE_TEXT.get(e['mode'], e['mode'])}, {e['connections']}: {parts}")
    if cluster:
        st, dr, idle = cluster["staleness"], cluster["drain"], cluster["idle"]
        lines += [
            "",
            f"- Staleness under a predict load on both replicas ({st['probes']} learns, each "
            "acknowledged by one replica until the other serves it, polled every 2 ms): p50 "
            f"{_fmt(st['p50_ms'])} ms, p99 {_fmt(st['p99_ms'])} ms, max {_fmt(st['max_ms'])} ms"
            + (f", {st['failed']} not acknowledged" if st["failed"] else "")
            + ".",
            f"- One learner on one model (the learner stopped while {_fmt(dr['acknowledged'])} "
            f"learns with features were acknowledged, {_fmt(dr['acknowledged_per_s'])}/s, then "
            f"started): {_fmt(dr['learns_per_s'])} learns/s applied; lost {dr['lost']}"
            f"{'' if not dr['problems'] else ' (' + '; '.join(dr['problems']) + ')'}. CPU a "
            f"learn: hand-off {_fmt(dr['handoff_replicas_us'])} µs on the replicas and "
            f"{_fmt(dr['handoff_redis_us'])} µs in Redis; apply {_fmt(dr['apply_learner_us'])} "
            f"µs in the learner, {_fmt(dr['apply_postgres_us'])} µs in PostgreSQL, "
            f"{_fmt(dr['apply_replicas_us'])} µs on the replicas following it (both).",
            "- Idle cluster, share of one core: "
            + ", ".join(f"{k.removesuffix('_cpu_share')} {_percent(v, 1)}" for k, v in idle.items())
            + ".",
        ]
    return lines


def _times(ratio: float | None) -> str:
    return "–" if ratio is None else f"{ratio:,.1f}×"


def _percent(share: float | None, digits: int = 0) -> str:
    return "–" if share is None else f"{100 * share:.{digits}f}%"


def _measured(t: dict[str, Any]) -> str:
    if t.get("measured"):
        return str(t["measured"])
    digits = 2 if t["unit"] in ("ratio", "ms") else 0
    unit = "" if t["unit"] == "count" else t["unit"]
    return f"{_fmt(t['value'], digits)} {unit}".strip()


def _goal(t: dict[str, Any]) -> str:
    if t["unit"] == "":
        return "flat after warm-up"
    unit = "" if t["unit"] in ("ratio", "count") else f" {t['unit']}"
    return f"{'≥' if t['higher'] else '<'} {t['goal']:,g}{unit}"


def _met(t: dict[str, Any]) -> str:
    """yes, not measured, or **no** with how far from the goal."""
    if t["met"] is None:
        return "not measured"
    if t["met"]:
        return "yes"
    value, goal = t["value"], t["goal"]
    if value is None:
        return "**no**"
    if t["higher"]:
        digits = 2 if t["unit"] == "ratio" else 0
        return f"**no**: {_fmt(value, digits)} of {goal:,g} ({100 * value / goal:.0f}%)"
    if t["unit"] == "count":
        return f"**no**: {value:,.0f}"
    over = value / goal
    if over < 1.5:
        return f"**no**: {_fmt(value, 2)} {t['unit']}, {100 * (over - 1):.0f}% over the limit"
    return f"**no**: {_fmt(value, 2)} {t['unit']}, {over:.1f}× the limit"


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["summary"] if r["rate"]]
    labels = [
        f"{r['system']} · {MODE_TEXT.get(r['mode'], r['mode']).split(' (')[0]} · "
        f"{'in-proc' if r['connections'] == 0 else str(r['connections']) + 'c'}"
        for r in rows
    ]
    colors = {
        "river": "#4c72b0",
        "engine": "#55a868",
        "engine-window": "#2e8b57",
        "engine-batch": "#1b5e3a",
        "echo": "#8c8c8c",
        "riverbed": "#dd8452",
        "riverbed-postgresql": "#b35a1f",
        "riverbed-scaleout": "#7a3a10",
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
