"""The Open Inference Protocol (REST) with the real ``tritonclient[http]`` package against a
real ``riverbed serve`` with auth on: health, server and model metadata, readiness, and
infer (tensors in JSON and as binary data) equal to the native predict route for the same
features, for each task that has a tensor form; prediction ids that a label follows through
the native learn route. Then the protocol's errors through the ASGI app: every bad request is
a 4xx in the protocol's error shape and changes nothing, the guard's refusals included."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from river import anomaly, cluster, datasets, linear_model, preprocessing, reco, tree
from sklearn.linear_model import LogisticRegression as SkLogistic
from tritonclient.utils import InferenceServerException

from riverbed import Engine
from riverbed.server import create_app
from tests.helpers import Server

N_LEARN = 60  # samples each model learns before the server starts
N_ASK = 5  # samples each infer sends (one batch)


def _phishing() -> list[tuple[dict[str, Any], Any]]:
    return list(datasets.Phishing().take(N_LEARN + N_ASK))


def _ratings() -> list[tuple[dict[str, Any], float]]:
    rows = []
    for i in range(N_LEARN + N_ASK):
        rows.append(({"user": f"u{i % 7}", "item": f"i{i % 5}"}, float(1 + (i * 3) % 5)))
    return rows


# name -> (model, create options, samples (x, y)); a recommender's x holds its user and item
CASES: dict[str, tuple[Any, dict[str, Any], list[tuple[dict[str, Any], Any]]]] = {
    "binary": (
        preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        {},
        _phishing(),
    ),
    "regression": (
        preprocessing.StandardScaler() | linear_model.LinearRegression(),
        {},
        list(datasets.TrumpApproval().take(N_LEARN + N_ASK)),
    ),
    "multiclass": (
        tree.HoeffdingTreeClassifier(grace_period=20),
        {},
        list(datasets.ImageSegments().take(N_LEARN + N_ASK)),
    ),
    "multioutput": (
        tree.ISOUPTreeRegressor(grace_period=20, leaf_prediction="mean"),
        {},
        list(datasets.SolarFlare().take(N_LEARN + N_ASK)),  # string features: BYTES inputs
    ),
    "clustering": (
        preprocessing.StandardScaler() | cluster.KMeans(n_clusters=3, seed=1),
        {},
        [(x, None) for x, _ in _phishing()],
    ),
    "anomaly": (
        preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=42),
        {"options": {"threshold": 0.6}},
        [(x, None) for x, _ in _phishing()],
    ),
    "recommendation": (reco.Baseline(), {}, _ratings()),
}
TASK_INPUTS = {"user", "item"}


def _learn(engine: Engine, name: str, samples: list[tuple[dict[str, Any], Any]]) -> None:
    for x, y in samples[:N_LEARN]:
        features = {k: v for k, v in x.items() if k not in TASK_INPUTS}
        inputs = {k: v for k, v in x.items() if k in TASK_INPUTS}
        if y is None:
            engine.learn(name, features, **inputs)
        else:
            engine.learn(name, features, y, **inputs)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A database with one model per task (each has learned), an uploaded scikit-learn
    model, and tokens; then a real server over it with auth on."""
    tmp = tmp_path_factory.mktemp("oip")
    db = str(tmp / "oip.db")
    with Engine(db) as engine:
        for name, (model, options, samples) in CASES.items():
            engine.create_model(name, model, **options)
            _learn(engine, name, samples)
        X = [[x["empty_server_form_handler"], x["popup_window"]] for x, _ in _phishing()]
        y = [bool(label) for _, label in _phishing()]
        engine.upload(
            "sk",
            SkLogistic().fit(X, y),
            feature_names=["empty_server_form_handler", "popup_window"],
        )
        tokens = {
            scope: engine.tokens.create_token([scope])["token"]
            for scope in ("read", "predict", "learn")
        }
    server = Server(db, None, "--auth", "on", log=tmp / "server.log").start()
    try:
        yield {"server": server, "tokens": tokens}
    finally:
        server.stop()


def _headers(world: dict[str, Any], scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world['tokens'][scope]}"}


def _client(world: dict[str, Any]) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(world["server"].url.removeprefix("http://"))


