"""The native HTTP API through the ASGI app: shapes, statuses and bad input."""

from __future__ import annotations

import httpx
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


async def create(api: httpx.AsyncClient, name: str = "p", spec: object = SPEC) -> None:
    response = await api.post("/v1/models", json={"name": name, "spec": spec})
    assert response.status_code == 201, response.text


async def test_health(api: httpx.AsyncClient) -> None:
    for path in ("/health", "/v1/health"):
        response = await api.get(path)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"


async def test_model_lifecycle(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/v1/models",
        json={"name": "p", "spec": SPEC, "description": "phishing", "tags": {"team": "fraud"}},
    )
    assert created.status_code == 201
    assert created.json()["task"] == "binary" and created.json()["tags"] == {"team": "fraud"}
    listed = await api.get("/v1/models")
    assert [m["name"] for m in listed.json()["models"]] == ["p"]
    got = await api.get("/v1/models/p")
    assert got.json()["spec"] == SPEC and got.json()["n_learns"] == 0
    deleted = await api.delete("/v1/models/p")
    assert deleted.status_code == 200 and deleted.json() == {"name": "p", "deleted": True}
    assert (await api.get("/v1/models/p")).status_code == 404


async def test_phishing_over_http_matches_river(api: httpx.AsyncClient) -> None:
    """Predict with an id, learn by that id, one sample at a time: the server's metrics equal
    river's own progressive validation of the same model on the same stream."""
    await create(api)
    for i, (x, y) in enumerate(datasets.Phishing()):
        predicted = await api.post("/v1/models/p/predict", json={"features": x, "id": f"s{i}"})
        assert predicted.status_code == 200, predicted.text
        learned = await api.post("/v1/models/p/learn", json={"id": f"s{i}", "ground_truth": y})
        assert learned.status_code == 200, learned.text
    metric = metrics.Accuracy() + metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    evaluate.progressive_val_score(datasets.Phishing(), model, metric)
    served = (await api.get("/v1/models/p/metrics")).json()
    assert served["n"] == 1250
    assert served["metrics"] == {type(m).__name__: m.get() for m in metric}
    stats = (await api.get("/v1/models/p/stats")).json()
    assert stats["n_learns"] == 1250 and stats["n_predictions"] == 1250


async def test_predict_returns_label_and_probabilities(api: httpx.AsyncClient) -> None:
    await create(api)
    body = (await api.post("/v1/models/p/predict", json={"features": {"a": 1}})).json()
    assert set(body) == {"id", "model", "prediction", "probabilities"}
    assert body["probabilities"] == {"false": 0.5, "true": 0.5}


BAD_REQUESTS = [
    # (method, path, body, status, code)
    ("POST", "/v1/models", b"{", 400, "malformed_json"),
    ("POST", "/v1/models", b"", 400, "invalid_input"),
    ("POST", "/v1/models", b"[]", 400, "invalid_input"),
    ("POST", "/v1/models", b'{"name": "q"}', 400, "invalid_input"),
    ("POST", "/v1/models", b'{"name": 3, "spec": {}}', 400, "invalid_input"),
    ("POST", "/v1/models", b'{"name": "q", "spec": {"class": "os.system"}}', 400, "invalid_spec"),
    (
        "POST",
        "/v1/models",
        b'{"name": "q", "spec": {"class": "river.nope.Nope"}}',
        400,
        "invalid_spec",
    ),
    (
        "POST",
        "/v1/models",
        b'{"name": "p", "spec": {"class": "river.linear_model.LinearRegression"}}',
        409,
        "model_exists",
    ),
    ("POST", "/v1/models", b'{"name": "q", "spec": {}, "colour": 1}', 400, "invalid_input"),
    ("POST", "/v1/models/p/predict", b'{"features": {"a": NaN}}', 400, "malformed_json"),
    ("POST", "/v1/models/p/predict", b'{"features": {"a": 1e999}}', 400, "malformed_json"),
    ("POST", "/v1/models/p/predict", b'{"features": {"a": null}}', 400, "invalid_features"),
    ("POST", "/v1/models/p/predict", b'{"features": {"a": [1]}}', 400, "invalid_features"),
    ("POST", "/v1/models/p/predict", b'{"features": 5}', 400, "invalid_input"),
    ("POST", "/v1/models/p/predict", b"{}", 400, "invalid_input"),
    ("POST", "/v1/models/p/predict", b'{"features": {}, "id": 5}', 400, "invalid_input"),
    ("POST", "/v1/models/zz/predict", b'{"features": {"a": 1}}', 404, "model_not_found"),
    ("POST", "/v1/models/p/learn", b'{"features": {"a": 1}}', 400, "invalid_input"),
    ("POST", "/v1/models/p/learn", b'{"ground_truth": true}', 400, "invalid_features"),
    (
        "POST",
        "/v1/models/p/learn",
        b'{"features": {"a": 1}, "ground_truth": 9}',
        400,
        "invalid_target",
    ),
    (
        "POST",
        "/v1/models/p/learn",
        b'{"id": "nope", "ground_truth": true}',
        404,
        "prediction_not_found",
    ),
    ("GET", "/v1/models/zz/metrics", None, 404, "model_not_found"),
    ("GET", "/v1/models/zz/stats", None, 404, "model_not_found"),
    ("DELETE", "/v1/models/zz", None, 404, "model_not_found"),
    ("GET", "/v1/nothing-here", None, 404, "route_not_found"),
    ("PATCH", "/v1/models", None, 405, "method_not_allowed"),
]


