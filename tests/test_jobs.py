"""Training jobs: the issue's checks (a shipped data set's CSV, three candidates, metrics equal
to an independent fit, the best holds the alias and answers predict), data formats, errors
that name the row and column, cancel, and jobs that outlive a restart as interrupted."""

from __future__ import annotations

import asyncio
import copy
import csv
import gzip
import io
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from river import datasets, evaluate, linear_model, metrics, naive_bayes, preprocessing, tree

from riverbed import Engine, InvalidInput, JobNotFound
from riverbed.events import Event
from riverbed.stores.jobstore import JobRecord
from tests.helpers import new_database

PHISHING_CSV = gzip.open(datasets.Phishing().path, "rb").read()
TARGET = "is_phishing"
RIVER_SPECS = [
    {
        "name": "logistic",
        "spec": {
            "pipeline": [
                {"class": "river.preprocessing.StandardScaler"},
                {"class": "river.linear_model.LogisticRegression"},
            ]
        },
    },
    {"name": "hoeffding", "spec": {"class": "river.tree.HoeffdingTreeClassifier"}},
    {"name": "bayes", "spec": {"class": "river.naive_bayes.GaussianNB"}},
]


def river_models() -> dict[str, Any]:
    return {
        "logistic": preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        "hoeffding": tree.HoeffdingTreeClassifier(),
        "bayes": naive_bayes.GaussianNB(),
    }


def diabetes_csv() -> tuple[bytes, list[str]]:
    """scikit-learn's diabetes data set as one CSV with its target column."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    names = list(bunch.feature_names)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*names, "progression"])
    for row, y in zip(bunch.data, bunch.target, strict=True):
        writer.writerow([repr(float(v)) for v in row] + [repr(float(y))])
    return out.getvalue().encode(), names


SKLEARN_SPECS = [
    {"name": "ols", "spec": {"class": "sklearn.linear_model.LinearRegression"}},
    {"name": "ridge", "spec": {"class": "sklearn.linear_model.Ridge", "params": {"alpha": 0.5}}},
    {
        "name": "tree",
        "spec": {
            "class": "sklearn.tree.DecisionTreeRegressor",
            "params": {"max_depth": 3, "random_state": 0},
        },
    },
]


async def wait(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """Follow the job's event stream to its end (the stream closes when the job finishes)."""
    events = await api.get(f"/v1/jobs/{job_id}/events")
    assert events.status_code == 200
    assert events.headers["content-type"].startswith("text/event-stream")
    job = (await api.get(f"/v1/jobs/{job_id}")).json()
    job["_events"] = events.text
    return job


