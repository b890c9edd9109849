"""The web dashboard: ``/`` serves its page, ``/dashboard/{path}`` its static files
(``/dashboard`` and ``/dashboard/`` redirect to the page).

The files live in ``server/dashboard/`` inside the package: plain HTML, CSS and JavaScript
modules, no build step, nothing fetched from the internet. The page holds no data of its
own: its scripts read the JSON API and the event streams with the visitor's token (when
authentication is on), so both routes are public.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from riverbed.exceptions import NotFound
from riverbed.server.routing import Endpoint

__all__ = ["ASSETS", "ENDPOINTS"]

ASSETS = Path(__file__).parent / "dashboard"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


def _asset(relative: str) -> Path:
    """The file under :data:`ASSETS` named by ``relative``; nothing outside it, no dot-files."""
    parts = relative.split("/")
    if not relative or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotFound(f"no dashboard file {relative[:200]!r}")
    path = ASSETS.joinpath(*parts)
    try:
        found = path.is_file() and path.suffix != ".py"
    except OSError:  # a name the file system refuses (too long, say) names no file either
        found = False
    if not found:
        raise NotFound(f"no dashboard file {relative[:200]!r}")
    return path


def _serve(request: Request, path: Path) -> Response:
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        # Revalidate every time: a new riverbed version must never run with old scripts.
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type or "application/octet-stream", headers=headers)


async def index(request: Request) -> Response:
    return _serve(request, ASSETS / "index.html")


async def asset(request: Request) -> Response:
    if not request.path_params["path"]:  # /dashboard/ is where people look for the page
        return await to_page(request)
    return _serve(request, _asset(request.path_params["path"]))


async def to_page(request: Request) -> Response:
    return RedirectResponse("/", status_code=307)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/",
        index,
        "The web dashboard (models, live metrics, events)",
        "dashboard",
        scope="public",
        response={"type": "string"},
        media_type="text/html",
    ),
    Endpoint(
        "GET",
        "/dashboard",
        to_page,
        "The web dashboard's page is at / (a redirect there, as /dashboard/ is)",
        "dashboard",
        scope="public",
        errors=(),
        response={"type": "string"},
        media_type="text/plain",
    ),
    Endpoint(
        "GET",
        "/dashboard/{path:path}",
        asset,
        "A static file of the dashboard (scripts, styles, icons)",
        "dashboard",
        scope="public",
        errors=(404,),
        response={"type": "string"},
        media_type="text/plain",
    ),
]
