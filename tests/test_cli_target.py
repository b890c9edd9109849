"""Which target a command works on: one rule (riverbed.cli.server.choose_target) for every
command that can talk to a server or work on a database, run through the CLI's ``main``.

--database given: that database in-process; else --url or RIVERBED_URL: that server; else
RIVERBED_DATABASE: that database; else the server at http://127.0.0.1:8000. --database with
--url: exit status 2. A database chosen is announced in one stderr line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from riverbed import Client, Engine
from riverbed.cli import cli, main
from riverbed.cli.server import (
    Server,
    Target,
    choose_target,
    server_options,
    target_options,
)
from riverbed.client import DEFAULT_URL
from tests.helpers import Server as RunningServer
from tests.helpers import free_port, new_database

SPEC = json.dumps({"class": "river.linear_model.LogisticRegression"})


@pytest.fixture(autouse=True)
def _no_target_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[None]:
    for name in ("RIVERBED_URL", "RIVERBED_DATABASE", "RIVERBED_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # where a stray ./riverbed.db would appear
    yield
    assert not (tmp_path / "riverbed.db").exists()


def riverbed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """``riverbed ARGS`` through the entry point's ``main``: exit status, stdout, stderr."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["riverbed", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out, err


def _unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_the_rule_branch_by_branch() -> None:
    db, url, env_db_path = "/data/a.db", "http://10.0.0.1:8000", "/data/env.db"
    env_url, env_db = {"RIVERBED_URL": url}, {"RIVERBED_DATABASE": env_db_path}
    assert choose_target(db, None, "t", env_url) == Target(database=db, reason="--database")
    assert choose_target(None, url, "t", env_db) == Target(server=Server(url, "t"))
    both = {**env_url, **env_db}
    assert choose_target(None, None, None, both) == Target(server=Server(url))
    assert choose_target(None, None, None, env_db) == Target(
        database=env_db_path, reason="env RIVERBED_DATABASE"
    )
    assert choose_target(None, None, "t", {}) == Target(server=Server(DEFAULT_URL, "t"))
    assert DEFAULT_URL == "http://127.0.0.1:8000"  # where riverbed serve listens by default
    empty = {"RIVERBED_URL": "", "RIVERBED_DATABASE": ""}  # set but empty: not given
    assert choose_target(None, None, None, empty) == Target(server=Server(DEFAULT_URL))
    with pytest.raises(click.UsageError, match="both given"):
        choose_target(db, url, None, {})


def test_database_given_is_that_database_even_with_a_url_in_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = str(tmp_path / "given.db")
    with Engine(db) as engine:
        engine.create_model("here", spec=json.loads(SPEC))
    monkeypatch.setenv("RIVERBED_URL", _unreachable())
    code, out, err = riverbed(capsys, monkeypatch, "models", "ls", "--database", db)
    assert code == 0, err
    assert out.splitlines()[1].split()[0] == "here"
    assert err.splitlines() == [f"riverbed: using the database {db} (--database), not a server"]


def test_riverbed_database_alone_is_that_database_and_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db = new_database(tmp_path / "env.db")
    monkeypatch.setenv("RIVERBED_DATABASE", db)
    code, _, err = riverbed(capsys, monkeypatch, "models", "create", "m", "--spec", SPEC)
    assert code == 0, err
    line = f"riverbed: using the database {db} (env RIVERBED_DATABASE), not a server"
    assert err.splitlines() == [line]
    code, out, err = riverbed(capsys, monkeypatch, "tokens", "create", "--scope", "read")
    assert code == 0, err
    secret = out.strip()
    with Engine(db) as engine:
        assert engine.get_model("m")["name"] == "m"
        assert engine.tokens.verify_token(secret).scopes


