"""What only the PostgreSQL store does (the contract it keeps with every store is
riverbed.testing, run by tests/test_store_contract.py): its schema's version, one writer per
database, a server out of reach, and a real ``riverbed serve --database postgresql://``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from riverbed import Engine
from riverbed.exceptions import PredictionExists, Unavailable
from riverbed.stores import backend_name, check_database, open_store, open_token_file
from riverbed.stores.base import LearnRecord, ModelRecord, PredictionRecord, VersionRecord
from riverbed.stores.postgres.schema import SCHEMA_VERSION
from riverbed.stores.postgres.store import PostgresStore
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


# -- the group commit ---------------------------------------------------------------------


def held(store: PostgresStore) -> tuple[threading.Event, Future[Any]]:
    """Hold the store's writer inside a write until the event is set, so that every write
    submitted meanwhile waits and goes into the next batch together."""
    entered, gate = threading.Event(), threading.Event()

    def op(conn: Any) -> None:
        entered.set()
        assert gate.wait(30), "the test never let the writer go"

    future = store._submit(op)
    assert entered.wait(30)
    return gate, future


def prediction(pid: str, seq: int) -> PredictionRecord:
    return PredictionRecord(pid, "m", seq, {"x": seq}, {True: 0.25, False: 0.75}, 1.0)


def learn(seq: int, pid: str | None) -> LearnRecord:
    return LearnRecord("m", seq, {"x": seq}, True, {True: 0.25, False: 0.75}, pid, 1.0)


def writer_state(url: str, store: PostgresStore) -> str:
    pid = store._writer.conn.info.backend_pid  # type: ignore[union-attr]
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    assert row is not None
    return str(row[0])


def test_a_batch_of_predictions_and_learns_commits_together_and_a_taken_id_fails_alone(
    db: str,
) -> None:
    store = PostgresStore(db)
    try:
        store.create_model(*model()).result()
        store.add_prediction(prediction("taken", 0)).result()
        gate, first = held(store)
        predicted = [store.add_prediction(prediction(f"p{i}", i)) for i in range(1, 41)]
        twice = store.add_prediction(prediction("taken", 41))
        # learns by id, each labelling a prediction of the same batch
        learned = [store.add_learn(learn(i, f"p{i}")) for i in range(1, 21)]
        many = store.add_predictions([prediction(f"q{i}", 100 + i) for i in range(5)])
        gate.set()
        first.result()
        for future in [*predicted, *learned, many]:
            assert future.result() is None
        with pytest.raises(PredictionExists, match="'taken' is taken"):
            twice.result()
        stored = [store.get_prediction(f"p{i}") for i in range(1, 41)]
        assert [p.seq if p else None for p in stored] == list(range(1, 41))
        assert [p.labelled for p in stored if p] == [True] * 20 + [False] * 20
        assert [r.seq for r in store.learns_after("m", 0)] == list(range(1, 21))
        assert store.get_prediction("taken").seq == 0  # type: ignore[union-attr]
        assert store.stored_prediction_ids([f"q{i}" for i in range(5)]) == {
            f"q{i}" for i in range(5)
        }
        # The commit that began the next batch's transaction left none open behind it.
        store.sync()
        assert writer_state(db, store) == "idle"
    finally:
        store.close()


def test_a_connection_lost_in_a_batchs_round_trip_is_looked_up_and_applied_once(
    db: str,
) -> None:
    """The writer's backend ends itself (a trigger) in the middle of a batch's one round
    trip -- INSERTs and COMMIT on their way together: the writer asks the server what
    became of the transaction (aborted), applies the batch once more on a new connection,
    and every write of it is stored once and acknowledged."""
    store = PostgresStore(db)
    try:
        store.create_model(*model()).result()
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("CREATE SEQUENCE boom_once")
            conn.execute(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF NEW.id = 'boom' AND nextval('boom_once') = 1 THEN"
                " PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; END $$"
            )
            conn.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON predictions"
                " FOR EACH ROW EXECUTE FUNCTION boom()"
            )
        before = store._writer.conn.info.backend_pid  # type: ignore[union-attr]
        gate, first = held(store)
        futures = [store.add_prediction(prediction(f"p{i}", i)) for i in range(10)]
        futures.append(store.add_prediction(prediction("boom", 10)))
        futures += [store.add_learn(learn(i, f"p{i}")) for i in range(1, 6)]
        gate.set()
        first.result()
        for future in futures:
            assert future.result() is None
        assert store._writer.conn.info.backend_pid != before  # type: ignore[union-attr]
        with psycopg.connect(db) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM predictions ORDER BY seq")]
            seqs = [r[0] for r in conn.execute("SELECT seq FROM learns ORDER BY seq")]
            boomed = conn.execute("SELECT last_value FROM boom_once").fetchone()
        assert ids == [f"p{i}" for i in range(10)] + ["boom"]
        assert seqs == [1, 2, 3, 4, 5]
        assert boomed == (2,)  # the batch went to the server twice: aborted, then committed
    finally:
        store.close()


def test_a_batch_whose_backend_ends_every_time_fails_unstored_and_the_writer_recovers(
    db: str,
) -> None:
    store = PostgresStore(db)
    try:
        store.create_model(*model()).result()
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                " IF NEW.id = 'boom' THEN PERFORM pg_terminate_backend(pg_backend_pid());"
                " END IF; RETURN NEW; END $$"
            )
            conn.execute(
                "CREATE TRIGGER boom BEFORE INSERT ON predictions"
                " FOR EACH ROW EXECUTE FUNCTION boom()"
            )
        gate, first = held(store)
        futures = [store.add_prediction(prediction(f"p{i}", i)) for i in range(5)]
        futures.append(store.add_prediction(prediction("boom", 5)))
        gate.set()
        first.result()
        for future in futures:
            with pytest.raises(Unavailable) as caught:
                future.result()
            assert caught.value.detail["cause"] == "database_unreachable"
        assert store.stored_prediction_ids([f"p{i}" for i in range(5)] + ["boom"]) == set()
        store.add_prediction(prediction("after", 6)).result()
        assert store.stored_prediction_ids(["after"]) == {"after"}
    finally:
        store.close()


def vacuums(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, vacuum_count FROM pg_stat_user_tables"
            " WHERE relname IN ('predictions', 'learns', 'metric_points')"
        ).fetchall()
    return {name: count for name, count in rows}


def test_a_prune_that_removed_rows_vacuums_the_pruned_tables(db: str) -> None:
    """The machine's PostgreSQL runs with autovacuum off, as a server may: without riverbed's
    own VACUUM the space of the rows retention removes is never used again and a database
    under retention grows without end (benchmarks/soak.py --postgres)."""
    from tests.helpers import phishing_model

    with Engine(db, retention_predictions=5, checkpoint_seconds=3600) as engine:
        engine.create_model("p", phishing_model())
        for i in range(12):
            engine.predict("p", {"x": float(i)}, id=f"s{i}")
        before = vacuums(db)
        assert engine.prune()["predictions"] == 7
        deadline = time.monotonic() + 30
        while vacuums(db) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        after = vacuums(db)
        assert all(after[t] > before.get(t, 0) for t in ("predictions", "learns", "metric_points"))
        assert engine.prune()["predictions"] == 0  # nothing removed: no VACUUM asked
