"""``python -m benchmarks``: set up, measure every system side by side, write the results.

One invocation starts every server, then runs the cells (system x route x connections)
interleaved, ``--repeats`` times, so that noise from other work on the machine falls on
all systems alike; the report uses medians and ratios within the run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import environments, inprocess, load, reference, report, scaleout, soak, wsload
from benchmarks.servers import Steal
from benchmarks.systems import (
    COMPAT_VIEWS,
    SYSTEMS,
    CompatView,
    Riverbed,
    RiverbedScaleOut,
    System,
)

RESULTS = environments.ROOT / "results"
WS_MODES = ("ws", "ws-many")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--seconds", type=int, default=3, help="length of each cell")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats per cell")
    p.add_argument(
        "--systems",
        default="river,engine,echo,riverbed,riverbed-postgresql,riverbed-scaleout,"
        + ",".join(v.name for v in COMPAT_VIEWS)
        + ",chantilly,django-river-ml",
        help="comma-separated systems to run (compat-NAME: an older system's predict route "
        "on riverbed's own server, beside riverbed's native route)",
    )
    p.add_argument("--connections", default="1,16", help="comma-separated connection counts")
    p.add_argument(
        "--modes",
        default="",
        help="comma-separated routes to run (predict,loop,learn,batch,ws,ws-many,echo); "
        "default: every route of every system",
    )
    p.add_argument(
        "--soak",
        type=int,
        default=1_000_000,
        metavar="N",
        help="after the cells, soak riverbed with N predictions (16 connections, retention "
        "set; benchmarks/soak.py) and check memory and database stay flat; 0 skips it",
    )
    p.add_argument(
        "--probes",
        type=int,
        default=200,
        help="after the cells, on the scale-out cluster (benchmarks/scaleout.py): learns timed "
        "for staleness under a predict load, then a drain of one model's stream and an idle "
        "spell; 0 skips them",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help="directory for the results")
    p.add_argument("--no-readme", action="store_true", help="do not update README.md's table")
    return p.parse_args()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def http_cell(
    system: System,
    mode: str,
    connections: int,
    repeat: int,
    *,
    wrk: str,
    samples_lua: Path,
    samples_json: Path,
    seconds: float,
    ref: reference.Reference,
    work: Path,
) -> dict[str, Any]:
    model = system.model_name(mode, connections, repeat)
    system.prepare(model)
    counted = system.counters()
    cpu0 = system.measured.cpu_seconds()
    result: load.Load | wsload.WsLoad
    extra: dict[str, Any] = {}
    if mode in WS_MODES:
        result = wsload.run(
            url=f"ws://127.0.0.1:{system.port}",
            model=model,
            samples=samples_json,
            mode=mode,
            connections=connections,
            seconds=seconds,
            prefix=f"{model}-",
            batch=load.BATCH_SIZE,
        )
        in_flight = 0  # the workers wait for every answer before they report
        # with a window of predictions ahead of their labels, the order is the server's
        ordered = connections == 1 and (mode == "ws-many" or result.window == 1)
        extra = {"client_processes": result.processes, "window": result.window}
    else:
        result = load.run_spread(
            wrk,
            urls=system.urls(),
            samples=samples_lua,
            system_lua=system.lua_for(model),
            mode=mode,
            connections=connections,
            seconds=seconds,
            prefix=f"{model}-",
            script_path=work / f"{system.name}.lua",
            batch=load.BATCH_SIZE if mode == "batch" else 1,
        )
        in_flight = load.BATCH_SIZE if mode == "batch" else 1
        ordered = connections == 1 and system.ordered_alone
    cpu = system.measured.cpu_seconds() - cpu0
    state = system.state(model)
    # read after the state: a cluster's learner may still have been applying the cell's
    # learns when the load stopped
    grown = {k: v - counted.get(k, 0.0) for k, v in system.counters().items()}
    # A batch cell learns every sample it sends (learn/many); wrk counts them as samples.
    acked_learns = result.samples if mode == "batch" else result.learned
    ok, problems = reference.check(
        ref,
        mode=mode,
        connections=connections,
        acked_learns=acked_learns,
        acked_predictions=result.predicted,
        state=state,
        errors=result.errors,
        in_flight=in_flight,
        ordered=ordered,
    )
    problems += state.get("problems", [])
    ok = ok and not problems
    if result.stderr and not ok:
        problems.append(result.stderr.splitlines()[0][:200])
    rate_count = {
        "echo": result.ok,
        "predict": result.predicted,
        "loop": result.learned,
        "learn": result.learned,
        "batch": result.samples,
        "ws": result.learned,
        "ws-many": result.samples,
    }[mode]
    learns = state.get("learns")
    return {
        "system": system.name,
        "label": system.label,
        "mode": mode,
        "connections": connections,
        "repeat": repeat,
        "seconds": result.seconds,
        "requests": result.requests,
        "requests_per_s": result.ok / result.seconds,
        "rate": rate_count / result.seconds,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "cpu_seconds": cpu,
        "cpu_us_per_request": 1e6 * cpu / result.ok if result.ok else None,
        "costs_us_per_request": {k: 1e6 * v / result.ok for k, v in grown.items()}
        if result.ok
        else {},
        "client_cpu_seconds": result.client_cpu_seconds,
        "client_cpu_share": result.client_cpu_seconds / result.seconds,
        "rss_bytes": system.measured.rss_bytes(),
        "errors": result.errors,
        "acked_learns": acked_learns,
        "applied_learns": learns,
        "lost_learns": max(0, acked_learns - learns) if learns is not None else 0,
        "metrics": state.get("metrics"),
        "ok": ok,
        "problems": problems,
        **extra,
    }


def inprocess_cell(
    name: str, mode: str, repeat: int, *, data: Any, seconds: float, ref: Any, work: Path
) -> dict[str, Any]:
    if name == "river":
        r = inprocess.raw_river(data, mode, seconds)
        label = "river alone (in-process)"
    elif name == "engine":
        r = inprocess.embedded(data, mode, seconds, work / "engine.db")
        label = "riverbed Engine, durable, blocking calls"
    elif name == "engine-batch":
        r = inprocess.embedded_batch(data, mode, seconds, work / "engine.db")
        way = {
            "loop": "predict_many + learn_many by id",
            "learn": "learn_many of features",
        }.get(mode, "predict_many")
        label = f"riverbed Engine, durable, {way} per {inprocess.BATCH}"
    else:
        r = inprocess.embedded(data, mode, seconds, work / "engine.db", window=256)
        label = "riverbed Engine, durable, receipts per 256"
    state = {"learns": r["learns"], "metrics": r["metrics"]}
    ok, problems = reference.check(
        ref,
        mode=mode,
        connections=1,
        acked_learns=r["learns"] if mode in ("loop", "learn") else 0,
        state=state,
        errors=0,
        # predict_many predicts a whole batch before its labels are learned: not river's order
        ordered=not (name == "engine-batch" and mode == "loop"),
    )
    # operations: one a sample (two in the loop), or one a call for the batch calls
    per = r.get("calls") or r["samples"] * (2 if mode == "loop" and name != "river" else 1)
    return {
        "system": name,
        "label": label,
        "mode": mode,
        "connections": 0,
        "repeat": repeat,
        "seconds": r["seconds"],
        "requests": per,
        "requests_per_s": per / r["seconds"],
        "rate": r["samples"] / r["seconds"],
        "p50_ms": None,
        "p99_ms": None,
        "cpu_seconds": r["cpu_seconds"],
        "cpu_us_per_request": 1e6 * r["cpu_seconds"] / per,
        "errors": 0,
        "acked_learns": r["learns"],
        "applied_learns": r["learns"],
        "lost_learns": 0,
        "metrics": r["metrics"],
        "ok": ok,
        "problems": problems,
    }


def riverbed_host(servers: list[System], work: Path) -> Riverbed:
    """The ``riverbed`` system's server, started now if the run has not started it."""
    for system in servers:
        if type(system) is Riverbed and system.server is not None:
            return system
    host = Riverbed(work)
    log(f"starting {host.label} on port {host.port} (for the compatibility routes)")
    host.start()
    servers.append(host)
    return host


