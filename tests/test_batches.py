"""Batches, the WebSocket and the NDJSON upload: the same model state as one operation at a
time, in order, and the all-or-nothing rule for a bad item."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from river import datasets, evaluate, linear_model, metrics

from riverbed import Engine
from riverbed.exceptions import InvalidBatch
from riverbed.server import create_app
from tests.helpers import phishing_model
from tests.wsclient import connect

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}
ROWS = list(datasets.Phishing().take(400))
PROBES = [x for x, _ in list(datasets.Phishing())[1200:1220]]


class Http:
    """Awaitable HTTP calls and WebSocket sessions over one in-process app."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app, self.client = app, client

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.post(path, **kwargs)

    def websocket_connect(self, path: str) -> Any:
        return connect(self.app, path)


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[Http]:
    with Engine(str(tmp_path / "batch.db")) as engine:
        app = create_app(engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield Http(app, c)


def ok(response: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return response.json()


async def state(http: Http, name: str) -> tuple[Any, Any, list[Any]]:
    served = ok(await http.get(f"/v1/models/{name}/metrics"))
    probes = [
        ok(await http.post(f"/v1/models/{name}/predict", json={"features": x}))["probabilities"]
        for x in PROBES
    ]
    return served["n_learns"], served["metrics"], probes


async def test_batches_and_the_websocket_equal_one_at_a_time(http: Http) -> None:
    """The same operations in the same order -- for each block of 50 rows, predict each with
    an id, then label each by id; then learn 100 rows with their features -- sent one request
    each, as batches, and as messages on one WebSocket, leave the same model state."""
    for name in ("single", "batch", "socket"):
        ok(await http.post("/v1/models", json={"name": name, "spec": SPEC}))
    blocks = [list(enumerate(ROWS[:300]))[start : start + 50] for start in range(0, 300, 50)]
    learned = ROWS[300:]
    for block in blocks:
        for i, (x, _) in block:
            body = {"features": x, "id": f"s{i}"}
            ok(await http.post("/v1/models/single/predict", json=body))
        for i, (_, y) in block:
            body = {"id": f"s{i}", "ground_truth": y}
            ok(await http.post("/v1/models/single/learn", json=body))
    for x, y in learned:
        body = {"features": x, "ground_truth": y}
        ok(await http.post("/v1/models/single/learn", json=body))

    for block in blocks:
        items = [{"features": x, "id": f"b{i}"} for i, (x, _) in block]
        answer = ok(await http.post("/v1/models/batch/predict/many", json={"items": items}))
        assert [a["id"] for a in answer["items"]] == [f"b{i}" for i, _ in block]  # in order
        labels = [{"id": f"b{i}", "ground_truth": y} for i, (_, y) in block]
        done = ok(await http.post("/v1/models/batch/learn/many", json={"items": labels}))
        assert [item["id"] for item in done["items"]] == [f"b{i}" for i, _ in block]
    items = [{"features": x, "ground_truth": y} for x, y in learned]
    ok(await http.post("/v1/models/batch/learn/many", json={"items": items}))

    async with http.websocket_connect("/v1/ws") as ws:
        n = 0
        for block in blocks:
            for i, (x, _) in block:
                message = {"features": x, "prediction_id": f"w{i}"}
                await ws.send({"id": n, "op": "predict", "model": "socket", **message})
                n += 1
            for i, (_, y) in block:
                message = {"prediction_id": f"w{i}", "ground_truth": y}
                await ws.send({"id": n, "op": "label", "model": "socket", **message})
                n += 1
        for x, y in learned:
            message = {"features": x, "ground_truth": y}
            await ws.send({"id": n, "op": "learn", "model": "socket", **message})
            n += 1
        answers = {}
        while len(answers) < n:
            answer = await ws.receive()
            assert answer["ok"], answer
            answers[answer["id"]] = answer["result"]
        assert answers[0]["id"] == "w0" and answers[50]["n_learns"] == 1
        assert answers[n - 1]["n_learns"] == 400

    single = await state(http, "single")
    assert single[0] == 400
    assert await state(http, "batch") == single
    assert await state(http, "socket") == single


async def test_a_bad_item_refuses_the_whole_batch(http: Http) -> None:
    ok(await http.post("/v1/models", json={"name": "p", "spec": SPEC}))
    (x0, y0), (x1, y1) = ROWS[0], ROWS[1]
    ok(await http.post("/v1/models/p/predict/many", json={"items": [{"features": x0, "id": "a"}]}))
    before = ok(await http.get("/v1/models/p"))
    items = [
        {"id": "a", "ground_truth": y0},
        {"features": x1, "ground_truth": y1},
        {"features": x1, "ground_truth": 7},  # not a binary label
        {"id": "nope", "ground_truth": True},  # no such prediction
        {"id": "a", "ground_truth": y0},  # the same id twice
        {"features": x1, "ground_truth": True, "colour": "red"},
        "not an object",
    ]
    response = await http.post("/v1/models/p/learn/many", json={"items": items})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [(e["index"], e["code"]) for e in error["detail"]["errors"]] == [
        (2, "invalid_target"),
        (3, "prediction_not_found"),
        (4, "already_labelled"),
        (5, "invalid_input"),
        (6, "invalid_input"),
    ]
    assert ok(await http.get("/v1/models/p")) == before
    # nothing was applied: the id can still be labelled
    assert (
        ok(await http.post("/v1/models/p/learn", json={"id": "a", "ground_truth": y0}))["n_learns"]
        == 1
    )
    taken = await http.post(
        "/v1/models/p/predict/many",
        json={"items": [{"features": x0, "id": "new"}, {"features": x0, "id": "a"}]},
    )
    assert taken.status_code == 400
    assert taken.json()["error"]["detail"]["errors"][0]["code"] == "prediction_exists"
    assert (
        await http.post("/v1/models/p/learn", json={"id": "new", "ground_truth": True})
    ).status_code == 404
    too_many = await http.post(
        "/v1/models/p/predict/many", json={"items": [{"features": x0}] * 10_001}
    )
    assert too_many.status_code == 413


@pytest.mark.parametrize("metrics_", [None, []])
def test_a_model_failure_mid_batch_undoes_the_batch(tmp_path: Path, metrics_: Any) -> None:
    """The third item makes the model fail (while predicting it for the metrics, or while
    learning it when metrics are off): the model is as it was before the batch."""
    with Engine(str(tmp_path / "fail.db")) as engine:
        engine.create_model("r", linear_model.LinearRegression(), metrics=metrics_)
        engine.learn("r", {"a": 1.0}, 2.0)
        before = (engine.predict("r", {"a": 1.0})["prediction"], engine.metrics("r"))
        items = [
            {"features": {"a": 2.0}, "ground_truth": 4.0},
            {"features": {"a": 3.0}, "ground_truth": 6.0},
            {"features": {"a": "three"}, "ground_truth": 6.0},
        ]
        with pytest.raises(InvalidBatch) as caught:
            engine.learn_many("r", items)
        assert caught.value.detail["errors"][0]["index"] == 2
        assert (engine.predict("r", {"a": 1.0})["prediction"], engine.metrics("r")) == before


async def test_the_websocket_answers_bad_messages_and_stays_open(http: Http) -> None:
    ok(await http.post("/v1/models", json={"name": "p", "spec": SPEC}))
    async with http.websocket_connect("/v1/ws") as ws:
        await ws.send("{")
        assert (await ws.receive())["error"]["code"] == "malformed_json"
        await ws.send('{"id": "x", "op": "fly", "model": "p"}')
        answer = await ws.receive()
        assert (
            answer["id"] == "x" and not answer["ok"] and "unknown op" in answer["error"]["message"]
        )
        await ws.send('{"id": 2, "op": "predict", "model": "zz", "features": {}}')
        assert (await ws.receive())["error"]["code"] == "model_not_found"
        await ws.send('{"id": 3, "op": "metrics", "model": "p"}')
        assert (await ws.receive())["result"]["n_learns"] == 0


async def test_the_ndjson_upload_learns_in_chunks_and_reports_progress(http: Http) -> None:
    ok(await http.post("/v1/models", json={"name": "p", "spec": SPEC}))
    lines = b"".join(orjson.dumps({"features": x, "ground_truth": y}) + b"\n" for x, y in ROWS)
    response = await http.post("/v1/models/p/learn/stream?chunk_size=150", content=lines)
    reports = [orjson.loads(line) for line in response.text.splitlines()]
    assert [r["n_learned"] for r in reports] == [150, 300, 400]
    assert reports[-1] == {"done": True, "n_learned": 400, "n_lines": 400, "n_learns": 400}
    expected = metrics.Accuracy() + metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
    evaluate.progressive_val_score(ROWS, phishing_model(), expected)
    assert ok(await http.get("/v1/models/p/metrics"))["metrics"] == {
        type(m).__name__: m.get() for m in expected
    }
    # a bad line stops the upload: the chunks before it are learned, its chunk is not
    bad = lines + b'{"features": {"a": 1}}\n' + lines
    response = await http.post("/v1/models/p/learn/stream?chunk_size=100", content=bad)
    final = orjson.loads(response.text.splitlines()[-1])
    assert final["done"] and final["n_learned"] == 400
    assert final["error"]["code"] == "invalid_input" and final["error"]["line"] == 401
    assert ok(await http.get("/v1/models/p/metrics"))["n_learns"] == 800
    broken = await http.post("/v1/models/p/learn/stream", content=b'{"features": {}}\n{oops\n')
    error = orjson.loads(broken.text.splitlines()[-1])["error"]
    assert error["code"] == "malformed_json" and error["line"] == 2
    assert (await http.post("/v1/models/zz/learn/stream", content=lines)).status_code == 404
    assert (
        await http.post("/v1/models/p/learn/stream?chunk_size=0", content=lines)
    ).status_code == 400


def test_a_model_reloaded_from_its_log_replays_its_batches(tmp_path: Path) -> None:
    """Batches are one row each of the SQLite log: a model rebuilt from its checkpoint and
    log (as after a crash) equals the model that learned them."""
    data = list(datasets.Phishing().take(300))
    with Engine(str(tmp_path / "replay.db"), checkpoint_every=10_000) as engine:
        engine.create_model("p", phishing_model())
        engine.learn_many("p", [{"features": x, "ground_truth": y} for x, y in data[:200]])
        for x, y in data[200:205]:
            engine.learn("p", x, y)
        engine.learn_many("p", [{"features": x, "ground_truth": y} for x, y in data[205:]])
        probe = data[0][0]
        before = engine.metrics("p"), engine.predict("p", probe)["probabilities"]
        live = engine._get_live("p")
        with live.lock:
            engine._reload(live)
        assert live.n_learns == 300
        assert (engine.metrics("p"), engine.predict("p", probe)["probabilities"]) == before
