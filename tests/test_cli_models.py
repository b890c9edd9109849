"""``riverbed models``: readable tables, the same filter syntax, in-process and on a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import skops.io as sio
from click.testing import CliRunner

from riverbed import Client
from riverbed.cli import cli
from tests.helpers import Server, new_database
from tests.test_registry import Y_AND, Y, fitted, git_checkout

SPEC = json.dumps(
    {
        "pipeline": [
            {"class": "river.preprocessing.StandardScaler"},
            {"class": "river.linear_model.LogisticRegression"},
        ]
    }
)


def run(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, ["models", *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result.stdout if ok else result.output  # stderr: the error, or the database used


def test_upload_show_search_alias_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = git_checkout(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    db = ["--database", new_database(tmp_path / "cli.db")]
    first = tmp_path / "or.skops"
    first.write_bytes(sio.dumps(fitted(Y)))
    second = tmp_path / "and.skops"
    second.write_bytes(sio.dumps(fitted(Y_AND)))
    out = run(
        "upload",
        "gate",
        str(first),
        "--metric",
        "accuracy=0.97",
        "--tag",
        "team=risk",
        "--dataset",
        "truth-table",
        *db,
    )
    assert "uploaded gate version 1 (skops) from experiment-7@" + expected["commit"][:10] in out
    run("upload", "gate", str(second), "--alias", "production", *db)

    listing = run("ls", *db)
    header, row = listing.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "TASK", "FLAVOR", "VERSIONS", "LATEST"]
    assert row.split()[:5] == ["gate", "binary", "sklearn", "2", "2"]

    shown = run("show", "gate@1", *db)
    assert expected["commit"] in shown and "experiment-7" in shown
    versions = run("show", "gate", *db)
    assert "production" in versions

    found = run("search", "metrics.accuracy > 0.9 and tags.team = 'risk'", *db)
    lines = found.splitlines()
    assert lines[0].split()[:2] == ["MODEL", "VERSION"] and len(lines) == 2
    assert lines[1].split()[:2] == ["gate", "1"]
    bad = run("search", "metrics.accuracy >", *db, ok=False)
    assert "invalid_filter" in bad and "expected a value" in bad

    moved = run("alias", "gate", "production", "1", *db)
    assert "gate@production -> version 1 (was 2)" in moved
    history = run("alias", "gate", *db)
    assert "production" in history

    target = tmp_path / "back.skops"
    run("download", "gate@production", "-o", str(target), *db)
    assert target.read_bytes() == first.read_bytes()

    tagged = run("tag", "gate@1", "stage=prod", "--remove", "team", *db)
    assert "stage=prod" in tagged and "team" not in tagged
    assert "stage=prod" in run("tag", "gate", "stage=prod", *db)

    refused = run("delete", "gate@1", "--yes", *db, ok=False)
    assert "production" in refused
    run("delete", "gate@2", "--yes", *db)
    assert "deleted model gate" in run("delete", "gate", "--yes", *db)
    assert run("ls", *db).splitlines()[1:] == []


def test_create_and_snapshot_in_process(tmp_path: Path) -> None:
    db = ["--database", new_database(tmp_path / "cli.db")]
    assert "created p (binary), version 1" in run("create", "p", "--spec", SPEC, *db)
    assert "p version 2: snapshot after 0 learns" in run("snapshot", "p", *db)
    spec = json.loads(run("show", "p@2", "--json", *db))["spec"]
    assert spec["pipeline"][1]["class"] == "river.linear_model.LogisticRegression"
    bad = run("create", "q", "--spec", "{not json", *db, ok=False)
    assert "not JSON" in bad


def test_models_commands_against_a_server(tmp_path: Path) -> None:
    server = Server(str(tmp_path / "server.db")).start()
    try:
        target = ["--url", server.url]
        model = tmp_path / "gate.skops"
        model.write_bytes(sio.dumps(fitted()))
        run("upload", "gate", str(model), "--metric", "accuracy=0.9", "--no-git", *target)
        assert "gate" in run("search", "metrics.accuracy >= 0.9", *target)
        with Client(server.url) as client:
            assert client.get_version("gate@latest")["git"] == {}
        run("download", "gate", "-o", str(tmp_path / "copy.skops"), *target)
        assert (tmp_path / "copy.skops").read_bytes() == model.read_bytes()
    finally:
        server.stop()
