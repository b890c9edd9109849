"""Shared fixtures: engines over every store, the ASGI app, and a real running server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from riverbed import Engine
from riverbed.server import create_app
from tests.helpers import STORES, TEST_DATABASE, Server, database

# The ASGI tests send the conventional test hosts; a real server refuses names that are not
# its own (docs/security.md), so the suite's engines allow these two. tests/test_guard.py
# checks the default, which allows none of them.
os.environ.setdefault("RIVERBED_ALLOWED_HOSTS", "testserver,t")


@pytest.fixture(params=STORES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine over each store kind."""
    with database(request.param, tmp_path) as db, Engine(db) as eng:
        yield eng


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine(str(tmp_path / "riverbed.db")) as eng:
        yield eng


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the ASGI app over an SQLite engine (PostgreSQL under
    RIVERBED_TEST_DATABASE=postgresql), no sockets."""
    with database(TEST_DATABASE, tmp_path, "api.db") as db, Engine(db) as eng:
        app = create_app(eng)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            c.engine = eng  # type: ignore[attr-defined]
            yield c


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with database(TEST_DATABASE, tmp_path, "server.db") as db:
        srv = Server(db).start()
        try:
            yield srv
        finally:
            srv.stop()
