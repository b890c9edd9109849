"""Retention: the engine keeps the newest N predictions, learns and metric points of a model,
never a learn a restart replays, and says so when a label comes for a removed prediction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from river import datasets

from riverbed import Engine, PredictionNotFound
from riverbed.cli import cli
from riverbed.config import Settings
from riverbed.server import create_app
from tests.helpers import STORES, database, phishing_model

RETENTION = {"retention_predictions": 20, "retention_learns": 30, "retention_metric_points": 5}


@pytest.fixture(params=STORES)
def engine(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """An engine with retention over each store kind; the ticker never checkpoints, and
    never prunes either (it would every second, so a slow stream found its rows gone
    before the test's own prune counted them)."""
    monkeypatch.setattr("riverbed.live._PRUNE_SECONDS", 1e9)
    with (
        database(request.param, tmp_path) as db,
        Engine(db, checkpoint_every=1_000_000, checkpoint_seconds=3600, **RETENTION) as e,
    ):
        yield e


def stream(engine: Engine, n: int, *, start: int = 0) -> None:
    """Predict with an id, then learn by that id, for ``n`` Phishing samples."""
    for i, (x, y) in enumerate(datasets.Phishing().take(start + n)):
        if i >= start:
            engine.predict("p", x, id=f"s{i}")
            engine.learn("p", ground_truth=y, id=f"s{i}")


def rows(database: str, table: str) -> list[int]:
    conn = sqlite3.connect(database)
    try:
        return [r[0] for r in conn.execute(f"SELECT seq FROM {table} ORDER BY seq")]
    finally:
        conn.close()


def test_prune_keeps_the_newest_predictions_and_the_learns_a_restart_replays(
    engine: Engine,
) -> None:
    engine.create_model("p", phishing_model(), options={"history_every": 1})
    stream(engine, 50)
    # no checkpoint yet: every learn is needed to rebuild the model, so none goes
    assert engine.prune() == {"predictions": 30, "learns": 0, "metric_points": 45}
    assert engine.store.get_prediction("s29") is None
    assert engine.store.get_prediction("s30") is not None
    assert len(list(engine.store.learns_after("p", 0))) == 50
    assert [p["seq"] for p in engine.metrics_history("p")["points"]] == list(range(46, 51))
    engine.checkpoint("p")  # checkpoint at learn 50
    stream(engine, 10, start=50)
    assert engine.prune() == {"predictions": 10, "learns": 30, "metric_points": 10}
    assert [r.seq for r in engine.store.learns_after("p", 0)] == list(range(31, 61))
    assert engine.prune() == {"predictions": 0, "learns": 0, "metric_points": 0}


def test_without_retention_nothing_is_pruned(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "all.db")) as engine:
        engine.create_model("p", phishing_model())
        stream(engine, 30)
        engine.checkpoint("p")
        assert engine.prune() == {"predictions": 0, "learns": 0, "metric_points": 0}
        assert engine.store.get_prediction("s0") is not None
        assert len(list(engine.store.learns_after("p", 0))) == 30


def test_a_label_for_a_pruned_prediction_is_not_found_and_says_why(engine: Engine) -> None:
    """The prediction is still in the engine's in-memory cache, and still refused: a label
    must not depend on what this process happens to remember."""
    engine.create_model("p", phishing_model())
    for i, (x, _) in enumerate(datasets.Phishing().take(30)):
        engine.predict("p", x, id=f"s{i}")
    assert engine.prune()["predictions"] == 10
    assert "s0" in engine._cache
    with pytest.raises(PredictionNotFound, match="retention keeps the newest 20 predictions"):
        engine.learn("p", ground_truth=True, id="s0")
    assert engine.learn("p", ground_truth=True, id="s10")["n_learns"] == 1


async def test_over_http_a_pruned_label_is_404_prediction_not_found(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "api.db"), retention_predictions=3) as engine:
        engine.create_model("p", phishing_model())
        for i in range(5):
            engine.predict("p", {"x": float(i)}, id=f"s{i}")
        engine.prune()
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            r = await api.post("/v1/models/p/learn", json={"id": "s1", "ground_truth": True})
            kept = await api.post("/v1/models/p/learn", json={"id": "s2", "ground_truth": True})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "prediction_not_found"
    assert "may have been removed" in error["message"]
    assert kept.status_code == 200


def test_the_message_names_retention_only_when_it_is_on(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "all.db")) as engine:
        engine.create_model("p", phishing_model())
        with pytest.raises(PredictionNotFound) as caught:
            engine.learn("p", ground_truth=True, id="nope")
    assert "retention" not in str(caught.value)


def test_after_a_crash_a_pruned_engine_replays_to_the_acknowledged_state(tmp_path: Path) -> None:
    """Pruned, then killed with learns after the checkpoint: those were kept and replayed."""
    database = str(tmp_path / "crash.db")
    engine = Engine(
        database, checkpoint_every=40, checkpoint_seconds=3600, checkpoint_share=1, **RETENTION
    )
    engine.create_model("p", phishing_model())
    stream(engine, 130)  # checkpoints at 40, 80, 120 (share 1: however quick the learns)
    engine.prune()
    assert rows(database, "learns") == list(range(101, 131))  # the newest 30, 121+ replayed
    stream(engine, 20, start=130)  # checkpoint at 140
    engine.prune()
    assert rows(database, "learns")[0] == 121
    expected = engine.metrics("p")
    engine.store.close()  # as if the process died: no final checkpoint
    engine._stop.set()

    with Engine(database, **RETENTION) as again:
        assert again.metrics("p") == expected
        assert again.stats("p")["n_learns"] == 150
        with pytest.raises(PredictionNotFound):
            again.learn("p", ground_truth=True, id="s100")  # gone from the store
        again.predict("p", {"x": 1.0}, id="new")
        assert again.learn("p", ground_truth=True, id="new")["n_learns"] == 151


def test_the_checkpoint_thread_prunes_on_its_own(tmp_path: Path) -> None:
    database = str(tmp_path / "tick.db")
    with Engine(database, checkpoint_seconds=0.1, retention_predictions=5) as engine:
        engine.create_model("p", phishing_model())
        for i in range(12):
            engine.predict("p", {"x": float(i)}, id=f"s{i}")
        deadline = time.monotonic() + 30
        while engine.store.get_prediction("s6") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rows(database, "predictions") == list(range(8, 13))


def test_retention_is_a_serve_flag_an_environment_variable_and_documented() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    for flag in ("--retention-predictions", "--retention-learns", "--retention-metric-points"):
        assert flag in result.output
    settings = Settings.load(environ={"RIVERBED_RETENTION_LEARNS": "10000"})
    assert settings.retention_learns == 10_000
    docs = (Path(__file__).parent.parent / "docs" / "settings.md").read_text()
    assert "RIVERBED_RETENTION_PREDICTIONS" in docs
    with pytest.raises(ValueError, match="retention_predictions"):
        Settings(retention_predictions=-1)
