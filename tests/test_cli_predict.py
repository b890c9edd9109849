"""``riverbed predict`` and ``riverbed learn MODEL [INPUT]`` (issue 26 item 8): one JSON object,
a JSON-lines file or stdin, batched through predict_many / learn_many, on a database file
and on a real server, through the installed ``riverbed`` entry point in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from river import linear_model, preprocessing

from riverbed import Client, Engine
from tests.helpers import Server

RIVERBED = str(Path(sys.executable).with_name("riverbed"))


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    return subprocess.run(
        [RIVERBED, *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, **(env or {})},
    )


def ok(*args: str, stdin: str | None = None, **kw: Any) -> list[dict[str, Any]]:
    done = run(*args, stdin=stdin, **kw)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def refused(*args: str, stdin: str | None = None, **kw: Any) -> str:
    """The one error line of a command that fails (exit status 1)."""
    done = run(*args, stdin=stdin, **kw)
    assert done.returncode == 1, (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if not line.startswith("riverbed: using")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def pipeline() -> Any:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def samples(n: int, seed: int = 7) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {"a": rng.uniform(-3, 3), "b": rng.uniform(-3, 3)}
        out.append((x, x["a"] + 0.5 * x["b"] > 0))
    return out


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def new_model(db: str) -> None:
    with Engine(db) as engine:
        engine.create_model("m", pipeline())


def counts(db: str) -> tuple[int, int]:
    with Engine(db, read_only=True) as engine:
        info = engine.get_model("m")
    return info["n_learns"], info["n_predictions"]


def test_learn_then_predict_from_files_and_stdin_on_a_database(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    new_model(db)
    train, probe = samples(150), samples(12, seed=8)
    data = tmp_path / "train.jsonl"
    data.write_text(jsonl([{"features": x, "ground_truth": y} for x, y in train]))

    done = run("learn", "m", str(data), "--batch-size", "40", "--database", db)
    assert done.returncode == 0, done.stderr
    learned = [json.loads(line) for line in done.stdout.splitlines()]
    assert learned == [{"id": None, "n_learns": i} for i in range(1, 151)]
    assert done.stderr.splitlines()[-1] == "learned 150 lines; m has 150 learns"

    reference = pipeline()
    for x, y in train:
        reference.learn_one(x, y)
    lines = [{"features": x, "id": f"p{i}"} for i, (x, _) in enumerate(probe)]
    lines[3] = {"features": probe[3][0]}  # an id the engine makes
    answers = ok("predict", "m", "-", "--batch-size", "5", "--database", db, stdin=jsonl(lines))
    assert len(answers) == len(probe)
    for i, (answer, (x, _)) in enumerate(zip(answers, probe, strict=True)):
        assert answer["id"] == (f"p{i}" if i != 3 else answers[3]["id"]) and answer["model"] == "m"
        want = reference.predict_proba_one(x)
        assert answer["probabilities"]["true"] == pytest.approx(want[True])
        assert answer["prediction"] == (want[True] > want[False])
    assert len(answers[3]["id"]) == 32

    # one object as the argument; then its delayed label by id, from stdin
    (one,) = ok(
        "predict", "m", json.dumps({"features": probe[0][0], "id": "late"}), "--database", db
    )
    assert one["id"] == "late"
    labels = jsonl(
        [{"id": "late", "ground_truth": probe[0][1]}, {"id": "p1", "ground_truth": True}]
    )
    assert ok("learn", "m", "--database", db, stdin=labels) == [
        {"id": "late", "n_learns": 151},
        {"id": "p1", "n_learns": 152},
    ]
    assert counts(db) == (152, 13)
    with Engine(db, read_only=True) as engine:
        stored = engine.store.get_prediction("late")
        assert stored is not None and stored.labelled and stored.features == probe[0][0]


def test_a_bad_line_names_its_line_and_applies_nothing_of_it(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    new_model(db)
    rows = [{"features": x, "ground_truth": y} for x, y in samples(6)]
    text = jsonl(rows[:2]) + "\n" + '{"features": {"a": 1,}\n' + jsonl(rows[2:])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text)
    error = refused("learn", "m", str(bad), "--database", db)
    assert error.startswith("Error: line 4 is not JSON") and "nothing was sent" in error
    assert refused("predict", "m", "--database", db, stdin="[1, 2]\n").startswith(
        "Error: line 1 is a JSON array, not an object"
    )
    assert counts(db) == (0, 0)

    # a line the model refuses: its batch is not applied, the batch before it is
    labels = jsonl([*rows[:3], {"id": "never-predicted", "ground_truth": True}, *rows[3:]])
    error = refused("learn", "m", "--batch-size", "2", "--database", db, stdin=labels)
    assert error.startswith("Error: line 4: prediction_not_found: no prediction with id")
    assert "nothing from line 3 on, its batch's first, was learned; the 2 before it were" in error
    assert counts(db) == (2, 0)
    error = refused("predict", "m", '{"features": {"a": "x"}, "size": 1}', "--database", db)
    assert error.startswith("Error: the input: invalid_input:") and "size" in error
    assert counts(db) == (2, 0)

    usage = run("predict", "m", str(tmp_path / "missing.jsonl"), "--database", db)
    assert usage.returncode == 2 and "neither a JSON object nor a file" in usage.stderr


def test_on_a_server_by_url_and_by_environment(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    new_model(db)
    with Server(db) as server:
        train = samples(30)
        body = jsonl([{"features": x, "ground_truth": y} for x, y in train])
        learned = ok("learn", "m", "-", "--url", server.url, stdin=body)
        assert [line["n_learns"] for line in learned] == list(range(1, 31))
        asked = jsonl([{"features": x, "id": f"s{i}"} for i, (x, _) in enumerate(train[:4])])
        answers = ok("predict", "m", env={"RIVERBED_URL": server.url}, stdin=asked)
        assert [a["id"] for a in answers] == ["s0", "s1", "s2", "s3"]
        with Client(server.url) as client:
            labelled = ok("learn", "m", '{"id": "s2", "ground_truth": true}', "--url", server.url)
            assert labelled == [{"id": "s2", "n_learns": 31}]
            error = refused("learn", "m", '{"id": "s9", "ground_truth": true}', "--url", server.url)
            assert error.startswith("Error: the input: prediction_not_found")
            assert client.get_model("m")["n_learns"] == 31
        # the older spelling: learn DATA --model MODEL, from a CSV file's columns
        csv = tmp_path / "rows.csv"
        csv.write_text("a,b,label\n1.5,0.5,true\n-2,1,false\n0.1,x,true\n")
        error = refused("learn", str(csv), "--model", "m", "--target", "label", "--url", server.url)
        assert error.startswith("Error: line 4: ")  # the file's line: "x" is no number
        csv.write_text("a,b,label\n1.5,0.5,true\n-2,1,false\n")
        assert ok("learn", str(csv), "-m", "m", "-t", "label", "--url", server.url) == [
            {"id": None, "n_learns": 32},
            {"id": None, "n_learns": 33},
        ]


def test_many_lines_draw_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    db = str(tmp_path / "d.db")
    new_model(db)
    data = tmp_path / "many.jsonl"
    data.write_text(jsonl([{"features": x} for x, _ in samples(50)]))
    controller, terminal = pty.openpty()  # stderr is a terminal, stdout a pipe
    try:
        done = subprocess.run(
            [RIVERBED, "predict", "m", str(data), "--batch-size", "10", "--database", db],
            stdout=subprocess.PIPE,
            stderr=terminal,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
    finally:
        os.close(terminal)
    drawn = b""
    try:
        while chunk := os.read(controller, 65536):
            drawn += chunk
    except OSError:  # the terminal's other end is closed: all is read
        pass
    finally:
        os.close(controller)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 50
    assert b"predicting m" in drawn and b"100%" in drawn
    piped = run("predict", "m", str(data), "--database", db)
    assert "predicting m" not in piped.stderr and "%" not in piped.stderr