def main() -> None:
    args = parse()
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    conns = [int(c) for c in args.connections.split(",")]
    modes = {m.strip() for m in args.modes.split(",") if m.strip()}

    def wanted(mode: str) -> bool:
        return not modes or mode in modes

    work = environments.WORK / "run"
    work.mkdir(parents=True, exist_ok=True)
    args.output.mkdir(parents=True, exist_ok=True)

    wrk = environments.ensure_wrk()
    for peer in environments.PEERS:
        if peer in names:
            environments.ensure_peer(peer)
    data = reference.samples()
    ref = reference.Reference(data)
    samples_lua = load.write_samples(work / "samples.lua", data)
    samples_json = wsload.write_samples(work / "samples.json", data)

    servers: list[System] = []
    cells: list[tuple[str, str, int]] = []
    clustered: dict[str, Any] | None = None
    try:
        for name in names:
            if name in ("river", "engine"):
                systems = [name] if name == "river" else ["engine", "engine-window", "engine-batch"]
                cells += [(s, m, 0) for s in systems for m in ("predict", "loop") if wanted(m)]
                if name == "engine" and wanted("learn"):
                    cells.append(("engine-batch", "learn", 0))
                continue
            if not any(wanted(m) for m in SYSTEMS[name].modes):
                continue
            reused = [s for s in servers if s.name == name]
            system = reused[0] if reused else SYSTEMS[name](work)
            if reused:  # the riverbed system, started earlier for the compatibility routes
                pass
            elif isinstance(system, CompatView):
                system.attach(riverbed_host(servers, work))
            else:
                log(f"starting {system.label} on port {system.port}")
                system.start()
            if not reused:
                servers.append(system)
            cells += [(name, m, c) for m in system.modes if wanted(m) for c in conns]
        by_name = {s.name: s for s in servers}
        runs: list[dict[str, Any]] = []
        started = time.monotonic()
        for repeat in range(args.repeats):
            order = cells[:]
            random.Random(repeat).shuffle(order)
            for name, mode, c in order:
                steal = Steal()
                if c == 0:
                    run = inprocess_cell(
                        name, mode, repeat, data=data, seconds=args.seconds, ref=ref, work=work
                    )
                else:
                    run = http_cell(
                        by_name[name],
                        mode,
                        c,
                        repeat,
                        wrk=wrk,
                        samples_lua=samples_lua,
                        samples_json=samples_json,
                        seconds=args.seconds,
                        ref=ref,
                        work=work,
                    )
                run["steal_share"] = steal.share()
                runs.append(run)
                flag = "ok" if run["ok"] else "FAILED: " + "; ".join(run["problems"])
                log(
                    f"[{repeat + 1}/{args.repeats}] {name:16} {mode:8} c={c:<3} "
                    f"{run['rate']:>10,.0f}/s  p99={run.get('p99_ms') or 0:7.2f} ms  "
                    f"cpu/req={run['cpu_us_per_request'] or 0:8.1f} µs  "
                    f"steal={100 * (run['steal_share'] or 0):4.1f}%  {flag}"
                )
        elapsed = time.monotonic() - started
        cluster = by_name.get(RiverbedScaleOut.name)
        if isinstance(cluster, RiverbedScaleOut) and args.probes > 0:
            log("scale-out: idle, staleness under a predict load, one learner's drain")
            clustered = scaleout.measure(
                cluster,
                wrk,
                probes=args.probes,
                seconds=args.seconds,
                samples=samples_lua,
                work=work / "scaleout",
            )
            log(f"scale-out: {clustered}")
    finally:
        for system in servers:
            system.stop()

    soaked = None
    soak_s = None
    if args.soak > 0:
        log(f"soak: {args.soak:,} predictions at 16 connections, retention set")
        soak_started = time.monotonic()
        soaked = soak.run(
            wrk=wrk, work=work / "soak", predictions=args.soak, connections=16, log=log
        )
        soak_s = time.monotonic() - soak_started
        log(f"soak: {report.soak_text(soaked)}")

    summary = report.summarize(runs)
    result = {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{os.cpu_count()} cores, {platform.python_implementation()} "
            f"{platform.python_version()}, {platform.machine()}",
            "seconds": args.seconds,
            "repeats": args.repeats,
            "elapsed_s": elapsed,
            "soak_s": soak_s,
        },
        "summary": summary,
        "ratios": report.ratios(summary),
        "compat": report.compat_ratios(summary),
        "postgres": report.postgres_ratios(summary),
        "scaleout": report.scaleout_ratios(summary),
        "cluster": clustered,
        "targets": report.targets(summary, soaked, soak_asked=args.soak),
        "soak": soaked,
        "runs": runs,
    }
    table = report.markdown(result)
    report.write_json(args.output / "latest.json", result)
    (args.output / "latest.md").write_text(table)
    report.chart(result, args.output / "latest.png")
    if not args.no_readme:
        report.update_readme(environments.ROOT.parent / "README.md", table)
    print(table)
    log(f"wrote {args.output}/latest.json, latest.md and latest.png in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
