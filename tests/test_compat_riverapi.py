"""django-river-ml's PyPI client ``riverapi``, unchanged, against a real ``riverbed serve``.

riverapi ends the program (``sys.exit``) on any status other than 200 or 201, so each
workflow running to its end is itself the check that every answer was a success; the
assertions then check what came back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import dill
import httpx
import pytest
from river import (
    datasets,
    evaluate,
    linear_model,
    metrics,
    multiclass,
    naive_bayes,
    preprocessing,
    stream,
)
from riverapi.main import Client

from tests.helpers import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(str(tmp_path_factory.mktemp("riverapi") / "server.db")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def cli(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.chdir(tmp_path)  # download_model writes <name>.pkl in the working directory
    monkeypatch.delenv("RIVER_ML_TOKEN", raising=False)
    monkeypatch.delenv("RIVER_ML_USER", raising=False)
    return Client(server.url, quiet=True)


def test_service_info(cli: Client) -> None:
    info = cli.info()
    assert info["id"] == "django_river_ml" and info["status"] == "running"


def test_regression_example(cli: Client) -> None:
    """django-river-ml's examples/regression/run.py, plus metrics: the served metrics equal
    river's progressive validation of the same stream."""
    model = preprocessing.StandardScaler() | linear_model.LinearRegression()
    model_name = cli.upload_model(model, "regression")
    for x, y in datasets.TrumpApproval().take(100):
        assert cli.learn(model_name, x=x, y=y) == "Successful learn."
    model_json = cli.get_model_json(model_name)
    assert model_json["StandardScaler"] == {"with_std": True, "window_size": None}
    assert model_json["LinearRegression"]["optimizer"][0] == "river.optim.sgd.SGD"
    predictions = [cli.predict(model_name, x=x) for x, _ in datasets.TrumpApproval().take(10)]
    assert all(set(p) == {"model", "prediction", "identifier"} for p in predictions)
    assert model_name in cli.models()["models"]

    expected = metrics.MAE() + metrics.RMSE() + metrics.SMAPE()
    evaluate.progressive_val_score(
        datasets.TrumpApproval().take(100),
        preprocessing.StandardScaler() | linear_model.LinearRegression(),
        expected,
    )
    assert cli.metrics(model_name) == {type(m).__name__: m.get() for m in expected}
    stats = cli.stats(model_name)
    assert stats["learn"]["n_calls"] == 100 and stats["predict"]["n_calls"] == 10


def test_binary_example_with_labels_one_and_two(cli: Client, tmp_path: Path) -> None:
    """examples/binary/run.py labels its two classes 1 and 2, and downloads the model."""
    model = preprocessing.StandardScaler() | naive_bayes.GaussianNB()
    model_name = cli.upload_model(model, "binary", model_name="gauss")
    assert model_name == "gauss"
    X = [[-1, -1], [-2, -1], [-3, -2], [1, 1], [2, 1], [3, 2]]
    Y = [1, 1, 1, 2, 2, 2]
    for x, y in stream.iter_array(X, Y):
        cli.learn(model_name, x=x, y=y)
    path = cli.download_model(model_name)
    with open(path, "rb") as f:
        downloaded = dill.load(f)  # the model as the server has learned it
    local = preprocessing.StandardScaler() | naive_bayes.GaussianNB()
    for x, y in stream.iter_array(X, Y):
        local.learn_one({str(k): v for k, v in x.items()}, y)
    for x, _ in stream.iter_array(X, Y):
        x = {str(k): v for k, v in x.items()}
        answer = cli.predict(model_name, x=x)
        expected = local.predict_proba_one(x)
        assert downloaded.predict_proba_one(x) == expected
        assert answer["prediction"] == {str(k): v for k, v in expected.items()}


def test_multiclass_example_predict_label_metrics_delete(cli: Client) -> None:
    """examples/multiclass/run.py: learn, predict, label the last prediction by its
    identifier, metrics, stats, delete (a form-encoded DELETE)."""
    scaler = preprocessing.StandardScaler()
    ovo = multiclass.OneVsOneClassifier(linear_model.LogisticRegression())
    model_name = cli.upload_model(scaler | ovo, "multiclass")
    dataset = datasets.ImageSegments()
    for x, y in dataset.take(50):
        cli.learn(model_name, x=x, y=y)
    for x, y in dataset.take(5):  # noqa: B007 - the last y labels the last prediction
        res = cli.predict(model_name, x=x)
    assert cli.label(label=y, identifier=res["identifier"], model_name=model_name) == (
        "Successful label."
    )
    assert cli.stats(model_name)["learn"]["n_calls"] == 51
    assert "MacroF1" in cli.metrics(model_name)
    cli.delete_model(model_name)
    assert model_name not in cli.models()["models"]


