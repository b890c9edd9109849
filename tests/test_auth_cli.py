"""`riverbed tokens` and what `riverbed serve` says about auth; one real server with auth on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from riverbed.cli import cli
from tests.helpers import Server, new_database


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    return result


def test_create_list_and_revoke_on_a_database(tmp_path: Path) -> None:
    db = new_database(tmp_path / "cli.db")
    made = run(
        "tokens",
        "create",
        "--scope",
        "predict",
        "--scope",
        "learn",
        "--name",
        "edge-1",
        "--expires-in",
        "30d",
        "--database",
        db,
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert re.fullmatch(r"rbt_[a-z0-9]{12}_[A-Za-z0-9_\-]{43}", secret)
    assert "shown once" in made.stderr
    listed = run("tokens", "ls", "--database", db)
    assert "edge-1" in listed.output and "predict,learn" in listed.output
    assert secret not in listed.output
    rows = json.loads(run("tokens", "ls", "--json", "--database", db).stdout)
    (token,) = rows
    assert token["status"] == "active" and "digest" not in token
    assert run("tokens", "revoke", token["id"], "--database", db).exit_code == 0
    assert json.loads(run("tokens", "ls", "--json", "--database", db).stdout) == []
    everything = json.loads(run("tokens", "ls", "--all", "--json", "--database", db).stdout)
    assert [t["status"] for t in everything] == ["revoked"]


def test_bad_token_commands_say_what_is_wrong(tmp_path: Path) -> None:
    db = new_database(tmp_path / "cli.db")
    unknown = run("tokens", "create", "--scope", "root", "--database", db)
    assert unknown.exit_code == 2 and "root" in unknown.output
    revoke = run("tokens", "revoke", "zzzzzzzzzzzz", "--database", db)
    assert revoke.exit_code == 1 and "token_not_found" in revoke.output
    duration = run("tokens", "create", "--scope", "read", "--expires-in", "soon", "--database", db)
    assert duration.exit_code == 1 and "soon" in duration.output
    memory = run("tokens", "ls", "--database", ":memory:")
    assert memory.exit_code == 2 and "--url" in memory.output


def test_serve_says_loudly_that_auth_is_off_on_a_public_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.append(kw))
    db = str(tmp_path / "s.db")
    off = run("serve", "--host", "0.0.0.0", "--port", "0", "--auth", "off", "--database", db)
    assert off.exit_code == 0 and "AUTH IS OFF ON 0.0.0.0" in off.stderr
    on = run("serve", "--host", "0.0.0.0", "--port", "0", "--database", db)
    assert on.exit_code == 0 and "auth is ON" in on.stderr
    local = run("serve", "--port", "0", "--database", db)
    assert local.exit_code == 0 and "auth is off: bound to the loopback" in local.stderr
    bad = run("serve", "--auth", "sometimes", "--database", db)
    assert bad.exit_code == 2 and "auto, on or off" in bad.output
    assert [kw["host"] for kw in started] == ["0.0.0.0", "0.0.0.0", "127.0.0.1"]


@pytest.mark.slow
def test_a_real_server_with_auth_on(tmp_path: Path) -> None:
    """The server mints an admin token at first start; tokens made by the CLI on the same
    database work at once, and a revocation by the CLI takes effect at once."""
    db = str(tmp_path / "real.db")
    server = Server(db, None, "--auth", "on", "--log-level", "info").start()
    try:
        assert httpx.get(server.url + "/v1/models").status_code == 401
        admin = bootstrap_token(server)
        minted = httpx.post(
            server.url + "/v1/tokens",
            json={"scopes": ["predict"]},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert minted.status_code == 201 and minted.json()["created_by"] is not None
        remote = ("--url", server.url, "--token", admin)
        over_http = run("tokens", "create", "--scope", "learn", *remote)
        assert over_http.exit_code == 0, over_http.output
        listed = run("tokens", "ls", "--json", *remote)
        assert "learn" in [s for t in json.loads(listed.stdout) for s in t["scopes"]]
        refused = run("tokens", "ls", "--url", server.url, "--token", over_http.stdout.strip())
        assert refused.exit_code == 1 and "forbidden" in refused.output
        (line,) = refused.output.strip().splitlines()  # one line naming the scope it lacks
        assert "has scope(s) learn" in line and "needs 'admin'" in line
        anonymous = run("models", "ls", "--url", server.url)
        assert anonymous.exit_code == 1
        (line,) = anonymous.output.strip().splitlines()
        assert "needs a token with the 'read' scope" in line and "--token" in line
        made = run("tokens", "create", "--scope", "read", "--database", db)
        secret = made.stdout.strip()
        headers = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(server.url + "/v1/models", headers=headers).status_code == 200
        assert (
            httpx.post(
                server.url + "/v1/tokens", json={"scopes": ["read"]}, headers=headers
            ).status_code
            == 403
        )
        token_id = json.loads(run("tokens", "ls", "--json", "--database", db).stdout)
        ids = [t["id"] for t in token_id if t["scopes"] == ["read"]]
        assert run("tokens", "revoke", ids[0], "--database", db).exit_code == 0
        assert httpx.get(server.url + "/v1/models", headers=headers).status_code == 401
    finally:
        server.stop()


def bootstrap_token(server: Server) -> str:
    """The admin secret the server printed at start (it was printed before /health answered)."""
    import os
    import select
    import time

    assert server.process is not None and server.process.stdout is not None
    stream = server.process.stdout
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 1.0)
        if ready:
            seen += os.read(stream.fileno(), 65536)
            match = re.search(rb"created admin token (rbt_\S+)", seen)
            if match:
                return match.group(1).decode()
    raise AssertionError(f"no admin token in the server's output: {seen!r}")
