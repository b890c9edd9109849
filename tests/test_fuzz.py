"""A bounded schemathesis run over the OpenAPI document: generated requests to every route
(but the endless event streams) find no 500 and no crash, with an admin token (so requests
reach the handlers) and without one (so the guard is fuzzed too), on an app bound as if
public. Hypothesis is driven directly (derandomized, a few examples per operation), which
keeps the run short and repeatable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from riverbed import Engine
from riverbed.server import create_app

pytestmark = pytest.mark.fuzz

SPEC = {"class": "river.linear_model.LogisticRegression"}
EXAMPLES = 8


def check(response: Any, label: str) -> str | None:
    """What is wrong with a response, if anything."""
    if response.status_code >= 500:
        return f"{label}: {response.status_code} {response.text[:300]}"
    if 400 <= response.status_code != 405:
        try:
            error = response.json()["error"]
            assert error["code"] and error["message"]
        except Exception:
            return f"{label}: {response.status_code} without a JSON error: {response.text[:300]}"
    return None


def test_no_generated_request_breaks_the_server(tmp_path: Path) -> None:
    with Engine(str(tmp_path / "fuzz.db"), host="0.0.0.0") as engine:
        engine.create_model("m", spec=SPEC)
        admin = {"Authorization": f"Bearer {engine.tokens.create_token(['admin'])['token']}"}
        app = create_app(engine)
        streams = [e.path for e in app.state.endpoints if e.media_type == "text/event-stream"]
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        if streams:
            schema = schema.exclude(path=streams)
        problems: list[str] = []
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10

        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                scope = case.operation.definition.raw.get("x-riverbed-scope", "public")
                label = f"{case.method} {case.formatted_path}"
                problem = check(case.call(headers=admin), label + " (admin)")
                anonymous = case.call()
                problem = problem or check(anonymous, label + " (no token)")
                if scope != "public" and anonymous.status_code not in (401, 404, 405):
                    problem = problem or f"{label}: {anonymous.status_code} without a token"
                if problem:
                    problems.append(problem)

            run()
        assert problems == []