def test_streams_carry_events_and_metrics(cli: Client, server: Server) -> None:
    model_name = cli.upload_model(
        preprocessing.StandardScaler() | linear_model.LinearRegression(), "regression"
    )
    lines: dict[str, list[str]] = {"events": [], "metrics": []}
    ready = threading.Barrier(3)

    def follow(kind: str, wanted: int) -> None:
        with httpx.stream("GET", f"{server.url}/api/stream/{kind}/", timeout=30) as response:
            ready.wait()
            for line in response.iter_lines():
                if line.startswith(("event:", "data:")):
                    lines[kind].append(line)
                if sum(x.startswith("data:") for x in lines[kind]) >= wanted:
                    return

    threads = [
        threading.Thread(target=follow, args=("events", 3)),
        threading.Thread(target=follow, args=("metrics", 1)),
    ]
    for t in threads:
        t.start()
    ready.wait(timeout=30)
    x = {"a": 1.0}
    identifier = cli.predict(model_name, x=x)["identifier"]
    cli.learn(model_name, x=x, y=2.0)
    cli.label(label=3.0, identifier=identifier, model_name=model_name)
    for t in threads:
        t.join(timeout=30)
    assert [line for line in lines["events"] if line.startswith("event:")] == [
        "event: predict",
        "event: learn",
        "event: label",
    ]
    assert lines["metrics"][0].startswith('data: {"MAE":')


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server with authentication on, and its bootstrap admin token."""
    from tests.test_auth_cli import bootstrap_token

    db = str(tmp_path_factory.mktemp("riverapi-auth") / "server.db")
    srv = Server(db, None, "--auth", "on", "--log-level", "info").start()
    try:
        yield srv, bootstrap_token(srv)
    finally:
        srv.stop()


def mint(server: Server, admin: str, *scopes: str) -> str:
    response = httpx.post(
        f"{server.url}/v1/tokens",
        json={"scopes": list(scopes)},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert response.status_code == 201, response.text
    secret: str = response.json()["token"]
    return secret


def test_the_token_flow_with_authentication_on(
    secured: tuple[Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """401 with a realm, Basic user:token to the realm, then Bearer: riverapi does it all
    by itself from RIVER_ML_USER and RIVER_ML_TOKEN (a riverbed token)."""
    server, admin = secured
    anonymous = httpx.get(f"{server.url}/api/models/")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == (
        f'realm="{server.url}/api/auth/token/",service="{server.url}"'
    )
    monkeypatch.setenv("RIVER_ML_USER", "dinosaur")
    monkeypatch.setenv("RIVER_ML_TOKEN", admin)
    cli = Client(server.url, quiet=True)
    model_name = cli.upload_model(
        preprocessing.StandardScaler() | linear_model.LinearRegression(), "regression"
    )
    for x, y in datasets.TrumpApproval().take(20):
        cli.learn(model_name, x=x, y=y)
    assert cli.stats(model_name)["learn"]["n_calls"] == 20
    assert model_name in cli.models()["models"]


def test_a_token_without_the_scope_is_refused(
    secured: tuple[Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, admin = secured
    reader = mint(server, admin, "read", "predict")
    monkeypatch.setenv("RIVER_ML_USER", "dinosaur")
    monkeypatch.setenv("RIVER_ML_TOKEN", reader)
    cli = Client(server.url, quiet=True)
    assert isinstance(cli.models()["models"], list)  # read is enough to list
    with pytest.raises(SystemExit):  # riverapi exits on the 403: uploading needs admin
        cli.upload_model(preprocessing.StandardScaler() | linear_model.LinearRegression(), "binary")
    token = httpx.get(f"{server.url}/api/auth/token/", auth=("dinosaur", "rbt_wrong"))
    assert token.status_code == 401
    monkeypatch.delenv("RIVER_ML_TOKEN")
    with pytest.raises(SystemExit):  # no token at all: riverapi says to export one
        Client(server.url, quiet=True).models()
