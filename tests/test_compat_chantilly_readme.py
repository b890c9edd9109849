"""chantilly's README user guide, step by step, as raw HTTP against a real ``riverbed serve``.

Each step sends what the README sends (``requests.post(..., data=dill.dumps(model))``,
``json={...}``) and checks what the README reads back, with both SSE streams followed while
the steps run.
"""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator

import dill
import pytest
import requests
from river import compose, linear_model, preprocessing
from river import metrics as river_metrics

from tests.helpers import Server

pytestmark = pytest.mark.slow

FEATURES = {"shop": "Ikea", "item": "Dombäs", "date": "2020-03-22T10:42:29Z"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(str(tmp_path_factory.mktemp("chantilly") / "chantilly.db")).start()
    try:
        yield srv
    finally:
        srv.stop()


class Follower(threading.Thread):
    """Reads an SSE stream the way sseclient does: (event, data) per message."""

    def __init__(self, url: str, wanted: int) -> None:
        super().__init__(daemon=True)
        self.url, self.wanted = url, wanted
        self.messages: list[tuple[str, object]] = []
        self.connected = threading.Event()

    def run(self) -> None:
        with requests.get(self.url, stream=True, timeout=30) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            event = "message"
            for raw in response.iter_lines(decode_unicode=True):
                if raw.startswith(":"):
                    self.connected.set()
                elif raw.startswith("event:"):
                    event = raw.removeprefix("event:").strip()
                elif raw.startswith("data:"):
                    self.messages.append((event, json.loads(raw.removeprefix("data:"))))
                    event = "message"
                    if len(self.messages) >= self.wanted:
                        return


def test_the_readme_workflow(server: Server) -> None:
    base = server.url
    requests.post(f"{base}/api/init", json={"flavor": "regression"}).raise_for_status()

    metrics_stream = Follower(f"{base}/api/stream/metrics", wanted=2)
    events_stream = Follower(f"{base}/api/stream/events", wanted=4)
    for follower in (metrics_stream, events_stream):
        follower.start()
        assert follower.connected.wait(30)

    # Uploading a model (the README's pipeline needs numbers; its example features are
    # strings, so the scaler sees them one-hot encoded).
    model = compose.Pipeline(preprocessing.OneHotEncoder(), linear_model.LinearRegression())
    uploaded = requests.post(f"{base}/api/model", data=dill.dumps(model))
    assert uploaded.status_code == 201
    r = requests.get(f"{base}/api/model")
    assert isinstance(pickle.loads(r.content), compose.Pipeline)

    # Making a prediction, with an id so that the features are kept.
    r = requests.post(f"{base}/api/predict", json={"id": 42, "features": FEATURES})
    assert r.status_code == 201
    assert r.json()["prediction"] == 0.0

    # Updating the model: by id, then with the features.
    r = requests.post(f"{base}/api/learn", json={"id": 42, "ground_truth": 10.21})
    assert r.status_code == 201
    r = requests.post(f"{base}/api/learn", json={"features": FEATURES, "ground_truth": 10.21})
    assert r.status_code == 201
    r = requests.post(f"{base}/api/predict", json={"features": FEATURES})
    assert r.status_code == 200 and r.json()["prediction"] > 0

    # Monitoring metrics.
    metrics = requests.get(f"{base}/api/metrics").json()
    local = compose.Pipeline(preprocessing.OneHotEncoder(), linear_model.LinearRegression())
    mae = river_metrics.MAE()
    for _ in range(2):
        mae.update(10.21, local.predict_one(FEATURES))
        local.learn_one(FEATURES, 10.21)
    assert set(metrics) == {"MAE", "RMSE", "SMAPE"}
    assert metrics["MAE"] == mae.get()

    for follower in (metrics_stream, events_stream):
        follower.join(timeout=30)
    assert [event for event, _ in metrics_stream.messages] == ["message", "message"]
    assert metrics_stream.messages[-1][1] == metrics  # the stream's last values are the current
    assert [event for event, _ in events_stream.messages] == [
        "predict",
        "learn",
        "learn",
        "predict",
    ]
    predict_event = events_stream.messages[0][1]
    assert predict_event == {
        "model": uploaded.json()["name"],
        "features": FEATURES,
        "prediction": 0.0,
    }
    learn_event = events_stream.messages[1][1]
    assert isinstance(learn_event, dict)
    assert learn_event["ground_truth"] == 10.21 and learn_event["features"] == FEATURES


def test_the_readme_pipeline_with_string_features_is_a_400_not_a_crash(server: Server) -> None:
    """The README pairs StandardScaler | LinearRegression with string features, which that
    pipeline cannot learn from: riverbed says so with a 400 and the model stays untouched."""
    base = server.url
    requests.post(f"{base}/api/init", json={"flavor": "regression"}).raise_for_status()
    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LinearRegression())
    requests.post(f"{base}/api/model/readme", data=dill.dumps(model)).raise_for_status()
    r = requests.post(f"{base}/api/predict", json={"id": 42, "features": FEATURES})
    assert r.status_code == 201  # an untrained scaler passes strings through
    r = requests.post(f"{base}/api/learn", json={"id": 42, "ground_truth": 10.21})
    assert r.status_code == 400
    assert "could not learn" in r.json()["message"]
    r = requests.post(f"{base}/api/learn", json={"features": FEATURES, "ground_truth": 10.21})
    assert r.status_code == 400
    assert requests.get(f"{base}/api/stats").json()["learn"]["n_calls"] == 0


def test_the_dashboard_url_shows_chantilly_traffic_live(server: Server) -> None:
    """chantilly's dashboard URL, ``/``, is riverbed's live dashboard: a model uploaded and
    fed through chantilly's routes shows up with chantilly's metrics, and its learn rate
    moves while learns arrive, without a reload."""
    import shutil

    from playwright.sync_api import expect, sync_playwright

    base = server.url
    requests.post(f"{base}/api/init", json={"flavor": "regression"}).raise_for_status()
    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LinearRegression())
    requests.post(f"{base}/api/model/shop", data=dill.dumps(model)).raise_for_status()
    page_html = requests.get(f"{base}/")
    assert page_html.status_code == 200
    assert page_html.headers["content-type"].startswith("text/html")

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: run `make browser` (or `make test`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.goto(f"{base}/")
            card = page.locator('[data-model="shop"]')
            expect(card.locator(".badge")).to_have_text("regression")
            expect(card).to_contain_text("SMAPE")
            for i in range(30):
                body = {"features": {"rooms": i % 5}, "ground_truth": float(i % 5)}
                assert requests.post(f"{base}/api/learn", json=body).status_code == 201
            page.wait_for_function(
                "Number(document.querySelector('[data-model=\"shop\"] .learn-rate')"
                ".textContent.replace(/,/g, '')) > 0"
            )
        finally:
            browser.close()
