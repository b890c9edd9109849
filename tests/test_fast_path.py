"""The hot JSON routes answered before Starlette's routing (riverbed.server.fast): which routes
it takes, that it never takes a path another route owns, and that its answers and errors are
those of the framework's path."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from riverbed import Engine
from riverbed.server import create_app
from riverbed.server.app import endpoints
from riverbed.server.fast import FastRoutes, json_route
from riverbed.server.routing import Endpoint

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}
HOT = [
    # the older systems' predict and learn routes (riverbed.server.compat): django-river-ml's
    # end with a slash, chantilly's do not; Beaver's are answered both ways
    "POST /api/label/",
    "POST /api/learn",
    "POST /api/learn/",
    "POST /api/predict",
    "POST /api/predict/",
    "POST /label/{}",
    "POST /label/{}/",
    "POST /predict/model/{}",  # lrnstak's
    "POST /predict/{}",
    "POST /predict/{}/",
    "POST /v1/models/{}/learn",
    "POST /v1/models/{}/learn/many",
    "POST /v1/models/{}/predict",
    "POST /v1/models/{}/predict/many",
]


def test_the_fast_path_takes_the_hot_routes() -> None:
    assert FastRoutes(endpoints()).paths == HOT


def _op(state: Any, params: dict[str, str], body: Any) -> dict[str, Any]:
    return {"params": params}


def test_a_route_declared_earlier_keeps_the_paths_it_shares() -> None:
    first = Endpoint("POST", "/v1/models/special/predict", json_route(_op), "first", "t")
    hot = Endpoint("POST", "/v1/models/{name}/predict", json_route(_op), "hot", "t")
    other = Endpoint("POST", "/v1/things/{name}", json_route(_op), "other", "t")
    assert FastRoutes([first, hot, other]).paths == [
        "POST /v1/models/special/predict",
        "POST /v1/things/{}",
    ]
    assert FastRoutes([hot, first]).paths == ["POST /v1/models/{}/predict"]


@pytest.mark.parametrize(
    ("method", "path", "taken"),
    [
        ("POST", "/v1/models/m/predict", {"name": "m"}),
        ("POST", "/v1/models/m.v2-x/learn/many", {"name": "m.v2-x"}),
        ("GET", "/v1/models/m/predict", None),  # another method: Starlette answers 405
        ("POST", "/v1/models/m/predict/", None),  # Starlette's trailing-slash rule
        ("POST", "/api/predict/", {}),  # django-river-ml's route, with its slash
        ("POST", "/api/predict", {}),  # chantilly's
        ("POST", "/api/label", None),  # Starlette redirects it to django-river-ml's
        ("POST", "/predict/m/", {"name": "m"}),  # Beaver's, both ways
        ("POST", "/predict/m//", None),
        ("POST", "/predict/model/m", {"name": "m"}),  # lrnstak's, declared before Beaver's
        ("POST", "/v1/models//predict", None),  # an empty name matches no route
        ("POST", "/v1/models/m/metrics", None),
        ("POST", "/v1/models/a/b/predict", None),
    ],
)
def test_matching_by_segments(method: str, path: str, taken: dict[str, str] | None) -> None:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path}
    app = FastRoutes(endpoints()).match(scope)
    assert (app is not None) == (taken is not None)
    if taken is not None:
        assert scope["path_params"] == taken


async def test_answers_and_errors_match_the_framework_path(api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/models", json={"name": "m", "spec": SPEC})
    assert created.status_code == 201
    predicted = await api.post("/v1/models/m/predict", json={"id": "a", "features": {"x": 1.0}})
    assert predicted.status_code == 200
    assert predicted.headers["content-type"] == "application/json"
    assert predicted.json()["id"] == "a" and set(predicted.json()["probabilities"]) == {
        "false",
        "true",
    }
    cases = [
        (b"{", 400, "malformed_json"),
        (b'{"features": {"x": 1}, "color": 1}', 400, "invalid_input"),
        (b'{"features": [1]}', 400, "invalid_input"),
        (b"", 400, "invalid_input"),
        (b'{"id": "a", "features": {"x": 1}}', 409, "prediction_exists"),
    ]
    for body, status, code in cases:
        answer = await api.post("/v1/models/m/predict", content=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.json()["error"]["code"] == code
    missing = await api.post("/v1/models/nope/learn", json={"features": {}, "ground_truth": 1})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    big = await api.post(
        "/v1/models/m/predict", content=b" " * (api.engine.settings.max_body_bytes + 1)
    )  # type: ignore[attr-defined]
    assert big.status_code == 413
    stats = (await api.get("/v1/models/m/stats")).json()
    assert stats["n_predictions"] == 1  # nothing refused changed anything


async def test_an_unexpected_failure_is_a_json_500(tmp_path: Any, monkeypatch: Any) -> None:
    with Engine(str(tmp_path / "x.db")) as engine:
        engine.create_model("m", spec=SPEC)

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

        monkeypatch.setattr(engine, "submit_predict", broken)
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.post("/v1/models/m/predict", json={"features": {"x": 1}})
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "server_error"
