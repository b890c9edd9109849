"""lrnstak's registry, predictions and cache routes through the ASGI app."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import joblib
import pytest
from sklearn.linear_model import LinearRegression

from riverbed import Engine
from riverbed.server import create_app

ROWS = [{"a": 1.0, "b": 2.0}, {"a": 2.0, "b": 0.5}, {"a": 3.0, "b": 1.0}]


class Clock:
    now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    with Engine(str(tmp_path / "lrnstak.db")) as engine:
        clock = Clock()
        engine.cache.clock = clock
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            c.engine = engine  # type: ignore[attr-defined]
            c.clock = clock  # type: ignore[attr-defined]
            yield c


def fitted(scale: float) -> LinearRegression:
    X = [[r["a"], r["b"]] for r in ROWS]
    y = [scale * (r["a"] + 2 * r["b"]) for r in ROWS]
    return LinearRegression().fit(X, y)


def register(api: httpx.AsyncClient, scale: float) -> None:
    buffer = io.BytesIO()
    joblib.dump(fitted(scale), buffer)
    api.engine.upload(  # type: ignore[attr-defined]
        "prices",
        buffer.getvalue(),
        format="joblib",
        params={"target_label": "y", "feature_labels": ["a", "b"]},
        metrics={"mse": 0.01 * scale},
        feature_names=["a", "b"],
    )


async def test_registry_lists_gets_and_describes_versions(api: httpx.AsyncClient) -> None:
    register(api, 1.0)
    register(api, 2.0)
    assert (await api.get("/models")).json() == [{"model": "prices", "versions": ["v1", "v2"]}]
    got = await api.get("/models/prices/v1")
    assert got.status_code == 200
    body = got.json()
    assert body["parameters"] == {"target_label": "y", "feature_labels": ["a", "b"]}
    model = joblib.load(io.BytesIO(base64.b64decode(body["model"])))
    assert model.predict([[1.0, 1.0]])[0] == pytest.approx(3.0)
    info = (await api.get("/models/prices/2/info")).json()
    assert info["version"] == "v2" and info["training_scores"] == {"mse": 0.02}
    assert (await api.get("/models/prices/latest/info")).json()["version"] == "v2"
    assert (await api.get("/models/prices/v9")).status_code == 404
    assert (await api.get("/models/nope/v1/info")).status_code == 404


async def test_predict_rows_with_a_version(api: httpx.AsyncClient) -> None:
    register(api, 1.0)
    register(api, 2.0)
    latest = await api.post("/predict/model/prices", json={"data": ROWS})
    assert latest.status_code == 200
    answers = latest.json()
    assert [{k: v for k, v in a.items() if k != "prediction"} for a in answers] == ROWS
    assert [a["prediction"] for a in answers] == pytest.approx(
        [2 * (r["a"] + 2 * r["b"]) for r in ROWS]
    )
    first = await api.post("/predict/model/prices", json={"data": ROWS[:1], "version": "v1"})
    assert first.json()[0]["prediction"] == pytest.approx(5.0)
    for bad in ({"data": []}, {"data": "rows"}, {"rows": ROWS}, {"data": [1, 2]}):
        assert (await api.post("/predict/model/prices", json=bad)).status_code == 400
    missing = await api.post("/predict/model/nope", json={"data": ROWS})
    assert missing.status_code == 404


async def test_cache_put_get_delete_with_ttl(api: httpx.AsyncClient) -> None:
    put = await api.put("/cache/AAPL", json={"value": {"close": 182.5}, "ttl": 60})
    assert put.status_code == 200 and put.json() == {"message": "OK"}
    assert (await api.get("/cache/AAPL")).json() == {"close": 182.5}
    zero = await api.post("/cache/flag", json={"value": 0})  # lrnstak refused falsy values
    assert zero.status_code == 200 and (await api.get("/cache/flag")).json() == 0
    api.clock.now += 61  # type: ignore[attr-defined]
    gone = await api.get("/cache/AAPL")
    assert gone.status_code == 404 and gone.json()["message"] == "not found"
    assert (await api.delete("/cache/flag")).json() == {"message": "OK", "value": 1}
    assert (await api.delete("/cache/flag")).json() == {"message": "OK", "value": None}
    assert (await api.put("/cache/x", json={"ttl": 5})).status_code == 400


async def test_cache_lists_and_ttl_updates(api: httpx.AsyncClient) -> None:
    for value in (1, 2, 3):
        assert (await api.put("/cache/push/jobs", json={"value": value})).status_code == 200
    assert (await api.get("/cache/peek/jobs")).json() == 3
    assert (await api.get("/cache/peek/jobs?pos=2")).json() == 1
    assert (await api.get("/cache/peek/jobs?pos=x")).status_code == 400
    assert (await api.get("/cache/pop/jobs")).json() == 3
    assert (await api.put("/cache/ttl/jobs", json={"ttl": 10})).json() == {"message": "OK"}
    api.clock.now += 11  # type: ignore[attr-defined]
    assert (await api.get("/cache/pop/jobs")).status_code == 404
    assert (await api.put("/cache/ttl/jobs", json={"ttl": 10})).status_code == 404


async def test_the_trainer_registers_candidates_and_aliases_the_best(
    api: httpx.AsyncClient,
) -> None:
    rows = [{"a": float(i), "b": float(i % 7), "y": 3.0 * i - 2.0 * (i % 7)} for i in range(40)]
    body = {
        "version": "v1",
        "parameters": {"target_label": "y", "feature_labels": ["a", "b"], "split": 0.25},
        "training_data": rows,
    }
    trained = await api.post("/train/prices", json=body)
    assert trained.status_code == 201, trained.text
    result = trained.json()
    assert set(result["training_scores"]) == {"linear", "ridge", "forest"}
    best = min(result["training_scores"], key=lambda c: result["training_scores"][c]["MSE"])
    assert result["best"]["name"] == best == "linear"  # an exact linear relation
    assert (await api.get("/models/prices/best/info")).json()["version"] == result["version"]
    predicted = await api.post(
        "/predict/model/prices", json={"data": [{"a": 10.0, "b": 3.0}], "version": "best"}
    )
    assert predicted.json()[0]["prediction"] == pytest.approx(24.0)
    missing = await api.post("/train/prices", json={**body, "parameters": {"target_label": "z"}})
    assert missing.status_code == 400
