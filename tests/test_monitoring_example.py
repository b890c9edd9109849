"""docs/monitoring.md's worked example, run: a drift alarm fires on a champion and a
challenger takes over, on river's ConceptDriftStream (nothing downloaded). The numbers the
page prints are the ones this test produces, and each is checked against river run
directly (the same models, in the same order, with river's own ADWIN and rolling metrics),
so neither the page nor the engine can drift from river.

Also the detector action ``promote``: an alarm promotes the challenger that is better over
the rule's window, by any margin.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import pytest
from river import drift, metrics, naive_bayes, tree, utils
from river.datasets import synth

from riverbed import Engine
from riverbed.exceptions import InvalidInput
from riverbed.server.prometheus import exposition

DOC = Path(__file__).resolve().parents[1] / "docs" / "monitoring.md"
N, WARM = 9000, 3000
CHAMPION = {"class": "river.tree.HoeffdingTreeClassifier"}
CHALLENGERS = {
    "hat": {"class": "river.tree.HoeffdingAdaptiveTreeClassifier", "params": {"seed": 1}},
    "nb": {"class": "river.naive_bayes.GaussianNB"},
}
RULE = {"metric": "Accuracy", "margin": 0.05, "min_samples": 1000, "window": 1000}


def samples() -> list[tuple[dict[str, Any], Any]]:
    """Agrawal's function 0, then (from sample 5,000, 100 samples wide) function 4."""
    stream = synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=42),
        drift_stream=synth.Agrawal(classification_function=4, seed=42),
        position=5000,
        width=100,
        seed=1,
    )
    return list(itertools.islice(stream, N))


def river_run(data: list[tuple[dict[str, Any], Any]], rule: dict[str, Any]) -> dict[str, Any]:
    """What should happen, from river alone: the champion learns WARM samples; then each
    model predicts a sample and learns it; ADWIN watches the champion's mistakes; per
    challenger, river's rolling Accuracy of it and of the champion over the labels since
    it joined (or the last promotion); a challenger better by the rule's margin, or by any
    margin at an alarm of a ``promote`` detector, becomes the champion."""
    models: dict[str, Any] = {
        "champion": tree.HoeffdingTreeClassifier(),
        "hat": tree.HoeffdingAdaptiveTreeClassifier(seed=1),
        "nb": naive_bayes.GaussianNB(),
    }
    for x, y in data[:WARM]:
        models["champion"].learn_one(x, y)
    champion = "champion"
    window = rule["window"]

    def pairs() -> dict[str, Any]:
        return {
            k: [utils.Rolling(metrics.Accuracy, window), utils.Rolling(metrics.Accuracy, window), 0]
            for k in models
            if k != champion
        }

    paired = pairs()
    adwin = drift.ADWIN()
    alarms: list[dict[str, Any]] = []
    promotions: list[dict[str, Any]] = []
    for seq, (x, y) in enumerate(data[WARM:], WARM + 1):
        made = {k: m.predict_one(x) for k, m in models.items()}
        for m in models.values():
            m.learn_one(x, y)
        adwin.update(int(made[champion] != y))
        for k, (r_champion, r_challenger, _) in paired.items():
            if made[champion] is None or made[k] is None:
                continue  # a model that has learned nothing yet predicts nothing to score
            r_champion.update(y, made[champion])
            r_challenger.update(y, made[k])
            paired[k][2] += 1

        def best(margin: float, paired: dict[str, Any]) -> tuple[float, str, dict[str, Any]] | None:
            found = None
            for k, (r_champion, r_challenger, n) in paired.items():
                if n < rule["min_samples"]:
                    continue
                ch, cv = r_champion.get(), r_challenger.get()
                gain = (cv - ch) / abs(ch)
                if gain > 0 and gain >= margin and (found is None or gain > found[0]):
                    found = (gain, k, {"n": n, "champion": ch, "challenger": cv})
            return found

        if adwin.drift_detected:
            alarms.append({"seq": seq, "champion": champion})
        won, reason = best(rule["margin"], paired), "rule"
        if won is None and adwin.drift_detected and rule.get("on_alarm"):
            won, reason = best(0.0, paired), "drift"
        if won is not None:
            promotions.append(
                {**won[2], "seq": seq, "who": won[1], "reason": reason, "gain": won[0]}
            )
            champion = won[1]
            paired = pairs()
    return {"alarms": alarms, "promotions": promotions}


def engine_run(
    db: str, data: list[tuple[dict[str, Any], Any]], rule: dict[str, Any], action: str
) -> tuple[Engine, dict[str, Any]]:
    """The worked example through riverbed: the page's steps, in-process."""
    engine = Engine(db)
    engine.create_model("fraud", spec=CHAMPION, metrics=["Accuracy"])
    engine.learn_many("fraud", [{"features": x, "ground_truth": y} for x, y in data[:WARM]])
    for name, spec in CHALLENGERS.items():
        engine.add_challenger("fraud", name, spec=spec)
    engine.set_drift("fraud", [{"detector": "ADWIN", "action": action}])
    engine.set_promotion_rule("fraud", rule)
    for x, y in data[WARM:]:
        engine.learn("fraud", x, y)
    return engine, engine.challengers("fraud")


