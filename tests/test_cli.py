"""The command line: help that reads well, routes, serve's settings."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from riverbed.cli import cli
from riverbed.config import SETTINGS


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "routes"):
        assert command in result.output


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
