"""Challengers and promotion (riverbed.challengers): shadow models beside a champion.

Every number is compared with river run directly: each model alone through river's
progressive validation (``evaluate.progressive_val_score``, its questions and answers from
``stream.simulate_qa`` with a delay) on the same drifting stream; the rule's promotion at the
label where river's own rolling metrics of the models say the margin is first reached.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from river import (
    datasets,
    evaluate,
    linear_model,
    metrics,
    naive_bayes,
    preprocessing,
    stream,
    tree,
    utils,
)

from riverbed import Client, Engine
from riverbed.cli import cli
from riverbed.exceptions import ChallengerNotFound, Conflict, InvalidInput
from tests.helpers import STORES, Server, database

N = 3000
DELAY = 5
METRICS = ["Accuracy", "LogLoss"]
RULE = {"metric": "LogLoss", "margin": 0.05, "min_samples": 1200, "window": 300}


def drifting(n: int = N) -> list[tuple[dict[str, Any], Any]]:
    """Agrawal's function 0, then (100 samples wide, from 1,000) function 4: river's own
    concept drift, nothing downloaded."""
    s = datasets.synth.ConceptDriftStream(
        stream=datasets.synth.Agrawal(classification_function=0, seed=3),
        drift_stream=datasets.synth.Agrawal(classification_function=4, seed=3),
        position=1000,
        width=100,
        seed=5,
    )
    return list(itertools.islice(s, n))


def champion() -> Any:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression()


def challengers() -> dict[str, Any]:
    return {"tree": tree.HoeffdingTreeClassifier(grace_period=50), "nb": naive_bayes.GaussianNB()}


NB_SPEC = {"class": "river.naive_bayes.GaussianNB"}


def river_alone(samples: list[tuple[dict[str, Any], Any]], model: Any) -> dict[str, float]:
    """river's progressive validation of one model, labels DELAY samples late."""
    metric = metrics.Accuracy() + metrics.LogLoss()
    evaluate.progressive_val_score(samples, model, metric, delay=DELAY)
    return {type(m).__name__: m.get() for m in metric}


def feed(engine: Any, name: str, samples: list[tuple[dict[str, Any], Any]]) -> None:
    """The same questions and answers river's progressive validation goes through: a
    prediction per sample, its label DELAY samples later, by prediction id."""
    for i, x, y in stream.simulate_qa(samples, moment=None, delay=DELAY):
        if y is None:
            engine.predict(name, x, id=f"p{i}")
        else:
            engine.learn(name, ground_truth=y, id=f"p{i}")


def arena(engine: Engine, tmp: Any = None) -> Engine:
    engine.create_model("m", champion(), metrics=METRICS)
    engine.add_challenger("m", "tree", model=challengers()["tree"])
    engine.add_challenger("m", "nb", spec=NB_SPEC)
    return engine


@pytest.mark.parametrize("kind", STORES)
def test_side_by_side_metrics_are_rivers_progressive_validation_of_each_model_alone(
    kind: str, tmp_path: Path
) -> None:
    samples = drifting()
    with database(kind, tmp_path) as db, Engine(db) as engine:
        arena(engine)
        feed(engine, "m", samples)
        view = engine.challengers("m")
        history = engine.challenger("m", "tree")["history"]
    assert view["champion"]["metrics"] == river_alone(samples, champion())
    got = {c["name"]: c for c in view["challengers"]}
    for name, model in challengers().items():
        assert got[name]["metrics"] == river_alone(samples, model), name
        assert got[name]["n_late"] == 0  # every prediction made when the champion's was
        assert got[name]["n_learns"] == N
    assert view["n_dropped"] == 0
    # A history point every 100 labels scored (the tree's first predictions, made before it
    # learned anything, are empty: nothing to score), as the champion's.
    assert [p["n"] for p in history] == list(range(100, got["tree"]["n"] + 1, 100))
    assert history[-1]["seq"] == N - (got["tree"]["n"] % 100)


