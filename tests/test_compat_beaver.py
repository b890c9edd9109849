"""Beaver, both ways: its own ``HTTPClient``'s calls against riverbed's Beaver routes
(``riverbed/server/compat/beaver.py``), and riverbed's look-alike client
(``riverbed.beaver.HTTPClient``) over the native routes.

Beaver's client is not on PyPI (the ``beaver`` there is an unrelated log shipper; Beaver was
installed from its git repository), so :class:`BeaverClient` below makes exactly the HTTP
calls of the ``Dam`` generation's ``beaver.HTTPClient``: ``requests`` to
``urllib.parse.urljoin(host, "models")`` and so on, the model as base64 of its dill bytes in
a url-encoded form, ``raise_for_status`` turned into ``ValueError(response.json())``.
"""

from __future__ import annotations

import base64
import shlex
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dill
import httpx
import pytest
import requests
from river import datasets, evaluate, linear_model, metrics, preprocessing

from riverbed import Engine
from riverbed.beaver import MANUAL, HTTPClient
from riverbed.config import Settings
from riverbed.exceptions import InvalidInput, ModelNotFound
from riverbed.server import create_app
from tests.helpers import Server, phishing_model

# -- Beaver's own client ---------------------------------------------------------------------


class BeaverClient:
    """The HTTP calls of Beaver's ``HTTPClient`` (``client.models.upload/delete/list_names``,
    ``predict``, ``label``, ``train``), made the way it makes them."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.models = self  # Beaver's client.models.upload(...) etc.

    def _request(self, method: str, endpoint: str, **kwargs: Any) -> requests.Response:
        r = requests.request(method, urllib.parse.urljoin(self.host, endpoint), **kwargs)
        try:
            r.raise_for_status()
        except requests.exceptions.HTTPError as e:
            raise ValueError(r.json()) from e
        return r

    def upload(self, name: str, model: Any) -> requests.Response:
        model_bytes = base64.b64encode(dill.dumps(model)).decode("ascii")
        return self._request("POST", "models", data={"name": name, "model_bytes": model_bytes})

    def delete(self, name: str) -> requests.Response:
        return self._request("DELETE", f"models/{name}")

    def list_names(self) -> Any:
        return self._request("GET", "models").json()

    def predict(self, event: dict[str, Any], model_name: str, loop_id: str | None = None) -> Any:
        payload: dict[str, Any] = {"event": event}
        if loop_id is not None:
            payload["loop_id"] = loop_id
        return self._request("POST", f"predict/{model_name}", json=payload).json()

    def label(self, loop_id: str, label: Any) -> None:
        self._request("POST", f"label/{loop_id}", json={"label": label})

    def train(self, model_name: str) -> None:
        self._request("POST", f"train/{model_name}")


@pytest.fixture(scope="module")
def beaver_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``riverbed serve`` where Beaver owns the routes it shares with lrnstak."""
    db = str(tmp_path_factory.mktemp("beaver-real") / "server.db")
    srv = Server(db, None, "--compat-shared", "beaver").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
@pytest.mark.parametrize("slash", ["", "/"])
def test_beavers_client_upload_predict_label_matches_rivers_progressive_validation(
    beaver_server: Server, slash: str
) -> None:
    """Beaver's README upload, then a predict + label loop over Phishing by loop ids: the
    model's Accuracy (and every other metric) equals river's progressive validation, and a
    host with or without a trailing slash makes no difference."""
    client = BeaverClient(beaver_server.url + slash)
    name = f"phishing{len(slash)}"
    client.models.upload(name, phishing_model())
    assert name in client.models.list_names()
    stream = list(datasets.Phishing().take(200))
    for i, (x, y) in enumerate(stream):
        answer = client.predict(x, model_name=name, loop_id=f"{name}-{i}")
        assert answer["loop_id"] == f"{name}-{i}"
        assert answer["model_name"] == name
        assert isinstance(answer["content"], bool)  # the predicted label
        client.label(loop_id=f"{name}-{i}", label=y)
    assert client.predict(stream[0][0], model_name=name)["loop_id"]  # one is made up

    accuracy = metrics.Accuracy()
    evaluate.progressive_val_score(stream, phishing_model(), accuracy)
    served = httpx.get(f"{beaver_server.url}/v1/models/{name}/metrics").json()
    assert served["n"] == len(stream)
    assert served["metrics"]["Accuracy"] == accuracy.get()
    expected = metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
    evaluate.progressive_val_score(stream, phishing_model(), expected)
    for metric in expected:
        assert served["metrics"][type(metric).__name__] == metric.get()

    client.train(name)  # every label was learned on arrival: nothing waits
    trained = requests.post(urllib.parse.urljoin(client.host, f"train/{name}"))
    assert trained.json() == {"n_rows": 0}
    client.models.delete(name)
    assert name not in client.models.list_names()
    with pytest.raises(ValueError, match="model_not_found"):
        client.predict(stream[0][0], model_name=name)


