"""The pickle rule (riverbed.server.guard, rule 3; docs/security.md): with auth off, a pickled
upload is taken only from a request that no browser sent (no ``Origin``, no
``Sec-Fetch-Site``) or from an origin in ``pickle_origins``; a browser's gets 403
``browser_pickle_refused`` naming the setting, even from the server's own origin or one in
``cors_origins``, and nothing is read, unpickled or stored. With auth on, admin tokens upload
pickles as before. The old clients (riverapi, chantilly's requests, Maisie's client, Beaver's
calls, riverbed's Client) still upload through a real default ``riverbed serve``.

Every upload here is a pickle whose unpickling creates a marker file, so "nothing was
unpickled" is seen, not assumed: the same upload from an allowed client does create it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dill
import httpx
import pytest
import requests
from river import datasets
from riverapi.main import Client as RiverapiClient

from riverbed import Client, Engine
from riverbed.config import SETTINGS, Settings
from riverbed.server import create_app
from riverbed.server.routing import Endpoint, openapi_document
from tests.helpers import Server, phishing_model, riverbed
from tests.test_compat_beaver import BeaverClient
from tests.test_compat_maisie import git_checkout
from tests.test_guard import SPEC
from tests.test_guard import client as guard_client

HOST = "127.0.0.1:8000"
OWN = f"http://{HOST}"  # the server's own origin, as the dashboard's requests carry it
APP = "http://app.example:3000"  # a web application in cors_origins


class Marker:
    """Unpickled, makes a directory at ``path`` (code an attacker's pickle would run,
    harmless)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.path,))


def marker_blob(path: Path) -> bytes:
    return pickle.dumps(Marker(path))


def upload_request(endpoint: Endpoint, blob: bytes, name: str = "up") -> tuple[str, dict[str, Any]]:
    """The path and httpx arguments of a well-formed upload of ``blob`` as ``name`` on
    ``endpoint``, as the route's own client sends it."""
    encoded = base64.b64encode(blob).decode("ascii")
    bodies: dict[str, tuple[str, dict[str, Any]]] = {
        "/v1/models/{name}/versions": (
            f"/v1/models/{name}/versions",
            {"json": {"artifact": encoded, "format": "pickle"}},
        ),
        "/api/model": ("/api/model", {"content": blob}),  # chantilly
        "/api/model/{name}": (f"/api/model/{name}", {"content": blob}),
        "/api/model/{flavor}/": ("/api/model/binary/", {"content": blob}),  # django-river-ml
        "/api/model/{flavor}/{name}/": (f"/api/model/binary/{name}/", {"content": blob}),
        "/api/v1/models/": (  # Maisie
            "/api/v1/models/",
            {"data": {"name": name}, "files": {"file": ("model.pkl", blob)}},
        ),
        "/models/": ("/models/", {"data": {"name": name, "model_bytes": encoded}}),  # Beaver
        "/models": ("/models", {"data": {"name": name, "model_bytes": encoded}}),
    }
    assert endpoint.path in bodies, (
        f"{endpoint.method} {endpoint.path} takes pickles: give it a body here so the rule is "
        "tested on it"
    )
    return bodies[endpoint.path]


def pickle_endpoints() -> list[Endpoint]:
    with Engine(settings=Settings.load({"database": ":memory:"}, environ={})) as engine:
        found = [e for e in create_app(engine).state.endpoints if e.pickle]
    return found


PICKLE_ENDPOINTS = pickle_endpoints()


def test_every_route_that_takes_a_pickle_declares_it() -> None:
    """The routes that unpickle or keep an uploaded model file, and nothing else."""
    assert sorted((e.method, e.path) for e in PICKLE_ENDPOINTS) == [
        ("POST", "/api/model"),
        ("POST", "/api/model/{flavor}/"),
        ("POST", "/api/model/{flavor}/{name}/"),
        ("POST", "/api/model/{name}"),
        ("POST", "/api/v1/models/"),
        ("POST", "/models"),
        ("POST", "/models/"),
        ("POST", "/v1/models/{name}/versions"),
    ]
    with Engine(settings=Settings.load({"database": ":memory:"}, environ={})) as engine:
        spec = openapi_document(create_app(engine).state.endpoints, title="t", version="0")
    marked = sorted(
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if operation.get("x-riverbed-pickle")
    )
    assert marked == sorted((e.method, e.path) for e in PICKLE_ENDPOINTS)