def expected_promotion(
    samples: list[tuple[dict[str, Any], Any]], rule: dict[str, Any]
) -> tuple[int, str, dict[str, float]]:
    """river alone: each model predicts and learns in the same order; per challenger, a
    rolling metric of its own and of the champion's over the labels both could be scored
    on. The first label at which one is better by the margin: (label count, challenger,
    numbers)."""
    models = {"champion": champion(), **challengers()}
    predictions: dict[int, dict[str, Any]] = {}
    rolls = {
        c: (
            utils.Rolling(metrics.LogLoss, window_size=rule["window"]),
            utils.Rolling(metrics.LogLoss, window_size=rule["window"]),
        )
        for c in challengers()
    }
    counts = dict.fromkeys(challengers(), 0)
    labels = 0
    for i, x, y in stream.simulate_qa(samples, moment=None, delay=DELAY):
        if y is None:
            predictions[i] = {k: m.predict_proba_one(x) for k, m in models.items()}
            continue
        made = predictions.pop(i)
        labels += 1
        for _m_name, m in models.items():
            m.learn_one(x, y)
        best = None
        for c, (r_champion, r_challenger) in rolls.items():
            if made["champion"] and made[c]:
                r_champion.update(y, made["champion"])
                r_challenger.update(y, made[c])
                counts[c] += 1
            if counts[c] < rule["min_samples"]:
                continue
            ch, cv = r_champion.get(), r_challenger.get()
            gain = (ch - cv) / abs(ch)
            if gain > 0 and gain >= rule["margin"] and (best is None or gain > best[0]):
                best = (gain, c, {"champion": ch, "challenger": cv, "n": counts[c]})
        if best is not None:
            return labels, best[1], best[2]
    raise AssertionError("no challenger wins on this stream: choose another rule")


def test_the_rule_promotes_the_challenger_that_should_win_at_the_label_count_implied(
    tmp_path: Path,
) -> None:
    samples = drifting()
    at, winner, numbers = expected_promotion(samples, RULE)
    assert 1100 < at < N  # after the drift, as the stream and the rule were chosen for
    db = str(tmp_path / "rule.db")
    events: list[Any] = []
    with Engine(db) as engine:
        arena(engine)
        engine.set_promotion_rule("m", RULE)
        engine.events.subscribe(lambda e: events.append(e) if e.type == "model.promoted" else 0)
        # The label `at` comes with sample at + DELAY; the stream's end then labels the rest.
        fed = samples[: at + DELAY - 1]
        feed(engine, "m", fed)
        view = engine.challengers("m")
        assert len(view["promotions"]) == 1
        promotion = view["promotions"][0]
        assert (promotion["n_learns"], promotion["challenger"]) == (at, winner)
        assert promotion["reason"] == "rule" and promotion["demoted"] == "v1"
        got = promotion["numbers"]
        assert (got["n"], got["champion"], got["challenger"]) == (
            numbers["n"],
            numbers["champion"],
            numbers["challenger"],
        )
        assert got["improvement"] >= RULE["margin"]
        # One registry change: version 2 holds the new champion, name@restored points at it.
        assert promotion["version"] == 2 and view["champion"]["version"] == 2
        versions = engine.list_versions("m")
        assert [(v["version"], v["source"]) for v in versions] == [(1, "object"), (2, "promotion")]
        assert engine.aliases("m")["restored"] == 2
        engine.store.sync()
        assert len(events) == 1 and events[0].data["numbers"]["n"] == numbers["n"]
        # The new champion's metrics are the winner's, alone, over every label so far.
        assert view["champion"]["metrics"] == river_alone_labelled(fed, winner)
        before = engine.challengers("m")
    # A restart on SQLite: the same arena, the same numbers, no second version.
    with Engine(db) as engine:
        again = engine.challengers("m")
        assert again == before
        assert len(engine.list_versions("m")) == 2
        # Rollback: the old champion answers again, as river's model alone would.
        undone = engine.rollback("m", by="test")
        assert (undone["challenger"], undone["reason"], undone["undoes"]) == ("v1", "rollback", 2)
        assert undone["version"] == 3 and engine.aliases("m")["restored"] == 3
        after = engine.challengers("m")
        assert after["champion"]["metrics"] == before["challengers"][-1]["metrics"]
        assert {c["name"] for c in after["challengers"]} == {"tree", "nb"} - {winner} | {winner}
        reference = champion()
        for x, y in fed:
            reference.learn_one(x, y)
        x = samples[at + DELAY][0]
        assert engine.predict("m", x)["probabilities"] == reference.predict_proba_one(x)
        with pytest.raises(Conflict):  # a rollback is not rolled back; nothing left to undo
            engine.rollback("m")