@pytest.mark.slow
def test_beavers_taxis_example_names_and_model_protocol(beaver_server: Server) -> None:
    """Beaver's taxis example: a name with a space, a river pipeline whose ``predict`` and
    ``learn`` were pointed at ``predict_one``/``learn_one``; and an object of Beaver's own
    protocol (``predict``, ``learn``), served through those methods."""
    client = BeaverClient(beaver_server.url)
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    model.predict = model.predict_one  # type: ignore[attr-defined]
    model.learn = model.learn_one  # type: ignore[attr-defined]
    client.models.upload("Linear regression", model)
    assert "Linear regression" in client.models.list_names()
    prediction = client.predict({"x": 1.0}, model_name="Linear regression", loop_id="0001")
    assert prediction["content"] == 0.0
    client.label(loop_id="0001", label=10.0)
    assert client.predict({"x": 1.0}, model_name="Linear regression")["content"] > 0.0
    with pytest.raises(ValueError, match="already exists"):
        client.models.upload("Linear regression", model)
    client.models.delete("Linear regression")

    client.models.upload("mean", RunningMean())
    assert client.predict({"x": 1.0}, model_name="mean", loop_id="m1")["content"] == 0.0
    client.label("m1", 4.0)
    assert client.predict({"x": 1.0}, model_name="mean")["content"] == 4.0
    client.models.delete("mean")


TAXIS_SCRIPT = """
import sys
from river import compose, linear_model, preprocessing
from tests.test_compat_beaver import BeaverClient

def distances(trip):
    import math
    return {"distance": math.sqrt(trip["a"] ** 2 + trip["b"] ** 2)}

model = (
    compose.FuncTransformer(distances)
    | preprocessing.StandardScaler()
    | linear_model.LinearRegression()
)
model.predict = model.predict_one
model.learn = model.learn_one
client = BeaverClient(host=sys.argv[1])
client.models.upload("Linear regression", model)
for i in range(20):
    trip = {"a": float(i), "b": float(i % 3)}
    client.predict(trip, model_name="Linear regression", loop_id=str(i).zfill(4))
    client.label(loop_id=str(i).zfill(4), label=60.0 + 10 * i)
"""


@pytest.mark.slow
def test_a_model_with_functions_of_the_uploaders_script_is_served_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    """Beaver's taxis example uploads a pipeline whose FuncTransformers call functions of
    the uploading script: dill carries them by value, pickle cannot write them back. The
    server serves, checkpoints and reloads that model."""
    import os
    import subprocess
    import sys

    script = tmp_path / "upload_model.py"
    script.write_text(TAXIS_SCRIPT)
    db = str(tmp_path / "taxis.db")
    server = Server(db).start()
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
        subprocess.run([sys.executable, str(script), server.url], check=True, env=env)
        client = BeaverClient(server.url)
        before = client.predict({"a": 3.0, "b": 4.0}, model_name="Linear regression")
        assert before["content"] != 0.0
    finally:
        server.stop()
    server = Server(db).start()  # the model comes back from its checkpoint
    try:
        after = BeaverClient(server.url).predict({"a": 3.0, "b": 4.0}, "Linear regression")
        assert after["content"] == before["content"]
    finally:
        server.stop()


class RunningMean:
    """A model of Beaver's own protocol: ``predict(x)`` and ``learn(x, y)``."""

    def __init__(self) -> None:
        self.n, self.mean = 0, 0.0

    def predict(self, x: dict[str, Any]) -> float:
        return self.mean

    def learn(self, x: dict[str, Any], y: float) -> None:
        self.n += 1
        self.mean += (y - self.mean) / self.n


# -- the routes through the ASGI app ---------------------------------------------------------


