"""Real Prometheus (Debian's ``prometheus``) scrapes a real ``riverbed serve`` and answers
every PromQL query of the shipped Grafana dashboard; the dashboard's JSON is checked against
Grafana's documented dashboard model.

``make test`` installs Prometheus when it is missing (the Makefile's ``prometheus`` target).
Grafana itself is not installed here: its JSON is checked for structure, its queries against
real Prometheus.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from river import datasets

from riverbed.grafana import PROVISIONING, dashboard, queries
from tests.helpers import Server, free_port

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}
# What Grafana substitutes in the queries: every model, and a rate window a few scrapes wide.
VARIABLES = {"$model": ".+", "$__rate_interval": "10s"}


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("Debian's prometheus is not installed: run `make prometheus` (or make test)")
    return found


class Traffic(threading.Thread):
    """Predictions and labels against two models until stopped, so that rates are not 0."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stopping, self.sent = url, threading.Event(), 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, timeout=10) as http:
                samples = list(datasets.Phishing())
                i = 0
                while not self.stopping.is_set():
                    x, y = samples[i % len(samples)]
                    for model in ("phishing", "windowed"):
                        pid = f"{model}-{i}"
                        answer = http.post(
                            f"/v1/models/{model}/predict", json={"features": x, "id": pid}
                        )
                        assert answer.status_code == 200, answer.text
                        if i % 4:  # some predictions wait for their label
                            http.post(
                                f"/v1/models/{model}/learn", json={"id": pid, "ground_truth": y}
                            ).raise_for_status()
                    i += 1
                    self.sent = i
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 -- reported by the test
            self.error = exc


@pytest.fixture
def riverbed_with_traffic(tmp_path: Path) -> Iterator[Server]:
    server = Server(str(tmp_path / "riverbed.db"), log=tmp_path / "riverbed.log").start()
    traffic = Traffic(server.url)
    try:
        with httpx.Client(base_url=server.url) as http:
            http.post("/v1/models", json={"name": "phishing", "spec": SPEC}).raise_for_status()
            windowed = {"name": "windowed", "spec": SPEC, "options": {"windows": [{"size": 50}]}}
            http.post("/v1/models", json=windowed).raise_for_status()
        traffic.start()
        yield server
    finally:
        traffic.stopping.set()
        traffic.join(timeout=30)
        server.stop()
    assert traffic.error is None, traffic.error


@pytest.fixture
def prometheus(
    prometheus_binary: str, riverbed_with_traffic: Server, tmp_path: Path
) -> Iterator[str]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: riverbed\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{riverbed_with_traffic.port}']\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: httpx.get(url + "/-/ready", timeout=2).status_code == 200, "ready", 60)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _until(check: Any, what: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"Prometheus: {what} not within {seconds:.0f} s (last: {last!r})")


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(url + "/api/v1/query", params={"query": expr}, timeout=10)
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _substituted(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def test_prometheus_scrapes_riverbed_and_answers_every_dashboard_query(
    prometheus: str, riverbed_with_traffic: Server
) -> None:
    def up() -> bool:
        targets = httpx.get(prometheus + "/api/v1/targets", timeout=5).json()["data"]
        return any(t["health"] == "up" for t in targets["activeTargets"])

    _until(up, "the riverbed target up", 60)
    assert queries(), "the dashboard has queries"
    for expr in queries():
        promql = _substituted(expr)
        assert "$" not in promql, f"a variable the test does not know: {expr}"

        def finite(promql: str = promql) -> list[dict[str, Any]]:
            result = _query(prometheus, promql)
            return [r for r in result if math.isfinite(float(r["value"][1]))]

        result = _until(finite, f"data for {promql}", 90)
        models = {r["metric"].get("model") for r in result}
        assert models <= {"phishing", "windowed", None}, (promql, models)
    # The dashboard's model variable lists both models.
    values = httpx.get(
        prometheus + "/api/v1/label/model/values",
        params={"match[]": "riverbed_predictions_total"},
        timeout=5,
    ).json()["data"]
    assert {"phishing", "windowed"} <= set(values)
    # Counters agree with riverbed's own stats. Both keep moving: Prometheus is asked first,
    # then riverbed, so that the scrape answered was made before the stats are read (asked
    # the other way, a scrape between the two reads is ahead of the stats); a count
    # riverbed showed never goes down (LiveModels._n_predictions).
    (scraped,) = _query(prometheus, 'riverbed_predictions_total{model="phishing"}')
    stats = httpx.get(riverbed_with_traffic.url + "/v1/models/phishing/stats").json()
    assert 0 < float(scraped["value"][1]) <= stats["n_predictions"]


# Grafana's dashboard JSON model, as its documentation describes it (Dashboards > Build
# dashboards > View dashboard JSON model): the fields riverbed's dashboard relies on.
GRAFANA_DASHBOARD_MODEL = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "tags": {"type": "array", "items": {"type": "string"}},
        "timezone": {"enum": ["", "browser", "utc"]},
        "refresh": {"type": "string"},
        "time": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        },
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {
                            "name": {"type": "string"},
                            "type": {"enum": ["datasource", "query", "custom", "interval"]},
                        },
                    },
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos", "datasource", "targets"],
                "properties": {
                    "id": {"type": "integer", "minimum": 1},
                    "type": {"enum": ["timeseries", "stat", "gauge", "table", "bargauge"]},
                    "title": {"type": "string", "minLength": 1},
                    "gridPos": {
                        "type": "object",
                        "required": ["x", "y", "w", "h"],
                        "properties": {
                            "x": {"type": "integer", "minimum": 0, "maximum": 23},
                            "y": {"type": "integer", "minimum": 0},
                            "w": {"type": "integer", "minimum": 1, "maximum": 24},
                            "h": {"type": "integer", "minimum": 1},
                        },
                    },
                    "datasource": {
                        "type": "object",
                        "required": ["type", "uid"],
                        "properties": {"type": {"const": "prometheus"}},
                    },
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["refId", "expr"],
                            "properties": {
                                "refId": {"type": "string", "pattern": "^[A-Z]$"},
                                "expr": {"type": "string", "minLength": 1},
                            },
                        },
                    },
                },
            },
        },
    },
}


def test_the_dashboard_json_follows_grafanas_model() -> None:
    model = dashboard()
    jsonschema.validate(model, GRAFANA_DASHBOARD_MODEL)
    panels = model["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids are unique"
    variables = {v["name"] for v in model["templating"]["list"]}
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, f"{p['title']} is wider than the grid"
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        for source in (
            p["datasource"],
            *(t.get("datasource", p["datasource"]) for t in p["targets"]),
        ):
            assert source["uid"] == "${datasource}", "every query uses the chosen data source"
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs)
        for t in p["targets"]:
            for used in ("$model", "$datasource"):
                if used in t["expr"]:
                    assert used[1:] in variables
    assert {"datasource", "model"} <= variables


def test_the_provisioning_examples_name_the_dashboard_folder_and_prometheus() -> None:
    dashboards = (PROVISIONING / "dashboards" / "riverbed.yaml").read_text()
    sources = (PROVISIONING / "datasources" / "riverbed.yaml").read_text()
    assert "type: file" in dashboards and "path:" in dashboards
    assert "type: prometheus" in sources and "url:" in sources
