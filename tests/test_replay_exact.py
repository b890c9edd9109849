"""What a restart or retention must not change: a bandit's pulls after a restart are the
ones the running process would have made, a predict refused for a taken id is not counted
(and a count a reader saw before the refusal does not go down), and a prediction that
retention removed frees its id even while it is still cached."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
import textwrap
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from river import bandit, linear_model

from riverbed import Engine
from riverbed.exceptions import PredictionExists, PredictionNotFound

ARMS = ["a", "b", "c"]
ODDS = {"a": 0.2, "b": 0.5, "c": 0.8}

# A process that pulls and rewards, then dies without closing (no checkpoint on close):
# pulls after its last checkpoint, some rewarded, some not yet.
CRASHING = textwrap.dedent(
    """
    import json, os, random, sys
    from river import bandit
    from riverbed import Engine

    engine = Engine(sys.argv[1], checkpoint_every=7, checkpoint_seconds=3600)
    engine.create_model("arms", bandit.EpsilonGreedy(epsilon=0.5, seed=7))
    rewards = random.Random(11)
    odds = {"a": 0.2, "b": 0.5, "c": 0.8}
    pulled, pending = [], []
    for i in range(60):
        arm = engine.predict("arms", arms=["a", "b", "c"], id=f"p{i}")["arm"]
        pulled.append(arm)
        pending.append((f"p{i}", float(rewards.random() < odds[arm])))
        if len(pending) == 3 and i < 55:
            for pid, reward in pending:
                engine.learn("arms", ground_truth=reward, id=pid)
            pending = []
    print(json.dumps({"pulled": pulled, "pending": pending}))
    sys.stdout.flush()
    os._exit(0)
    """
)


def test_a_bandit_pulls_after_a_crash_as_the_running_process_would_have(
    tmp_path: Path,
) -> None:
    """The pulls after the last checkpoint moved the policy's random state; a restart
    replays them between the learns they came between, so the next pulls are those of a
    policy that never stopped."""
    path = str(tmp_path / "arms.db")
    done = subprocess.run(
        [sys.executable, "-c", CRASHING, path], capture_output=True, text=True, check=True
    )
    crashed = json.loads(done.stdout)
    reference = bandit.EpsilonGreedy(epsilon=0.5, seed=7)
    rewards = random.Random(11)
    pending: list[tuple[str, float]] = []
    for i in range(60):
        arm = reference.pull(ARMS)
        assert arm == crashed["pulled"][i]
        pending.append((arm, float(rewards.random() < ODDS[arm])))
        if len(pending) == 3 and i < 55:
            for pulled, reward in pending:
                reference.update(pulled, reward)
            pending = []
    with Engine(path) as engine:
        for (pid, reward), (arm, _) in zip(crashed["pending"], pending, strict=True):
            engine.learn("arms", ground_truth=reward, id=pid)
            reference.update(arm, reward)
        for i in range(60, 100):
            arm = engine.predict("arms", arms=ARMS, id=f"p{i}")["arm"]
            assert arm == reference.pull(ARMS), f"pull {i}"
            reward = float(rewards.random() < ODDS[arm])
            engine.learn("arms", ground_truth=reward, id=f"p{i}")
            reference.update(arm, reward)
        assert engine.stats("arms")["n_predictions"] == 100


def test_a_predict_refused_for_a_taken_id_is_not_counted(tmp_path: Path) -> None:
    """An id held by a stored prediction (not in the cache after a restart) is refused at
    commit; the refused predict is not in n_predictions or the predict stats."""
    path = str(tmp_path / "ids.db")
    with Engine(path) as engine:
        engine.create_model("m", linear_model.LinearRegression())
        engine.predict("m", {"x": 1.0}, id="taken")
    with Engine(path) as engine:
        before = engine.stats("m")
        with pytest.raises(PredictionExists):
            engine.predict("m", {"x": 2.0}, id="taken")
        assert engine.stats("m") == before
        assert engine.predict("m", {"x": 2.0}, id="free")["id"] == "free"
        assert engine.stats("m")["n_predictions"] == before["n_predictions"] + 1


def test_the_predictions_count_never_goes_down_when_a_counted_predict_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader (the stats route, GET /metrics' riverbed_predictions_total counter) that
    sees a prediction counted before its commit is not shown less once the commit refuses
    it: the write is held (the real SQLite write, its outcome handed on when the test says)
    so that the read falls between the count and the refusal. The count shown is exact
    again once the next prediction takes up the refused one's seq."""
    path = str(tmp_path / "count.db")
    with Engine(path) as engine:
        engine.create_model("m", linear_model.LinearRegression())
        engine.predict("m", {"x": 1.0}, id="taken")
    with Engine(path) as engine:
        assert engine.stats("m")["n_predictions"] == 1
        add, held = engine.store.add_prediction, []

        def held_add(record: Any, *args: Any, **kwargs: Any) -> Future[None]:
            written, handed = add(record, *args, **kwargs), Future[None]()
            held.append((written, handed))
            return handed

        monkeypatch.setattr(engine.store, "add_prediction", held_add)
        receipt = engine.submit_predict("m", {"x": 2.0}, id="taken")  # refused at commit
        counted = engine.stats("m")["n_predictions"]
        assert counted == 2  # counted as it was made, its commit not settled
        assert engine.get_model("m")["n_predictions"] == 2
        ((written, handed),) = held
        error = written.exception(timeout=60)
        assert isinstance(error, PredictionExists)
        handed.set_exception(error)
        with pytest.raises(PredictionExists):
            receipt.wait()
        assert engine.stats("m")["n_predictions"] == counted  # not 1: a counter never goes down
        assert engine.get_model("m")["n_predictions"] == counted
        monkeypatch.undo()
        assert engine.predict("m", {"x": 3.0}, id="free")["id"] == "free"
        assert engine.stats("m")["n_predictions"] == 2  # the refused seq taken up: exact again
        engine.predict("m", {"x": 4.0})
        assert engine.stats("m")["n_predictions"] == 3
    with Engine(path) as engine:
        assert engine.stats("m")["n_predictions"] == 3
        assert engine.store.max_prediction_seq("m") == 3


def test_an_id_that_retention_removed_can_be_used_again_while_still_cached(
    tmp_path: Path,
) -> None:
    """Retention keeps the newest 2 predictions; the older ones' ids are free again
    (docs/architecture.md), though the prediction cache still holds them: a new predict
    with such an id is stored, and its label learns from the new prediction."""
    with Engine(str(tmp_path / "r.db"), retention_predictions=2) as engine:
        engine.create_model("m", linear_model.LinearRegression())
        for i in range(4):
            engine.predict("m", {"x": float(i)}, id=f"p{i}")
        assert engine.prune("m")["predictions"] == 2
        assert "p0" in engine._cache  # the cache's own generations drop it later
        with pytest.raises(PredictionNotFound):
            engine.learn("m", ground_truth=1.0, id="p0")
        again = engine.predict("m", {"x": 10.0}, id="p0")
        assert again["id"] == "p0"
        stored = engine.store.get_prediction("p0")
        assert stored is not None and stored.features == {"x": 10.0}
        engine.learn("m", ground_truth=1.0, id="p0")
        assert engine.stats("m")["n_learns"] == 1
        model = copy.deepcopy(linear_model.LinearRegression())
        model.learn_one({"x": 10.0}, 1.0)
        assert engine.live_model("m").weights == model.weights