def _form(name: str, model: Any) -> dict[str, str]:
    return {"name": name, "model_bytes": base64.b64encode(dill.dumps(model)).decode()}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    with Engine(str(tmp_path / "beaver.db"), compat_shared="beaver") as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            c.engine = engine  # type: ignore[attr-defined]
            yield c


async def test_labels_by_loop_id_score_as_the_native_learn_by_id(api: httpx.AsyncClient) -> None:
    """The same stream through Beaver's predict + label and through riverbed's own predict
    + learn by id: the same metrics, the same counts."""
    engine: Engine = api.engine  # type: ignore[attr-defined]
    assert (await api.post("/models", data=_form("beaver", phishing_model()))).status_code == 201
    engine.create_model("native", phishing_model())
    for i, (x, y) in enumerate(datasets.Phishing().take(60)):
        r = await api.post("/predict/beaver", json={"event": x, "loop_id": f"b{i}"})
        assert r.status_code == 200, r.text
        r = await api.post(f"/label/b{i}", json={"label": y})
        assert r.json() == {"loop_id": f"b{i}", "model": "beaver", "n_learns": i + 1}
        await api.post("/v1/models/native/predict", json={"features": x, "id": f"n{i}"})
        await api.post("/v1/models/native/learn", json={"ground_truth": y, "id": f"n{i}"})
    beaver, native = engine.metrics("beaver"), engine.metrics("native")
    assert beaver["metrics"] == native["metrics"]
    assert beaver["n"] == native["n"] == 60


async def test_every_route_answers_with_and_without_a_trailing_slash(
    api: httpx.AsyncClient,
) -> None:
    assert (await api.post("/models/", data=_form("m", phishing_model()))).status_code == 201
    assert (await api.get("/models/")).json() == (await api.get("/models")).json() == ["m"]
    one = await api.post("/predict/m/", json={"event": {"a": 1.0}, "loop_id": 7})
    assert one.json()["loop_id"] == "7"  # Beaver took numbers as strings
    assert set(one.json()["probabilities"]) == {"false", "true"}
    assert (await api.post("/label/7/", json={"label": True})).status_code == 200
    assert (await api.post("/train/m/")).json() == {"n_rows": 0}
    assert (await api.delete("/models/m/")).json() == {"name": "m", "deleted": True}
    assert (await api.get("/models")).json() == []


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (("POST", "/models", {"json": {"name": "x"}}), 400, "invalid_input"),
        (("POST", "/models", {"data": {"name": "x"}}), 400, "invalid_input"),
        (("POST", "/models", {"data": {"model_bytes": "eA=="}}), 400, "invalid_input"),
        (
            ("POST", "/models", {"data": {"name": "x", "model_bytes": "!!"}}),
            400,
            "invalid_artifact",
        ),
        (
            ("POST", "/models", {"data": {"name": "x", "model_bytes": "eA=="}}),
            400,
            "invalid_artifact",
        ),
        (("POST", "/models", {"data": _form("x", object())}), 400, "invalid_spec"),
        (("POST", "/models", {"data": _form("m", phishing_model())}), 409, "model_exists"),
        (("POST", "/predict/m", {"json": {"loop_id": "a"}}), 400, "invalid_input"),
        (("POST", "/predict/m", {"json": {"event": [1]}}), 400, "invalid_input"),
        (("POST", "/predict/m", {"json": {"event": {}, "loop_id": 1.5}}), 400, "invalid_input"),
        (("POST", "/predict/m", {"json": {"event": {}, "extra": 1}}), 400, "invalid_input"),
        (("POST", "/predict/m", {"json": {"event": {}, "loop_id": "taken"}}), 409, None),
        (("POST", "/predict/nope", {"json": {"event": {}}}), 404, "model_not_found"),
        (("POST", "/label/taken", {"json": {}}), 400, "invalid_input"),
        (("POST", "/label/taken", {"json": {"label": "maybe"}}), 400, None),
        (("POST", "/label/nope", {"json": {"label": True}}), 404, "prediction_not_found"),
        (("POST", "/train/nope", {}), 404, "not_found"),
        (("DELETE", "/models/nope", {}), 404, "model_not_found"),
    ],
)
async def test_bad_requests_are_clear_4xx_and_change_nothing(
    api: httpx.AsyncClient, request_: tuple[str, str, dict[str, Any]], status: int, code: str
) -> None:
    engine: Engine = api.engine  # type: ignore[attr-defined]
    assert (await api.post("/models", data=_form("m", phishing_model()))).status_code == 201
    await api.post("/predict/m", json={"event": {"a": 1.0}, "loop_id": "taken"})
    before = (engine.list_models(), engine.metrics("m"), engine.get_model("m"), engine.stats("m"))
    method, path, kwargs = request_
    r = await api.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    if code is not None:
        assert r.json()["error"]["code"] == code
    after = (engine.list_models(), engine.metrics("m"), engine.get_model("m"), engine.stats("m"))
    assert after == before


