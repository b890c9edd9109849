"""Soak: does ``riverbed serve`` stay flat over a million predictions when a retention is set?

``python -m benchmarks.soak --predictions N`` starts ``riverbed serve`` on a fresh SQLite file
with retention set (the newest 10,000 predictions and learns of a model, 1,000 metric
points; a checkpoint every 2 s), then drives the full online loop (predict with an id, learn
by that id) with wrk, in slices of a few seconds, until at least N predictions were
acknowledged. After each slice it samples the server's resident memory (from /proc) and the
size of the database (the main file plus its ``-wal``).

Growth is the relative change from the samples at 25% of the run to the last ones (the
median of three on each side: the write-ahead log's size at one instant swings by megabytes
between its checkpoints, 7.8 MB in the last sample of the run of 2026-12-03 15:34 UTC). The first
quarter is warm-up, not steady state: the tables fill up to their retention, SQLite's file
and WAL reach their working size (freed pages are reused afterwards, so the file stops
growing but never shrinks) and the engine's prediction cache (``prediction_cache_size``,
100,000 entries) fills. After it, nothing should grow with the number of requests.

``flat`` means both growths are under 10% and there was no error. Why 10%: with retention
the database's row counts swing by the rows that arrive between two prunes (about a second
of traffic) and the allocator's arenas move by a few megabytes, both a few percent of the
~100 MB working set; a real leak over the last three quarters of a million predictions is
far beyond it (40 bytes kept per prediction is 30 MB; without retention the file grows by
about 300%). ``--retention 0`` runs the same load with nothing pruned, to see the check fail.

``--postgres SERVER`` (for example ``postgresql://postgres@127.0.0.1:5432``) runs the same soak
on PostgreSQL: a fresh database ``riverbed_soak`` on that server, made for the run and
dropped after it; its size is ``pg_database_size`` (tables, indexes and their free space;
the server's write-ahead log is shared by every database and not counted).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import environments, load, reference
from benchmarks.servers import Server, free_port
from benchmarks.systems import REPO, RIVERBED_SPEC, Riverbed, call

__all__ = ["BOUND", "SMOOTH", "growth", "run"]

BOUND = 0.10  # the largest relative growth after warm-up that still counts as flat
SMOOTH = 3  # samples on each side of the growth, their median
SLICE_SECONDS = 5
WARM_UP = 0.25  # growth is measured from the sample at this fraction of the run
MODEL = "soak"


def run(
    *,
    wrk: str,
    work: Path,
    predictions: int = 1_000_000,
    connections: int = 16,
    log: Callable[[str], None] = print,
    retention: int = 10_000,
    postgres: str | None = None,
) -> dict[str, Any]:
    """Drive the loop until ``predictions`` are acknowledged; see the module docstring.

    ``retention`` is the number of predictions and learns kept per model (0: no retention);
    ``postgres``, a PostgreSQL server's URL, soaks a fresh database there instead of a file.
    """
    work.mkdir(parents=True, exist_ok=True)
    database: Path | str
    if postgres:
        database = _fresh_postgres(postgres)
    else:
        database = work / "soak.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
    samples_lua = load.write_samples(work / "samples.lua", reference.samples())
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "riverbed"),
        "serve",
        "--database",
        str(database),
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--checkpoint-seconds",
        "2",
    ]
    if retention:
        argv += [
            "--retention-predictions",
            str(retention),
            "--retention-learns",
            str(retention),
            "--retention-metric-points",
            str(max(1, retention // 10)),
        ]
    server = Server("riverbed-soak", argv, port=port, cwd=REPO, log_path=work / "server.log")
    problems: list[str] = []
    samples: list[dict[str, int]] = []
    acked_predictions = acked_learns = errors = 0
    seconds = 0.0
    try:
        server.wait_ready()
        call(port, "POST", "/v1/models", {"name": MODEL, "spec": RIVERBED_SPEC})
        lua = Riverbed.lua.replace("MODEL", MODEL)
        started = time.monotonic()
        n = 0
        while acked_predictions < predictions:
            n += 1
            result = load.run(
                wrk,
                url=f"http://127.0.0.1:{port}",
                samples=samples_lua,
                system_lua=lua,
                mode="loop",
                connections=connections,
                seconds=SLICE_SECONDS,
                prefix=f"k{n}-",
                script_path=work / "soak.lua",
            )
            acked_predictions += result.predicted
            acked_learns += result.learned
            errors += result.errors
            if result.errors and result.stderr:
                problems.append(f"slice {n}: {result.stderr.splitlines()[0][:200]}")
            if server.process.poll() is not None:
                problems.append(f"the server exited ({server.process.returncode})")
                break
            sample = {
                "predictions": acked_predictions,
                "rss_bytes": server.rss_bytes(),
                "db_bytes": db_bytes(database),
            }
            samples.append(sample)
            log(
                f"soak: {acked_predictions:>9,} predictions  "
                f"{result.predicted / result.seconds:6,.0f}/s  "
                f"rss {sample['rss_bytes'] / 1e6:6.1f} MB  db {sample['db_bytes'] / 1e6:7.1f} MB"
            )
            if result.predicted == 0:
                problems.append(f"slice {n} acknowledged no prediction")
                break
        seconds = time.monotonic() - started
        if server.process.poll() is None:
            stats = call(port, "GET", f"/v1/models/{MODEL}/stats")
            if stats["n_predictions"] < acked_predictions or stats["n_learns"] < acked_learns:
                problems.append(
                    f"acknowledged {acked_predictions} predictions and {acked_learns} learns, "
                    f"the server counts {stats['n_predictions']} and {stats['n_learns']}"
                )
    finally:
        server.stop()
    rows = row_counts(database)
    if postgres:
        _admin(postgres, f'DROP DATABASE IF EXISTS "{SOAK_DATABASE}" WITH (FORCE)')
    rss_growth = growth(samples, "rss_bytes")
    db_growth = growth(samples, "db_bytes")
    if errors:
        problems.append(f"{errors} requests failed")
    if len(samples) < 4:
        problems.append(f"{len(samples)} samples are too few to tell a trend")
    for what, value in (("memory", rss_growth), ("database", db_growth)):
        if value >= BOUND:
            problems.append(f"{what} grew by {value:.0%} after warm-up (bound {BOUND:.0%})")
    return {
        "predictions": acked_predictions,
        "learns": acked_learns,
        "seconds": seconds,
        "retention": retention,
        "database": "postgresql" if postgres else "sqlite",
        "rows": rows,
        "samples": samples,
        "rss_growth": rss_growth,
        "db_growth": db_growth,
        "flat": not problems,
        "problems": problems,
    }


def growth(samples: list[dict[str, int]], key: str) -> float:
    """Relative change of ``key`` from the samples at 25% of the predictions to the last
    ones, each side the median of up to :data:`SMOOTH` samples: the write-ahead log's size
    at one instant swings by megabytes between its checkpoints, and one sample caught in a
    swing is not a trend (0.0 with fewer than two samples)."""
    if len(samples) < 2:
        return 0.0
    total = samples[-1]["predictions"]
    start = next(i for i, s in enumerate(samples) if s["predictions"] >= WARM_UP * total)
    start = min(start, len(samples) - 2)
    n = min(SMOOTH, (len(samples) - start) // 2)  # the two windows do not overlap
    before = statistics.median(s[key] for s in samples[start : start + n])
    after = statistics.median(s[key] for s in samples[-n:])
    return (after - before) / before if before else 0.0


SOAK_DATABASE = "riverbed_soak"


def _admin(server: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{server.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def _fresh_postgres(server: str) -> str:
    _admin(server, f'DROP DATABASE IF EXISTS "{SOAK_DATABASE}" WITH (FORCE)')
    _admin(server, f'CREATE DATABASE "{SOAK_DATABASE}"')
    return f"{server.rstrip('/')}/{SOAK_DATABASE}"


def db_bytes(database: Path | str) -> int:
    """The database's size on disk: an SQLite file plus its write-ahead log, or a
    PostgreSQL database's ``pg_database_size``."""
    if isinstance(database, str):
        import psycopg

        with psycopg.connect(database, autocommit=True) as conn:
            return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(f"{database}{suffix}")
        except OSError:
            pass
    return total


