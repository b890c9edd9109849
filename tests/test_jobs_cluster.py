"""Training jobs on a real Dask cluster (``jobs_cluster``): a ``dask scheduler`` and
``dask worker`` processes on loopback (riverbed.testing.dask), the candidates trained there
registering what threads register; a worker killed mid-job retried, every worker lost failing
the job with nothing registered, cancel, a scheduler that does not answer, workers of another
riverbed, and a real ``riverbed serve --jobs-cluster``."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from river import datasets

from riverbed import Client, Engine
from riverbed import cluster as cluster_module
from riverbed.testing.dask import LocalDaskCluster

from .helpers import Server, free_port
from .test_jobs import PHISHING_CSV, RIVER_SPECS, SKLEARN_SPECS, TARGET, diabetes_csv

pytest.importorskip("distributed")

SLOW = [
    {
        "name": f"tree{seed}",
        "spec": {"class": "river.tree.HoeffdingAdaptiveTreeClassifier", "params": {"seed": seed}},
    }
    for seed in range(4)
]


def phishing_rows(copies: int) -> list[dict[str, Any]]:
    rows = list(datasets.Phishing())
    return [{**x, "y": y} for _ in range(copies) for x, y in rows]


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[LocalDaskCluster]:
    with LocalDaskCluster(workers=2) as cluster:
        yield cluster


@pytest.fixture
def own_cluster() -> Iterator[LocalDaskCluster]:
    """A cluster of this test's own, whose workers it may kill."""
    with LocalDaskCluster(workers=2) as cluster:
        yield cluster


def run(engine: Engine, data: Any, model: str = "m", **options: Any) -> dict[str, Any]:
    job = engine.train(model, data, **options)
    return engine.jobs.wait(job["id"], timeout=300)


def results(job: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(c["name"], c["metrics"]) for c in job["result"]["candidates"]]


