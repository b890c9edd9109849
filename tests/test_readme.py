"""The README's code runs as written (against a real server where it needs one)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from river import datasets

from riverbed import Client, Engine
from tests.helpers import Server

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)

pytestmark = pytest.mark.slow


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCKS if lang == language]


def test_the_set_up_is_exactly_two_commands() -> None:
    setup = README.split("## Set up")[1].split("\n## ")[0]
    commands = [
        line.split("#")[0].strip()
        for code in re.findall(r"```sh\n(.*?)```", setup, flags=re.S)
        for line in code.splitlines()
        if line.strip()
    ]
    assert commands == ["make serve", "make test"]


def test_the_embedded_quickstart_runs_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second run in the same directory goes on with the model the first one made
    (issue 26: it stopped with ModelExists)."""
    monkeypatch.chdir(tmp_path)
    code = next(c for c in blocks("python") if "Engine(" in c)
    exec(compile(code, "README.md", "exec"), {})
    assert "Accuracy" in capsys.readouterr().out
    assert (tmp_path / "quickstart.db").exists()
    exec(compile(code, "README.md", "exec"), {})
    assert "Accuracy" in capsys.readouterr().out
    with Engine(str(tmp_path / "quickstart.db")) as engine:
        assert engine.metrics("phishing")["n_learns"] == 2 * len(list(datasets.Phishing()))


def test_the_registry_example_runs_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = next(c for c in blocks("python") if "snapshot(" in c)
    for _ in range(2):
        exec(compile(code, "README.md", "exec"), {})
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("{") and out[1] == "tree"


def test_the_http_quickstart_runs_twice_against_a_real_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's curl commands and client code, as written (only the port changed), run
    twice in a row against a real riverbed serve: no error the second time, and the model
    learns again."""
    with Server(str(tmp_path / "readme.db")) as server:
        shell = next(c for c in blocks("sh") if "curl" in c)
        shell = shell.replace("localhost:8000", f"127.0.0.1:{server.port}")
        client_code = next(c for c in blocks("python") if "Client(" in c)
        client_code = client_code.replace("http://127.0.0.1:8000", server.url)
        for run in (1, 2):
            out = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", shell],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert '"error"' not in out, out
            assert f'"n":{run}' in out and '"MAE"' in out, out
            exec(compile(client_code, "README.md", "exec"), {})
            assert "Accuracy" in capsys.readouterr().out
        with Client(server.url) as client:
            assert client.metrics("phishing-http")["n_learns"] == 200
