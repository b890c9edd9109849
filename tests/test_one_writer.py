"""One process writes a database (stores/sqlite/lock.py), and a database URL riverbed does not
serve is refused before anything is created."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from river import linear_model

from riverbed import Engine
from riverbed.stores import UnsupportedDatabase
from riverbed.stores.sqlite.lock import DatabaseInUse
from tests.helpers import Server


def test_a_second_engine_on_one_file_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    db = str(tmp_path / "one.db")
    first = Engine(db)
    try:
        with pytest.raises(DatabaseInUse, match="another riverbed Engine in this process"):
            Engine(db)
        first.create_model("m", linear_model.LinearRegression())
        first.learn("m", {"x": 1.0}, 2.0)
    finally:
        first.close()
    with Engine(db) as again:  # closed: the file is free again, with what the first learned
        assert again.get_model("m")["n_learns"] == 1


def test_another_process_is_named_and_a_killed_holder_leaves_no_stale_lock(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "two.db")
    server = Server(db).start()
    try:
        assert server.process is not None
        base = server.url + "/v1/models"
        spec = {"class": "river.linear_model.LinearRegression"}
        assert httpx.post(base, json={"name": "m", "spec": spec}).status_code == 201
        second = subprocess.run(
            [sys.executable, "-m", "riverbed", "serve", "--port", "0", "--database", db],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode != 0
        assert f"process {server.process.pid} (" in second.stderr
        assert "riverbed serve" in second.stderr and "serving" not in second.stderr
        assert "Traceback" not in second.stderr
        with pytest.raises(DatabaseInUse, match=f"process {server.process.pid}"):
            Engine(db)
        for i in range(20):
            answer = httpx.post(f"{base}/m/learn", json={"features": {"x": i}, "ground_truth": i})
            assert answer.status_code == 200, answer.text
    finally:
        server.kill()
    with Engine(db) as after:  # kill -9 released the lock with the process
        assert after.get_model("m")["n_learns"] == 20


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/x", "sqlit:///a.db", "postgresqlx://postgres@127.0.0.1/db"]
)
def test_a_url_riverbed_does_not_serve_is_refused_and_creates_nothing(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsupportedDatabase, match="sqlite://, memory://, postgresql://"):
        Engine(url)
    served = subprocess.run(
        [sys.executable, "-m", "riverbed", "serve", "--port", "0", "--database", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode != 0
    assert "is not one it knows" in served.stderr and "serving" not in served.stderr
    assert os.listdir(tmp_path) == []


def test_sqlite_urls_still_name_files(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path}/a.db", f"SQLite:///{tmp_path}/b.db"):
        Engine(url).close()
    assert {"a.db", "b.db"} <= set(os.listdir(tmp_path))
