"""The embedded engine and the client are two faces of one set of operations: every public
Engine method, called with the same arguments in-process and through the client against a
real ``riverbed serve``, gives the same result (timestamps and generated ids aside)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from river import datasets, reco, time_series
from sklearn.linear_model import LogisticRegression

from riverbed import Client, Engine, artifacts, specs
from riverbed.provenance import git_info
from tests.helpers import Server, phishing_model

# Engine methods with no client twin, each for a reason a user can read.
ENGINE_ONLY = {
    "close": "the engine's own lifetime; a client's is Client.close",
    "checkpoint": "an in-process write the server does by itself",
    "prune": "an in-process write the server does by itself",
    "live_model": "hands out the in-process object; over HTTP the artifact is download",
    "get_artifact": "download and get_version over HTTP, the same bytes and metadata",
    "resolve": "get_version over HTTP answers the same address",
    "signature": "over HTTP the model's Open Inference Protocol metadata, GET /v2/models/{name}",
    "tokens": "the token store; the client's twins are create_token, list_tokens, revoke_token",
    "canary_arm_of": "over HTTP a prediction's arm is in its answer and its predict event",
}

ROWS = [x for x, _ in datasets.Phishing().take(6)]
# A PageHinkley that fires on the few learns of the scenario: its alarms are compared too.
DRIFT = {"on": "feature:popup_window", "params": {"min_instances": 1, "threshold": 0.01}}
CANARY_GUARD = {"metric": "Accuracy", "margin": 0.1, "min_samples": 5}
# A rule no challenger meets in the scenario's few learns: promotions are by hand here.
RULE = {"metric": "Accuracy", "margin": 0.5, "min_samples": 1000, "window": 100}
SKOPS = artifacts.dump_object(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))[0]
LABELS = [y for _, y in datasets.Phishing().take(6)]


def scenario() -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """The calls, in order: (method, args, kwargs), the same for both faces."""
    x, y = ROWS[0], LABELS[0]
    return [
        # From a spec: both faces then hold the same object, byte for byte (its snapshot too).
        ("create_model", ("m",), {"spec": specs.to_spec(phishing_model())}),
        ("create_model", ("hw", time_series.HoltWinters(alpha=0.3)), {}),
        ("create_model", ("rec", reco.Baseline()), {}),
        ("list_models", (), {}),
        ("get_model", ("m",), {}),
        ("set_drift", ("m", [{"detector": "ADWIN"}, {"detector": "PageHinkley", **DRIFT}]), {}),
        ("predict", ("m", x), {"id": "p1"}),
        ("learn", ("m",), {"ground_truth": y, "id": "p1"}),
        ("learn", ("m", ROWS[1], LABELS[1]), {}),
        ("predict_many", ("m", [{"features": r} for r in ROWS[2:4]]), {}),
        (
            "learn_many",
            ("m", [{"features": r, "ground_truth": t} for r, t in zip(ROWS, LABELS, strict=True)]),
            {},
        ),
        ("metrics", ("m",), {}),
        ("drift", ("m",), {}),
        ("drift_alarms", ("m",), {}),
        ("drift_off", ("m",), {}),
        ("metrics_history", ("m",), {}),
        ("stats", ("m",), {}),
        ("snapshot", ("m",), {"description": "first", "tags": {"stage": "dev"}}),
        ("predict", ("m", x), {"version": 1}),
        ("predict", ("m@1", x), {}),
        ("list_versions", ("m",), {}),
        ("get_version", ("m@1",), {}),
        ("update_version", ("m", 1), {"description": "edited", "metrics": {"auc": 0.9}}),
        ("model_json", ("m@1",), {}),
        ("download", ("m@1",), {}),
        ("set_alias", ("m", "prod", 1), {}),
        ("aliases", ("m",), {}),
        ("predict", ("m@prod", x), {}),
        ("set_canary", ("m@prod", {"v1": 50, "v2": 50}), {"guard": CANARY_GUARD}),
        ("predict", ("m@prod", x), {"id": "c1"}),
        ("predict", ("m@prod", ROWS[1]), {"id": "c2"}),
        ("learn", ("m",), {"ground_truth": y, "id": "c1"}),
        ("update_canary", ("m@prod", {"v1": 20, "v2": 80}), {}),
        ("canary", ("m@prod",), {}),
        ("canaries", ("m",), {}),
        ("canary_history", ("m@prod",), {}),
        ("stop_canary", ("m@prod",), {}),
        ("stop_canary", ("m@prod",), {"remove": True}),
        ("delete_alias", ("m", "prod"), {}),
        ("restore", ("m", 2), {"metrics": "carry"}),
        ("alias_history", ("m",), {}),
        ("restore", ("m", 1), {}),
        ("metrics", ("m",), {}),
        ("add_challenger", ("m", "nb"), {"spec": {"class": "river.naive_bayes.GaussianNB"}}),
        ("add_challenger", ("m",), {"version": 1}),
        ("set_promotion_rule", ("m", RULE), {}),
        (
            "learn_many",
            ("m", [{"features": r, "ground_truth": t} for r, t in zip(ROWS, LABELS, strict=True)]),
            {},
        ),
        ("challengers", ("m",), {}),
        ("challenger", ("m", "nb"), {}),
        ("promotion_rule", ("m",), {}),
        ("promote", ("m", "nb"), {"by": "parity"}),
        ("rollback", ("m",), {"by": "parity"}),
        ("promotion_rule_off", ("m",), {}),
        ("remove_challenger", ("m", "nb"), {}),
        ("update_model", ("m",), {"description": "phishing", "tags": {"team": "a"}}),
        *(("learn", ("hw",), {"ground_truth": v}) for v in (3.0, 4.0, 5.0)),
        ("forecast", ("hw",), {"horizon": 2}),
        ("learn", ("rec",), {"user": "u", "item": "i", "ground_truth": 4.0}),
        ("rank", ("rec", "u", ["i", "j"]), {}),
        # Bytes, not the object: a skops file holds the time it was written.
        ("upload", ("sk", SKOPS), {"format": "skops"}),
        ("predict_rows", ("sk", [[0.2], [0.9]]), {}),
        ("search_models", ("tags.team = 'a'",), {}),
        ("search_versions", ("name = 'm'",), {}),
        (
            "train",
            ("trained", [{"a": i, "y": i % 2} for i in range(20)]),
            {"target": "y", "spec": {"class": "sklearn.linear_model.Ridge"}},
        ),
        ("delete_version", ("sk", 1), {}),
        ("delete_model", ("hw",), {}),
        ("list_models", (), {}),
    ]


GENERATED = re.compile(r"\b[0-9a-f]{16}(?:[0-9a-f]{16})?\b")  # prediction and job ids
VOLATILE = {"created_at", "updated_at", "at", "started_at", "finished_at", "queued_at", "time"}
TIMING = re.compile(r".*(_duration|_ms|_seconds)|p\d+|latency")


# The one field that tells the faces apart, by design: a river object given to the engine is
# kept as it is (its learned state included, source "object"); the client sends its spec.
SOURCE = {"source": {"object": "spec"}}
PICKLED = {"size", "checksum"}


def normal(value: Any) -> Any:
    """The value without what differs between any two runs: times, timings, job ids."""
    if isinstance(value, dict):
        # A promotion's version holds the pickled live object: the same content on both
        # faces, but its bytes depend on which equal strings are one object in memory
        # (pickle's memo), so its size and checksum differ from run to run.
        dropped = PICKLED if value.get("source") == "promotion" else set()
        return {
            k: SOURCE[k].get(v, v) if k in SOURCE and isinstance(v, str) else normal(v)
            for k, v in value.items()
            if k not in VOLATILE and k not in dropped and not TIMING.fullmatch(k)
        }
    if isinstance(value, list | tuple):
        return [normal(v) for v in value]
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, str):
        return GENERATED.sub("<generated id>", value)
    return value


def as_json(value: Any) -> Any:
    """What the value is once sent as JSON (object keys are strings there)."""
    if isinstance(value, bytes):
        return value
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


def run(face: Any, wait: Callable[[str], Any]) -> list[Any]:
    results = []
    for method, args, kwargs in scenario():
        result = getattr(face, method)(*args, **kwargs)
        if method == "train":
            result = wait(result["id"])
            result.pop("id")
        results.append((method, normal(as_json(result))))
    return results


def test_every_public_engine_method_has_a_client_twin() -> None:
    public = {n for n, _ in inspect.getmembers(Engine) if not n.startswith(("_", "submit_"))}
    called = {method for method, _, _ in scenario()}
    assert public - called - set(ENGINE_ONLY) == set()
    assert all(hasattr(Client, name) for name in called)


def test_engine_and_client_give_the_same_results(tmp_path: Path) -> None:
    server = Server(str(tmp_path / "server.db")).start()
    try:
        with Engine(str(tmp_path / "engine.db")) as engine:
            here = run(engine, lambda id: engine.jobs.wait(id))
        with Client(server.url) as client:
            there = run(client, lambda id: client.jobs.wait(id))
    finally:
        server.stop()
    for (method, a), (_, b) in zip(here, there, strict=True):
        assert a == b, method
    snapshot = dict(here)["snapshot"]
    assert snapshot["created_by"]  # the user name and the checkout, recorded by both faces
    assert snapshot["git"] == (git_info() or None)
