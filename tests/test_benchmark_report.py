"""The benchmark's own arithmetic (benchmarks/): the steal share a report prints beside its
cells, and the soak's growth. The benchmark itself runs by `make bench`, outside the test
run."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import compat_ratios, postgres_ratios, scaleout_ratios, steal_text, targets
from benchmarks.servers import Steal
from benchmarks.soak import BOUND, growth


def _stat(path: Path, user: int, idle: int, steal: int) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    path.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 {steal} 7 7\ncpu0 1 2 3 4 5 6 7 8 9 10\n")


def test_steal_is_the_share_of_all_ticks_between_start_and_share(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    _stat(stat, user=100, idle=100, steal=0)
    steal = Steal(str(stat))
    _stat(stat, user=160, idle=120, steal=20)  # 100 ticks passed, 20 of them stolen
    assert steal.share() == 0.2


def test_steal_without_ticks_passing_is_unknown(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    _stat(stat, user=5, idle=5, steal=1)
    assert Steal(str(stat)).share() is None


def test_steal_reads_this_machine() -> None:
    share = Steal().share()
    assert share is None or 0 <= share <= 1


def test_steal_text_names_the_median_and_the_worst_cell() -> None:
    runs = [
        {"label": "river alone", "mode": "loop", "repeat": 0, "steal_share": 0.01},
        {"label": "riverbed", "mode": "predict", "repeat": 2, "steal_share": 0.125},
        {"label": "echo", "mode": "echo", "repeat": 1, "steal_share": 0.02},
        {"label": "old run", "mode": "predict", "repeat": 0},  # measured before steal was
    ]
    text = steal_text(runs)
    assert text is not None
    assert "over the 3 cells: median 2.0%, at most 12.5% (riverbed, predict, repeat 3)" in text
    assert steal_text([{"label": "x", "mode": "predict", "repeat": 0}]) is None


def _row(system: str, mode: str, connections: int, p99: float | None) -> dict[str, object]:
    return {
        "system": system,
        "mode": mode,
        "connections": connections,
        "p99_ms": p99,
        "rate": 1.0,
        "requests_per_s": 1.0,
        "failed": 0,
        "errors": 0,
        "lost_learns": 0,
    }


def test_the_p99_target_names_its_route_and_the_echos_own_p99() -> None:
    rows = [
        _row("riverbed", "predict", 16, 4.2),
        _row("riverbed", "loop", 16, 6.25),
        _row("riverbed", "batch", 16, 900.0),  # a batch's latency: not a one-sample route
        _row("riverbed", "loop", 1, 9.0),  # one connection: not the target's
        _row("echo", "echo", 16, 3.5),
    ]
    (p99,) = [t for t in targets(rows) if t["target"].startswith("riverbed p99")]
    assert (p99["value"], p99["met"]) == (6.25, False)
    assert p99["measured"] == "6.25 ms (predict + learn by id; the echo's own: 3.50 ms)"


def _samples(sizes: list[int]) -> list[dict[str, int]]:
    return [{"predictions": 100 * (i + 1), "db_bytes": size} for i, size in enumerate(sizes)]


def test_one_sample_caught_in_a_swing_of_the_log_is_not_growth() -> None:
    # the run of 2026-12-03: 78.0 MB all along, the last sample 85.8 MB (its WAL mid-swing)
    sizes = [60_000_000] * 3 + [78_008_320] * 14 + [80_309_128, 78_008_320, 85_776_368]
    assert growth(_samples(sizes), "db_bytes") < 0.03  # the last sample alone: +10.0%


def test_a_steady_leak_after_warm_up_is_growth() -> None:
    sizes = [50_000_000 + 1_000_000 * i for i in range(20)]  # +1 MB a slice, all the way
    assert growth(_samples(sizes), "db_bytes") > BOUND


def test_two_samples_compare_the_first_and_the_last() -> None:
    assert growth(_samples([100, 150]), "db_bytes") == 0.5


def _predict_row(
    system: str, rate: float, cpu: float, connections: int = 16, failed: int = 0
) -> dict:
    return {
        "system": system,
        "mode": "predict",
        "connections": connections,
        "rate": rate,
        "requests_per_s": rate,
        "cpu_us_per_request": cpu,
        "failed": failed,
        "errors": 0,
        "lost_learns": 0,
        "p99_ms": None,
    }


def test_each_older_systems_predict_route_is_divided_by_the_native_route_of_its_run() -> None:
    rows = [
        _predict_row("riverbed", 5000, 100),
        _predict_row("compat-chantilly", 4750, 105),
        _predict_row("compat-lrnstak", 4000, 130),
        _predict_row("compat-beaver", 6000, 99, failed=1),
        _predict_row("riverbed", 2000, 120, connections=1),
        _predict_row("compat-chantilly", 2200, 118, connections=1),
    ]
    out = {(e["system"], e["connections"]): e for e in compat_ratios(rows)}
    assert out["compat-chantilly", 16]["ratio"] == 0.95
    assert out["compat-chantilly", 16]["route"] == "POST /api/predict"
    assert out["compat-lrnstak", 16]["ratio"] == 0.8
    assert out["compat-lrnstak", 16]["native_cpu_us"] == 100
    assert out["compat-beaver", 16]["ratio"] is None  # a failed cell is not ranked
    assert out["compat-chantilly", 1]["ratio"] == 1.1
    goals = {t["target"]: t for t in targets(rows) if "on riverbed" in t["target"]}
    assert [t["met"] for t in goals.values()] == [True, False, None]
    assert all(t["goal"] == 0.9 for t in goals.values())


def test_postgresql_cells_are_divided_by_the_sqlite_cells_of_their_run() -> None:
    def row(system: str, mode: str, rate: float, connections: int = 16, failed: int = 0) -> dict:
        return {**_predict_row(system, rate, 100, connections, failed), "mode": mode}

    rows = [
        row("riverbed", "predict", 5000),
        row("riverbed-postgresql", "predict", 4000),
        row("riverbed", "loop", 3000),
        row("riverbed-postgresql", "loop", 1500),
        row("riverbed", "loop", 1000, connections=1),
        row("riverbed-postgresql", "loop", 300, connections=1, failed=1),
    ]
    out = {(e["mode"], e["connections"]): e for e in postgres_ratios(rows)}
    assert out["predict", 16]["ratio"] == 0.8
    assert out["loop", 16]["ratio"] == 0.5 and out["loop", 16]["sqlite"] == 3000
    assert out["loop", 1]["ratio"] is None  # a failed cell is not ranked
    goals = {t["target"]: t for t in targets(rows) if "PostgreSQL" in t["target"]}
    assert {name: (t["goal"], t["met"]) for name, t in goals.items()} == {
        "full online loop on PostgreSQL, durable, 16 connections": (2000, False),
        "predict on PostgreSQL / on SQLite, 16 connections": (0.7, True),
        "predict + learn by id on PostgreSQL / on SQLite, 16 connections": (0.4, True),
    }


def test_scaleout_cells_are_divided_by_the_one_process_postgresql_cells_of_their_run() -> None:
    def row(system: str, mode: str, rate: float, failed: int = 0, lost: int = 0) -> dict:
        found = {**_predict_row(system, rate, 100, 16, failed), "mode": mode}
        found["lost_learns"], found["problems"] = lost, ["x"] if failed else []
        return found

    rows = [
        row("riverbed-postgresql", "predict", 1000),
        {**row("riverbed-scaleout", "predict", 1500), "costs_us_per_request": {"postgres": 9}},
        row("riverbed-postgresql", "loop", 400),
        row("riverbed-scaleout", "loop", 900, failed=1, lost=2),
    ]
    out = {e["mode"]: e for e in scaleout_ratios(rows)}
    assert out["predict"]["ratio"] == 1.5 and out["predict"]["one"] == 1000
    assert out["predict"]["costs_us"] == {"postgres": 9}
    assert out["loop"]["ratio"] is None  # a failed cell is not ranked
    assert out["loop"]["lost_learns"] == 2
    (lost,) = [t for t in targets(rows) if t["target"] == "riverbed errors + lost learns"]
    assert lost["value"] == 3.0 and lost["met"] is False  # the cluster's lost learns count