@pytest.mark.slow
def test_a_url_given_or_in_the_environment_or_the_default_is_that_server(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    server: RunningServer,
    tmp_path: Path,
) -> None:
    """A real ``riverbed serve``. RIVERBED_DATABASE is set throughout and never used (its
    file never appears): --url, then RIVERBED_URL, win over it; then, with neither set, the
    default URL (pointed at this server, as 127.0.0.1:8000 may serve something else here)."""
    unused = tmp_path / "unused.db"

    code, out, err = riverbed(
        capsys, monkeypatch, "tokens", "create", "--scope", "read", "--name", "by-url",
        "--url", server.url,
    )  # fmt: skip
    assert code == 0, err
    assert "using the database" not in err

    monkeypatch.setenv("RIVERBED_DATABASE", str(unused))
    monkeypatch.setenv("RIVERBED_URL", server.url)
    code, out, err = riverbed(capsys, monkeypatch, "models", "create", "m", "--spec", SPEC)
    assert code == 0, err
    assert "using the database" not in err
    code, out, err = riverbed(
        capsys, monkeypatch, "tokens", "create", "--scope", "read", "--name", "by-env"
    )
    assert code == 0, err

    monkeypatch.delenv("RIVERBED_DATABASE")
    monkeypatch.delenv("RIVERBED_URL")
    monkeypatch.setattr("riverbed.cli.server.DEFAULT_URL", server.url)
    code, out, err = riverbed(
        capsys, monkeypatch, "tokens", "create", "--scope", "read", "--name", "by-default"
    )
    assert code == 0, err
    code, out, err = riverbed(capsys, monkeypatch, "models", "ls", "--json")
    assert code == 0, err
    assert [m["name"] for m in json.loads(out)["models"]] == ["m"]

    with Client(server.url) as client:
        names = {t["name"] for t in client.list_tokens()}
    assert names == {"by-url", "by-env", "by-default"}
    assert not unused.exists()


def test_tokens_create_with_nothing_given_asks_the_default_server_and_writes_no_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """It used to write a new ./riverbed.db; now nothing answering at the default URL is the
    one-line error naming it (the fixture checks no ./riverbed.db appeared)."""
    url = _unreachable()
    monkeypatch.setattr("riverbed.cli.server.DEFAULT_URL", url)
    code, out, err = riverbed(capsys, monkeypatch, "tokens", "create", "--scope", "read")
    assert code == 1 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(f"Error: unreachable: nothing answers at {url}")
    assert list(tmp_path.iterdir()) == []


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(command, click.Group):
        with click.Context(command) as ctx:
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                yield from _commands(sub, (*path, name))
    else:
        yield path, command


def _options(command: click.Command) -> dict[str, click.Parameter]:
    if command.name in ("serve", "learner"):  # the processes: --database is their setting
        return {}
    return {p.name: p for p in command.params if p.name in ("url", "database", "token")}


def test_every_command_takes_its_target_options_from_the_one_module() -> None:
    """No command declares its own --url, --database or --token: each has the shared
    server options (url, token) or the shared target options (database, url, token)."""
    shared = [
        _options(click.command("shared")(decorate(lambda **_: None)))
        for decorate in (server_options, target_options)
    ]
    kinds = {"server": 0, "target": 0}
    for path, command in _commands(cli):
        mine = _options(command)
        if not mine:
            continue
        for kind, options in zip(kinds, shared, strict=True):
            if mine.keys() == options.keys() and all(
                (mine[n].opts, getattr(mine[n], "help", None), mine[n].envvar)
                == (options[n].opts, getattr(options[n], "help", None), options[n].envvar)
                for n in mine
            ):
                kinds[kind] += 1
                break
        else:
            raise AssertionError(f"riverbed {' '.join(path)} declares its own target options")
    assert kinds["server"] >= 10 and kinds["target"] >= 14


def test_database_and_url_together_are_refused_by_every_command_that_takes_both(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Exit status 2 and the one error, before anything else the command needs is checked
    (a missing argument) and before anything is opened: no database file appears."""
    db = tmp_path / "never.db"
    url = _unreachable()
    seen = []
    for path, command in _commands(cli):
        if "database" not in _options(command):
            continue
        seen.append(path)
        for args in (["--database", str(db), "--url", url], ["--url", url, "--database", str(db)]):
            code, out, err = riverbed(capsys, monkeypatch, *path, *args)
            assert code == 2, (path, err)
            assert f"Error: --database {db} and --url {url} both given" in err, path
            assert not db.exists()
    assert {("tokens", "create"), ("connect",), ("train",), ("models", "ls")} <= set(seen)