def test_a_rule_promotion_is_written_when_a_checkpoint_comes_at_its_own_learn(
    tmp_path: Path,
) -> None:
    """A checkpoint goes on with the live objects loaded back from it: a promotion the rule
    made at that learn, not written to the registry yet, is still written (its version,
    its event), and kept after a restart."""
    samples = drifting()
    at, winner, _ = expected_promotion(samples, RULE)
    db = str(tmp_path / "checkpointed.db")
    # The first checkpoint after the arena's is at learn `at`, in the same hold of the
    # model's lock as the promotion (so the challengers thread cannot write it before).
    settings = {"checkpoint_every": at, "checkpoint_seconds": 1e6, "checkpoint_share": 1.0}
    events: list[Any] = []
    with Engine(db, **settings) as engine:
        arena(engine)
        engine.set_promotion_rule("m", RULE)
        engine.events.subscribe(lambda e: events.append(e) if e.type == "model.promoted" else 0)
        feed(engine, "m", samples[: at + DELAY - 1])
        engine.store.sync()
        checkpoint = engine.store.get_checkpoint("m")
        assert checkpoint is not None and checkpoint.seq == at
        (promotion,) = engine.challengers("m")["promotions"]
        assert (promotion["n_learns"], promotion["challenger"]) == (at, winner)
        assert promotion["version"] == 2
        versions = engine.list_versions("m")
        assert [(v["version"], v["source"]) for v in versions] == [(1, "object"), (2, "promotion")]
        assert engine.aliases("m")["restored"] == 2
        engine.store.sync()
        assert [e.data["version"] for e in events] == [2]
    with Engine(db) as engine:
        (again,) = engine.challengers("m")["promotions"]
        assert again["version"] == 2 and len(engine.list_versions("m")) == 2


def river_alone_labelled(samples: list[tuple[dict[str, Any], Any]], name: str) -> dict[str, float]:
    """The metrics of challenger ``name`` over the labels of ``samples`` given DELAY late,
    the last DELAY predictions being asked too but not labelled yet."""
    model = challengers()[name]
    metric = metrics.Accuracy() + metrics.LogLoss()
    pending: dict[int, Any] = {}
    for i, x, y in stream.simulate_qa(samples, moment=None, delay=DELAY):
        if y is None:
            pending[i] = model.predict_proba_one(x)
        else:
            y_pred = pending.pop(i)
            if y_pred:  # as river's progressive validation: an empty prediction is not scored
                metric.update(y, y_pred)
            model.learn_one(x, y)
    return {type(m).__name__: m.get() for m in metric}


def test_promote_by_hand_swaps_champion_and_challenger_as_one_registry_change(
    tmp_path: Path,
) -> None:
    samples = drifting(600)
    with Engine(str(tmp_path / "hand.db")) as engine:
        arena(engine)
        feed(engine, "m", samples)
        before = engine.challengers("m")
        promoted = engine.promote("m", "nb", by="ann")
        assert (promoted["challenger"], promoted["demoted"], promoted["version"]) == ("nb", "v1", 2)
        after = engine.challengers("m")
        nb = next(c for c in before["challengers"] if c["name"] == "nb")
        assert after["champion"]["metrics"] == nb["metrics"]
        v1 = next(c for c in after["challengers"] if c["name"] == "v1")
        assert v1["metrics"] == before["champion"]["metrics"]
        assert engine.alias_history("m")[-1]["by"] == "ann"
        assert engine.get_version("m@restored")["source"] == "promotion"
        reference = naive_bayes.GaussianNB()
        for x, y in samples[: 600 - DELAY] + samples[600 - DELAY :]:
            reference.learn_one(x, y)
        x = drifting(601)[-1][0]
        assert engine.predict("m", x)["probabilities"] == reference.predict_proba_one(x)
        with pytest.raises(ChallengerNotFound):
            engine.promote("m", "nope")


def test_a_stuck_challenger_never_holds_up_a_prediction(tmp_path: Path) -> None:
    """The request path only queues the sample: with the challengers' lock held elsewhere
    (a challenger busy for as long as you like), predictions are answered all the same."""
    with Engine(str(tmp_path / "stuck.db")) as engine:
        arena(engine)
        live = engine._live["m"]
        assert live.arena is not None
        held, release = threading.Event(), threading.Event()

        def busy() -> None:
            with live.arena.lock:  # type: ignore[union-attr]
                held.set()
                release.wait()

        thread = threading.Thread(target=busy)
        thread.start()
        held.wait()
        try:
            answered = [engine.predict("m", x) for x, _ in drifting(50)]
        finally:
            release.set()
            thread.join()
        assert len(answered) == 50
        assert len(engine.challengers("m")["challengers"]) == 2


