"""The dashboard's routes through the ASGI app: the page, its files, nothing else.

What the pages do in a browser is tested in test_dashboard_browser.py.
"""

from __future__ import annotations

import re

import httpx
import pytest

from riverbed.server.app import endpoints
from riverbed.server.web import ASSETS

ASSET_FILES = sorted(p for p in ASSETS.rglob("*") if p.is_file())


async def test_root_serves_the_page(api: httpx.AsyncClient) -> None:
    response = await api.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/dashboard/app.js"></script>' in response.text
    assert '<main id="app">' in response.text


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/style.css", "text/css; charset=utf-8"),
        ("/dashboard/favicon.svg", "image/svg+xml"),
        ("/dashboard/index.html", "text/html; charset=utf-8"),
    ],
)
async def test_files_have_their_content_type(
    api: httpx.AsyncClient, path: str, content_type: str
) -> None:
    response = await api.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == (ASSETS / path.removeprefix("/dashboard/")).read_bytes()


async def test_every_reference_resolves(api: httpx.AsyncClient) -> None:
    """Every file the page or a script names (src, href, ES module imports) is served."""
    referenced = set(
        re.findall(r'(?:src|href)="(/dashboard/[^"]+)"', (ASSETS / "index.html").read_text())
    )
    for script in ASSETS.glob("*.js"):
        for name in re.findall(r'from "\./([^"]+)"', script.read_text()):
            referenced.add("/dashboard/" + name)
    assert "/dashboard/app.js" in referenced and "/dashboard/charts.js" in referenced
    for path in sorted(referenced):
        assert (await api.get(path)).status_code == 200, path


@pytest.mark.parametrize("path", [p.name for p in ASSET_FILES])
def test_nothing_is_fetched_from_the_internet(path: str) -> None:
    """The dashboard works offline: no asset names a remote URL (the SVG namespace is an
    identifier, not a download)."""
    text = (ASSETS / path).read_text()
    remote = re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'`)]*", text)
    assert [u for u in remote if "www.w3.org/2000/svg" not in u] == []


def test_vendored_files_carry_their_version() -> None:
    """Third-party files live under vendor/ with their version in the name (name-1.2.3.js)."""
    for path in ASSETS.glob("vendor/*"):
        assert re.search(r"-\d+\.\d+\.\d+(\.min)?\.(js|css)$", path.name), path.name


async def test_unchanged_files_answer_304(api: httpx.AsyncClient) -> None:
    first = await api.get("/dashboard/app.js")
    etag = first.headers["etag"]
    again = await api.get("/dashboard/app.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    assert first.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/missing.js",
        "/dashboard/../web.py",
        "/dashboard/%2e%2e/web.py",
        "/dashboard/..%2fweb.py",
        "/dashboard/.hidden",
        "/dashboard//etc/passwd",
        "/dashboard/" + "a" * 300,  # a name too long for the file system (OSError)
        "/dashboard/" + "a/" * 3000 + "b.js",  # a path too long for it
    ],
)
async def test_nothing_outside_the_assets_is_served(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] in {"not_found", "route_not_found"}


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/"])
async def test_the_dashboard_path_leads_to_the_page(api: httpx.AsyncClient, path: str) -> None:
    response = await api.get(path)
    assert response.status_code == 307 and response.headers["location"] == "/"
    page = await api.get(path, follow_redirects=True)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_routes_are_declared_public() -> None:
    """The page holds no data (its scripts call the API with the visitor's token)."""
    by_path = {e.path: e for e in endpoints()}
    assert by_path["/"].scope == "public"
    assert by_path["/dashboard/{path:path}"].scope == "public"


async def test_openapi_lists_the_dashboard(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert "get" in paths["/"] and "get" in paths["/dashboard/{path}"]
