"""Creating a model that is already there, on purpose: ``exist_ok`` in the engine, the
client, ``POST /v1/models`` and ``riverbed models create --exist-ok``. A model of that name
created from the same spec is described and nothing changes (no new version, no event); a
different spec, or a batch model of that name, is still a conflict; bad input is refused
first. The README's quickstarts use it (tests/test_readme.py runs them twice)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from river import linear_model, preprocessing
from sklearn.tree import DecisionTreeClassifier

from riverbed import Engine
from riverbed.exceptions import InvalidInput, InvalidSpec, ModelExists
from tests.helpers import new_database, riverbed

SPEC = {
    "pipeline": [
        {"class": "river.preprocessing.StandardScaler"},
        {"class": "river.linear_model.LinearRegression"},
    ]
}
OTHER = {"class": "river.linear_model.LinearRegression"}


def test_the_same_spec_again_describes_the_model_and_changes_nothing(engine: Engine) -> None:
    created = engine.create_model("houses", spec=SPEC, tags={"team": "a"})
    engine.learn("houses", {"rooms": 3.0}, 310.0)
    events = len(engine.events.recent(model="houses"))
    again = engine.create_model("houses", spec=SPEC, tags={"team": "b"}, exist_ok=True)
    assert again == engine.get_model("houses")
    assert (again["n_learns"], again["tags"], again["n_versions"]) == (1, {"team": "a"}, 1)
    assert again["created_at"] == created["created_at"]
    assert len(engine.events.recent(model="houses")) == events  # no model.created again
    with pytest.raises(ModelExists, match="already exists"):
        engine.create_model("houses", spec=SPEC)


def test_an_object_with_the_same_spec_is_the_same_model(engine: Engine) -> None:
    def model() -> object:
        return preprocessing.StandardScaler() | linear_model.LinearRegression()

    engine.create_model("houses", model())
    assert engine.create_model("houses", model(), exist_ok=True)["name"] == "houses"
    assert engine.create_model("houses", spec=SPEC, exist_ok=True)["n_versions"] == 1


def test_another_spec_or_a_batch_model_is_still_a_conflict(engine: Engine) -> None:
    engine.create_model("houses", spec=SPEC)
    with pytest.raises(ModelExists, match="another spec"):
        engine.create_model("houses", spec=OTHER, exist_ok=True)
    assert engine.get_model("houses")["spec"] == SPEC
    tree = DecisionTreeClassifier(max_depth=1).fit([[0], [1]], [0, 1])
    engine.upload("tree", tree)
    with pytest.raises(ModelExists, match="another spec"):
        engine.create_model("tree", spec=OTHER, exist_ok=True)
    assert engine.get_model("tree")["flavor"] == "sklearn"


def test_bad_input_is_refused_before_looking(engine: Engine) -> None:
    engine.create_model("houses", spec=SPEC)
    with pytest.raises(InvalidInput, match="exist_ok must be true or false"):
        engine.create_model("houses", spec=SPEC, exist_ok="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidSpec):
        engine.create_model("houses", spec={"class": "os.system"}, exist_ok=True)


def test_exist_ok_finds_the_model_after_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    with Engine(db) as engine:
        engine.create_model("houses", spec=SPEC, exist_ok=True)
    with Engine(db) as engine:
        assert engine.create_model("houses", spec=SPEC, exist_ok=True)["n_versions"] == 1


async def test_the_api_answers_201_then_200_and_409_for_another_spec(
    api: httpx.AsyncClient,
) -> None:
    body = {"name": "houses", "spec": SPEC, "exist_ok": True}
    first = await api.post("/v1/models", json=body)
    assert first.status_code == 201, first.text
    again = await api.post("/v1/models", json=body)
    assert again.status_code == 200, again.text
    assert again.json() == (await api.get("/v1/models/houses")).json()
    plain = await api.post("/v1/models", json={"name": "houses", "spec": SPEC})
    assert plain.status_code == 409 and plain.json()["error"]["code"] == "model_exists"
    other = await api.post("/v1/models", json={**body, "spec": OTHER})
    assert other.status_code == 409 and "another spec" in other.json()["error"]["message"]
    wrong = await api.post("/v1/models", json={**body, "exist_ok": "true"})
    assert wrong.status_code == 400 and wrong.json()["error"]["detail"] == {"field": "exist_ok"}
    listed = (await api.get("/v1/models")).json()["models"]
    assert [m["name"] for m in listed] == ["houses"]
    assert (await api.get("/v1/models/houses")).json()["spec"] == SPEC


def test_the_cli_creates_then_finds_with_exist_ok(tmp_path: Path) -> None:
    create = ["models", "create", "houses", "--spec", json.dumps(SPEC)]
    db = ["--database", new_database(tmp_path / "cli.db")]
    first = riverbed(*create, "--exist-ok", *db)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "created houses (regression), version 1\n"
    again = riverbed(*create, "--exist-ok", *db)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "houses (regression) exists, version 1\n"
    plain = riverbed(*create, *db)
    assert plain.returncode != 0 and "already exists" in plain.stderr
    using, error = plain.stderr.strip().splitlines()  # the database chosen, then the error
    assert using.startswith("riverbed: using the database ") and error.startswith("Error: ")
    other = riverbed(*create[:-1], json.dumps(OTHER), "--exist-ok", *db)
    assert other.returncode != 0 and "another spec" in other.stderr