async def test_a_pickle_upload_needs_admin_and_the_pickle_setting(tmp_path: Path) -> None:
    """Auth on: a learn token may label but not upload (403); an admin may upload only
    where pickles are allowed."""
    for allowed in ("false", "true"):
        db = str(tmp_path / f"auth-{allowed}.db")
        with Engine(db, auth="on", allow_pickle_uploads=allowed) as engine:
            learn = engine.tokens.create_token(["predict", "learn"])["token"]
            admin = engine.tokens.create_token(["admin"])["token"]
            transport = httpx.ASGITransport(app=create_app(engine))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                form = _form("m", phishing_model())
                r = await c.post("/models", data=form)
                assert r.status_code == 401
                r = await c.post("/models", data=form, headers={"Authorization": f"Bearer {learn}"})
                assert r.status_code == 403
                r = await c.post("/models", data=form, headers={"Authorization": f"Bearer {admin}"})
                assert r.status_code == (201 if allowed == "true" else 403), r.text
                assert [m["name"] for m in engine.list_models()] == (
                    ["m"] if allowed == "true" else []
                )


async def test_a_multipart_upload_is_taken_too(api: httpx.AsyncClient) -> None:
    form = _form("multi", phishing_model())
    files = {"model_bytes": ("model", form["model_bytes"].encode())}
    r = await api.post("/models", data={"name": "multi"}, files=files)
    assert r.status_code == 201, r.text
    assert (await api.get("/models")).json() == ["multi"]


# -- which layer answers the routes lrnstak and Beaver share ---------------------------------


async def _shared_answers(**settings: Any) -> tuple[Any, Any, Any]:
    with Engine(":memory:", **settings) as engine:
        engine.create_model("m", phishing_model())
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            models = (await c.get("/models")).json()
            beavers = await c.get("/models/")
            train = (await c.post("/train/m")).json()
    return models, beavers.json() if beavers.status_code == 200 else beavers.status_code, train


async def test_lrnstak_answers_the_shared_routes_by_default() -> None:
    models, beavers, train = await _shared_answers()
    assert models == [{"model": "m", "versions": ["v1"]}]  # lrnstak's listing
    assert beavers == ["m"]  # Beaver's own path, with its slash, stays Beaver's
    assert "JSON body" in train["error"]["message"]  # lrnstak's trainer wants its body


async def test_compat_shared_beaver_gives_beaver_the_shared_routes() -> None:
    models, beavers, train = await _shared_answers(compat_shared="beaver")
    assert models == beavers == ["m"]
    assert train == {"n_rows": 0}


async def test_a_layer_left_out_leaves_the_shared_routes_to_the_other() -> None:
    models, _, train = await _shared_answers(compat="beaver")
    assert models == ["m"] and train == {"n_rows": 0}
    models, beavers, _ = await _shared_answers(compat="lrnstak")
    assert models == [{"model": "m", "versions": ["v1"]}]
    assert beavers == 307  # no Beaver: Starlette sends /models/ to /models


def test_compat_shared_names_lrnstak_or_beaver() -> None:
    with pytest.raises(ValueError, match="compat_shared"):
        create_app(settings=Settings.load({"database": ":memory:", "compat_shared": "maisie"}))