def wait_running(engine: Engine, job_id: str, above: float = 0.05) -> dict[str, Any]:
    """Until the job reports progress from the cluster; fails if it ended first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = engine.jobs.get(job_id)
        assert job["status"] in ("queued", "running"), job
        if job["progress"] > above:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never made progress")


def test_a_cluster_registers_what_threads_register(
    dask_cluster: LocalDaskCluster, tmp_path: Path
) -> None:
    csv, names = diabetes_csv()
    held_out = [dict(zip(names, [0.01 * (i % 7)] * len(names), strict=True)) for i in range(5)]
    jobs = {}
    for where, cluster in (("threads", ""), ("cluster", dask_cluster.address)):
        with Engine(str(tmp_path / f"{where}.db"), jobs_cluster=cluster) as engine:
            river_job = run(engine, PHISHING_CSV, target=TARGET, candidates=RIVER_SPECS)
            sklearn_job = run(
                engine, csv, "d", target="progression", candidates=SKLEARN_SPECS, task="regression"
            )
            assert river_job["status"] == sklearn_job["status"] == "succeeded", (
                river_job["error"],
                sklearn_job["error"],
            )
            predictions = [
                [engine.predict(f"d@{c['version']}", x)["prediction"] for x in held_out]
                for c in sklearn_job["result"]["candidates"]
            ]
            logs = [line["message"] for line in engine.jobs.logs(sklearn_job["id"])]
            jobs[where] = (results(river_job), results(sklearn_job), predictions, logs)
    assert jobs["cluster"][:3] == jobs["threads"][:3]
    assert any(
        f"Dask cluster at {dask_cluster.address} (2 workers)" in m for m in jobs["cluster"][3]
    )
    assert not any("Dask" in m for m in jobs["threads"][3])


def test_progress_comes_back_from_the_workers(dask_cluster: LocalDaskCluster) -> None:
    with Engine(":memory:", jobs_cluster=dask_cluster.address) as engine:
        seen: list[float] = []
        engine.events.subscribe(
            lambda event: (
                seen.append(event.data["progress"]) if event.type == "job.progress" else None
            )
        )
        job = run(engine, phishing_rows(4), target="y", candidates=SLOW[:2])
    assert job["status"] == "succeeded", job["error"]
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert any(0 < p < 1 for p in seen), seen  # from inside a candidate, not only at its end


def test_a_worker_killed_mid_job_is_retried_elsewhere(
    own_cluster: LocalDaskCluster, tmp_path: Path
) -> None:
    data = phishing_rows(16)
    with Engine(":memory:") as engine:
        expected = results(run(engine, data, target="y", candidates=SLOW))
    with Engine(str(tmp_path / "db"), jobs_cluster=own_cluster.address) as engine:
        job = engine.train("m", data, target="y", candidates=SLOW)
        before = wait_running(engine, job["id"])
        own_cluster.kill_worker(0)
        done = engine.jobs.wait(job["id"], timeout=300)
        assert before["progress"] < 1
        assert done["status"] == "succeeded", done["error"]
        assert results(done) == expected
        assert [v["version"] for v in engine.list_versions("m")] == [1, 2, 3, 4]


def test_every_worker_lost_sends_the_data_again_to_new_ones(
    own_cluster: LocalDaskCluster,
) -> None:
    data = phishing_rows(8)
    with Engine(":memory:") as engine:
        expected = results(run(engine, data, target="y", candidates=SLOW[:2]))
    with Engine(":memory:", jobs_cluster=own_cluster.address) as engine:
        job = engine.train("m", data, target="y", candidates=SLOW[:2])
        wait_running(engine, job["id"])
        own_cluster.kill_worker(0)
        own_cluster.kill_worker(1)
        own_cluster.add_worker()
        done = engine.jobs.wait(job["id"], timeout=300)
        assert done["status"] == "succeeded", done["error"]
        assert results(done) == expected
        logs = [line["message"] for line in engine.jobs.logs(job["id"])]
        assert any("data was lost" in m for m in logs), logs


def test_a_cluster_left_with_no_worker_fails_the_job_and_registers_nothing(
    own_cluster: LocalDaskCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_module, "NO_WORKERS_SECONDS", 2.0)
    with Engine(":memory:", jobs_cluster=own_cluster.address) as engine:
        job = engine.train("m", phishing_rows(8), target="y", candidates=SLOW[:2])
        wait_running(engine, job["id"])
        own_cluster.kill_worker(0)
        own_cluster.kill_worker(1)
        done = engine.jobs.wait(job["id"], timeout=120)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "unavailable"
        assert "has no workers" in done["error"]["message"]
        assert f"dask worker {own_cluster.address}" in done["error"]["message"]
        assert engine.store.get_model("m") is None
        # workers again: the next job trains
        own_cluster.add_worker()
        own_cluster.wait_workers(1)
        again = run(engine, PHISHING_CSV, target=TARGET, candidates=RIVER_SPECS[:1])
        assert again["status"] == "succeeded", again["error"]


def test_a_scheduler_lost_mid_job_fails_it_and_registers_nothing(
    own_cluster: LocalDaskCluster,
) -> None:
    with Engine(":memory:", jobs_cluster=own_cluster.address) as engine:
        job = engine.train("m", phishing_rows(16), target="y", candidates=SLOW[:2])
        wait_running(engine, job["id"])
        own_cluster.scheduler.kill()
        done = engine.jobs.wait(job["id"], timeout=120)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "unavailable", done["error"]
        assert own_cluster.address in done["error"]["message"]
        assert engine.store.get_model("m") is None


def test_cancel_stops_the_candidates_on_the_workers(dask_cluster: LocalDaskCluster) -> None:
    with Engine(":memory:", jobs_cluster=dask_cluster.address) as engine:
        job = engine.train("m", phishing_rows(40), target="y", candidates=SLOW[:2])
        wait_running(engine, job["id"])
        engine.jobs.cancel(job["id"])
        done = engine.jobs.wait(job["id"], timeout=120)
        assert done["status"] == "cancelled"
        assert engine.store.get_model("m") is None
        # the workers stopped training it: a small job after it gets both of them at once
        again = run(engine, PHISHING_CSV, target=TARGET, candidates=RIVER_SPECS[:2])
        assert again["status"] == "succeeded", again["error"]


def test_a_scheduler_that_does_not_answer_fails_the_job_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cluster_module, "CONNECT_SECONDS", 1.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    with Engine(":memory:", jobs_cluster=address) as engine:
        done = run(engine, PHISHING_CSV, target=TARGET, candidates=RIVER_SPECS[:1])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "unavailable"
    assert address in done["error"]["message"] and "dask scheduler" in done["error"]["message"]


def test_workers_of_another_riverbed_are_refused(
    dask_cluster: LocalDaskCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_module, "__version__", "0.0.0+other")
    with Engine(":memory:", jobs_cluster=dask_cluster.address) as engine:
        done = run(engine, PHISHING_CSV, target=TARGET, candidates=RIVER_SPECS[:1])
        assert done["status"] == "failed"
        assert "another riverbed than this server's 0.0.0+other" in done["error"]["message"]
        assert engine.store.get_model("m") is None


@pytest.mark.parametrize("address", ["http://127.0.0.1:8786", "127.0.0.1:8786", "tcp://host"])
def test_a_bad_address_is_refused_at_start(address: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        Engine(":memory:", jobs_cluster=address)
    serve = subprocess.run(
        [sys.executable, "-m", "riverbed", "serve", "--database", str(tmp_path / "x.db")]
        + ["--port", str(free_port()), "--jobs-cluster", address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode != 0
    assert "tcp://HOST:PORT" in serve.stderr
    assert "Traceback" not in serve.stderr


def test_a_real_server_trains_on_the_cluster(
    dask_cluster: LocalDaskCluster, tmp_path: Path
) -> None:
    server = Server(str(tmp_path / "served.db"), None, "--jobs-cluster", dask_cluster.address)
    server.start()
    try:
        with Client(server.url) as client:
            queued = client.train("m", PHISHING_CSV, target=TARGET, candidates=RIVER_SPECS)
            job = client.jobs.wait(queued["id"], timeout=300)
            assert job["status"] == "succeeded", job["error"]
            assert [c["name"] for c in job["result"]["candidates"]] == [
                "logistic",
                "hoeffding",
                "bayes",
            ]
            logs = [line["message"] for line in client.jobs.logs(job["id"])]
            assert any("Dask cluster" in m for m in logs)
            x = dict(next(iter(datasets.Phishing()))[0])
            assert client.predict("m@champion", x)["prediction"] in (True, False)
    finally:
        server.stop()