def test_bad_requests_are_refused_clearly_and_change_nothing(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "bad.db")) as engine:
        arena(engine)
        engine.create_model("reg", linear_model.LinearRegression())
        before = engine.challengers("m")
        with pytest.raises(InvalidInput, match="task mismatch"):
            engine.add_challenger("m", model=linear_model.LinearRegression())
        with pytest.raises(InvalidInput, match="task mismatch"):
            engine.add_challenger("m", ref="reg")
        with pytest.raises(InvalidInput, match="one source"):
            engine.add_challenger("m", spec=NB_SPEC, version=1)
        with pytest.raises(InvalidInput, match="already"):
            engine.add_challenger("m", "nb", spec=NB_SPEC)
        with pytest.raises(InvalidInput, match="not one of the model's metrics"):
            engine.set_promotion_rule("m", {**RULE, "metric": "MAE"})
        with pytest.raises(InvalidInput, match="has unknown field[(]s[)] when; its fields"):
            engine.set_promotion_rule("m", {**RULE, "when": 1})
        lacking = {k: v for k, v in RULE.items() if k != "min_samples"}
        with pytest.raises(InvalidInput, match="rule has no min_samples; its fields are margin,"):
            engine.set_promotion_rule("m", lacking)
        with pytest.raises(InvalidInput, match="window"):
            engine.set_promotion_rule("m", {**RULE, "window": 0})
        with pytest.raises(ChallengerNotFound):
            engine.remove_challenger("m", "nope")
        with pytest.raises(Conflict, match="no promotion"):
            engine.rollback("m")
        assert engine.challengers("m") == before


