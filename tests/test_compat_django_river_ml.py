"""django-river-ml's HTTP API through the ASGI app: shapes, and bad input that
django-river-ml answered with a 500 answered here with a clear 4xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import dill
import httpx
import pytest
from river import linear_model, preprocessing

from riverbed import Engine
from riverbed.server import create_app

MODEL = preprocessing.StandardScaler() | linear_model.LinearRegression()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    with Engine(str(tmp_path / "drm.db")) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            c.engine = engine  # type: ignore[attr-defined]
            yield c


async def upload(api: httpx.AsyncClient, name: str = "m") -> None:
    response = await api.post(f"/api/model/regression/{name}/", content=dill.dumps(MODEL))
    assert response.status_code == 201 and response.json() == {"name": name}


async def test_service_info_and_models(api: httpx.AsyncClient) -> None:
    info = (await api.get("/api/")).json()
    assert info["id"] == "django_river_ml" and info["status"] == "running"
    assert {
        "name",
        "description",
        "documentationUrl",
        "storage",
        "river_version",
        "version",
    } <= set(info)
    await upload(api)
    assert (await api.get("/api/models/")).json() == {"models": ["m"]}


async def test_predict_generates_an_identifier_that_label_uses(api: httpx.AsyncClient) -> None:
    await upload(api)
    predicted = await api.post("/api/predict/", json={"model": "m", "features": {"x": 1.0}})
    assert predicted.status_code == 201
    body = predicted.json()
    assert body["model"] == "m" and body["prediction"] == 0.0 and body["identifier"]
    labelled = await api.post(
        "/api/label/", json={"model": "m", "identifier": body["identifier"], "label": 2.0}
    )
    assert labelled.status_code == 200 and labelled.json() == "Successful label."
    again = await api.post(
        "/api/label/", json={"model": "m", "identifier": body["identifier"], "label": 2.0}
    )
    assert again.status_code == 409
    assert api.engine.stats("m")["n_learns"] == 1  # type: ignore[attr-defined]


async def test_learn_by_identifier_or_features(api: httpx.AsyncClient) -> None:
    await upload(api)
    await api.post("/api/predict/", json={"model": "m", "features": {"x": 1.0}, "identifier": "a"})
    by_id = await api.post(
        "/api/learn/", json={"model": "m", "identifier": "a", "ground_truth": 1.0}
    )
    assert by_id.status_code == 201 and by_id.json() == "Successful learn."
    with_features = await api.post(
        "/api/learn/",
        json={"model": "m", "features": {"x": 2.0}, "ground_truth": 3.0, "prediction": 99.0},
    )
    assert with_features.status_code == 201
    metrics = await api.request("GET", "/api/metrics/", json={"model": "m"})
    assert set(metrics.json()) == {"MAE", "RMSE", "SMAPE"}
    assert (await api.get("/api/metrics/?model=m")).json() == metrics.json()
    stats = await api.request("GET", "/api/stats/", json={"model": "m"})
    assert stats.json()["learn"]["n_calls"] == 2


async def test_model_json_download_and_form_delete(api: httpx.AsyncClient) -> None:
    await upload(api)
    assert (await api.get("/api/model/m/")).json()["StandardScaler"]["with_std"] is True
    downloaded = await api.get("/api/model/download/m/")
    assert downloaded.headers["content-type"] == "application/octet-stream"
    assert type(dill.loads(downloaded.content)).__name__ == "Pipeline"
    deleted = await api.request(
        "DELETE",
        "/api/model/",
        content=b"model=m",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert deleted.status_code == 200 and deleted.json() == {"model": "m", "deleted": True}
    again = await api.request("DELETE", "/api/model/", content=b"model=m")
    assert again.status_code == 404
    nothing = await api.request("DELETE", "/api/model/", content=b"")
    assert nothing.status_code == 400


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("POST", "/api/model/regression/x/", {"content": b"not a pickle"}, 400),
        ("POST", "/api/model/regression/x/", {"content": b""}, 400),
        ("POST", "/api/model/sandwich/x/", {"content": dill.dumps(MODEL)}, 400),
        ("POST", "/api/learn/", {"content": b"{not json"}, 400),
        ("POST", "/api/learn/", {"json": ["a", "list"]}, 400),
        ("POST", "/api/learn/", {"json": {"model": "m"}}, 400),
        ("POST", "/api/learn/", {"json": {"model": "m", "features": {"x": 1}}}, 400),
        ("POST", "/api/learn/", {"json": {"model": "m", "features": "x", "ground_truth": 1}}, 400),
        (
            "POST",
            "/api/learn/",
            {"json": {"model": "m", "identifier": "?", "ground_truth": 1}},
            404,
        ),
        (
            "POST",
            "/api/learn/",
            {"json": {"model": "nope", "features": {"x": 1}, "ground_truth": 1}},
            404,
        ),
        ("POST", "/api/predict/", {"json": {"model": "m"}}, 400),
        ("POST", "/api/predict/", {"json": {"model": "m", "features": {"x": None}}}, 400),
        ("POST", "/api/predict/", {"json": {"model": "nope", "features": {"x": 1}}}, 404),
        ("POST", "/api/label/", {"json": {"model": "m", "identifier": "?", "label": 1}}, 404),
        ("POST", "/api/label/", {"json": {"model": "m", "identifier": "?"}}, 400),
        ("GET", "/api/metrics/", {}, 400),
        ("GET", "/api/metrics/", {"params": {"model": "nope"}}, 404),
        ("GET", "/api/stats/", {"content": b"{bad"}, 400),
        ("GET", "/api/model/nope/", {}, 404),
        ("GET", "/api/model/download/nope/", {}, 404),
        # A model that is not a name (a list or an object used to be a 500: unhashable).
        *(
            ("POST", path, {"json": {"model": model, **fields}}, 400)
            for model in (["m"], {"name": "m"}, 1, True)
            for path, fields in (
                ("/api/predict/", {"features": {"x": 1}}),
                ("/api/learn/", {"features": {"x": 1}, "ground_truth": 1}),
                ("/api/learn/", {"identifier": "i", "ground_truth": 1}),
                ("/api/label/", {"identifier": "i", "label": 1}),
            )
        ),
    ],
)
async def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    api: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, object], status: int
) -> None:
    await upload(api)
    response = await api.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"] and body["error"]["code"]
    assert [m["name"] for m in api.engine.list_models()] == ["m"]  # type: ignore[attr-defined]
    assert api.engine.stats("m")["n_learns"] == 0  # type: ignore[attr-defined]


async def test_flavors_riverbed_does_not_serve_yet_say_so(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/model/cluster/c/", content=dill.dumps(MODEL))
    assert response.status_code == 400
    assert "clustering" in response.json()["message"]
