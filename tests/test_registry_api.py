"""The registry over HTTP: the ASGI app, the async client over it, and a real server."""

from __future__ import annotations

import base64
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import skops.io as sio
from river import datasets

from riverbed import AsyncClient, Client, Engine
from riverbed.exceptions import InvalidFilter, VersionNotFound
from riverbed.server import create_app
from tests.helpers import Server
from tests.test_registry import Y_AND, Y, fitted, git_checkout

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def upload(api: httpx.AsyncClient, name: str, data: bytes, **fields: object) -> dict:
    response = await api.post(
        f"/v1/models/{name}/versions", json={"artifact": b64(data), "format": "skops", **fields}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_upload_describe_download(api: httpx.AsyncClient) -> None:
    data = sio.dumps(fitted())
    created = await upload(
        api,
        "gate",
        data,
        tags={"team": "risk"},
        metrics={"accuracy": 0.97},
        dataset="or",
        git={"commit": "abc", "branch": "main"},
        filename="gate.skops",
    )
    assert created["version"] == 1 and created["url"] == "/v1/models/gate/versions/1/artifact"
    for path in ("/v1/models/gate/versions/1", "/v1/models/gate/versions/latest"):
        got = (await api.get(path)).json()
        assert got["git"] == {"commit": "abc", "branch": "main"}
        assert got["dataset"] == {"name": "or"} and got["hyperparameters"]["max_depth"] == 3
    artifact = await api.get(created["url"])
    assert artifact.status_code == 200 and artifact.content == data
    assert artifact.headers["content-disposition"] == 'attachment; filename="gate.skops"'
    assert artifact.headers["x-riverbed-format"] == "skops"
    listed = (await api.get("/v1/models/gate/versions")).json()["versions"]
    assert [v["version"] for v in listed] == [1]
    model = (await api.get("/v1/models/gate")).json()
    assert model["flavor"] == "sklearn" and model["latest_version"] == 1


async def test_search_over_http(api: httpx.AsyncClient) -> None:
    await upload(api, "a", sio.dumps(fitted()), metrics={"accuracy": 0.97}, tags={"team": "x"})
    await upload(api, "b", sio.dumps(fitted()), metrics={"accuracy": 0.6}, tags={"team": "x"})
    found = await api.get(
        "/v1/search/versions",
        params={"filter": "metrics.accuracy > 0.9 and tags.team = 'x'"},
    )
    assert [v["model"] for v in found.json()["versions"]] == ["a"]
    ordered = await api.get("/v1/search/models", params={"order_by": "name desc", "page_size": "1"})
    assert [m["name"] for m in ordered.json()["models"]] == ["b"]
    assert ordered.json()["next_page_token"]
    bad = await api.get("/v1/search/versions", params={"filter": "metrics.accuracy >"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_filter"
    assert "expected a value" in bad.json()["error"]["message"]
    bad = await api.get("/v1/search/models", params={"page_size": "lots"})
    assert bad.status_code == 400
    bad = await api.get("/v1/search/models", params={"q": "x"})
    assert bad.status_code == 400 and "unknown query parameter" in bad.json()["error"]["message"]


async def test_alias_rollback_changes_predictions(api: httpx.AsyncClient) -> None:
    await upload(api, "gate", sio.dumps(fitted(Y)), feature_names=["a", "b"])
    await upload(api, "gate", sio.dumps(fitted(Y_AND)), feature_names=["a", "b"])
    moved = await api.put("/v1/models/gate/aliases/production", json={"version": 2, "by": "ann"})
    assert moved.status_code == 200 and moved.json()["previous"] is None
    row = {"a": 0.0, "b": 1.0}
    answer = await api.post("/v1/models/gate@production/predict", json={"features": row})
    assert answer.status_code == 200, answer.text
    assert answer.json()["prediction"] == 0 and answer.json()["version"] == 2
    await api.put("/v1/models/gate/aliases/production", json={"version": 1})
    answer = await api.post("/v1/models/gate@production/predict", json={"features": row})
    assert answer.json()["prediction"] == 1 and answer.json()["version"] == 1
    rows = await api.post(
        "/v1/models/gate/versions/production/predict", json={"rows": [row, [1.0, 1.0]]}
    )
    assert [p["prediction"] for p in rows.json()["predictions"]] == [1, 1]
    assert set(rows.json()["predictions"][0]["probabilities"]) == {"0", "1"}
    aliases = (await api.get("/v1/models/gate/aliases")).json()
    assert aliases["aliases"] == {"production": 1}
    assert [(h["version"], h["previous"], h["by"]) for h in aliases["history"]] == [
        (2, None, "ann"),
        (1, 2, ""),
    ]
    refused = await api.delete("/v1/models/gate/versions/1")
    assert refused.status_code == 409
    assert (await api.delete("/v1/models/gate/aliases/production")).status_code == 200
    assert (await api.delete("/v1/models/gate/versions/1")).status_code == 200
    gone = await api.get("/v1/models/gate/versions/1/artifact")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "version_not_found"


async def test_snapshot_over_http(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/models", json={"name": "p", "spec": SPEC})
    assert created.status_code == 201
    stream = list(datasets.Phishing().take(60))
    for x, y in stream[:30]:
        await api.post("/v1/models/p/learn", json={"features": x, "ground_truth": y})
    probe = {"features": stream[0][0]}
    before = (await api.post("/v1/models/p/predict", json=probe)).json()["probabilities"]
    snap = await api.post("/v1/models/p/snapshot", json={"description": "after 30"})
    assert snap.status_code == 201 and snap.json()["version"] == 2
    for x, y in stream[30:]:
        await api.post("/v1/models/p/learn", json={"features": x, "ground_truth": y})
    frozen = await api.post("/v1/models/p/versions/2/predict", json=probe)
    assert frozen.json()["probabilities"] == before
    live = await api.post("/v1/models/p/predict", json=probe)
    assert live.json()["probabilities"] != before
    view = (await api.get("/v1/models/p/versions/2/json")).json()
    assert [step["class"] for step in view["spec"]["pipeline"]] == [
        "river.preprocessing.StandardScaler",
        "river.linear_model.LogisticRegression",
    ]
    assert view["hyperparameters"]["LogisticRegression.l2"] == 0.0
    from_spec = await api.post("/v1/models/p/versions", json={"spec": SPEC})
    assert from_spec.status_code == 201 and from_spec.json()["source"] == "spec"


async def test_edits_over_http(api: httpx.AsyncClient) -> None:
    await upload(api, "m", sio.dumps(fitted()), tags={"a": "1"})
    edited = await api.patch(
        "/v1/models/m/versions/1",
        json={"description": "d", "tags": {"b": "2"}, "remove_tags": ["a"], "metrics": {"f1": 1}},
    )
    assert edited.status_code == 200
    assert edited.json()["tags"] == {"b": "2"} and edited.json()["metrics"] == {"f1": 1.0}
    model = await api.patch("/v1/models/m", json={"description": "model d", "tags": {"t": "v"}})
    assert model.status_code == 200 and model.json()["tags"] == {"a": "1", "t": "v"}


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"artifact": "%%%not base64"}, 400, "invalid_input"),
        ({"artifact": b64(b"junk"), "format": "skops"}, 400, "invalid_artifact"),
        ({"artifact": b64(b"x"), "format": "onnx"}, 400, "invalid_input"),
        ({"artifact": b64(b"x"), "colour": "red"}, 400, "invalid_input"),
        ({}, 400, "invalid_input"),
        (
            {"artifact": b64(b"x"), "format": "file", "git": {"commit": {"x": 1}}},
            400,
            "invalid_input",
        ),
        ({"artifact": b64(b"x"), "format": "file", "git": {"sha": "abc"}}, 400, "invalid_input"),
        ({"artifact": b64(b"x"), "format": "file", "dataset": 5}, 400, "invalid_input"),
        ({"artifact": b64(b"x"), "format": "file", "parent": 0}, 400, "invalid_input"),
        ({"artifact": b64(b"x"), "spec": SPEC}, 400, "invalid_input"),
        (
            {"artifact": b64(sio.dumps(fitted())), "format": "skops", "metrics": {"a": "b"}},
            400,
            "invalid_input",
        ),
    ],
)
async def test_bad_uploads_are_4xx_and_change_nothing(
    api: httpx.AsyncClient, body: dict, status: int, code: str
) -> None:
    response = await api.post("/v1/models/m/versions", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert (await api.get("/v1/models")).json()["models"] == []


async def test_unknown_versions_and_aliases_are_404(api: httpx.AsyncClient) -> None:
    await upload(api, "m", sio.dumps(fitted()))
    for path in (
        "/v1/models/m/versions/9",
        "/v1/models/m/versions/staging",
        "/v1/models/nope/versions/1",
        "/v1/models/m/versions/9/artifact",
    ):
        assert (await api.get(path)).status_code == 404, path
    bad = await api.put("/v1/models/m/aliases/production", json={"version": 9})
    assert bad.status_code == 404
    bad = await api.put("/v1/models/m/aliases/latest", json={"version": 1})
    assert bad.status_code == 400
    bad = await api.delete("/v1/models/m/versions/latest")
    assert bad.status_code == 400 and "by its number" in bad.json()["error"]["message"]
    assert (await api.get("/v1/models/m/versions/1")).status_code == 200


# "²" passes str.isdigit but int() refuses it; int() takes "١" (Arabic-Indic one), "+1",
# "1_0" and " 1", which are no version numbers either; 30 digits are out of range.
ODD_NUMBERS = ["%C2%B2", "%D9%A1", "%2B1", "1_0", "%201", "1" * 30]


@pytest.mark.parametrize("number", ODD_NUMBERS)
async def test_a_version_written_with_other_digits_is_a_4xx_and_changes_nothing(
    api: httpx.AsyncClient, number: str
) -> None:
    await upload(api, "m", sio.dumps(fitted()))
    for method, path, body in (
        ("GET", f"/v1/models/m/versions/{number}", None),
        ("GET", f"/v1/models/m/versions/{number}/artifact", None),
        ("GET", f"/v1/models/m/versions/{number}/json", None),
        ("PATCH", f"/v1/models/m/versions/{number}", {"description": "changed"}),
        ("DELETE", f"/v1/models/m/versions/{number}", None),
        ("POST", f"/v1/models/m/versions/{number}/predict", {"rows": [[1.0, 1.0]]}),
        ("PUT", f"/v1/models/m/aliases/{number}", {"version": 1}),
    ):
        response = await api.request(method, path, json=body)
        assert response.status_code in (400, 404), (method, path, response.text)
        assert response.json()["error"]["code"], (method, path)
    version = (await api.get("/v1/models/m/versions/1")).json()
    assert version["description"] != "changed"
    assert (await api.get("/v1/models/m/aliases")).json()["aliases"] == {}


@pytest.fixture
async def public_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine whose server is bound to a non-loopback address: auth on, pickles refused
    by default."""
    with Engine(str(tmp_path / "public.db"), host="0.0.0.0") as eng:
        yield eng


async def post_pickle(engine: Engine, secret: str, format: str = "pickle") -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        return await c.post(
            "/v1/models/m/versions",
            json={"artifact": b64(pickle.dumps(fitted())), "format": format},
            headers={"Authorization": f"Bearer {secret}"},
        )


async def test_pickles_are_refused_on_a_public_address_even_to_admins(
    public_engine: Engine,
) -> None:
    admin = public_engine.tokens.create_token(["admin"], name="a")["token"]
    learner = public_engine.tokens.create_token(["learn", "predict"], name="l")["token"]
    for format in ("pickle", "joblib", "riverbed"):
        response = await post_pickle(public_engine, admin, format)
        assert response.status_code == 403, response.text
        assert "runs its code" in response.json()["error"]["message"]
    assert (await post_pickle(public_engine, learner)).status_code == 403
    transport = httpx.ASGITransport(app=create_app(public_engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        response = await c.post(
            "/v1/models/m/versions",
            json={"artifact": b64(sio.dumps(fitted())), "format": "skops"},
            headers={"Authorization": f"Bearer {admin}"},
        )
    assert response.status_code == 201, response.text
    assert public_engine.list_versions("m")[0]["format"] == "skops"


async def test_an_operator_can_open_pickles_to_admins_only(tmp_path: Path) -> None:
    with Engine(":memory:", host="0.0.0.0", allow_pickle_uploads="true") as engine:
        admin = engine.tokens.create_token(["admin"], name="a")["token"]
        reader = engine.tokens.create_token(["read", "predict", "learn"], name="r")["token"]
        assert (await post_pickle(engine, reader)).status_code == 403
        assert (await post_pickle(engine, admin)).status_code == 201


async def test_pickles_are_accepted_on_loopback(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/models/m/versions", json={"artifact": b64(pickle.dumps(fitted())), "format": "pickle"}
    )
    assert response.status_code == 201, response.text


def test_upload_endpoints_require_admin_scope() -> None:
    from riverbed.server.registry_api import ENDPOINTS

    scopes = {(e.method, e.path): e.scope for e in ENDPOINTS}
    assert scopes[("POST", "/v1/models/{name}/versions")] == "admin"
    assert scopes[("PUT", "/v1/models/{name}/aliases/{alias}")] == "admin"
    assert scopes[("GET", "/v1/models/{name}/versions/{version}/artifact")] == "read"


async def test_the_async_client_records_the_callers_git_checkout(
    api: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = git_checkout(tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    transport = httpx.ASGITransport(app=create_app(api.engine))  # type: ignore[attr-defined]
    async with AsyncClient("http://testserver", transport=transport) as client:
        version = await client.upload("gate", fitted(), metrics={"accuracy": 0.9})
        assert version["format"] == "skops"
        got = await client.get_version("gate@1")
        assert got["git"]["commit"] == expected["commit"]
        assert got["git"]["branch"] == "experiment-7"
        assert got["created_by"]
        with pytest.raises(InvalidFilter):
            await client.search_versions("metrics.accuracy >>> 1")


def test_the_issue_checks_against_a_real_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upload from a git checkout, download the same bytes, find it by metric and tag,
    roll an alias back and see predict change, snapshot mid-stream: against `riverbed
    serve`."""
    expected = git_checkout(tmp_path / "repo")
    model_file = tmp_path / "repo" / "gate.skops"
    model_file.write_bytes(sio.dumps(fitted(Y)))
    monkeypatch.chdir(tmp_path / "repo")
    server = Server(str(tmp_path / "server.db")).start()
    try:
        with Client(server.url) as client:
            first = client.upload(
                "gate", model_file, metrics={"accuracy": 0.96}, tags={"team": "risk"}
            )
            assert first["git"]["commit"] == expected["commit"]
            assert first["git"]["branch"] == "experiment-7"
            assert client.download("gate", 1) == model_file.read_bytes()
            found = client.search_versions("metrics.accuracy > 0.95 and tags.team = 'risk'")
            assert [(v["model"], v["version"]) for v in found["versions"]] == [("gate", 1)]
            client.upload("gate", fitted(Y_AND))
            client.set_alias("gate", "production", 2)
            row = [0.0, 1.0]
            assert (
                client.predict_rows("gate@production", [row])["predictions"][0]["prediction"] == 0
            )
            client.set_alias("gate", "production", 1)
            assert (
                client.predict_rows("gate@production", [row])["predictions"][0]["prediction"] == 1
            )
            with pytest.raises(VersionNotFound):
                client.get_version("gate@staging")

            client.create_model("p", spec=SPEC)
            stream = list(datasets.Phishing().take(40))
            for x, y in stream[:20]:
                client.learn("p", x, y)
            probe = stream[0][0]
            before = client.predict("p", probe)["probabilities"]
            assert client.snapshot("p")["version"] == 2
            for x, y in stream[20:]:
                client.learn("p", x, y)
            assert client.predict("p@2", probe)["probabilities"] == before
            assert client.predict("p", probe)["probabilities"] != before
    finally:
        server.stop()
