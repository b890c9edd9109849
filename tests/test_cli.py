"""The command line: help that reads well, routes, serve's settings."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from riverbed.cli import cli
from riverbed.config import SETTINGS
from riverbed.stores.sqlite.schema import SCHEMA_VERSION
from tests.helpers import Server, free_port


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "routes"):
        assert command in result.output


def _command_paths(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand under ``command``, found from the parser itself."""
    paths = [path]
    if isinstance(command, click.Group):
        with click.Context(command) as ctx:
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                paths += _command_paths(sub, (*path, name))
    return paths


def test_the_walk_finds_the_subcommands() -> None:
    """The walk below is only as good as what it finds: nested groups included."""
    found = _command_paths(cli)
    assert len(found) > 30
    for expected in [("forecast",), ("models", "show"), ("tokens", "create"), ("jobs", "ls")]:
        assert expected in found


@pytest.mark.parametrize("path", _command_paths(cli), ids=lambda p: " ".join(p) or "riverbed")
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_dash_h_and_dash_dash_help_print_usage_on_every_command(
    path: tuple[str, ...], flag: str
) -> None:
    """``-h`` is help everywhere (no option takes it for itself), as ``--help`` is."""
    result = CliRunner().invoke(cli, [*path, flag], prog_name="riverbed")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(('riverbed', *path))} ")
    assert "Options:" in result.output


def test_forecast_dash_h_is_help_through_the_real_entry_point() -> None:
    """The case that was the horizon: the installed ``riverbed`` prints help and exits 0;
    the horizon is ``--horizon`` / ``-H``."""
    riverbed = Path(sys.executable).parent / "riverbed"
    done = subprocess.run(
        [str(riverbed), "forecast", "-h"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: riverbed forecast [OPTIONS] MODEL")
    assert "-H, --horizon INTEGER" in done.stdout


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "riverbed", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("riverbed, version")


def test_routes_lists_the_api() -> None:
    result = CliRunner().invoke(cli, ["routes"])
    assert result.exit_code == 0
    assert "POST    /v1/models/{name}/predict" in result.output
    assert "GET     /openapi.json" in result.output


def test_serve_has_a_flag_per_setting() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for setting in SETTINGS:
        assert setting.flag in result.output
        assert setting.env in result.output


def test_serve_refuses_a_bad_value() -> None:
    result = CliRunner().invoke(cli, ["serve", "--port", "eighty"])
    assert result.exit_code == 2
    assert "eighty" in result.output


def _newer_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    return path


def test_serve_refuses_a_database_a_newer_version_wrote(tmp_path: Path) -> None:
    db = _newer_database(tmp_path / "newer.db")
    result = CliRunner().invoke(cli, ["serve", "--database", str(db), "--port", "0"])
    assert result.exit_code == 2
    assert "written by a newer riverbed" in result.output


def test_a_local_command_refuses_a_database_a_newer_version_wrote(tmp_path: Path) -> None:
    db = _newer_database(tmp_path / "newer.db")
    done = subprocess.run(
        [sys.executable, "-m", "riverbed", "models", "ls", "--database", str(db)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "written by a newer riverbed" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_serve_on_a_taken_port_says_so_in_one_line_before_announcing(
    server: Server, tmp_path: Path
) -> None:
    """A second ``riverbed serve`` on the port a running server holds fails at once: one
    line naming the port, exit status 1, no "serving" announcement and no database made."""
    db = tmp_path / "second.db"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "riverbed",
            "serve",
            "--port",
            str(server.port),
            "--database",
            str(db),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {server.port} on 127.0.0.1 is taken" in lines[0]
    assert "serving" not in done.stderr + done.stdout
    assert not db.exists()
    assert httpx.get(server.url + "/health").status_code == 200  # the first one serves on


def test_a_command_with_no_server_to_talk_to_says_so_in_one_line(tmp_path: Path) -> None:
    """The real entry point, nothing listening at --url: exit 1 and one line naming the URL,
    that nothing answers, and how to start a server; no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "riverbed", "models", "ls", "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"Error: unreachable: nothing answers at {url} (")
    assert "riverbed serve" in line and "--url" in line
    assert done.stdout == ""


def test_every_command_that_talks_to_a_server_says_the_same_when_none_answers(
    tmp_path: Path,
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    data = tmp_path / "rows.csv"
    data.write_text("x,y\n1,2\n")
    spec = tmp_path / "spec.json"
    spec.write_text('{"class": "river.linear_model.LinearRegression"}')
    commands = [
        ["models", "ls"],
        ["models", "upload", "m", str(spec)],
        ["cache", "get", "k"],
        ["jobs", "ls"],
        ["train", str(data), "--target", "y", "--spec", str(spec)],
        ["learn", str(data), "--model", "m", "--target", "y"],
        ["forecast", "m"],
        ["tail"],
        ["tokens", "ls"],
    ]
    for command in commands:
        result = CliRunner().invoke(cli, [*command, "--url", url])
        assert type(result.exception) is SystemExit, (command, result.exception)
        assert result.exit_code == 1, command
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"Error: unreachable: nothing answers at {url}"), command