async def test_the_routes_answer_and_refuse_over_http(api: httpx.AsyncClient) -> None:
    engine = api.engine  # type: ignore[attr-defined]
    engine.create_model("m", champion(), metrics=METRICS)
    r = await api.post("/v1/models/m/challengers", json={"name": "nb", "spec": NB_SPEC})
    assert r.status_code == 201 and r.json()["challengers"][0]["name"] == "nb"
    r = await api.post("/v1/models/m/challengers", json={"version": 1})
    assert r.status_code == 201 and r.json()["challengers"][1]["source"] == {"version": 1}
    for x, y in drifting(300):
        p = engine.predict("m", x)
        engine.learn("m", ground_truth=y, id=p["id"])
    r = await api.get("/v1/models/m/challengers/nb?history=2")
    assert r.status_code == 200 and len(r.json()["history"]) == 2
    bad = [
        (
            "POST",
            "/v1/models/m/challengers",
            {"spec": {"class": "river.linear_model.LinearRegression"}},
            400,
            "invalid_input",
        ),
        ("POST", "/v1/models/m/challengers", {"spec": NB_SPEC, "extra": 1}, 400, "invalid_input"),
        ("GET", "/v1/models/m/challengers/nope", None, 404, "challenger_not_found"),
        ("DELETE", "/v1/models/m/challengers/nope", None, 404, "challenger_not_found"),
        ("POST", "/v1/models/m/challengers/nope/promote", {}, 404, "challenger_not_found"),
        ("POST", "/v1/models/m/rollback", None, 409, "conflict"),
        ("PUT", "/v1/models/m/promotion-rule", {**RULE, "metric": "ROCAUC"}, 400, "invalid_input"),
        ("GET", "/v1/models/none/challengers", None, 404, "model_not_found"),
    ]
    for method, path, body, status, code in bad:
        r = await api.request(method, path, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (method, path)
    r = await api.put("/v1/models/m/promotion-rule", json=RULE)
    assert r.status_code == 200 and r.json()["rule"]["window"] == 300
    r = await api.post("/v1/models/m/challengers/nb/promote", json={"by": "bob"})
    assert r.status_code == 200 and r.json()["version"] == 2
    # The old champion, as a challenger, is v1-2 (v1, the version added, has that name).
    r = await api.post("/v1/models/m/rollback")
    assert r.status_code == 200 and r.json()["challenger"] == "v1-2"
    text = (await api.get("/metrics")).text
    assert 'riverbed_challenger_metric{model="m",challenger="nb",metric="LogLoss"}' in text
    assert 'riverbed_promotions_total{model="m",reason="manual"} 1' in text
    assert 'riverbed_promotions_total{model="m",reason="rollback"} 1' in text
    r = await api.delete("/v1/models/m/promotion-rule")
    assert r.json()["rule"] is None
    r = await api.delete("/v1/models/m/challengers/nb")
    assert r.status_code == 200 and [c["name"] for c in r.json()["challengers"]] == ["v1"]
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert "/v1/models/{name}/challengers/{challenger}/promote" in paths
    assert "/v1/models/{name}/promotion-rule" in paths


def test_client_and_a_real_server_killed_and_restarted_keep_the_arena(tmp_path: Path) -> None:
    """Through riverbed serve: a kill -9 after a rule promotion, and the restart replays the
    learns after the checkpoint to the same numbers and the same (single) promotion."""
    samples = drifting()
    at, winner, _ = expected_promotion(samples, RULE)
    db = str(tmp_path / "srv.db")
    server = Server(db, None, "--checkpoint-every", "100000", "--checkpoint-seconds", "3600")
    server.start()
    try:
        with Client(server.url) as client:
            client.create_model(
                "m",
                spec={
                    "pipeline": [
                        {"class": "river.preprocessing.StandardScaler"},
                        {"class": "river.linear_model.LogisticRegression"},
                    ]
                },
                metrics=METRICS,
            )
            client.add_challenger(
                "m",
                "tree",
                spec={
                    "class": "river.tree.HoeffdingTreeClassifier",
                    "params": {"grace_period": 50},
                },
            )
            client.add_challenger("m", "nb", spec=NB_SPEC)
            client.set_promotion_rule("m", RULE)
            for start in range(0, N, 500):
                chunk = samples[start : start + 500]
                client.learn_many("m", [{"features": x, "ground_truth": y} for x, y in chunk])
            before = client.challengers("m")
    finally:
        server.kill()
    promotions = before["promotions"]
    assert promotions[0]["n_learns"] == undelayed_promotion(samples) and promotions[0]["challenger"]
    server = Server(db, None).start()
    try:
        with Client(server.url) as client:
            after = client.challengers("m")
            assert after == before
            n_versions = len(client.list_versions("m"))
            assert n_versions == 1 + len(promotions)
            assert client.rule if False else client.promotion_rule("m")["rule"]["window"] == 300
    finally:
        server.stop()
    assert winner in {"tree", "nb"}


def undelayed_promotion(samples: list[tuple[dict[str, Any], Any]]) -> int:
    """expected_promotion's label count when every sample is learned with its features at
    once (river's progressive validation without delay)."""
    global DELAY
    kept, DELAY = DELAY, 0
    try:
        return expected_promotion(samples, RULE)[0]
    finally:
        DELAY = kept


def test_the_cli_adds_lists_promotes_rolls_back_and_sets_the_rule(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    with Engine(db) as engine:
        engine.create_model("m", champion(), metrics=METRICS)
        feed(engine, "m", drifting(200))
        engine.snapshot("m")
        engine.create_model("fresh", champion(), metrics=METRICS)

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, [*args, "--database", db], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "v2" in run("challengers", "add", "m", "--version", "2")
    assert "nb" in run("challengers", "add", "m", "--name", "nb", "--spec", json.dumps(NB_SPEC))
    listed = json.loads(run("challengers", "list", "m", "--json"))
    assert [c["name"] for c in listed["challengers"]] == ["v2", "nb"]
    # The table shows each metric to 4 significant digits (LogLoss has more to cut).
    champion_row = run("challengers", "list", "m").splitlines()[1].split()
    values = [listed["champion"]["metrics"][m] for m in METRICS]
    assert any(len(str(v)) > len(f"{v:.4g}") for v in values)
    shown = [f"{v:.4g}" for v in values]
    assert champion_row == ["champion", "v1", str(listed["champion"]["n"]), *shown]
    # Nothing scored yet (a challenger just added, a champion that has learned nothing): blank.
    assert run("challengers", "list", "m").splitlines()[2].split() == ["v2", "version=2", "0"]
    assert run("challengers", "list", "fresh").splitlines()[1].split() == ["champion", "v1", "0"]
    assert "LogLoss is better by 2.00% over the last 300 labels" in run(
        "challengers", "rule", "m", "--metric", "LogLoss", "--margin", "0.02", "--window", "300"
    )
    assert "nb is the champion (version 3)" in run("challengers", "promote", "m", "nb")
    assert "v1 is the champion (version 4)" in run("challengers", "rollback", "m")
    assert "no promotion rule" in run("challengers", "rule", "m", "--off")
    shown = json.loads(run("challengers", "show", "m", "nb"))
    assert shown["name"] == "nb"
    assert "nb" not in run("challengers", "remove", "m", "nb").split("promoted")[0]
    bad = CliRunner().invoke(cli, ["challengers", "promote", "m", "nope", "--database", db])
    assert bad.exit_code != 0 and "no challenger 'nope'" in bad.output
