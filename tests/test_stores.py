"""What only the SQLite store does, and stored values' encoding. The contract every store
keeps is riverbed.testing, run on each backend by tests/test_store_contract.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from riverbed.stores import open_store
from riverbed.stores.base import (
    LearnRecord,
    dump,
    load,
)
from riverbed.stores.sqlite.schema import SCHEMA_VERSION
from riverbed.testing.store_contract import model


def test_sqlite_adds_new_columns_to_an_older_file(tmp_path: Path) -> None:
    """A database written before the registry columns existed opens and keeps its rows."""
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE models (name TEXT PRIMARY KEY, task TEXT NOT NULL, description TEXT"
        " NOT NULL DEFAULT '', tags TEXT NOT NULL DEFAULT '{}', metrics TEXT NOT NULL"
        " DEFAULT '[]', created_at REAL NOT NULL, updated_at REAL NOT NULL);"
        "CREATE TABLE versions (model TEXT NOT NULL, version INTEGER NOT NULL, artifact BLOB"
        " NOT NULL, spec TEXT, source TEXT NOT NULL, created_at REAL NOT NULL, metadata TEXT"
        " NOT NULL DEFAULT '{}', PRIMARY KEY (model, version));"
        "INSERT INTO models VALUES ('old', 'binary', '', '{}', '[]', 1.0, 1.0);"
        "INSERT INTO versions VALUES ('old', 1, x'00', NULL, 'spec', 1.0, '{}');"
    )
    conn.commit()
    conn.close()
    s = open_store(str(path))
    got = s.get_version("old", 1)
    assert got is not None and (got.format, got.tags) == ("riverbed", {})
    record = s.get_model("old")
    assert record is not None and record.flavor == "river"
    assert s.last_version("old") == 1
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_sqlite_refuses_a_file_a_newer_version_wrote_and_leaves_it_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new.db"
    s = open_store(str(path))
    s.create_model(*model()).result()
    s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("DROP TABLE learn_blocks")  # a newer layout, say
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"newer riverbed \(database schema 2; this version"):
        open_store(str(path))
    assert path.read_bytes() == before
    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "learn_blocks" not in tables and "models" in tables


def test_sqlite_is_one_file_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    s = open_store(str(tmp_path / "x.db"))
    s.create_model(*model()).result()
    s.close()
    conn = sqlite3.connect(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT name FROM models").fetchall() == [("m",)]
    conn.close()


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1},
        {True: 0.2, False: 0.8},
        {1: 0.5, 2: 0.5},
        [1, "a", None],
        3.25,
        "x",
        {"nested": {1: "one"}},
    ],
)
def test_stored_values_round_trip(value: object) -> None:
    assert load(dump(value)) == value


def test_sqlite_keeps_a_batch_of_learns_as_one_row(tmp_path: Path) -> None:
    s = open_store(str(tmp_path / "x.db"))
    s.create_model(*model()).result()
    learns = [LearnRecord("m", seq, {"a": seq}, 1, None, None, 1.0) for seq in range(1, 66)]
    for record in learns[:3]:
        s.add_learn(record)
    s.add_learns(learns[3:43]).result()
    s.add_learns(learns[43:45]).result()  # too few for a batch row
    s.add_learns(learns[45:]).result()
    assert list(s.learns_after("m", 0)) == learns
    s.close()
    with sqlite3.connect(tmp_path / "x.db") as conn:
        blocks = conn.execute("SELECT first, last FROM learn_blocks ORDER BY first")
        assert blocks.fetchall() == [(4, 43), (46, 65)]
