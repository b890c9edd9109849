"""The CLI never creates a database, and its reads work beside the server that writes one.

Every command that works on a ``--database`` (or ``RIVERBED_DATABASE``) refuses one that is
not there in one line, exit status 1, creating nothing: only ``riverbed serve`` (and ``db
copy``'s target) create a database. The commands that only read (``models ls``, ``search``,
``show``, ``download``, ``alias`` without a move) open the database to read only
(stores/readonly.py), without the writer lock, so they answer while a server serves the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import skops.io as sio

from riverbed import Engine
from riverbed.cli import cli
from riverbed.exceptions import Unavailable
from riverbed.stores import NoDatabase, open_store
from tests.helpers import PostgresDatabase, Server, new_database, riverbed
from tests.test_cli_target import _commands, _options
from tests.test_cli_target import riverbed as main_of
from tests.test_registry import fitted

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


def _arguments(tmp_path: Path) -> dict[tuple[str, ...], list[str]]:
    """What each command that takes --database needs besides it to get as far as opening it."""
    artifact = tmp_path / "m.skops"
    artifact.write_bytes(b"not read")
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,2\n")
    return {
        ("connect",): ["redis://127.0.0.1:6379", "--topic", "t"],
        ("models", "ls"): [],
        ("models", "search"): [],
        ("models", "show"): ["m"],
        ("models", "create"): ["m", "--spec", json.dumps(SPEC)],
        ("models", "upload"): ["m", str(artifact)],
        ("models", "download"): ["m"],
        ("models", "alias"): ["m"],
        ("models", "restore"): ["m", "1"],
        ("models", "tag"): ["m", "a=b"],
        ("models", "delete"): ["m"],  # no --yes: refused before it asks
        ("models", "snapshot"): ["m"],
        ("tokens", "create"): ["--scope", "read"],
        ("tokens", "ls"): [],
        ("tokens", "revoke"): ["abc"],
        ("train",): [str(data), "-t", "y"],
        ("drift", "set"): ["m"],
        ("drift", "show"): ["m"],
        ("drift", "alarms"): ["m"],
        ("drift", "off"): ["m"],
        ("predict",): ["m", '{"features": {"x": 1}}'],
        ("learn",): ["m", str(data)],
        ("canary", "set"): ["m", "live=90", "v2=10"],
        ("canary", "show"): ["m"],
        ("canary", "move"): ["m", "live=50", "v2=50"],
        ("canary", "stop"): ["m"],
        ("webhooks", "create"): ["http://127.0.0.1:9/hook", "-e", "*"],
        ("webhooks", "list"): [],
        ("webhooks", "show"): ["wh_a"],
        ("webhooks", "delete"): ["wh_a"],
        ("webhooks", "deliveries"): ["wh_a"],
        ("webhooks", "retry"): ["wh_a", "whd_a"],
        ("webhooks", "ping"): ["wh_a"],
        ("challengers", "add"): ["m", "--version", "1"],
        ("challengers", "list"): ["m"],
        ("challengers", "show"): ["m", "c"],
        ("challengers", "remove"): ["m", "c"],
        ("challengers", "promote"): ["m", "c"],
        ("challengers", "rollback"): ["m"],
        ("challengers", "rule"): ["m"],
        ("cluster", "status"): [],
        ("cluster", "move"): ["m", "learner-1"],
    }


@pytest.fixture(autouse=True)
def _no_target_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RIVERBED_URL", "RIVERBED_DATABASE", "RIVERBED_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_every_command_on_a_missing_database_says_so_in_one_line_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each command that takes --database (serve aside), with a path where nothing is:
    exit 1, the one stderr line, nothing on stdout, no file (nor its .lock) made."""
    arguments = _arguments(tmp_path)
    takes_database = {path for path, command in _commands(cli) if "database" in _options(command)}
    assert takes_database == arguments.keys()  # a new command: add it above
    missing = tmp_path / "typo.db"
    for path, args in arguments.items():
        code, out, err = main_of(capsys, monkeypatch, *path, *args, "--database", str(missing))
        assert code == 1, (path, err)
        assert out == "", path
        assert err.splitlines() == [
            f"Error: no database at {missing} (riverbed serve --database creates one)"
        ], path
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "m.skops"], path


