"""Restoring a version into the live model: the model every label goes to predicts and learns
from that version's state on, with its metrics restarted or carried, recorded in the alias
history as NAME@restored and published as an event; durable across a restart; a refused or
failed restore changes nothing."""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from river import datasets, linear_model, metrics, preprocessing
from sklearn.linear_model import LogisticRegression

from riverbed import Engine, Unavailable
from riverbed.server import create_app

ROWS = list(itertools.islice(datasets.Phishing(), 300))
PROBES = [x for x, _ in ROWS[250:260]]


def model() -> Any:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def answers(obj: Any) -> list[float]:
    return [obj.predict_proba_one(x)[True] for x in PROBES]


def learned(engine: Engine, rows: list[tuple[dict[str, Any], bool]]) -> None:
    engine.learn_many("m", [{"features": x, "ground_truth": y} for x, y in rows])


def test_a_restored_version_is_the_live_state_from_then_on_and_after_a_restart(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "r.db")
    reference = model()
    with Engine(database) as engine:
        engine.create_model("m", model())
        learned(engine, ROWS[:100])
        for x, y in ROWS[:100]:
            reference.learn_one(x, y)
        frozen = copy.deepcopy(reference)
        assert engine.snapshot("m")["version"] == 2
        learned(engine, ROWS[100:200])  # what the rollback takes back
        events: list[Any] = []
        engine.events.subscribe(events.append)
        done = engine.restore("m", 2, by="alice")
        assert done == {
            "model": "m",
            "version": 2,
            "previous": 1,
            "metrics": "restart",
            "n_learns": 200,
        }
        assert answers(engine.live_model("m")) == pytest.approx(answers(frozen))
        assert engine.metrics("m")["n"] == 0  # measured afresh
        assert engine.get_model("m")["version"] == 2
        assert engine.aliases("m") == {"restored": 2}
        move = engine.alias_history("m")[-1]
        assert (move["alias"], move["version"], move["previous"], move["by"]) == (
            "restored",
            2,
            None,
            "alice",
        )
        assert [(e.type, e.data["version"]) for e in events] == [
            ("alias.moved", 2),  # restored -> 2
            ("model.restored", 2),
        ]
        # It learns on from the restored state; the learn log's numbers go on.
        accuracy = metrics.Accuracy()
        for x, y in ROWS[200:250]:
            accuracy.update(y, frozen.predict_one(x))
            frozen.learn_one(x, y)
        learned(engine, ROWS[200:250])
        assert engine.stats("m")["n_learns"] == 250
        assert engine.metrics("m")["metrics"]["Accuracy"] == pytest.approx(accuracy.get())
        running = answers(engine.live_model("m"))
        assert running == pytest.approx(answers(frozen))
    with Engine(database) as engine:  # the restore and what followed, not the log before it
        assert answers(engine.live_model("m")) == pytest.approx(running)
        assert engine.get_model("m")["version"] == 2
        assert engine.metrics("m")["metrics"]["Accuracy"] == pytest.approx(accuracy.get())
        assert engine.stats("m")["n_learns"] == 250


def test_carried_metrics_go_on_from_where_they_were(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "c.db")) as engine:
        engine.create_model("m", model())
        learned(engine, ROWS[:50])
        engine.snapshot("m")
        learned(engine, ROWS[50:100])
        before = engine.metrics("m")
        engine.restore("m", 1, metrics="carry")
        assert engine.metrics("m") == before
        assert answers(engine.live_model("m")) == pytest.approx(answers(model()))


async def test_refused_restores_change_nothing(tmp_path: Path) -> None:
    refusals = {
        ("m", '{"version": 9}'): (404, "version_not_found"),
        ("m", '{"version": 1, "metrics": "keep"}'): (400, "invalid_input"),
        ("m", '{"version": "one"}'): (400, "invalid_input"),
        ("m", '{"version": 1, "colour": 1}'): (400, "invalid_input"),
        ("m", "{}"): (400, "invalid_input"),
        ("nope", '{"version": 1}'): (404, "model_not_found"),
        ("sk", '{"version": 1}'): (409, "not_servable"),
    }
    with Engine(str(tmp_path / "x.db")) as engine:
        engine.create_model("m", model())
        learned(engine, ROWS[:50])
        engine.upload("sk", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
        before = answers(engine.live_model("m")), engine.metrics("m"), engine.alias_history("m")
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            got = []
            for name, body in refusals:
                r = await api.post(f"/v1/models/{name}/restore", content=body)
                got.append((r.status_code, r.json()["error"]["code"]))
            assert got == list(refusals.values())
            # the alias is restore's alone
            r = await api.put("/v1/models/m/aliases/restored", json={"version": 1})
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_input")
            assert "moved by restore alone" in r.json()["error"]["message"]
        after = answers(engine.live_model("m")), engine.metrics("m"), engine.alias_history("m")
        assert after == before


def test_a_restore_that_cannot_be_written_leaves_the_live_model_as_it_was(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "ro.db")
    with Engine(database) as engine:
        engine.create_model("m", model())
        learned(engine, ROWS[:100])
        engine.snapshot("m")
        learned(engine, ROWS[100:150])
        before = answers(engine.live_model("m")), engine.metrics("m")
        # the writer's connection made read-only: SQLite answers SQLITE_READONLY
        engine.store.sync()
        conn = engine.store._writer.conn  # type: ignore[attr-defined]
        conn.execute("PRAGMA query_only = ON")
        try:
            with pytest.raises(Unavailable, match="read-only"):
                engine.restore("m", 1)
        finally:
            conn.execute("PRAGMA query_only = OFF")
        assert (answers(engine.live_model("m")), engine.metrics("m")) == before
        assert engine.get_model("m")["version"] == 1
        learned(engine, ROWS[150:160])
        after = answers(engine.live_model("m"))
    with Engine(database) as engine:
        assert answers(engine.live_model("m")) == pytest.approx(after)
        assert engine.aliases("m") == {}


def test_restore_over_http_and_the_command_line(tmp_path: Path) -> None:
    from riverbed import Client
    from tests.helpers import Server

    server = Server(str(tmp_path / "s.db")).start()
    try:
        with Client(server.url) as client:
            client.create_model("m", model())
            client.learn_many("m", [{"features": x, "ground_truth": y} for x, y in ROWS[:40]])
            client.snapshot("m")
            client.learn_many("m", [{"features": x, "ground_truth": y} for x, y in ROWS[40:80]])
            assert client.restore("m", 2, metrics="carry", by="bob")["previous"] == 1
            assert client.alias_history("m")[-1]["by"] == "bob"
            done = subprocess.run(
                [sys.executable, "-m", "riverbed", "models", "restore", "m", "1"],
                capture_output=True,
                text=True,
                env={"RIVERBED_URL": server.url, "PATH": "/usr/bin:/bin"},
            )
            assert done.returncode == 0, done.stderr
            assert "m restored to version 1 (was based on 2); metrics restarted" in done.stdout
            assert client.aliases("m") == {"restored": 1}
            assert client.metrics("m")["n"] == 0
            bad = subprocess.run(
                [sys.executable, "-m", "riverbed", "models", "restore", "m", "7"],
                capture_output=True,
                text=True,
                env={"RIVERBED_URL": server.url, "PATH": "/usr/bin:/bin"},
            )
            assert bad.returncode == 1 and "version_not_found" in bad.stderr
    finally:
        server.stop()