async def test_three_river_candidates_from_a_shipped_csv(api: httpx.AsyncClient) -> None:
    """The issue's check, river side: river's Phishing CSV uploaded with three candidate specs;
    three versions whose metrics equal river's own progressive validation of the same models;
    the best by accuracy holds the alias and predict answers with it."""
    engine = api.engine  # type: ignore[attr-defined]
    config = {
        "model": "phishing",
        "target": TARGET,
        "candidates": RIVER_SPECS,
        "select": {"metric": "Accuracy", "direction": "max", "alias": "champion"},
    }
    posted = await api.post(
        "/v1/jobs",
        files={
            "config": (None, orjson.dumps(config), "application/json"),
            "data": ("phishing.csv", PHISHING_CSV, "text/csv"),
        },
    )
    assert posted.status_code == 202, posted.text
    assert posted.json()["status"] == "queued"
    assert posted.json()["data"]["rows"] == 1250
    job = await wait(api, posted.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert "event: job.progress" in job["_events"] and "event: job.succeeded" in job["_events"]

    expected = {}
    for name, model in river_models().items():
        metric = metrics.Accuracy() + metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
        evaluate.progressive_val_score(datasets.Phishing(), model, metric)
        expected[name] = {type(m).__name__: pytest.approx(float(m.get())) for m in metric}
    results = {c["name"]: c for c in job["result"]["candidates"]}
    assert set(results) == set(expected)
    for name, result in results.items():
        assert result["metrics"] == expected[name], name
        version = engine.get_version("phishing", result["version"])
        assert version["source"] == "job"
        assert version["metrics"] == expected[name]
        assert version["params"]["data"]["rows"] == 1250
        assert version["params"]["data"]["hash"] == job["data"]["hash"]
        assert version["params"]["candidate"] == name
    versions = engine.list_versions("phishing")
    assert sorted(v["version"] for v in versions) == [1, 2, 3]

    best = max(results.values(), key=lambda r: r["metrics"]["Accuracy"])
    assert job["result"]["best"]["version"] == best["version"]
    assert engine.aliases("phishing") == {"champion": best["version"]}

    trained = river_models()[best["name"]]
    for x, y in datasets.Phishing():
        trained.learn_one(x, y)
    x = next(iter(datasets.Phishing()))[0]
    answer = (await api.post("/v1/models/phishing@champion/predict", json={"features": x})).json()
    assert answer["version"] == best["version"]
    expected_proba = trained.predict_proba_one(x)
    assert answer["probabilities"]["true"] == pytest.approx(expected_proba[True])


def test_three_sklearn_candidates_match_an_independent_fit(tmp_path: Path) -> None:
    """The issue's check, scikit-learn side: the diabetes CSV, three regressors scored on a
    holdout split; the metrics equal scikit-learn's on the same split, the lowest MAE holds
    the alias, and predict answers as the same model fit on every row."""
    from sklearn.base import clone
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeRegressor

    data, names = diabetes_csv()
    path = tmp_path / "diabetes.csv"
    path.write_bytes(data)
    with Engine(str(tmp_path / "jobs.db")) as engine:
        job = engine.train(
            "diabetes",
            data,
            format="csv",
            target="progression",
            candidates=SKLEARN_SPECS,
            validation={"method": "holdout", "test_size": 0.25, "seed": 7},
            select={"metric": "MAE", "alias": "best"},
        )
        job = engine.jobs.wait(job["id"], 120)
        assert job["status"] == "succeeded", job["error"]

        rows = list(csv.DictReader(io.StringIO(data.decode())))
        X = [[float(r[n]) for n in names] for r in rows]
        y = [float(r["progression"]) for r in rows]
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.25, shuffle=True, random_state=7
        )
        models = {
            "ols": LinearRegression(),
            "ridge": Ridge(alpha=0.5),
            "tree": DecisionTreeRegressor(max_depth=3, random_state=0),
        }
        results = {c["name"]: c for c in job["result"]["candidates"]}
        for name, model in models.items():
            predicted = clone(model).fit(X_train, y_train).predict(X_test)
            got = results[name]["metrics"]
            assert got["MAE"] == pytest.approx(mean_absolute_error(y_test, predicted), rel=1e-9)
            assert got["RMSE"] == pytest.approx(
                mean_squared_error(y_test, predicted) ** 0.5, rel=1e-9
            )
            assert got["R2"] == pytest.approx(r2_score(y_test, predicted), rel=1e-9)
            assert results[name]["details"]["folds"][0]["test"] == len(y_test)
        best = min(results.values(), key=lambda r: r["metrics"]["MAE"])
        assert engine.aliases("diabetes") == {"best": best["version"]}
        assert len(engine.list_versions("diabetes")) == 3
        full = clone(models[best["name"]]).fit(X, y)
        answer = engine.predict("diabetes@best", dict(zip(names, X[0], strict=True)))
        assert answer["prediction"] == pytest.approx(full.predict([X[0]])[0])


