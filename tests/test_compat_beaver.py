"""Beaver's client call shapes (``riverbed.beaver.HTTPClient``) against a real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing

from riverbed.beaver import MANUAL, HTTPClient
from riverbed.exceptions import InvalidInput, ModelNotFound
from tests.helpers import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(str(tmp_path_factory.mktemp("beaver") / "server.db")).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_beavers_readme_and_the_predict_label_loop(server: Server) -> None:
    """Beaver's README upload, then predict with a loop id and label it: the served
    metrics equal river's progressive validation of the same stream."""
    client = HTTPClient(host=server.url)
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    client.models.upload("my_model", model)
    assert "my_model" in client.models.list()
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