@contextlib.asynccontextmanager
async def client(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """tests/test_guard.py's client (auth off unless ``settings`` say otherwise; one model,
    ``m``), with chantilly's flavor set."""
    async with guard_client(HOST, **settings) as c:
        flavor = await c.post("/api/init", json={"flavor": "binary"})
        assert flavor.status_code == 201, flavor.text
        yield c


def stored(engine: Engine) -> list[tuple[str, int]]:
    """Every model and how many versions it has."""
    return sorted((m["name"], len(engine.list_versions(m["name"]))) for m in engine.list_models())


BROWSERS = {
    "own origin": {"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
    "own origin, no Sec-Fetch-Site": {"Origin": OWN},
    "cors_origins page": {"Origin": APP, "Sec-Fetch-Site": "cross-site"},
    "Sec-Fetch-Site only": {"Sec-Fetch-Site": "same-origin"},
    "Sec-Fetch-Site none": {"Sec-Fetch-Site": "none"},
}


@pytest.mark.parametrize("endpoint", PICKLE_ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
@pytest.mark.parametrize("headers", list(BROWSERS.values()), ids=list(BROWSERS))
async def test_a_browsers_pickle_is_refused_and_nothing_is_unpickled_or_stored(
    endpoint: Endpoint, headers: dict[str, str], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    async with client(cors_origins=APP) as c:
        before = stored(c.engine)  # type: ignore[attr-defined]
        path, body = upload_request(endpoint, marker_blob(marker))
        answer = await c.request(endpoint.method, path, headers=headers, **body)
        assert answer.status_code == 403, answer.text
        error = answer.json()["error"]
        assert error["code"] == "browser_pickle_refused"
        assert error["detail"]["setting"] == "pickle_origins"
        assert "--pickle-origins" in error["message"]
        assert "RIVERBED_PICKLE_ORIGINS" in error["message"]
        assert error["detail"]["origin"] == headers.get("Origin")
        assert not marker.exists()
        assert stored(c.engine) == before  # type: ignore[attr-defined]
        # the same page may still do what cors_origins lets it: a learn
        learn = {"features": {"x": 1.0}, "ground_truth": True}
        assert (await c.post("/v1/models/m/learn", json=learn, headers=headers)).status_code == 200


@pytest.mark.parametrize("endpoint", PICKLE_ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
@pytest.mark.parametrize(
    ("settings", "headers"),
    [({}, {}), ({"pickle_origins": APP}, {"Origin": APP, "Sec-Fetch-Site": "cross-site"})],
    ids=["no browser", "pickle_origins"],
)
async def test_the_same_upload_is_taken_without_browser_headers_or_from_pickle_origins(
    endpoint: Endpoint, settings: dict[str, str], headers: dict[str, str], tmp_path: Path
) -> None:
    """The control: the rule, not something else, stopped the uploads above. The marker
    pickle is unpickled (the file appears; it is no model, so the route then refuses it), and
    Maisie's route, which keeps the file unread, stores it."""
    marker = tmp_path / "pwned"
    async with client(cors_origins=APP, **settings) as c:
        path, body = upload_request(endpoint, marker_blob(marker))
        answer = await c.request(endpoint.method, path, headers=headers, **body)
        if endpoint.path == "/api/v1/models/":
            assert answer.status_code == 201, answer.text
            assert ("up", 1) in stored(c.engine)  # type: ignore[attr-defined]
        else:
            assert answer.status_code < 500, answer.text
            assert marker.exists(), answer.text


async def test_a_model_uploads_and_serves_without_browser_headers() -> None:
    """A real model through every route, no Origin: accepted and stored as before."""
    async with client() as c:
        for i, endpoint in enumerate(PICKLE_ENDPOINTS):
            blob = pickle.dumps(phishing_model())  # what dill writes for it too
            path, body = upload_request(endpoint, blob, name=f"up{i}")
            answer = await c.request(endpoint.method, path, **body)
            assert answer.status_code == 201, (endpoint.path, answer.text)
        assert len(stored(c.engine)) == 1 + len(PICKLE_ENDPOINTS)  # type: ignore[attr-defined]


async def test_a_browser_may_still_upload_what_is_not_a_pickle() -> None:
    """The rule is about pickles: a spec or a skops version from the server's own origin is
    taken (the Origin check admits it); a pickle-looking file is not, whatever its format
    says, nor an opaque file, which whoever downloads it may unpickle."""
    from sklearn.linear_model import LinearRegression

    from riverbed import artifacts

    fitted = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    skops, format = artifacts.dump_object(fitted)
    assert format == "skops"
    browser = {"Origin": OWN, "Sec-Fetch-Site": "same-origin"}
    async with client() as c:
        taken = await c.post(
            "/v1/models/sk/versions",
            json={"artifact": base64.b64encode(skops).decode(), "format": "skops"},
            headers=browser,
        )
        assert taken.status_code == 201, taken.text
        spec = await c.post("/v1/models", json={"name": "s", "spec": SPEC}, headers=browser)
        assert spec.status_code == 201, spec.text
        for fields in ({"format": "file"}, {}, {"filename": "model.joblib"}):
            refused = await c.post(
                "/v1/models/f/versions",
                json={"artifact": base64.b64encode(pickle.dumps([1])).decode(), **fields},
                headers=browser,
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "browser_pickle_refused"
        assert "f" not in dict(stored(c.engine))  # type: ignore[attr-defined]


async def test_with_auth_on_an_admin_token_uploads_from_a_browser_and_others_cannot(
    tmp_path: Path,
) -> None:
    """Auth on: the admin scope decides, as before the rule; a browser's admin token is the
    operator's decision. A predict-only token is refused (forbidden), nothing unpickled."""
    loaded = Settings.load({"database": ":memory:", "auth": "on"}, environ={})
    with Engine(settings=loaded) as engine:
        admin = engine.tokens.create_token(["admin"], name="admin")["token"]
        predict = engine.tokens.create_token(["predict"], name="p")["token"]
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as c:
            browser = {"Origin": OWN, "Sec-Fetch-Site": "same-origin"}
            marker = tmp_path / "pwned"
            blob = base64.b64encode(marker_blob(marker)).decode()
            body = {"artifact": blob, "format": "pickle"}
            refused = await c.post(
                "/v1/models/up/versions",
                json=body,
                headers={**browser, "Authorization": f"Bearer {predict}"},
            )
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "forbidden"
            assert not marker.exists()
            taken = await c.post(
                "/v1/models/up/versions",
                json=body,
                headers={**browser, "Authorization": f"Bearer {admin}"},
            )
            assert taken.status_code < 500 and marker.exists(), taken.text


def test_pickle_origins_is_a_documented_setting(tmp_path: Path) -> None:
    setting = {s.name: s for s in SETTINGS}["pickle_origins"]
    assert setting.flag == "--pickle-origins" and setting.env == "RIVERBED_PICKLE_ORIGINS"
    assert setting.default == ""
    environ = {"RIVERBED_PICKLE_ORIGINS": APP}
    assert Settings.load({"database": ":memory:"}, environ=environ).pickle_origins == APP
    assert "--pickle-origins" in riverbed("serve", "--help").stdout
    docs = Path(__file__).parent.parent / "docs"
    assert "`pickle_origins`" in (docs / "settings.md").read_text()
    assert "pickle_origins" in (docs / "security.md").read_text()


# -- the old clients against a real default server ---------------------------------------------

MAISIE = """
import sys
import maisie

url, model_file = sys.argv[1:3]
config = maisie.Config(dictionary={
    "api_url": url + "/api/v1", "auth_user_login": "ada", "auth_user_password": "x",
    "selected_project": "1", "git_local_repo": ".",
})
print(maisie.Models(config).upload(name="maisie-model", filename=model_file,
      hyperparameters={}, parameters={}, metrics={})[0]["id"])
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(str(tmp_path_factory.mktemp("pickle-rule") / "server.db")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_the_old_clients_upload_pickles_to_a_default_server(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """riverapi (django-river-ml's client), chantilly's README requests, Maisie's client,
    Beaver's calls and riverbed's Client, unchanged, auth off: every upload is taken."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RIVER_ML_TOKEN", raising=False)
    monkeypatch.delenv("RIVER_ML_USER", raising=False)
    http = httpx.Client(base_url=server.url, timeout=60)

    named = RiverapiClient(server.url, quiet=True).upload_model(
        phishing_model(), "binary", model_name="via-riverapi"
    )
    assert named == "via-riverapi"

    assert requests.post(f"{server.url}/api/init", json={"flavor": "binary"}).status_code == 201
    chantilly = requests.post(
        f"{server.url}/api/model/via-chantilly", data=dill.dumps(phishing_model())
    )
    assert chantilly.status_code == 201, chantilly.text

    git_checkout(tmp_path)  # Maisie's client reads the working directory's git checkout
    model_file = tmp_path / "model.pkl"
    model_file.write_bytes(pickle.dumps({"weights": [1, 2]}))
    done = subprocess.run(
        [sys.executable, "-c", MAISIE, server.url, str(model_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    BeaverClient(server.url).models.upload("via-beaver", phishing_model())

    with Client(server.url) as native:
        native.upload("via-client", pickle.dumps(phishing_model()), format="pickle")

    names = {m["name"] for m in http.get("/v1/models").json()["models"]}
    assert {"via-riverapi", "via-chantilly", "maisie-model", "via-beaver", "via-client"} <= names
    x, _ = next(iter(datasets.Phishing()))
    for name in ("via-riverapi", "via-chantilly", "via-beaver", "via-client"):
        answer = http.post(f"/v1/models/{name}/predict", json={"features": x})
        assert answer.status_code == 200, (name, answer.text)
    http.close()


@pytest.mark.slow
def test_a_default_server_refuses_a_browsers_pickle_on_every_route(
    server: Server, tmp_path: Path
) -> None:
    """The same routes over a real ``riverbed serve``, with the server's own origin (past
    the Origin check): 403 browser_pickle_refused, nothing unpickled, nothing stored."""
    marker = tmp_path / "pwned"
    blob = marker_blob(marker)
    origin = server.url
    with httpx.Client(base_url=server.url, timeout=60) as http:
        before = http.get("/v1/models").json()["models"]
        for endpoint in PICKLE_ENDPOINTS:
            path, body = upload_request(endpoint, blob)
            answer = http.request(
                endpoint.method,
                path,
                headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
                **body,
            )
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["error"]["code"] == "browser_pickle_refused"
        assert not marker.exists()
        after = http.get("/v1/models").json()["models"]
        assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)