def test_kfold_scores_are_the_mean_over_folds(tmp_path: Path) -> None:
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import KFold

    data, names = diabetes_csv()
    with Engine(":memory:") as engine:
        job = engine.jobs.wait(
            engine.train(
                "d",
                data,
                format="csv",
                target="progression",
                spec={"class": "sklearn.linear_model.Ridge", "params": {"alpha": 0.5}},
                metrics=["MAE"],
                validation={"method": "kfold", "folds": 4},
            )["id"],
            120,
        )
        assert job["status"] == "succeeded", job["error"]
        rows = list(csv.DictReader(io.StringIO(data.decode())))
        X = [[float(r[n]) for n in names] for r in rows]
        y = [float(r["progression"]) for r in rows]
        scores = []
        for train, test in KFold(n_splits=4).split(X):
            model = Ridge(alpha=0.5).fit([X[i] for i in train], [y[i] for i in train])
            scores.append(
                mean_absolute_error([y[i] for i in test], model.predict([X[i] for i in test]))
            )
        (result,) = job["result"]["candidates"]
        assert result["metrics"] == {"MAE": pytest.approx(sum(scores) / 4, rel=1e-9)}
        assert len(result["details"]["folds"]) == 4
        assert engine.aliases("d") == {}  # one candidate and no alias asked for


def rows_of_phishing(n: int) -> list[dict[str, Any]]:
    return [{**x, TARGET: y} for x, y in datasets.Phishing().take(n)]


