"""``riverbed db copy`` and ``riverbed db check`` (issue 20 item 5): a real SQLite file with
every kind of record copied to a real PostgreSQL database and back, every record the same
through the stores on all three, a real server on the copy answering as one on the source
(held-out predictions, metrics, versions, aliases, a delayed label by id); and the copies
it refuses, each changing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from river import datasets, linear_model

from riverbed import Engine
from riverbed.stores import open_store
from riverbed.stores.copy import CopyRefused, copy_database, describe
from riverbed.stores.sqlite.lock import DatabaseInUse
from tests.helpers import PostgresDatabase, Server, phishing_model
from tests.test_webhooks import Receiver

PHISHING = list(datasets.Phishing())
TRAIN, HELD_OUT = PHISHING[:400], PHISHING[1000:1100]
CACHE_KEYS = ("user:1", "forever", "queue")


def build(path: str) -> None:
    """A database holding every kind of record riverbed writes."""
    with Engine(path) as engine:
        engine.create_model("phish", phishing_model(), options={"history_every": 10})
        # a batch (one learn_blocks row on SQLite), then predictions labelled one by one
        engine.learn_many("phish", [{"features": x, "ground_truth": y} for x, y in TRAIN[:200]])
        for i, (x, y) in enumerate(TRAIN[200:]):
            engine.predict("phish", x, id=f"p{i}")
            engine.learn("phish", ground_truth=y, id=f"p{i}")
        engine.snapshot("phish")  # version 2
        engine.checkpoint("phish")
        engine.snapshot("phish")  # version 3, deleted: its number is never given again
        engine.set_alias("phish", "prod", 2)
        engine.set_alias("phish", "prod", 1)
        engine.set_alias("phish", "old", 2)
        engine.delete_version("phish", 3)
        engine.update_model("phish", description="phishing", tags={"team": "fraud"})
        x, _ = PHISHING[500]
        engine.predict("phish", x, id="pending")  # awaits its label
        engine.create_model("house", linear_model.LinearRegression())
        for i in range(20):
            engine.learn("house", {"rooms": i % 5, "size": float(i)}, 10.0 * i)
        engine.tokens.create_token(["read"], name="reader")
        engine.tokens.revoke_token(engine.tokens.create_token(["admin"], name="gone")["id"])
        engine.cache.put("user:1", {"age": 31, "tags": ["a"]}, ttl=3600)
        engine.cache.put("forever", [1, 2.5, None])
        for item in ("a", "b", {"c": 3}):
            engine.cache.push("queue", item)
        csv = b"x,y\n" + b"".join(f"{i},{2 * i + 1}\n".encode() for i in range(30))
        job = engine.train(
            "line",
            csv,
            format="csv",
            target="y",
            candidates=[
                {"name": "ols", "spec": {"class": "sklearn.linear_model.LinearRegression"}}
            ],
            validation={"method": "holdout", "test_size": 0.25, "seed": 1},
            keep_data=True,
        )
        assert engine.jobs.wait(job["id"], 120)["status"] == "succeeded"
        # a webhook whose ping was delivered, and one whose receiver is down (pending)
        receiver = Receiver().start()
        try:
            hook = engine.webhooks.subscribe(receiver.url, ["model.*"], description="ops")
            assert engine.webhooks.ping(hook["id"])["status"] == "delivered"
        finally:
            receiver.stop()
        down = engine.webhooks.subscribe(Receiver().url, ["job.finished"])
        assert engine.webhooks.ping(down["id"])["status"] == "pending"


def records(database: str) -> dict[str, Any]:
    """Every record of a database, read through its store."""
    store = open_store(database)
    try:
        models = store.list_models()
        out: dict[str, Any] = {"models": models, "versions": [], "learns": {}}
        for v in store.list_versions():
            out["versions"].append(store.get_version(v.model, v.version))
        for m in models:
            out[f"last_version {m.name}"] = store.last_version(m.name)
            out[f"alias_history {m.name}"] = store.alias_history(m.name)
            out[f"predictions {m.name}"] = store.predictions_after(m.name, 0)
            out["learns"][m.name] = list(store.learns_after(m.name, 0))
            out[f"metrics {m.name}"] = store.metric_history(m.name, limit=10_000)
            out[f"checkpoint {m.name}"] = store.get_checkpoint(m.name)
        out["aliases"] = store.list_aliases()
        out["prediction pending"] = store.get_prediction("pending")
        out["tokens"] = sorted(store.token_store().list_tokens(), key=lambda t: t.id)
        now = 0.0
        for key in CACHE_KEYS:
            length = store.kv_length(key, now) if key == "queue" else None  # type: ignore[attr-defined]
            out[f"cache {key}"] = (
                [store.kv_index(key, i, now) for i in range(length)]  # type: ignore[attr-defined]
                if length is not None
                else store.kv_get(key, now),  # type: ignore[attr-defined]
                store.kv_expiry(key, now),  # type: ignore[attr-defined]
            )
        jobs = store.list_jobs(limit=1000)  # type: ignore[attr-defined]
        out["jobs"] = jobs
        out["job data"] = [store.get_job_data(j.id) for j in jobs]  # type: ignore[attr-defined]
        hooks = store.webhook_store()
        out["webhooks"] = hooks.list_webhooks()
        out["deliveries"] = [hooks.list_deliveries(h.id, limit=1000) for h in out["webhooks"]]
        return out
    finally:
        store.close()


def test_sqlite_to_postgresql_and_back_keeps_every_record(tmp_path: Path) -> None:
    source = str(tmp_path / "source.db")
    build(source)
    expected = records(source)
    assert len(expected["learns"]["phish"]) == 400
    assert expected["last_version phish"] == 3
    assert expected["prediction pending"].labelled is False
    assert expected["checkpoint phish"] is not None
    assert len(expected["metrics phish"]) == 21
    assert len(expected["tokens"]) == 2 and expected["job data"][0] is not None
    assert len(expected["webhooks"]) == 2
    assert [[d.status for d in log] for log in expected["deliveries"]] == [
        ["delivered"],
        ["pending"],
    ]

    pg = PostgresDatabase()
    try:
        # the command a person runs (its progress bar draws on a terminal only)
        run = subprocess.run(
            [sys.executable, "-m", "riverbed", "db", "copy", source, pg.url],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        assert run.stderr.startswith("copying")
        assert "420 learns" in run.stdout
        assert records(pg.url) == expected

        back = str(tmp_path / "back.db")
        seen: list[tuple[int, int]] = []
        copy_database(pg.url, back, progress=lambda done, total: seen.append((done, total)))
        assert seen[0] == (0, seen[-1][1]) and seen[-1][0] == seen[-1][1] > 420
        assert [done for done, _ in seen] == sorted(done for done, _ in seen)
        assert records(back) == expected

        check = subprocess.run(
            [sys.executable, "-m", "riverbed", "db", "check", pg.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
        assert "schema: 1" in check.stdout and "served: no" in check.stdout
        assert "learns 420" in check.stdout and "models 3," in check.stdout

        served_alike(source, pg.url, tmp_path)
    finally:
        pg.drop()


def served_alike(source: str, copy: str, tmp_path: Path) -> None:
    """A real server on each answers the same, and the copy takes the delayed label."""
    servers = [
        Server(db, log=tmp_path / f"serve{i}.log").start() for i, db in enumerate((source, copy))
    ]
    try:
        answers: list[dict[str, Any]] = []
        for server in servers:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                got: dict[str, Any] = {
                    "predictions": [
                        http.post("/v1/models/phish/predict", json={"features": x}).json()[
                            "prediction"
                        ]
                        for x, _ in HELD_OUT
                    ],
                    "house": http.post(
                        "/v1/models/house/predict", json={"features": {"rooms": 2, "size": 7.0}}
                    ).json()["prediction"],
                    "versions": [
                        (v["version"], v["source"])
                        for v in http.get("/v1/models/phish/versions").json()["versions"]
                    ],
                    "aliases": http.get("/v1/models/phish/aliases").json(),
                    "model": {
                        k: v
                        for k, v in http.get("/v1/models/phish").json().items()
                        if k in ("description", "tags", "version", "task")
                    },
                }
                before = http.get("/v1/models/phish/metrics").json()
                label = http.post(
                    "/v1/models/phish/learn", json={"id": "pending", "ground_truth": True}
                )
                assert label.status_code == 200, label.text
                after = http.get("/v1/models/phish/metrics").json()
                assert after["n_learns"] == before["n_learns"] + 1 == 401
                got["metrics"] = (before, after)
                again = http.post(
                    "/v1/models/phish/learn", json={"id": "pending", "ground_truth": True}
                )
                got["relabel"] = (again.status_code, again.json()["error"]["code"])
                answers.append(got)
        assert answers[0] == answers[1]
        assert answers[0]["versions"] == [(1, "object"), (2, "snapshot")]
    finally:
        for server in servers:
            server.stop()


def test_refusals_change_nothing(tmp_path: Path) -> None:
    source = str(tmp_path / "source.db")
    with Engine(source) as engine:
        engine.create_model("house", linear_model.LinearRegression())
        engine.learn("house", {"rooms": 1}, 3.0)
    other = str(tmp_path / "other.db")
    with Engine(other) as engine:
        engine.create_model("other", linear_model.LinearRegression())
    other_records = records(other)

    def refused(*args: str) -> str:
        run = subprocess.run(
            [sys.executable, "-m", "riverbed", "db", "copy", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 1, run
        assert "Traceback" not in run.stderr
        return run.stderr

    assert "is not empty (1 models" in refused(source, other)
    assert records(other) == other_records
    assert "in-memory store" in refused(source, ":memory:")
    assert "in-memory store" in refused("memory://", other)
    assert "same database" in refused(source, source)
    os.link(source, tmp_path / "hard.db")
    assert "same database" in refused(source, f"sqlite:///{tmp_path / 'hard.db'}")
    assert "no database file" in refused(str(tmp_path / "missing.db"), other)
    assert not (tmp_path / "missing.db").exists()
    assert "cannot serve the database" in refused(source, "mysql://x/y")

    # a database a server holds, either side
    with Engine(other):
        with pytest.raises(DatabaseInUse, match="already open"):
            copy_database(source, other, replace=True)
        assert "already open" in (describe(other).served_by or "")
    assert records(other) == other_records
    with Engine(source):
        with pytest.raises(DatabaseInUse):
            copy_database(source, str(tmp_path / "fresh.db"))

    # --replace: what the target held is gone, the source's records are there
    copy_database(source, other, replace=True)
    assert records(other) == records(source)


def test_postgresql_refusals(tmp_path: Path) -> None:
    source = str(tmp_path / "source.db")
    with Engine(source) as engine:
        engine.create_model("house", linear_model.LinearRegression())
    pg = PostgresDatabase()
    try:
        with pytest.raises(CopyRefused, match="holds no riverbed database"):
            copy_database(pg.url, str(tmp_path / "t.db"))
        assert not (tmp_path / "t.db").exists()
        copy_database(source, pg.url)
        # the same database under another host name
        alias = pg.url.replace("127.0.0.1", "localhost")
        with pytest.raises(CopyRefused, match="same database"):
            copy_database(pg.url, alias, replace=True)
        with Engine(pg.url):
            with pytest.raises(DatabaseInUse, match="another riverbed process"):
                copy_database(source, pg.url, replace=True)
            assert "another riverbed process" in (describe(pg.url).served_by or "")
        with pytest.raises(CopyRefused, match="is not empty"):
            copy_database(source, pg.url)
        unreachable = "postgresql://postgres@127.0.0.1:1/none"
        with pytest.raises(CopyRefused, match="PostgreSQL"):
            copy_database(source, unreachable)
    finally:
        pg.drop()