# -- riverbed's look-alike client over the native routes ---------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(str(tmp_path_factory.mktemp("beaver") / "server.db")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_the_look_alike_client_loop_matches_progressive_validation(server: Server) -> None:
    """riverbed.beaver.HTTPClient: upload as a spec, predict with a loop id and label it:
    the served metrics equal river's progressive validation of the same stream."""
    client = HTTPClient(host=server.url)
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    client.models.upload("my_model", model)
    assert "my_model" in client.models.list_names()
    assert client.models.list() == client.models.list_names()
    stream = list(datasets.Phishing().take(100))
    for i, (x, y) in enumerate(stream):
        answer = client.predict(x, model_name="my_model", loop_id=f"loop-{i}")
        assert answer["loop_id"] == f"loop-{i}"
        client.label(f"loop-{i}", y)
    generated = client.predict(stream[0][0], model_name="my_model")["loop_id"]
    assert generated  # a loop id is made up when none is given
    expected = metrics.Accuracy() + metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
    evaluate.progressive_val_score(
        stream, preprocessing.StandardScaler() | linear_model.LogisticRegression(), expected
    )
    served = client.metrics("my_model")
    assert served["n"] == 100
    assert served["metrics"] == {type(m).__name__: m.get() for m in expected}
    client.models.delete("my_model")
    with pytest.raises(ModelNotFound):
        client.predict(stream[0][0], model_name="my_model")
    client.close()


@pytest.mark.slow
def test_manual_training_waits_for_train(server: Server) -> None:
    with HTTPClient(host=server.url, training=MANUAL) as client:
        client.models.upload(
            "manual", preprocessing.StandardScaler() | linear_model.LinearRegression()
        )
        for i, (x, y) in enumerate(datasets.TrumpApproval().take(10)):
            client.predict(x, model_name="manual", loop_id=f"m-{i}")
            assert client.label(f"m-{i}", y)["queued"] is True
        assert client.metrics("manual")["n"] == 0
        assert client.train("manual") == {"model": "manual", "n_learned": 10}
        assert client.metrics("manual")["n"] == 10
        assert client.train("manual")["n_learned"] == 0


@pytest.mark.slow
def test_labelling_a_loop_of_another_client_needs_the_model(server: Server) -> None:
    with HTTPClient(host=server.url) as first, HTTPClient(host=server.url) as second:
        first.models.upload(
            "shared", preprocessing.StandardScaler() | linear_model.LinearRegression()
        )
        first.predict({"x": 1.0}, model_name="shared", loop_id="elsewhere")
        with pytest.raises(InvalidInput, match="model_name"):
            second.label("elsewhere", 2.0)
        assert second.label("elsewhere", 2.0, model_name="shared")["n_learns"] == 1
        assert second.learn({"x": 2.0}, 3.0, model_name="shared")["n_learns"] == 2
    with pytest.raises(InvalidInput):
        HTTPClient(host=server.url, training="SOMETIMES")


# -- docs/migration/beaver.md's experiments section ------------------------------------------


def test_the_experiments_sections_commands_make_the_project_it_describes(tmp_path: Path) -> None:
    """The page's shell block, run command by command through the CLI on a database: a
    project (a model tagged project=taxis) with two experiments (challengers) and a rule;
    every experiment then learns every label the champion does."""
    from click.testing import CliRunner

    from riverbed.cli import cli

    text = (Path(__file__).parents[1] / "docs" / "migration" / "beaver.md").read_text()
    block = text.split("## Experiments: Beaver's platform in riverbed")[1]
    shell = block.split("```sh\n")[1].split("```")[0].replace("\\\n", " ")
    lines: list[list[str]] = []
    for word in shlex.split(shell):  # a quoted JSON spec may span lines
        if word == "riverbed":
            lines.append([])
        lines[-1].append(word)
    assert [line[:3] for line in lines] == [
        ["riverbed", "models", "create"],
        ["riverbed", "challengers", "add"],
        ["riverbed", "challengers", "add"],
        ["riverbed", "challengers", "rule"],
    ]
    db = str(tmp_path / "taxis.db")
    Engine(db).close()  # the CLI works on a database that exists (as a server's)
    for line in lines:
        result = CliRunner().invoke(cli, [*line[1:], "--database", db], catch_exceptions=False)
        assert result.exit_code == 0, (line, result.output)
    samples = [({"a": x[0], "b": x[1]}, y) for x, y in datasets.synth.Friedman(seed=1).take(300)]
    with Engine(db) as engine:
        found = engine.search_versions("tags.project = 'taxis'")["versions"]
        assert [v["model"] for v in found] == ["taxis"]
        engine.learn_many("taxis", [{"features": x, "ground_truth": y} for x, y in samples])
        view = engine.challengers("taxis")
    assert [c["name"] for c in view["challengers"]] == ["tree", "knn"]
    assert view["rule"] == {"metric": "MAE", "margin": 0.05, "min_samples": 2000, "window": 2000}
    assert [c["n_learns"] for c in view["challengers"]] == [300, 300]
    assert view["champion"]["n_learns"] == 300
