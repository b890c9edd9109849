"""Maisie's PyPI client ``maisie``, unchanged, against a real ``riverbed serve``: log in,
upload a model file with its metadata and git information, list, fetch, download."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Server

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys
import maisie

url, token, repo, model_file, out = sys.argv[1:6]
config = maisie.Config(dictionary={
    "api_url": url + "/api/v1",
    "auth_user_login": "ada",
    "auth_user_password": token,
    "selected_project": "3",
    "git_local_repo": repo,
})
models = maisie.Models(config)
uploaded = models.upload(
    name="churn",
    filename=model_file,
    hyperparameters={"C": 1.0, "penalty": "l2"},
    parameters={"features": 12},
    metrics={"accuracy": 0.91},
    dataset_name="customers",
)
models.upload(name="My first uploaded model", filename=model_file, hyperparameters={},
              parameters={}, metrics={"f1": 0.5})
listing = models.get_all(page=1, per_page=1)
everything = models.get_all(page=1, per_page=10)
one = models.get(uploaded[0]["id"])
with config.session as session:
    download = session.get(one[0]["_links"]["download"])
with open(out, "w") as f:
    json.dump({"uploaded": uploaded, "listing": listing, "everything": everything,
               "one": one, "download": download.content.decode("latin-1")}, f)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(str(tmp_path_factory.mktemp("maisie") / "server.db")).start()
    try:
        yield srv
    finally:
        srv.stop()


def git_checkout(path: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(path), *args], check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    git("init", "-q", "-b", "experiments")
    (path / "train.py").write_text("print('trained')\n")
    git("add", "train.py")
    git("-c", "user.name=Ada", "-c", "user.email=ada@example.org", "commit", "-qm", "train")
    return git("rev-parse", "HEAD")


def test_the_maisie_client_workflow(server: Server, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    commit = git_checkout(repo)
    model_file = tmp_path / "example_model.pkl"
    model_file.write_bytes(b"\x80\x04opaque model bytes")
    out = tmp_path / "out.json"
    script = tmp_path / "client.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            server.url,
            "any-token",
            str(repo),
            str(model_file),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())

    uploaded = result["uploaded"][0]
    assert uploaded["name"] == "churn" and uploaded["id"] == 1
    assert uploaded["hyperparameters"] == {"C": 1.0, "penalty": "l2"}
    assert uploaded["parameters"] == {"features": 12}
    assert uploaded["metrics"] == {"accuracy": 0.91}
    assert uploaded["git"] == {"active_branch": "experiments", "commit_hash": commit}
    assert uploaded["project_id"] == "3"
    assert result["listing"] == [result["everything"][0]]  # one per page
    assert [(m["id"], m["name"]) for m in result["everything"]] == [
        (1, "churn"),
        (2, "My first uploaded model"),
    ]
    assert result["one"] == [uploaded]
    assert result["download"] == "\x80\x04opaque model bytes"  # the permanent URL's bytes


def test_the_routes_directly(server: Server, tmp_path: Path) -> None:
    base = f"{server.url}/api/v1"
    token = httpx.post(f"{base}/auth/login/", data={"login": "ada", "password": "x"}).json()
    assert token["data"]["access_token"] == "x"
    created = httpx.post(
        f"{base}/models/",
        data={
            "name": "iris",
            "dataset_name": "iris",
            "dataset_description": "Fisher's irises",
            "metrics": json.dumps({"accuracy": 0.97, "f1": 0.96}),
        },
        files={"file": ("iris.joblib", b"joblib bytes")},
    )
    assert created.status_code == 201, created.text
    body = created.json()["data"]
    assert body["dataset"] == {"name": "iris", "description": "Fisher's irises"}
    filtered = httpx.get(f"{base}/models/", params={"metrics": "accuracy,f1"}).json()
    assert [m["name"] for m in filtered["data"]] == ["iris"]
    assert filtered["pagination"]["total"] == 1
    assert httpx.get(body["_links"]["download"]).content == b"joblib bytes"
    assert httpx.get(f"{base}/models/999/").status_code == 404
    missing_file = httpx.post(f"{base}/models/", data={"name": "x"})
    assert missing_file.status_code == 400
    bad_json = httpx.post(
        f"{base}/models/", data={"name": "x", "metrics": "{nope"}, files={"file": ("f", b"1")}
    )
    assert bad_json.status_code == 400
    assert httpx.get(f"{base}/models/", params={"page": "two"}).status_code == 400
    assert httpx.post(f"{base}/auth/login/", data={"login": "ada"}).status_code == 400


@pytest.mark.parametrize(
    "body, content_type, status, code",
    [
        (b"{", "application/json", 400, "malformed_json"),
        (b'{"login": "ada", "password": ', "application/json", 400, "malformed_json"),
        (b'["ada", "x"]', "application/json", 400, "invalid_input"),
        (b"[" * 10_000, "application/json", 400, "limit_exceeded"),
        (b'{"login": "' + b"a" * 2_000_000 + b'"}', "application/json", 413, "payload_too_large"),
        (b"login=" + b"a" * 2_000_000, "application/x-www-form-urlencoded", 413, None),
        (b"--x\r\nnot a part", "multipart/form-data; boundary=x", 400, "invalid_input"),
    ],
)
async def test_a_bad_login_body_is_a_4xx(
    api: httpx.AsyncClient, body: bytes, content_type: str, status: int, code: str | None
) -> None:
    """Malformed JSON used to be a 500, and the body was read whatever its size: it is
    read within max_body_bytes (1 MiB by default) like every other route's."""
    response = await api.post(
        "/api/v1/auth/login/", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == (code or "payload_too_large")


async def test_login_takes_json_form_and_multipart_bodies(api: httpx.AsyncClient) -> None:
    url = "/api/v1/auth/login/"
    for kwargs in (
        {"json": {"login": "ada", "password": "x"}},
        {"data": {"login": "ada", "password": "x"}},
        {"data": {"login": "ada", "password": "x"}, "files": {"f": ("f", b"")}},
    ):
        response = await api.post(url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 200, (kwargs, response.text)
        assert response.json()["data"]["access_token"] == "x"


@pytest.mark.parametrize(
    "data",
    [{}, {"name": "x", "metrics": "{nope"}, {"name": "x", "parameters": "[1]"}],
    ids=["no name", "bad metrics", "parameters not an object"],
)
async def test_a_refused_upload_closes_its_temporary_file(
    api: httpx.AsyncClient, data: dict[str, str]
) -> None:
    """Found by tests/test_fuzz.py: a multipart upload refused with 400 (here a file part
    with no name field) left the file part's temporary file open (a ResourceWarning when it
    was collected, which the suite turns into a failure)."""
    response = await api.post("/api/v1/models/", data=data, files={"file": ("m.pkl", b"1")})
    assert response.status_code == 400, response.text
    gc.collect()  # an unclosed SpooledTemporaryFile warns here
