"""chantilly's HTTP API on riverbed: its routes, fields, shapes and status codes."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import dill
import httpx
import pytest
from river import compose, datasets, evaluate, linear_model, metrics, preprocessing, tree

from riverbed import Engine
from riverbed.server import create_app

REGRESSION = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LinearRegression())


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    with Engine(str(tmp_path / "chantilly.db")) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            c.engine = engine  # type: ignore[attr-defined]
            yield c


async def init(api: httpx.AsyncClient, flavor: str) -> None:
    response = await api.post("/api/init", json={"flavor": flavor})
    assert response.status_code == 201 and response.json() == {}


async def test_init_before_and_after_a_flavor_is_set(api: httpx.AsyncClient) -> None:
    before = await api.get("/api/init")
    assert before.status_code == 400
    assert before.json()["message"] == "No flavor has been set."
    assert before.json()["error"]["code"] == "invalid_input"
    await init(api, "regression")
    after = await api.get("/api/init")
    assert after.status_code == 200
    assert after.json()["flavor"] == "regression"
    assert set(after.json()) == {"flavor", "storage", "river_version"}


async def test_init_rejects_an_unknown_flavor_per_field(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/init", json={"flavor": "forecast"})
    assert response.status_code == 400
    assert response.json()["message"] == {"flavor": ["unallowed value forecast"]}
    unknown = await api.post("/api/init", json={"flavor": "binary", "colour": "red"})
    assert unknown.status_code == 400
    assert unknown.json()["message"] == {"colour": ["unknown field"]}
    assert (await api.get("/api/init")).status_code == 400  # nothing changed


async def test_upload_needs_a_flavor_and_a_fitting_model(api: httpx.AsyncClient) -> None:
    no_flavor = await api.post("/api/model", content=dill.dumps(REGRESSION))
    assert no_flavor.status_code == 400
    await init(api, "binary")
    wrong = await api.post("/api/model/reg", content=dill.dumps(REGRESSION))
    assert wrong.status_code == 400
    garbage = await api.post("/api/model/reg", content=b"not a pickle")
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_artifact"
    assert (await api.get("/api/models")).json() == {"models": [], "default": None}


async def test_upload_download_list_and_delete(api: httpx.AsyncClient) -> None:
    await init(api, "regression")
    named = await api.post("/api/model/houses", content=dill.dumps(REGRESSION))
    assert named.status_code == 201 and named.json() == {"name": "houses"}
    anonymous = await api.post("/api/model", content=dill.dumps(REGRESSION))
    assert anonymous.status_code == 201
    generated = anonymous.json()["name"]
    assert generated != "houses" and len(generated.split("-")) == 3
    listed = (await api.get("/api/models")).json()
    assert listed == {"models": sorted(["houses", generated]), "default": generated}
    downloaded = await api.get("/api/model")
    assert downloaded.headers["content-type"] == "application/octet-stream"
    assert isinstance(pickle.loads(downloaded.content), compose.Pipeline)
    assert isinstance(dill.loads((await api.get("/api/model/houses")).content), compose.Pipeline)
    assert (await api.delete(f"/api/model/{generated}")).status_code == 204
    missing = await api.delete(f"/api/model/{generated}")
    assert missing.status_code == 404 and "message" in missing.json()
    assert (await api.get("/api/models")).json() == {"models": ["houses"], "default": None}
    assert (await api.get("/api/model")).status_code == 400  # no default any more


async def test_predict_with_and_without_an_id_then_learn(api: httpx.AsyncClient) -> None:
    await init(api, "regression")
    await api.post("/api/model/houses", content=dill.dumps(REGRESSION))
    plain = await api.post("/api/predict", json={"features": {"rooms": 3}})
    assert plain.status_code == 200 and plain.json() == {"model": "houses", "prediction": 0.0}
    kept = await api.post("/api/predict", json={"id": 42, "features": {"rooms": 3}})
    assert kept.status_code == 201 and kept.json()["model"] == "houses"
    learned = await api.post("/api/learn", json={"id": 42, "ground_truth": 10.21})
    assert learned.status_code == 201 and learned.json() == {}
    # The id was consumed: chantilly lets a client use it again.
    again = await api.post("/api/predict", json={"id": 42, "features": {"rooms": 4}})
    assert again.status_code == 201
    assert (await api.post("/api/learn", json={"id": 42, "ground_truth": 12.0})).status_code == 201
    with_features = await api.post(
        "/api/learn", json={"features": {"rooms": 2}, "ground_truth": 8.5}
    )
    assert with_features.status_code == 201
    assert api.engine.stats("houses")["n_learns"] == 3  # type: ignore[attr-defined]
    metric_values = (await api.get("/api/metrics")).json()
    assert set(metric_values) == {"MAE", "RMSE", "SMAPE"}


async def test_learn_with_an_unknown_id_and_no_features_is_a_clear_400(
    api: httpx.AsyncClient,
) -> None:
    await init(api, "regression")
    await api.post("/api/model/houses", content=dill.dumps(REGRESSION))
    response = await api.post("/api/learn", json={"id": "nope", "ground_truth": 1.0})
    assert response.status_code == 400 and "nope" in response.json()["message"]
    missing = await api.post("/api/learn", json={"features": {"rooms": 1}})
    assert missing.status_code == 400
    assert missing.json()["message"] == {"ground_truth": ["required field"]}
    assert api.engine.stats("houses")["n_learns"] == 0  # type: ignore[attr-defined]


async def test_predict_without_a_default_model_or_features(api: httpx.AsyncClient) -> None:
    await init(api, "regression")
    no_model = await api.post("/api/predict", json={"features": {"x": 1}})
    assert no_model.status_code == 400
    assert no_model.json()["message"] == "No default model has been set."
    await api.post("/api/model/houses", content=dill.dumps(REGRESSION))
    no_features = await api.post("/api/predict", json={"id": 1})
    assert no_features.json()["message"] == {"features": ["required field"]}
    unknown = await api.post("/api/predict", json={"features": {"x": 1}, "model": "nope"})
    assert unknown.status_code == 404


async def test_binary_predictions_are_probabilities_and_metrics_match_river(
    api: httpx.AsyncClient,
) -> None:
    """The Phishing stream through chantilly's routes (predict with an id, learn by id) ends
    with chantilly's binary metrics equal to river's own progressive validation."""
    await init(api, "binary")
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    await api.post("/api/model/phishing", content=dill.dumps(model))
    for i, (x, y) in enumerate(datasets.Phishing().take(200)):
        predicted = await api.post("/api/predict", json={"id": i, "features": x})
        assert predicted.status_code == 201
        if i == 0:
            assert predicted.json()["prediction"] == {"false": 0.5, "true": 0.5}
        assert (await api.post("/api/learn", json={"id": i, "ground_truth": y})).status_code == 201
    expected = (
        metrics.Accuracy()
        + metrics.LogLoss()
        + metrics.Precision()
        + metrics.Recall()
        + metrics.F1()
    )
    evaluate.progressive_val_score(
        datasets.Phishing().take(200),
        preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        expected,
    )
    assert (await api.get("/api/metrics")).json() == {type(m).__name__: m.get() for m in expected}
    stats = (await api.get("/api/stats")).json()
    assert stats["predict"]["n_calls"] == 200 and stats["learn"]["n_calls"] == 200
    assert isinstance(stats["learn"]["mean_duration"], int)
    assert stats["learn"]["mean_duration_human"].endswith("s")


async def test_multiclass_flavor(api: httpx.AsyncClient) -> None:
    await init(api, "multiclass")
    response = await api.post(
        "/api/model/segments", content=dill.dumps(tree.HoeffdingTreeClassifier())
    )
    assert response.status_code == 201
    for x, y in datasets.ImageSegments().take(20):
        await api.post("/api/learn", json={"features": x, "ground_truth": y})
    assert set((await api.get("/api/metrics")).json()) == {
        "Accuracy",
        "CrossEntropy",
        "MacroPrecision",
        "MacroRecall",
        "MacroF1",
        "MicroPrecision",
        "MicroRecall",
        "MicroF1",
    }


async def test_init_again_wipes_chantilly_models_only(api: httpx.AsyncClient) -> None:
    api.engine.create_model(  # type: ignore[attr-defined]
        "native", preprocessing.StandardScaler() | linear_model.LinearRegression()
    )
    await init(api, "regression")
    await api.post("/api/model/houses", content=dill.dumps(REGRESSION))
    await init(api, "binary")
    assert (await api.get("/api/models")).json() == {"models": ["native"], "default": None}


async def test_uploads_are_refused_when_pickles_are_off(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "x.db"), allow_pickle_uploads="false") as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            await init(api, "regression")
            response = await api.post("/api/model/houses", content=dill.dumps(REGRESSION))
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "forbidden"
            assert engine.list_models() == []


async def test_the_layer_can_be_turned_off(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "x.db"), compat="django-river-ml") as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            response = await api.get("/api/init")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "route_not_found"


async def test_state_and_stored_ids_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "restart.db")
    with Engine(path) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            await init(api, "regression")
            await api.post("/api/model/houses", content=dill.dumps(REGRESSION))
            await api.post("/api/predict", json={"id": "a", "features": {"rooms": 3}})
    with Engine(path) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            assert (await api.get("/api/init")).json()["flavor"] == "regression"
            assert (await api.get("/api/models")).json()["default"] == "houses"
            learned = await api.post("/api/learn", json={"id": "a", "ground_truth": 1.0})
            assert learned.status_code == 201
            assert engine.stats("houses")["n_learns"] == 1


async def test_concurrent_clients_lose_nothing(api: httpx.AsyncClient) -> None:
    """chantilly's shelve store corrupted under concurrent requests; here 8 clients
    interleaving predict-with-id and learn-by-id end with every learn counted once."""
    import asyncio

    await init(api, "regression")
    await api.post("/api/model/houses", content=dill.dumps(REGRESSION))

    async def client(c: int) -> None:
        for i in range(25):
            key = f"{c}-{i}"
            predicted = await api.post("/api/predict", json={"id": key, "features": {"x": i}})
            assert predicted.status_code == 201
            learned = await api.post("/api/learn", json={"id": key, "ground_truth": float(i)})
            assert learned.status_code == 201

    await asyncio.gather(*(client(c) for c in range(8)))
    stats = (await api.get("/api/stats")).json()
    assert stats["predict"]["n_calls"] == 200 and stats["learn"]["n_calls"] == 200