def test_the_real_entry_point_refuses_a_missing_database_from_the_flag_and_the_environment(
    tmp_path: Path,
) -> None:
    """The installed ``riverbed``, a read, a change, and RIVERBED_DATABASE naming the file."""
    missing = tmp_path / "nowhere" / "typo.db"
    for args in (
        ["models", "ls"],
        ["models", "show", "m"],
        ["models", "create", "m", "--spec", "{}"],
    ):
        done = riverbed(*args, "--database", str(missing))
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        assert (
            done.stderr
            == f"Error: no database at {missing} (riverbed serve --database creates one)\n"
        )
    done = subprocess.run(
        [str(Path(sys.executable).with_name("riverbed")), "tokens", "ls"],
        env={**os.environ, "RIVERBED_DATABASE": str(missing), "RIVERBED_URL": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == f"Error: no database at {missing} (riverbed serve --database creates one)"
    )
    assert not (tmp_path / "nowhere").exists()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_read_only_engine_reads_everything_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file whose model has learns past its checkpoint (here: none, as a crash before the
    first one leaves it): the read-only engine replays them as any engine does, refuses
    writes with Unavailable, and leaves the file as it was, on close too (a writer would
    checkpoint what it replayed)."""
    db = tmp_path / "ro.db"
    with Engine(str(db)) as engine:
        engine.create_model("m", spec=SPEC)
        for i in range(30):
            engine.learn("m", {"a": float(i)}, i % 2 == 0)
        expected = engine.metrics("m")
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM checkpoints")
    conn.commit()
    conn.close()
    before = _digest(db)
    with Engine(str(db), read_only=True) as reader:
        assert reader.store.read_only
        assert reader.metrics("m") == expected
        assert reader.get_model("m")["n_learns"] == 30
        assert [m["name"] for m in reader.search_models()["models"]] == ["m"]
        with pytest.raises(Unavailable, match="open to read only"):
            reader.create_model("n", spec=SPEC)
        with pytest.raises(Unavailable):
            reader.learn("m", {"a": 1.0}, True)
    assert not caplog.records  # closing tried no checkpoint (the store would refuse it)
    assert _digest(db) == before
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM checkpoints").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM models").fetchone() == (1,)
    conn.close()
    with pytest.raises(NoDatabase, match="no database at"):
        open_store(str(tmp_path / "missing.db"), read_only=True)
    assert not (tmp_path / "missing.db").exists()


def test_an_older_file_opened_read_only_is_brought_up_to_date_by_a_writer(tmp_path: Path) -> None:
    """A file from before the layout number (user_version 0) cannot be read as it is: the
    store is opened as a writer, which stamps it, when nothing else holds the file."""
    db = new_database(tmp_path / "old.db")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 0")
    conn.close()
    store = open_store(db, read_only=True)
    try:
        assert not store.read_only
    finally:
        store.close()
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] >= 1


@pytest.mark.slow
def test_reads_beside_a_running_server_and_a_write_says_who_holds_the_file(
    tmp_path: Path,
) -> None:
    """A real ``riverbed serve`` on the file; the real CLI lists, shows, searches and
    downloads from the same file meanwhile, seeing what the server committed; the server
    goes on learning; a command that writes is refused in one line naming the server."""
    db = new_database(tmp_path / "served.db")
    artifact = tmp_path / "gate.skops"
    artifact.write_bytes(sio.dumps(fitted()))
    server = Server(db).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.post("/v1/models", json={"name": "m", "spec": SPEC}).status_code == 201
            for i in range(20):
                body = {"features": {"a": float(i)}, "ground_truth": i % 2 == 0}
                assert http.post("/v1/models/m/learn", json=body).status_code == 200
        uploaded = riverbed(
            "models", "upload", "gate", str(artifact), "--no-git", "--url", server.url
        )
        assert uploaded.returncode == 0, uploaded.stderr
        where = ["--database", db]
        listed = riverbed("models", "ls", *where)
        assert listed.returncode == 0, listed.stderr
        assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["gate", "m"]
        shown = riverbed("models", "show", "m", "--json", *where)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["n_learns"] == 20
        found = riverbed("models", "search", "name = 'gate'", *where)
        assert found.returncode == 0 and "gate" in found.stdout, found.stderr
        copy = tmp_path / "copy.skops"
        down = riverbed("models", "download", "gate", "-o", str(copy), *where)
        assert down.returncode == 0, down.stderr
        assert copy.read_bytes() == artifact.read_bytes()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            detectors = {"detectors": [{"detector": "PageHinkley", "on": "feature:a"}]}
            assert http.put("/v1/models/m/drift", json=detectors).status_code == 200
        drift = riverbed("drift", "show", "m", "--json", *where)
        assert drift.returncode == 0, drift.stderr
        assert [d["name"] for d in json.loads(drift.stdout)["detectors"]] == ["PageHinkley:a"]
        alarms = riverbed("drift", "alarms", "m", "--json", *where)
        assert alarms.returncode == 0, alarms.stderr
        assert json.loads(alarms.stdout)["alarms"] == []
        with httpx.Client(base_url=server.url, timeout=30) as http:
            added = http.post("/v1/models/m/challengers", json={"name": "c", "version": 1})
            assert added.status_code == 201, added.text
        rivals = riverbed("challengers", "list", "m", "--json", *where)
        assert rivals.returncode == 0, rivals.stderr
        assert [c["name"] for c in json.loads(rivals.stdout)["challengers"]] == ["c"]
        rival = riverbed("challengers", "show", "m", "c", *where)
        assert rival.returncode == 0 and "c" in rival.stdout, rival.stderr
        rule = riverbed("challengers", "rule", "m", "--json", *where)
        assert rule.returncode == 0, rule.stderr
        with httpx.Client(base_url=server.url, timeout=30) as http:  # the server writes on
            body = {"features": {"a": 1.0}, "ground_truth": True}
            assert http.post("/v1/models/m/learn", json=body).status_code == 200
        again = riverbed("models", "show", "m", "--json", *where)
        assert json.loads(again.stdout)["n_learns"] == 21
        write = riverbed("models", "create", "n", "--spec", json.dumps(SPEC), *where)
        assert write.returncode == 1
        using, error = write.stderr.strip().splitlines()
        assert using.startswith("riverbed: using the database")
        assert error.startswith(f"Error: {db} is already open by process {server.process.pid}")
        assert "riverbed serve" in error and "Traceback" not in write.stderr
    finally:
        server.stop()


@pytest.mark.slow
def test_reads_beside_a_server_on_postgresql(tmp_path: Path) -> None:
    """The same on PostgreSQL: a read-only store takes no writer lock; a database without
    riverbed's tables is refused as no riverbed database, and is left without them."""
    made = PostgresDatabase()
    empty = PostgresDatabase()
    try:
        server = Server(made.url).start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                assert http.post("/v1/models", json={"name": "m", "spec": SPEC}).status_code == 201
            listed = riverbed("models", "ls", "--json", "--database", made.url)
            assert listed.returncode == 0, listed.stderr
            assert [m["name"] for m in json.loads(listed.stdout)["models"]] == ["m"]
            with Engine(made.url, read_only=True) as reader:
                with pytest.raises(Unavailable):
                    reader.create_model("n", spec=SPEC)
        finally:
            server.stop()
        refused = riverbed("models", "ls", "--database", empty.url)
        assert refused.returncode == 1
        assert refused.stderr.startswith("Error: no riverbed database at postgresql://")
        import psycopg

        with psycopg.connect(empty.url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)
    finally:
        made.drop()
        empty.drop()