def row_counts(database: Path | str) -> dict[str, int]:
    """Rows left in the tables that retention bounds, read after the server stopped."""
    tables = ("predictions", "learns", "metric_points")
    if isinstance(database, str):
        import psycopg

        with psycopg.connect(database) as pg:
            return {
                t: int(pg.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])  # type: ignore[index]
                for t in tables
            }
    conn = sqlite3.connect(database)
    try:
        return {
            table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in tables
        }
    finally:
        conn.close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    p.add_argument("--predictions", type=int, default=1_000_000)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument(
        "--retention",
        type=int,
        default=10_000,
        help="predictions and learns kept per model (0: none removed, to see growth)",
    )
    p.add_argument(
        "--postgres",
        metavar="SERVER",
        help="soak a fresh database riverbed_soak on this PostgreSQL server (a URL without "
        "the database, e.g. postgresql://postgres@127.0.0.1:5432) instead of an SQLite file",
    )
    p.add_argument("--work", type=Path, default=environments.WORK / "soak")
    args = p.parse_args()
    result = run(
        wrk=environments.ensure_wrk(),
        work=args.work,
        predictions=args.predictions,
        connections=args.connections,
        log=lambda message: print(message, file=sys.stderr, flush=True),
        retention=args.retention,
        postgres=args.postgres,
    )
    first, last = result["samples"][0], result["samples"][-1]
    print(
        f"{result['predictions']:,} predictions and {result['learns']:,} learns in "
        f"{result['seconds']:.0f} s on {result['database']}, "
        f"retention {result['retention'] or 'off'}\n"
        f"memory   {first['rss_bytes'] / 1e6:7.1f} MB -> {last['rss_bytes'] / 1e6:7.1f} MB, "
        f"growth after warm-up {result['rss_growth']:+.1%}\n"
        f"database {first['db_bytes'] / 1e6:7.1f} MB -> {last['db_bytes'] / 1e6:7.1f} MB, "
        f"growth after warm-up {result['db_growth']:+.1%}\n"
        f"rows left: {result['rows']}\n"
        + ("flat" if result["flat"] else "NOT FLAT: " + "; ".join(result["problems"]))
    )
    raise SystemExit(0 if result["flat"] else 1)


if __name__ == "__main__":
    main()