@pytest.fixture(scope="module")
def data() -> list[tuple[dict[str, Any], Any]]:
    return samples()


def test_the_worked_example_numbers_are_the_engines_and_rivers(
    data: list[tuple[dict[str, Any], Any]], tmp_path: Path
) -> None:
    expected = river_run(data, RULE)
    engine, view = engine_run(str(tmp_path / "example.db"), data, RULE, "snapshot")
    try:
        alarms = engine.drift_alarms("fraud")["alarms"]
        versions = engine.list_versions("fraud")
    finally:
        engine.close()
    # The alarms: where river's ADWIN on the champion's mistakes says so.
    assert sorted(a["position"] for a in alarms) == [a["seq"] for a in expected["alarms"]]
    # The promotion: the rule's, at the label and with the numbers river's rolling metrics give.
    got = [
        {**p["numbers"], "seq": p["n_learns"], "who": p["challenger"], "reason": p["reason"]}
        for p in view["promotions"]
    ]
    assert [(p["seq"], p["who"], p["reason"]) for p in got] == [
        (p["seq"], p["who"], p["reason"]) for p in expected["promotions"]
    ]
    for mine, river_s in zip(got, expected["promotions"], strict=True):
        assert (mine["n"], mine["champion"], mine["challenger"]) == (
            river_s["n"],
            river_s["champion"],
            river_s["challenger"],
        )
        assert mine["improvement"] == pytest.approx(river_s["gain"])
    first_alarm, promotion = min(a["position"] for a in alarms), got[0]
    # A snapshot at each alarm, a version at the promotion, in the order they came.
    made = sorted(
        [(a["position"], "snapshot") for a in alarms] + [(p["seq"], "promotion") for p in got]
    )
    assert [v["source"] for v in versions] == ["spec"] + [source for _, source in made]
    # What the page says is what happened.
    text = DOC.read_text()
    shown = {
        "drift starts": "5,000",
        "first alarm": f"{first_alarm:,}",
        "promotion": f"{promotion['seq']:,}",
        "promoted": promotion["who"],
        "champion accuracy": f"{promotion['champion']:.3f}",
        "challenger accuracy": f"{promotion['challenger']:.3f}",
        "improvement": f"{promotion['improvement']:.1%}",
        "alarms": ", ".join(f"{p:,}" for p in sorted(a["position"] for a in alarms)),
    }
    table = _example_table(text)
    assert table == shown


def _example_table(text: str) -> dict[str, str]:
    """The worked example's results table in docs/monitoring.md: ``| what | value |`` rows
    between the markers."""
    block = text.split("<!-- worked-example-results -->")[1]
    rows = re.findall(r"^\| ([^|]+?) \| `?([^|`]+?)`? \|$", block, re.M)
    return {k: v for k, v in rows if k not in ("what", "---")}


def test_an_alarm_with_action_promote_promotes_a_better_challenger_by_any_margin(
    data: list[tuple[dict[str, Any], Any]], tmp_path: Path
) -> None:
    """A rule whose margin no challenger reaches (900%): only the alarm promotes, the
    challenger that is better over the rule's window at the alarm's learn."""
    rule = {**RULE, "margin": 9.0}
    expected = river_run(data, {**rule, "on_alarm": True})
    assert [p["reason"] for p in expected["promotions"]] == ["drift"]  # as the stream implies
    engine, view = engine_run(str(tmp_path / "promote.db"), data, rule, "promote")
    try:
        (promotion,) = view["promotions"]
        (river_s,) = expected["promotions"]
        assert (promotion["n_learns"], promotion["challenger"], promotion["reason"]) == (
            river_s["seq"],
            river_s["who"],
            "drift",
        )
        numbers = promotion["numbers"]
        assert (numbers["n"], numbers["champion"], numbers["challenger"]) == (
            river_s["n"],
            river_s["champion"],
            river_s["challenger"],
        )
        assert numbers["alarm"]["detector"] == "ADWIN"
        assert numbers["alarm"]["seq"] == river_s["seq"]
        versions = engine.list_versions("fraud")
        assert [v["source"] for v in versions] == ["spec", "promotion"]
        assert versions[-1]["created_by"] == "drift"
        text = exposition(engine)
        assert 'riverbed_promotions_total{model="fraud",reason="drift"} 1' in text
        assert 'reason="rule"' not in text
    finally:
        engine.close()
    assert f"at learn {promotion['n_learns']:,}, where" in DOC.read_text()  # the page says so
    # A restart replays to the same promotion and writes no second version.
    with Engine(str(tmp_path / "promote.db")) as again:
        assert again.challengers("fraud")["promotions"] == view["promotions"]
        assert len(again.list_versions("fraud")) == 2


def test_promote_is_refused_where_there_can_be_no_challengers(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "r.db")) as engine:
        engine.create_model("k", spec={"class": "river.cluster.KMeans"})
        engine.learn("k", {"a": 1.0})
        with pytest.raises(InvalidInput, match="no challengers to promote"):
            engine.set_drift("k", [{"detector": "ADWIN", "on": "feature:a", "action": "promote"}])
        assert engine.drift("k")["detectors"] == []
