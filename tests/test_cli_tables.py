"""The CLI's tables print times as ISO-8601 UTC, ``--json`` keeps them numbers (issue 26
item 10): ``models show``, ``ls``, ``search``, ``alias``, ``tokens ls``, ``drift alarms``,
through the installed ``riverbed`` entry point in a subprocess."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from river import tree

from riverbed import Engine
from tests.helpers import riverbed
from tests.test_drift import drifting, learn_all

# A time as the tables print it, written out here rather than taken from riverbed.
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
EPOCH = re.compile(r"(?<![\d.])1\d{9}(\.\d+)?(?![\d.])")  # seconds since 1970, as numbers


def iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def out(*args: str) -> str:
    done = riverbed(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fields(listing: str) -> dict[str, str]:
    """``key  value`` lines (models show's first part) as a dict."""
    found = {}
    for line in listing.split("\n\n")[0].splitlines():
        key, _, value = line.partition(" ")
        found[key] = value.strip()
    return found


def column(listing: str, header: str) -> list[str]:
    """One column of a table: the cells under ``header``, from where it starts to where the
    next header starts (the columns are aligned; a cell may be empty)."""
    lines = listing.strip("\n").splitlines()
    start = lines[0].index(header)
    following = re.compile(r"\s+\S").search(lines[0], start + len(header))
    end = following.end() - 1 if following else None
    return [line[start:end].strip() for line in lines[1:]]


def test_models_tables_print_iso_times_and_json_numbers(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    with Engine(db) as engine:
        engine.create_model("m", tree.HoeffdingTreeClassifier())
        engine.snapshot("m")
        engine.set_alias("m", "prod", 1, by="me")
        model = engine.get_model("m")
        versions = engine.list_versions("m")
        moved = engine.alias_history("m")
    where = ("--database", db)

    shown = out("models", "show", "m", *where)
    assert not EPOCH.search(shown), shown
    got = fields(shown)
    assert got["created_at"] == iso(model["created_at"])
    assert got["updated_at"] == iso(model["updated_at"])
    created = column(shown.split("\n\n")[1], "CREATED")
    assert created == [iso(v["created_at"]) for v in versions]

    one = fields(out("models", "show", "m@1", *where))
    assert one["created_at"] == iso(versions[0]["created_at"]) and ISO.fullmatch(one["created_at"])

    listed = out("models", "ls", *where)
    assert column(listed, "UPDATED") == [iso(model["updated_at"])]
    found = out("models", "search", "name = 'm'", *where)
    newest_first = sorted(versions, key=lambda v: -v["version"])  # search's default order
    assert column(found, "VERSION") == [str(v["version"]) for v in newest_first]
    assert column(found, "CREATED") == [iso(v["created_at"]) for v in newest_first]
    history = out("models", "alias", "m", *where).split("\n\n")[1]
    assert column(history, "AT") == [iso(h["at"]) for h in moved]

    # --json: the numbers as the API has them
    as_json = json.loads(out("models", "show", "m", "--json", *where))
    assert as_json["created_at"] == model["created_at"]
    assert [v["created_at"] for v in as_json["versions"]] == [v["created_at"] for v in versions]
    listed_json = json.loads(out("models", "ls", "--json", *where))
    assert listed_json["models"][0]["updated_at"] == model["updated_at"]


def test_tokens_ls_prints_iso_times_and_never(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    with Engine(db) as engine:
        forever = engine.tokens.create_token(["read"], name="forever")
        brief = engine.tokens.create_token(["read"], name="brief", expires_in="1d")
    listed = out("tokens", "ls", "--database", db)
    assert not EPOCH.search(listed), listed
    rows = {line.split()[1]: line.split() for line in listed.splitlines()[1:]}
    assert rows["forever"][3:5] == [iso(forever["created_at"]), "never"]
    assert rows["brief"][3:5] == [iso(brief["created_at"]), iso(brief["expires_at"])]
    as_json = {t["name"]: t for t in json.loads(out("tokens", "ls", "--json", "--database", db))}
    assert as_json["brief"]["expires_at"] == brief["expires_at"]


def test_drift_alarms_print_iso_times(tmp_path: Path) -> None:
    db = str(tmp_path / "t.db")
    with Engine(db) as engine:
        engine.create_model("m", tree.HoeffdingTreeClassifier())
        engine.set_drift("m", [{"detector": "DDM"}])
        learn_all(engine, "m", drifting(2400, position=1200))
        alarms: list[dict[str, Any]] = engine.drift_alarms("m")["alarms"]
    assert alarms
    listed = out("drift", "alarms", "m", "--database", db)
    assert column(listed, "TIME") == [iso(a["time"]) for a in alarms]
    assert not EPOCH.search(listed)
    as_json = json.loads(out("drift", "alarms", "m", "--json", "--database", db))
    assert [a["time"] for a in as_json["alarms"]] == [a["time"] for a in alarms]