@pytest.mark.parametrize("method, path, body, status, code", BAD_REQUESTS)
async def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    api: httpx.AsyncClient, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    await create(api)
    before = (await api.get("/v1/models/p")).json()
    response = await api.request(method, path, content=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert len(error["message"]) > 10
    after = (await api.get("/v1/models/p")).json()
    assert after == before
    assert [m["name"] for m in (await api.get("/v1/models")).json()["models"]] == ["p"]


QUERY_INTEGERS = [
    "/v1/models/p/metrics/history?limit={}",
    "/v1/models/p/metrics/history?after={}",
    "/v1/cache/k/peek?position={}",
    "/v1/jobs?limit={}",
    "/v1/search/versions?page_size={}",
    "/cache/peek/k?pos={}",  # lrnstak's
    "/api/v1/models/?page={}",  # Maisie's
]


@pytest.mark.parametrize("number", ["\u00b2", "\u0661", "1_0", "+1 ", "9" * 30])
@pytest.mark.parametrize("path", QUERY_INTEGERS)
async def test_a_query_integer_with_other_digits_is_400(
    api: httpx.AsyncClient, path: str, number: str
) -> None:
    """'²' passes str.isdigit and int() raises on it; '١' (Arabic-Indic) and '1_0' int()
    takes; none is a number to these routes, and 30 digits are out of range."""
    await create(api)
    await api.put("/v1/cache/k", json={"value": [1, 2]})
    response = await api.get(path.format(number))
    assert response.status_code == 400, response.text
    assert "integer" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/jobs", "/api/v1/models/"])
@pytest.mark.parametrize("length", ["\u00b2", "9" * 5000])
async def test_a_content_length_that_is_no_number_is_a_4xx(
    api: httpx.AsyncClient, path: str, length: str
) -> None:
    """A declared length is compared with the upload limit before reading: '²' (latin-1
    0xB2, which str.isdigit takes) and 5000 digits (past what int() converts) are refused,
    not a 500, on the routes that read it from Starlette's headers."""
    from tests.asgi import status_of

    headers = [
        (b"content-length", length.encode("latin-1")),
        (b"content-type", b"multipart/form-data; boundary=x"),
    ]
    app = api._transport.app  # type: ignore[attr-defined]
    status, _ = await status_of(app, "POST", path, headers=headers, body=b"--x--\r\n")
    assert 400 <= status < 500


async def test_an_oversized_body_is_413(api: httpx.AsyncClient) -> None:
    await create(api)
    limit = api.engine.settings.max_body_bytes  # type: ignore[attr-defined]
    big = b'{"features": {"a": "' + b"x" * limit + b'"}}'
    response = await api.post("/v1/models/p/predict", content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_openapi_document_lists_every_route(api: httpx.AsyncClient) -> None:
    doc = (await api.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/v1/models",
        "/v1/models/{name}/predict",
        "/v1/models/{name}/learn",
        "/v1/models/{name}/metrics",
        "/v1/models/{name}/stats",
        "/health",
    ):
        assert path in doc["paths"], path
    predict = doc["paths"]["/v1/models/{name}/predict"]["post"]
    schema = predict["requestBody"]["content"]["application/json"]["schema"]
    # features are optional for bandits and forecasters; the task fields are declared
    assert {"features", "id", "user", "item", "arms", "value"} <= set(schema["properties"])
    assert "404" in predict["responses"]
