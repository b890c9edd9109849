"""Training jobs against a real ``riverbed serve``: the CLI's progress bar, the client, and a
job killed with its server that comes back as interrupted."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from river import datasets

from riverbed import Client
from riverbed.cli import cli
from tests.helpers import Server, new_database

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LogisticRegression"},
    ]
}


@pytest.fixture
def phishing_csv(tmp_path: Path) -> Path:
    path = tmp_path / "phishing.csv"
    path.write_bytes(gzip.open(datasets.Phishing().path, "rb").read())
    return path


@pytest.mark.slow
def test_riverbed_train_draws_progress_and_registers(phishing_csv: Path, tmp_path: Path) -> None:
    """On a server with auth on, with a token from RIVERBED_TOKEN or --token."""
    database = new_database(tmp_path / "auth.db")
    made = CliRunner().invoke(cli, ["tokens", "create", "--scope", "admin", "--database", database])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    server = Server(database, None, "--auth", "on").start()
    try:
        run_train_commands(server, secret, phishing_csv, tmp_path)
    finally:
        server.stop()


def run_train_commands(server: Server, secret: str, phishing_csv: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    args = ["train", str(phishing_csv), "--target", "is_phishing", "--spec", str(spec)]
    refused = CliRunner().invoke(cli, [*args, "--url", server.url])
    assert refused.exit_code == 1 and "unauthorized" in refused.output
    result = CliRunner(env={"RIVERBED_TOKEN": secret}).invoke(cli, [*args, "--url", server.url])
    assert result.exit_code == 0, result.output
    assert "training" in result.output and "100%" in result.output  # the progress
    assert "phishing@1" in result.output and "Accuracy=0.8928" in result.output
    with Client(server.url, token=secret) as client:
        (job,) = client.jobs.list(model="phishing")
        assert job["status"] == "succeeded" and job["data"]["rows"] == 1250
        events = list(client.jobs.follow(job["id"]))  # a finished job: what happened, the end
        assert [e["type"] for e in events][:2] == ["job.queued", "job.running"]
        assert events[-1] == {
            "type": "job.succeeded",
            "job": job["id"],
            "status": "succeeded",
            "progress": 1.0,
        }
        assert client.jobs.logs(job["id"])[-1]["message"] == "succeeded"
        runner = CliRunner(env={"RIVERBED_TOKEN": secret})
        listed = runner.invoke(cli, ["jobs", "ls", "--url", server.url])
        assert job["id"] in listed.output and "succeeded" in listed.output
        shown = runner.invoke(cli, ["jobs", "show", job["id"], "--url", server.url])
        assert json.loads(shown.output)["id"] == job["id"]
        logs = runner.invoke(cli, ["jobs", "logs", job["id"], "--url", server.url])
        assert "registered candidate-1 as phishing@1" in logs.output
        cancelled = CliRunner().invoke(
            cli, ["jobs", "cancel", job["id"], "--url", server.url, "--token", secret]
        )
        assert cancelled.output.strip() == f"{job['id']}: succeeded"
        bad = runner.invoke(
            cli,
            ["train", str(phishing_csv), "-t", "nope", "--spec", str(spec), "--url", server.url],
        )
        assert bad.exit_code == 1 and "column 'nope'" in bad.output
        put = runner.invoke(cli, ["cache", "put", "k", "1", "--url", server.url])
        assert put.exit_code == 0, put.output


@pytest.mark.slow
def test_the_client_follows_progress_and_a_killed_job_comes_back_interrupted(
    tmp_path: Path, phishing_csv: Path
) -> None:
    database = str(tmp_path / "server.db")
    server = Server(database).start()
    try:
        with Client(server.url) as client:
            job = client.train("p", phishing_csv, target="is_phishing", spec=SPEC)
            events = list(client.jobs.follow(job["id"]))
            assert events[-1]["type"] == "job.succeeded"
            progress = [e["progress"] for e in events if e["type"] == "job.progress"]
            assert progress == sorted(progress) and len(progress) >= 50  # about one a percent
            assert client.predict("p@1", {"https": 1.0})["version"] == 1
            # about 50,000 rows: long enough to be running when the server is killed
            header, _, body = phishing_csv.read_bytes().partition(b"\n")
            big = header + b"\n" + body * 40
            two = [SPEC, {"class": "river.tree.HoeffdingTreeClassifier"}]
            long_job = client.train("long", big, format="csv", target="is_phishing", candidates=two)
            waiting = client.train("long", big, format="csv", target="is_phishing", spec=SPEC)
            for event in client.jobs.follow(long_job["id"]):
                if event["type"] == "job.progress":
                    break  # it is running: kill the server under it
        server.kill()
        server = Server(database, server.port).start()
        with Client(server.url) as client:
            back = client.jobs.get(long_job["id"])
            assert back["status"] == "interrupted"
            assert back["error"]["detail"] == {"was": "running"}
            behind = client.jobs.get(waiting["id"])  # one worker: it was still queued
            assert behind["status"] == "interrupted"
            assert behind["error"]["detail"] == {"was": "queued"}
            assert client.jobs.get(job["id"])["status"] == "succeeded"
    finally:
        server.stop()