def _native(world: dict[str, Any], name: str, body: dict[str, Any], path: str = "") -> Any:
    answer = httpx.post(
        f"{world['server'].url}/v1/models/{name}{path or '/predict'}",
        json=body,
        headers=_headers(world, "learn" if path == "/learn" else "predict"),
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


_NUMPY = {"FP64": np.float64, "INT64": np.int64, "BOOL": np.bool_, "BYTES": np.object_}


def _tensors(
    metadata: dict[str, Any], rows: list[dict[str, Any]], binary: bool
) -> tuple[list[triton.InferInput], list[dict[str, Any]]]:
    """One tensor per input the metadata lists (a new user's way), and the samples as the
    tensors carry them (for the native route)."""
    inputs, sent = [], [{} for _ in rows]
    for meta in metadata["inputs"]:
        name, datatype = meta["name"], meta["datatype"]
        array = np.array([row[name] for row in rows], dtype=_NUMPY[datatype])
        tensor = triton.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
        for item, value in zip(sent, array.tolist(), strict=True):
            item[name] = value
    return inputs, sent


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _key(label: Any) -> str:
    return label if isinstance(label, str) else json.dumps(label)


def _compare(result: triton.InferResult, native: list[dict[str, Any]]) -> None:
    """Every output equals the native answers' field of the same name."""
    response = result.get_response()
    assert {o["name"] for o in response["outputs"]} == set(native[0]) - {"id", "model"}
    for output in response["outputs"]:
        name = output["name"]
        array = result.as_numpy(name)
        assert array.shape[0] == len(native)
        if array.ndim == 2:
            columns = [_key(c) for c in output["parameters"]["columns"]]
            for row, answer in zip(array, native, strict=True):
                got = {c: _plain(v) for c, v in zip(columns, row, strict=True)}
                want = {_key(k): v for k, v in answer[name].items()}
                assert got == {c: want.get(c, 0.0) for c in columns}
                assert set(want) <= set(columns)
        else:
            assert [_plain(v) for v in array] == [a[name] for a in native], name
    ids = response["parameters"]["prediction_ids"]  # stored under new ids, as natively
    assert len(set(ids)) == len(native) and not set(ids) & {a["id"] for a in native}


_KIND = {str: "BYTES", int: "INT64", float: "FP64", bool: "BOOL"}


def test_health_and_metadata(world: dict[str, Any]) -> None:
    client = _client(world)
    read = _headers(world, "read")
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "riverbed" and "binary_tensor_data" in meta["extensions"]
    assert client.is_model_ready("binary", headers=read)
    assert client.is_model_ready("binary", "1", headers=read)
    assert not client.is_model_ready("binary", "7", headers=read)
    assert not client.is_model_ready("nope", headers=read)
    model = client.get_model_metadata("binary", headers=read)
    x, _ = CASES["binary"][2][N_LEARN - 1]
    assert [i["name"] for i in model["inputs"]] == list(x)  # the features, in order
    assert [i["datatype"] for i in model["inputs"]] == [_KIND[type(v)] for v in x.values()]
    assert [(o["name"], o["datatype"]) for o in model["outputs"]] == [
        ("prediction", "BOOL"),
        ("probabilities", "FP64"),
    ]
    assert model["versions"] == ["1"] and model["platform"] == "riverbed_river"
    assert client.get_model_metadata("binary", "1", headers=read)["versions"] == ["1"]
    flares = client.get_model_metadata("multioutput", headers=read)
    kinds = {i["name"]: i["datatype"] for i in flares["inputs"]}
    x, _ = CASES["multioutput"][2][N_LEARN - 1]
    assert kinds == {k: _KIND[type(v)] for k, v in x.items()}
    assert "BYTES" in kinds.values()
    ratings = client.get_model_metadata("recommendation", headers=read)
    assert {i["name"] for i in ratings["inputs"]} == {"user", "item"}
    sk = client.get_model_metadata("sk", headers=read)
    assert [i["name"] for i in sk["inputs"]] == ["empty_server_form_handler", "popup_window"]
    assert sk["platform"] == "riverbed_sklearn"


@pytest.mark.parametrize("binary", [True, False], ids=["binary-data", "json-data"])
@pytest.mark.parametrize("task", list(CASES))
def test_infer_equals_the_native_route(world: dict[str, Any], task: str, binary: bool) -> None:
    client = _client(world)
    metadata = client.get_model_metadata(task, headers=_headers(world, "read"))
    rows = [x for x, _ in CASES[task][2][N_LEARN:]]
    inputs, sent = _tensors(metadata, rows, binary)
    outputs = [
        triton.InferRequestedOutput(o["name"], binary_data=binary) for o in metadata["outputs"]
    ]
    result = client.infer(task, inputs, outputs=outputs, headers=_headers(world, "predict"))
    native = []
    for item in sent:
        body = {"features": {k: v for k, v in item.items() if k not in TASK_INPUTS}}
        body.update({k: v for k, v in item.items() if k in TASK_INPUTS})
        native.append(_native(world, task, body))
    _compare(result, native)


def test_infer_with_tritonclient_defaults_and_one_2d_tensor(world: dict[str, Any]) -> None:
    """No outputs named (tritonclient asks for every output in binary), and all the features
    in one [batch, width] FP64 tensor whose columns are the metadata's inputs in order."""
    client = _client(world)
    metadata = client.get_model_metadata("binary", headers=_headers(world, "read"))
    names = [i["name"] for i in metadata["inputs"]]
    rows = [x for x, _ in CASES["binary"][2][N_LEARN:]]
    array = np.array([[float(x[n]) for n in names] for x in rows], dtype=np.float64)
    tensor = triton.InferInput("features", list(array.shape), "FP64")
    tensor.set_data_from_numpy(array)
    result = client.infer("binary", [tensor], headers=_headers(world, "predict"))
    native = [
        _native(world, "binary", {"features": dict(zip(names, r, strict=True))})
        for r in array.tolist()
    ]
    _compare(result, native)


def test_a_scikit_learn_version(world: dict[str, Any]) -> None:
    client = _client(world)
    rows = [x for x, _ in CASES["binary"][2][N_LEARN:]]
    names = ["empty_server_form_handler", "popup_window"]
    inputs = []
    for name in names:
        tensor = triton.InferInput(name, [len(rows)], "FP64")
        tensor.set_data_from_numpy(np.array([float(x[name]) for x in rows]))
        inputs.append(tensor)
    result = client.infer("sk", inputs, model_version="1", headers=_headers(world, "predict"))
    native = [
        _native(world, "sk", {"features": {n: float(x[n]) for n in names}, "version": 1})
        for x in rows
    ]
    got = [bool(v) for v in result.as_numpy("prediction")]
    assert got == [a["prediction"] for a in native]
    assert result.get_response()["model_version"] == "1"


def test_a_label_follows_a_prediction_id(world: dict[str, Any]) -> None:
    """Prediction ids given as a parameter name the stored predictions; the native learn
    route labels them, and the model's metrics score what infer answered."""
    client = _client(world)
    url = world["server"].url
    before = httpx.get(f"{url}/v1/models/binary/metrics", headers=_headers(world, "read")).json()
    metadata = client.get_model_metadata("binary", headers=_headers(world, "read"))
    samples = CASES["binary"][2][N_LEARN : N_LEARN + 3]
    inputs, _ = _tensors(metadata, [x for x, _ in samples], True)
    ids = ["oip-a", "oip-b", "oip-c"]
    result = client.infer(
        "binary", inputs, headers=_headers(world, "predict"), parameters={"prediction_ids": ids}
    )
    assert result.get_response()["parameters"]["prediction_ids"] == ids
    for pid, (_, y) in zip(ids, samples, strict=True):
        answer = _native(world, "binary", {"id": pid, "ground_truth": y}, "/learn")
        assert answer["id"] == pid
    after = httpx.get(f"{url}/v1/models/binary/metrics", headers=_headers(world, "read")).json()
    assert after["n"] == before["n"] + 3
    relabel = httpx.post(
        f"{url}/v1/models/binary/learn",
        json={"id": "oip-a", "ground_truth": True},
        headers=_headers(world, "learn"),
    )
    assert relabel.status_code == 409  # labelled once


def test_the_guard_applies(world: dict[str, Any]) -> None:
    """No token: 401; a read token cannot infer: 403; a foreign Host: 400 -- each in the
    protocol's error shape, which tritonclient reads as its message."""
    client = _client(world)
    tensor = triton.InferInput("popup_window", [1], "FP64")
    tensor.set_data_from_numpy(np.array([1.0]))
    for headers, status in ((None, "401"), (_headers(world, "read"), "403")):
        with pytest.raises(InferenceServerException) as caught:
            client.infer("binary", [tensor], headers=headers)
        assert caught.value.status() == status
        assert "token" in caught.value.message()
    answer = httpx.get(f"{world['server'].url}/v2/models/binary", headers={"Host": "evil.example"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "host_not_allowed"
    assert isinstance(answer.json()["error"], str)
    assert httpx.get(f"{world['server'].url}/v2/health/live").status_code == 200  # public


# -- errors through the ASGI app ---------------------------------------------------------------


@pytest.fixture
def app_engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine(str(tmp_path / "e.db"), rate_limit_address="inference=40/m", max_batch_size=4) as e:
        e.create_model("m", preprocessing.StandardScaler() | linear_model.LogisticRegression())
        for x, y in _phishing()[:10]:
            e.learn("m", x, y)
        yield e


def _infer(inputs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"inputs": inputs, **extra}


def _fp(
    name: str, data: list[Any], shape: list[int] | None = None, dt: str = "FP64"
) -> dict[str, Any]:
    return {"name": name, "shape": shape or [len(data)], "datatype": dt, "data": data}


BAD: list[tuple[str, Any, dict[str, str], int, str]] = [
    ("not json", b"{", {}, 400, "malformed_json"),
    ("no inputs", _infer([]), {}, 400, "invalid_input"),
    ("an unknown field", {"inputs": [_fp("a", [1.0])], "nope": 1}, {}, 400, "invalid_input"),
    ("a bad datatype", _infer([_fp("a", [1.0], dt="FP8")]), {}, 400, "invalid_input"),
    ("shape and data disagree", _infer([_fp("a", [1.0, 2.0], [3])]), {}, 400, "invalid_input"),
    ("strings as FP64", _infer([_fp("a", ["x"])]), {}, 400, "invalid_input"),
    ("a bool as INT64", _infer([_fp("a", [True], dt="INT64")]), {}, 400, "invalid_input"),
    ("INT8 out of range", _infer([_fp("a", [300], dt="INT8")]), {}, 400, "invalid_input"),
    ("three dimensions", _infer([_fp("a", [1.0], [1, 1, 1])]), {}, 400, "invalid_input"),
    ("batches differ", _infer([_fp("a", [1.0]), _fp("b", [1.0, 2.0])]), {}, 400, "invalid_input"),
    ("an input twice", _infer([_fp("a", [1.0]), _fp("a", [1.0])]), {}, 400, "invalid_input"),
    ("a batch over the limit", _infer([_fp("a", [1.0] * 5)]), {}, 413, "payload_too_large"),
    ("unnamed columns", _infer([_fp("z", [1.0] * 4, [2, 2])]), {}, 400, "invalid_input"),
    (
        "a feature twice",
        _infer([_fp("a", [1.0]), {**_fp("b", [1.0]), "parameters": {"columns": ["a"]}}]),
        {},
        400,
        "invalid_input",
    ),
    (
        "an unknown output",
        _infer([_fp("a", [1.0])], outputs=[{"name": "x"}]),
        {},
        400,
        "invalid_input",
    ),
    (
        "class_count",
        _infer(
            [_fp("a", [1.0])], outputs=[{"name": "prediction", "parameters": {"class_count": 2}}]
        ),
        {},
        400,
        "invalid_input",
    ),
    (
        "ids of the wrong count",
        _infer([_fp("a", [1.0])], parameters={"prediction_ids": ["a", "b"]}),
        {},
        400,
        "invalid_input",
    ),
    ("a NaN feature (binary)", None, {}, 400, "invalid_batch"),
    ("binary data nobody claims", None, {}, 400, "invalid_input"),
    (
        "a header length past the body",
        _infer([_fp("a", [1.0])]),
        {"Inference-Header-Content-Length": "99999"},
        400,
        "invalid_input",
    ),
    (
        "a taken prediction id",
        _infer([_fp("a", [1.0])], parameters={"prediction_id": "taken"}),
        {},
        400,
        "invalid_batch",
    ),
]


def _binary_body(name: str, blob: bytes, size: int) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": [1],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


async def test_bad_requests_are_4xx_in_the_protocol_shape(app_engine: Engine) -> None:
    app = create_app(app_engine)
    app_engine.predict("m", {"a": 1.0}, id="taken")
    before = app_engine.stats("m")["n_predictions"]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        for label, body, headers, status, code in BAD:
            if label.startswith("a NaN"):
                body, headers = _binary_body("a", np.array([np.nan]).tobytes(), 8)
            elif label.startswith("binary data nobody"):
                body, headers = _binary_body("a", np.array([1.0, 2.0]).tobytes(), 8)
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            answer = await client.post("/v2/models/m/infer", content=content, headers=headers)
            assert answer.status_code == status, (label, answer.text)
            error = answer.json()
            assert isinstance(error["error"], str) and error["error"], label
            assert error["code"] == code, (label, error)
        for path, status in (
            ("/v2/models/nope", 404),
            ("/v2/models/m/versions/x", 400),
            ("/v2/models/m/versions/0/ready", 400),
            ("/v2/models/m/versions/5", 404),
            ("/v2/models/m/config", 404),
        ):
            answer = await client.get(path)
            assert answer.status_code == status, path
            assert isinstance(answer.json()["error"], str)
        answer = await client.post("/v2/models/nope/infer", json=_infer([_fp("a", [1.0])]))
        assert answer.status_code == 404 and answer.json()["code"] == "model_not_found"
        assert app_engine.stats("m")["n_predictions"] == before  # nothing was predicted
        statuses = []
        for _ in itertools.repeat(None, 45):
            statuses.append((await client.get("/v2/models/m/ready")).status_code)
        assert statuses.count(429) >= 1
        limited = await client.get("/v2/health/live")
        assert limited.status_code == 429 and isinstance(limited.json()["error"], str)
        assert limited.headers["retry-after"]
