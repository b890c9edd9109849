"""What only the PostgreSQL store does (the contract it keeps with every store is
riverbed.testing, run by tests/test_store_contract.py): its schema's version, one writer per
database, a server out of reach, and a real ``riverbed serve --database postgresql://``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from riverbed import Engine
from riverbed.exceptions import Unavailable
from riverbed.stores import backend_name, check_database, open_store, open_token_file
from riverbed.stores.base import ModelRecord, VersionRecord
from riverbed.stores.postgres.schema import SCHEMA_VERSION
from riverbed.stores.sqlite.lock import DatabaseInUse
from riverbed.stores.sqlite.schema import NewerDatabase
from riverbed.stores.tokens import TokenRecord
from tests.helpers import PostgresDatabase, Server, free_port

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


@pytest.fixture
def db() -> Iterator[str]:
    made = PostgresDatabase()
    try:
        yield made.url
    finally:
        made.drop()


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def stamped(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM riverbed_schema").fetchone()
    assert row is not None
    return int(row[0])


def model(name: str = "m") -> tuple[ModelRecord, VersionRecord]:
    return (
        ModelRecord(name, "binary", "d", {}, ["Accuracy"], 1.0, 1.0),
        VersionRecord(name, 1, b"artifact", None, "spec", 1.0, {}),
    )


def test_a_new_database_gets_the_tables_and_the_schema_version(db: str) -> None:
    assert tables(db) == set()
    store = open_store(db)
    store.close()
    assert {"models", "versions", "predictions", "learns", "tokens", "cache", "jobs"} <= tables(db)
    assert stamped(db) == SCHEMA_VERSION


def test_an_older_database_is_upgraded_and_keeps_its_rows(db: str) -> None:
    store = open_store(db)
    store.create_model(*model()).result()
    store.close()
    with psycopg.connect(db) as conn:  # as an older riverbed left it
        conn.execute("UPDATE riverbed_schema SET version = 0")
        conn.execute("DROP TABLE job_data")
    store = open_store(db)
    try:
        assert store.get_model("m") is not None
        assert "job_data" in tables(db) and stamped(db) == SCHEMA_VERSION
    finally:
        store.close()


def test_a_database_a_newer_riverbed_wrote_is_refused_and_left_alone(db: str) -> None:
    store = open_store(db)
    store.create_model(*model()).result()
    store.close()
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE riverbed_schema SET version = %s", (SCHEMA_VERSION + 1,))
        conn.execute("DROP TABLE cache_items")  # a newer layout, say
    before = tables(db)
    message = rf"newer riverbed \(database schema {SCHEMA_VERSION + 1}; this version reads"
    with pytest.raises(NewerDatabase, match=message):
        check_database(db)
    with pytest.raises(NewerDatabase, match=message):
        Engine(db)
    assert tables(db) == before and stamped(db) == SCHEMA_VERSION + 1
    served = subprocess.run(
        [sys.executable, "-m", "riverbed", "serve", "--port", "0", "--database", db],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode != 0 and "newer riverbed" in served.stderr
    assert tables(db) == before


def test_one_process_writes_a_database(db: str) -> None:
    first = open_store(db)
    try:
        with pytest.raises(DatabaseInUse, match="another riverbed process is serving"):
            open_store(db)
        with pytest.raises(DatabaseInUse):
            check_database(db)
        # the tokens of a served database are still reachable beside it (riverbed tokens)
        tokens, close = open_token_file(db)
        try:
            tokens.add_token(TokenRecord("aaaaaaaaaaaa", "ci", ("read",), "d" * 64, 1.0)).result()
        finally:
            close()
        assert first.token_store().get_token("aaaaaaaaaaaa") is not None
    finally:
        first.close()
    open_store(db).close()  # free again once the first closed


def test_a_server_out_of_reach_is_refused_clearly() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(Unavailable, match="the PostgreSQL server cannot be reached"):
        open_store(url)
    with pytest.raises(ValueError, match="cannot be reached"):
        check_database(url)


def test_database_urls_name_the_backend() -> None:
    assert backend_name("postgresql://u@h/db") == "postgresql"
    assert backend_name("postgres://u@h/db") == "postgresql"
    assert backend_name(":memory:") == "memory" and backend_name("x.db") == "sqlite"


def test_a_real_server_on_postgresql_keeps_everything_across_a_restart(
    db: str, tmp_path: Path
) -> None:
    """riverbed serve --database postgresql://..., then RIVERBED_DATABASE: the same state."""
    from river import datasets

    server = Server(db, None, log=tmp_path / "first.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.post("/v1/models", json={"name": "p", "spec": SPEC}).status_code == 201
            for i, (x, y) in enumerate(datasets.Phishing().take(50)):
                http.post("/v1/models/p/predict", json={"features": x, "id": f"s{i}"})
                answer = http.post("/v1/models/p/learn", json={"id": f"s{i}", "ground_truth": y})
                assert answer.status_code == 200, answer.text
            first = http.get("/v1/models/p/metrics").json()["metrics"]
    finally:
        server.stop()
    env_before = os.environ.get("RIVERBED_DATABASE")
    os.environ["RIVERBED_DATABASE"] = db
    try:
        again = subprocess.Popen(
            [sys.executable, "-m", "riverbed", "serve", "--port", str(port := free_port())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    finally:
        if env_before is None:
            del os.environ["RIVERBED_DATABASE"]
        else:
            os.environ["RIVERBED_DATABASE"] = env_before
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=30) as http:
            stats = http.get("/v1/models/p/stats").json()
            assert stats["n_learns"] == 50
            assert http.get("/v1/models/p/metrics").json()["metrics"] == first
    finally:
        again.terminate()
        again.wait(timeout=30)