def test_every_format_gives_the_same_fingerprint(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = rows_of_phishing(200)
    ndjson = b"\n".join(orjson.dumps(r) for r in rows)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({**r, TARGET: int(r[TARGET])} for r in rows)
    spec = RIVER_SPECS[0]["spec"]
    with Engine(":memory:") as engine:
        hashes = {}
        for fmt, data in (
            ("json", [{**r, TARGET: int(r[TARGET])} for r in rows]),
            ("ndjson", b"\n".join(orjson.dumps({**r, TARGET: int(r[TARGET])}) for r in rows)),
            ("parquet", sink.getvalue()),
            ("csv", out.getvalue().encode()),
        ):
            job = engine.train("p", data, format=fmt, target=TARGET, spec=spec)
            job = engine.jobs.wait(job["id"], 60)
            assert job["status"] == "succeeded", (fmt, job["error"])
            hashes[fmt] = (job["data"]["rows"], job["data"]["hash"])
        assert ndjson  # the bools-as-bools NDJSON is the same rows with another target type
        assert len({h for h in hashes.values() if h[0] == 200}) >= 1
        assert hashes["json"] == hashes["ndjson"] == hashes["csv"]


@pytest.mark.parametrize(
    ("rows", "options", "message", "detail"),
    [
        ([{"a": 1, "y": 1.0}], {"target": "z"}, "column 'z'", {"column": "z"}),
        ([{"a": 1, "y": 1.0}], {"target": "y", "features": ["b"]}, "column 'b'", {"column": "b"}),
        ([{"a": [1], "y": 1.0}], {"target": "y"}, "row 1, column 'a'", {"row": 1, "column": "a"}),
        ([], {"target": "y"}, "no rows", {"row": None, "column": None}),
        ([{"a": 1, "y": 1.0}], {"target": "y", "spec": {"class": "os.system"}}, "outside", None),
        ([{"a": 1, "y": 1.0}], {"target": "y", "select": {"metric": "Accuracy"}}, "select", None),
        ([{"a": 1, "y": 1.0}], {"target": "y", "validation": {"folds": 1}}, "folds", None),
        ([{"a": 1, "y": 1.0}], {"target": "y", "spec": None}, "name the model", None),
    ],
)
def test_bad_jobs_are_refused_before_they_start(
    rows: list[Any], options: dict[str, Any], message: str, detail: Any
) -> None:
    options = {"spec": {"class": "river.linear_model.LinearRegression"}, **options}
    with Engine(":memory:") as engine:
        with pytest.raises(InvalidInput, match=message) as raised:
            engine.train("m", rows, **options)
        if detail is not None:
            assert {k: raised.value.detail[k] for k in detail} == detail
        assert engine.jobs.list() == [] and engine.list_models() == []


def test_a_bad_row_fails_the_job_and_says_where() -> None:
    rows = [{"a": float(i), "y": float(i)} for i in range(10)]
    rows[6]["y"] = "seven"  # a regression target must be a number
    with Engine(":memory:") as engine:
        job = engine.train(
            "m", rows, target="y", spec={"class": "river.linear_model.LinearRegression"}
        )
        job = engine.jobs.wait(job["id"], 60)
        assert job["status"] == "failed"
        assert job["error"]["code"] == "invalid_data"
        assert job["error"]["detail"]["row"] == 7 and job["error"]["detail"]["column"] == "y"
        assert "row 7, column 'y'" in job["error"]["message"]
        assert engine.list_models() == []  # nothing registered
        assert "failed" in engine.jobs.logs(job["id"])[-1]["message"]


def test_a_string_in_a_sklearn_column_names_its_row_and_column() -> None:
    rows = [{"a": float(i), "b": 1.0, "y": float(i)} for i in range(20)]
    rows[12]["b"] = "n/a?"
    with Engine(":memory:") as engine:
        job = engine.train("m", rows, target="y", spec={"class": "sklearn.linear_model.Ridge"})
        job = engine.jobs.wait(job["id"], 60)
        assert job["status"] == "failed"
        assert job["error"]["detail"]["row"] == 13 and job["error"]["detail"]["column"] == "b"


def test_a_csv_with_a_short_line_names_it() -> None:
    with Engine(":memory:") as engine:
        with pytest.raises(InvalidInput, match="row 2.*line 3"):
            engine.train(
                "m", b"a,y\n1,2\n3\n", format="csv", target="y", spec=RIVER_SPECS[0]["spec"]
            )


def test_a_grid_trains_every_point_and_picks_the_best() -> None:
    rows = rows_of_phishing(300)
    grid = {
        "spec": {"class": "river.linear_model.LogisticRegression"},
        "params": {"params.l2": [0.0, 0.01], "params.intercept_init": [0.0, 1.0]},
    }
    with Engine(":memory:") as engine:
        job = engine.jobs.wait(engine.train("g", rows, target=TARGET, grid=grid)["id"], 60)
        assert job["status"] == "succeeded", job["error"]
        names = [c["name"] for c in job["result"]["candidates"]]
        assert names == [
            "l2=0.0,intercept_init=0.0",
            "l2=0.0,intercept_init=1.0",
            "l2=0.01,intercept_init=0.0",
            "l2=0.01,intercept_init=1.0",
        ]
        # default selection: the first metric (Accuracy), bigger is better, alias champion
        best = job["result"]["best"]
        assert best["metric"] == "Accuracy"
        top = max(c["metrics"]["Accuracy"] for c in job["result"]["candidates"])
        assert best["value"] == top and engine.aliases("g") == {"champion": best["version"]}
        assert engine.get_version("g", 2)["hyperparameters"]["intercept_init"] == 1.0


def test_warm_start_continues_from_a_version() -> None:
    rows = rows_of_phishing(600)
    spec = RIVER_SPECS[0]["spec"]
    with Engine(":memory:") as engine:
        first = engine.jobs.wait(engine.train("w", rows[:300], target=TARGET, spec=spec)["id"], 60)
        assert first["status"] == "succeeded", first["error"]
        job = engine.train("w", rows[300:], target=TARGET, warm_start="w@1")
        job = engine.jobs.wait(job["id"], 60)
        assert job["status"] == "succeeded", job["error"]
        model = river_models()["logistic"]
        for row in rows[:300]:
            model.learn_one({k: v for k, v in row.items() if k != TARGET}, row[TARGET])
        metric = metrics.Accuracy() + metrics.LogLoss() + metrics.F1() + metrics.ROCAUC()
        stream = [({k: v for k, v in r.items() if k != TARGET}, r[TARGET]) for r in rows[300:]]
        evaluate.progressive_val_score(stream, copy.deepcopy(model), metric)
        (result,) = job["result"]["candidates"]
        assert result["version"] == 2
        assert result["metrics"] == {
            type(m).__name__: pytest.approx(float(m.get())) for m in metric
        }
        assert engine.get_version("w", 2)["parent"] == 1


def test_a_queued_job_is_cancelled_at_once_and_a_running_one_at_its_next_check() -> None:
    rows = rows_of_phishing(1250)
    spec = RIVER_SPECS[1]["spec"]
    with Engine(":memory:") as engine:  # one worker
        started, release = threading.Event(), threading.Event()

        def hold_the_worker(event: Event) -> None:
            # listeners run on the publishing thread: the worker waits here, job 1 running
            if event.type == "job.running" and not started.is_set():
                started.set()
                release.wait(30)

        engine.events.subscribe(hold_the_worker)
        running = engine.train("c", rows, target=TARGET, spec=spec)
        assert started.wait(30)
        queued = engine.train("c", rows, target=TARGET, spec=spec)
        assert engine.jobs.get(running["id"])["status"] == "running"
        assert engine.jobs.cancel(queued["id"])["status"] == "cancelled"  # at once
        assert engine.jobs.cancel(running["id"])["status"] == "running"  # asked to stop
        release.set()
        job = engine.jobs.wait(running["id"], 60)
        assert job["status"] == "cancelled" and job["progress"] < 0.05
        assert engine.jobs.wait(queued["id"], 60)["status"] == "cancelled"
        assert engine.list_models() == []
        with pytest.raises(JobNotFound):
            engine.jobs.cancel("nope")


def test_jobs_survive_a_restart_as_interrupted(tmp_path: Path) -> None:
    """A job record left queued or running (a crash) is interrupted on the next start; one
    running at a clean shutdown is interrupted by the shutdown."""
    database = str(tmp_path / "jobs.db")
    with Engine(database) as engine:
        engine.store.save_job(JobRecord("crashed", "m", "running", time.time())).result()
        engine.store.save_job(JobRecord("waiting", "m", "queued", time.time())).result()
    with Engine(database) as engine:
        for job_id, was in (("crashed", "running"), ("waiting", "queued")):
            job = engine.jobs.get(job_id)
            assert job["status"] == "interrupted"
            assert job["error"]["code"] == "interrupted" and was in job["error"]["message"]
        long_job = engine.train(
            "m", rows_of_phishing(1250) * 4, target=TARGET, candidates=RIVER_SPECS
        )
    with Engine(database) as engine:
        job = engine.jobs.get(long_job["id"])
        assert job["status"] == "interrupted"
        assert "shut down" in job["error"]["message"]
        assert engine.list_models() == []


async def test_job_routes_and_errors(api: httpx.AsyncClient) -> None:
    rows = rows_of_phishing(100)
    spec = RIVER_SPECS[0]["spec"]
    posted = await api.post(
        "/v1/jobs",
        json={"model": "r", "target": TARGET, "spec": spec, "data": rows, "keep_data": True},
    )
    assert posted.status_code == 202, posted.text
    job = await wait(api, posted.json()["id"])
    assert job["status"] == "succeeded"
    listed = (await api.get("/v1/jobs?model=r")).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    logs = (await api.get(f"/v1/jobs/{job['id']}/logs")).json()["logs"]
    assert logs[0]["message"].startswith("queued") and logs[-1]["message"] == "succeeded"
    kept = await api.get(f"/v1/jobs/{job['id']}/data")
    assert orjson.loads(kept.content) == rows
    raw = await api.post(
        "/v1/jobs",
        params={"config": orjson.dumps({"model": "r", "target": TARGET, "spec": spec}).decode()},
        content=b"\n".join(orjson.dumps(r) for r in rows),
        headers={"content-type": "application/x-ndjson"},
    )
    assert raw.status_code == 202, raw.text
    assert (await wait(api, raw.json()["id"]))["data"]["hash"] == job["data"]["hash"]
    assert (await api.post(f"/v1/jobs/{job['id']}/cancel")).json()["status"] == "succeeded"
    for method, path, kwargs, status, code in [
        ("GET", "/v1/jobs/nope", {}, 404, "job_not_found"),
        ("POST", "/v1/jobs/nope/cancel", {}, 404, "job_not_found"),
        ("GET", "/v1/jobs/nope/events", {}, 404, "job_not_found"),
        ("GET", f"/v1/jobs/{raw.json()['id']}/data", {}, 404, "job_not_found"),
        ("POST", "/v1/jobs", {"json": {"model": "r", "target": "y"}}, 400, "invalid_input"),
        (
            "POST",
            "/v1/jobs",
            {"json": {"model": "r", "data": [], "extra": 1}},
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/v1/jobs",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/jobs",
            {"content": b"a,b", "headers": {"content-type": "text/csv"}},
            400,
            "invalid_input",
        ),
        ("POST", "/v1/jobs", {"files": {"data": ("d.csv", b"a,b\n1,2\n")}}, 400, "invalid_input"),
        ("GET", "/v1/jobs?limit=0", {}, 400, "invalid_input"),
    ]:
        response = await api.request(method, path, **kwargs)
        assert response.status_code == status, (path, response.text)
        assert response.json()["error"]["code"] == code
    assert len((await api.get("/v1/jobs")).json()["jobs"]) == 2


async def test_the_async_client_uploads_parquet_and_waits(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from riverbed import AsyncClient
    from riverbed.server import create_app

    rows = [{**r, TARGET: int(r[TARGET])} for r in rows_of_phishing(300)]
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    with Engine(str(tmp_path / "p.db")) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with AsyncClient("http://t", transport=transport) as client:
            job = await client.train(
                "pq", sink.getvalue(), format="parquet", target=TARGET, spec=RIVER_SPECS[2]["spec"]
            )
            job = await client.jobs.wait(job["id"], 60)
            assert job["status"] == "succeeded", job["error"]
            assert job["data"]["format"] == "parquet" and job["data"]["rows"] == 300
            direct = engine.jobs.wait(
                engine.train("js", rows, target=TARGET, spec=RIVER_SPECS[2]["spec"])["id"], 60
            )
            assert job["data"]["hash"] == direct["data"]["hash"]
            assert (
                job["result"]["candidates"][0]["metrics"]
                == direct["result"]["candidates"][0]["metrics"]
            )
            assert [j["id"] for j in await client.jobs.list(model="pq")] == [job["id"]]
            assert (await client.jobs.logs(job["id"]))[-1]["message"] == "succeeded"


def test_a_sklearn_warm_start_refits_from_the_version(tmp_path: Path) -> None:
    data, _ = diabetes_csv()
    spec = {
        "class": "sklearn.linear_model.SGDRegressor",
        "params": {"max_iter": 5, "tol": None, "random_state": 0},
    }
    with Engine(":memory:") as engine:
        first = engine.jobs.wait(
            engine.train("s", data, format="csv", target="progression", spec=spec)["id"], 60
        )
        assert first["status"] == "succeeded", first["error"]
        again = engine.jobs.wait(
            engine.train("s", data, format="csv", target="progression", warm_start="s@1")["id"], 60
        )
        assert again["status"] == "succeeded", again["error"]
        version = engine.get_version("s", 2)
        assert version["parent"] == 1 and version["hyperparameters"]["warm_start"] is True


def test_riverbed_train_in_process_on_a_database(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from riverbed.cli import cli

    data, _ = diabetes_csv()
    (tmp_path / "diabetes.csv").write_bytes(data)
    (tmp_path / "three.json").write_text(orjson.dumps(SKLEARN_SPECS).decode())
    database = new_database(tmp_path / "local.db")
    args = ["train", str(tmp_path / "diabetes.csv"), "-t", "progression", "--database", database]
    result = CliRunner().invoke(
        cli, [*args, "--candidates", str(tmp_path / "three.json"), "--select", "MAE"]
    )
    assert result.exit_code == 0, result.output
    assert "training: 100%" in result.output and "diabetes@champion -> version" in result.output
    with Engine(database) as engine:
        assert len(engine.list_versions("diabetes")) == 3
        (job,) = engine.jobs.list()
        assert job["status"] == "succeeded" and job["data"]["name"] == "diabetes.csv"
        best = job["result"]["best"]["version"]
    assert f"* diabetes@{best}" in result.output
    bad = CliRunner().invoke(cli, [*args, "--spec", str(tmp_path / "three.json")])
    assert bad.exit_code == 1 and "invalid_spec" in bad.output


async def test_following_a_job_read_as_finished_before_its_last_event_ends_with_its_state(
    api: httpx.AsyncClient,
) -> None:
    """The job's last event is published after the commit that a follower's read already
    sees: a follower that comes in between gets the job's state as the stream's last event
    rather than a stream ending on progress."""
    engine = api.engine  # type: ignore[attr-defined]
    config = {"model": "phishing", "target": TARGET, "spec": RIVER_SPECS[0]["spec"]}
    posted = await api.post(
        "/v1/jobs",
        files={
            "config": (None, orjson.dumps(config), "application/json"),
            "data": ("phishing.csv", PHISHING_CSV, "text/csv"),
        },
    )
    job_id = posted.json()["id"]
    assert (await wait(api, job_id))["status"] == "succeeded"
    # The last event follows the commit that wait() read: let it arrive, then remove it, as
    # if the follower's read came before it (the bus then holds only progress).
    kept = engine.events._recent
    for _ in range(200):
        finals = [k for k in kept if k[1] in ("job.succeeded", "job.failed")]
        if finals:
            break
        await asyncio.sleep(0.01)
    assert finals
    for final in finals:
        kept.remove(final)
    stream = (await api.get(f"/v1/jobs/{job_id}/events")).text
    kinds = [line.split(": ", 1)[1] for line in stream.splitlines() if line.startswith("event:")]
    assert "job.progress" in kinds and kinds[-1] == "job.succeeded"


def test_mixed_river_and_sklearn_candidates_are_refused_before_they_are_queued() -> None:
    rows = [{"a": float(i), "y": 2.0 * i} for i in range(20)]
    candidates = [
        {"name": "online", "spec": {"class": "river.linear_model.LinearRegression"}},
        {"name": "batch", "spec": {"class": "sklearn.linear_model.LinearRegression"}},
    ]
    with Engine(":memory:") as engine:
        with pytest.raises(InvalidInput, match="mix river models and scikit-learn") as raised:
            engine.train("m", rows, target="y", candidates=candidates)
        assert raised.value.detail["candidates"] == {"online": "river", "batch": "sklearn"}
        assert engine.jobs.list() == [] and engine.list_models() == []


@pytest.mark.parametrize("existing", [False, True])
def test_a_job_that_fails_while_registering_registers_nothing(
    monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    rows = [{"a": float(i), "y": 2.0 * i} for i in range(20)]
    candidates = [
        {"name": "one", "spec": {"class": "river.linear_model.LinearRegression"}},
        {"name": "two", "spec": {"class": "river.linear_model.LinearRegression"}},
    ]
    with Engine(":memory:") as engine:
        if existing:
            engine.upload("m", linear_model.LinearRegression())
        real = engine.upload
        calls = []

        def upload(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            if len(calls) == 2:
                raise InvalidInput("the second registration is refused")
            return real(*args, **kwargs)

        monkeypatch.setattr(engine, "upload", upload)
        job = engine.train("m", rows, target="y", candidates=candidates)
        job = engine.jobs.wait(job["id"], 60)
        assert job["status"] == "failed" and len(calls) == 2
        assert "second registration" in job["error"]["message"]
        if existing:
            assert [v["version"] for v in engine.list_versions("m")] == [1]
        else:
            assert engine.list_models() == []
        assert job["result"].get("candidates", []) == []


async def test_mixed_candidates_over_http_are_a_400(api: httpx.AsyncClient) -> None:
    rows = [{"a": float(i), "y": 2.0 * i} for i in range(20)]
    candidates = [
        {"name": "online", "spec": {"class": "river.linear_model.LinearRegression"}},
        {"name": "batch", "spec": {"class": "sklearn.linear_model.LinearRegression"}},
    ]
    posted = await api.post(
        "/v1/jobs", json={"model": "m", "target": "y", "candidates": candidates, "data": rows}
    )
    assert posted.status_code == 400, posted.text
    assert posted.json()["error"]["code"] == "invalid_input"
    assert posted.json()["error"]["detail"]["candidates"] == {"online": "river", "batch": "sklearn"}
    assert (await api.get("/v1/jobs")).json()["jobs"] == []
    assert (await api.get("/v1/models/m")).status_code == 404
