"""Rate limits (429 with Retry-After, per address and per token, per route group) and limits
on input (depth, string length, batch size): each breach a clear 4xx that changes nothing."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from riverbed import Engine
from riverbed.config import Settings
from riverbed.exceptions import PayloadTooLarge
from riverbed.ratelimit import Rate, RateLimiter, parse_rates
from riverbed.server import create_app
from riverbed.server.http import check_batch

SPEC = {"class": "river.linear_model.LinearRegression"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rates_parse_and_refuse_nonsense() -> None:
    assert parse_rates("") == {}
    assert parse_rates("5/s") == {"*": Rate(5, 1.0)}
    assert parse_rates("models=30/m, *=10/5s ,learning=1/day") == {
        "models": Rate(30, 60.0),
        "*": Rate(10, 5.0),
        "learning": Rate(1, 86400.0),
    }
    for bad in ("models=30", "x=0/m", "x=3/fortnight", "=/"):
        with pytest.raises(ValueError, match="bad rate limit"):
            parse_rates(bad)


def test_a_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(parse_rates("models=3/m"), clock=clock)
    assert [limiter.hit("models", "a") for _ in range(3)] == [0, 0, 0]
    assert limiter.hit("models", "a") == pytest.approx(20.0)  # one request every 20 s
    assert limiter.hit("models", "b") == 0  # another key has its own bucket
    assert limiter.hit("learning", "a") == 0  # a group without a limit is free
    clock.now += 20
    assert limiter.hit("models", "a") == 0
    assert limiter.hit("models", "a") > 0


def test_idle_buckets_are_forgotten_when_there_are_too_many() -> None:
    clock = Clock()
    limiter = RateLimiter(parse_rates("1/s"), clock=clock, max_keys=10)
    for i in range(10):
        limiter.hit("g", str(i))
    clock.now += 5
    limiter.hit("g", "new")
    assert len(limiter._buckets) == 1
    assert limiter.hit("g", "new") > 0  # a live bucket is kept


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Engine, str, str]]:
    with Engine(
        str(tmp_path / "l.db"),
        host="0.0.0.0",
        rate_limit_address="models=4/m",
        rate_limit_token="learning=2/h",
    ) as engine:
        engine.create_model("m", spec=SPEC)
        one = engine.tokens.create_token(["admin"])["token"]
        two = engine.tokens.create_token(["admin"])["token"]
        transport = httpx.ASGITransport(app=create_app(engine), client=("198.51.100.1", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, engine, one, two


async def test_an_address_over_its_group_limit_gets_429_with_retry_after(
    limited: tuple[httpx.AsyncClient, Engine, str, str],
) -> None:
    client, _, one, _ = limited
    headers = {"Authorization": f"Bearer {one}"}
    statuses = [(await client.get("/v1/models", headers=headers)).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    refused = await client.get("/v1/models", headers=headers)
    assert refused.headers["retry-after"] == "15"
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["detail"]["group"] == "models"
    # the bucket is charged before the token is checked: no token is also 429
    assert (await client.get("/v1/models")).status_code == 429
    # other groups are not limited for this address
    assert (await client.get("/v1/models/m/metrics", headers=headers)).status_code == 200


async def test_a_token_over_its_group_limit_gets_429_and_changes_nothing(
    limited: tuple[httpx.AsyncClient, Engine, str, str],
) -> None:
    client, engine, one, two = limited
    body = {"features": {"x": 1.0}, "ground_truth": 2.0}
    for _ in range(2):
        ok = await client.post(
            "/v1/models/m/learn", json=body, headers={"Authorization": f"Bearer {one}"}
        )
        assert ok.status_code == 200
    refused = await client.post(
        "/v1/models/m/learn", json=body, headers={"Authorization": f"Bearer {one}"}
    )
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) == 1800
    assert engine.stats("m")["n_learns"] == 2
    other = await client.post(
        "/v1/models/m/learn", json=body, headers={"Authorization": f"Bearer {two}"}
    )
    assert other.status_code == 200


def test_bad_rate_limit_settings_stop_the_app() -> None:
    with pytest.raises(ValueError, match="rate limit"):
        create_app(settings=Settings(rate_limit_token="lots"))


@pytest.fixture
async def api_small(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    with Engine(str(tmp_path / "s.db"), max_json_depth=5, max_string_length=50) as engine:
        engine.create_model("m", spec=SPEC)
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, engine


async def test_a_body_nested_too_deep_is_400_and_changes_nothing(
    api_small: tuple[httpx.AsyncClient, Engine],
) -> None:
    client, engine = api_small
    deep = {"class": "river.linear_model.LinearRegression", "params": {"a": [[[[[1]]]]]}}
    response = await client.post("/v1/models", json={"name": "d", "spec": deep})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "limit_exceeded"
    assert response.json()["error"]["detail"] == {"limit": "max_json_depth", "max": 5}
    assert [m["name"] for m in engine.list_models()] == ["m"]
    abyss = b"[" * 5000 + b"]" * 5000  # deeper than the JSON parser itself goes
    response = await client.post("/v1/models/m/predict", content=abyss)
    assert response.status_code == 400 and response.json()["error"]["code"] == "limit_exceeded"


async def test_a_string_over_the_limit_anywhere_in_the_body_is_400(
    api_small: tuple[httpx.AsyncClient, Engine],
) -> None:
    client, engine = api_small
    for body in (
        {"name": "x", "spec": SPEC, "description": "d" * 51},
        {"name": "x", "spec": SPEC, "tags": {"k" * 51: "v"}},
        {"name": "x", "spec": {"class": "r" * 51}},
    ):
        response = await client.post("/v1/models", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["detail"]["limit"] == "max_string_length"
    assert [m["name"] for m in engine.list_models()] == ["m"]
    response = await client.post("/v1/models/m/predict", json={"features": {"x": "y" * 51}})
    assert response.status_code == 400
    assert engine.stats("m")["n_predictions"] == 0


def test_a_batch_over_the_limit_is_413() -> None:
    settings = Settings(max_batch_size=3)
    assert check_batch([1, 2, 3], settings) == [1, 2, 3]
    with pytest.raises(PayloadTooLarge) as info:
        check_batch([1, 2, 3, 4], settings)
    assert info.value.detail == {"limit": "max_batch_size", "max": 3, "given": 4}


def _reference_limits(value: object, max_depth: int, max_string: int) -> str | None:
    """The limits by walking the parsed value: what check_json_limits must agree with."""
    stack: list[tuple[object, int]] = [(value, 1)]
    found = None
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                return "deep"
            children = list(item.items()) if isinstance(item, dict) else [(None, v) for v in item]
            for k, v in children:
                if isinstance(k, str) and len(k) > max_string:
                    found = "long"
                stack.append((v, depth + 1))
        elif isinstance(item, str) and len(item) > max_string:
            found = "long"
    return found


def _random_json(rng: random.Random, depth: int = 0) -> object:
    pieces = ['"', "\\", "[", "]", "{", "}", "é", "a", "\\\\", '\\"', "\u2603"]
    roll = rng.random()
    if depth < 7 and roll < 0.3:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 7 and roll < 0.6:
        return {
            "".join(rng.choices(pieces, k=rng.randint(0, 6))): _random_json(rng, depth + 1)
            for _ in range(rng.randint(0, 3))
        }
    if roll < 0.8:
        return "".join(rng.choices(pieces, k=rng.randint(0, 14)))
    return rng.choice([1, -2.5, True, None])


def test_the_raw_byte_limits_agree_with_walking_the_value() -> None:
    from riverbed.exceptions import LimitExceeded
    from riverbed.server.http import check_json_limits

    rng = random.Random(7)
    outcomes = set()
    for _ in range(3000):
        value = _random_json(rng)
        raw = orjson.dumps(value)
        max_depth, max_string = rng.randint(1, 6), rng.randint(0, 10)
        settings = Settings(max_json_depth=max_depth, max_string_length=max_string)
        expected = _reference_limits(value, max_depth, max_string)
        try:
            check_json_limits(value, raw, settings)
            got = None
        except LimitExceeded as exc:
            got = "deep" if "nested" in exc.message else "long"
        if expected == "deep" or got == "deep":
            # both checks may see depth first; a body breaking both may be called either
            assert got is not None and expected is not None, (raw, max_depth, max_string)
        else:
            assert got == expected, (raw, max_depth, max_string)
        outcomes.add(got)
    assert outcomes == {None, "deep", "long"}


@pytest.mark.parametrize("by", ["address", "token"])
async def test_every_websocket_message_is_charged_as_a_request(tmp_path: Path, by: str) -> None:
    from tests.wsclient import connect

    limits = {"rate_limit_address": "learning=5/m"} if by == "address" else {}
    if by == "token":
        limits = {"rate_limit_token": "learning=5/m", "auth": "on"}
    with Engine(str(tmp_path / "w.db"), **limits) as engine:
        engine.create_model("m", spec=SPEC)
        query = b""
        if by == "token":
            query = b"token=" + engine.tokens.create_token(["predict", "learn"])["token"].encode()
        async with connect(create_app(engine), "/v1/ws", query) as ws:
            answers = []
            for i in range(8):
                message = {"id": i, "op": "learn", "model": "m", "features": {"x": 1.0}}
                await ws.send({**message, "ground_truth": 2.0})
                answers.append(await ws.receive())
            # the handshake was the first request of five; four messages pass
            assert [a["ok"] for a in answers] == [True] * 4 + [False] * 4
            refused = answers[-1]
            assert refused["id"] == 7 and refused["error"]["code"] == "rate_limited"
            assert refused["error"]["detail"]["group"] == "learning"
            assert refused["error"]["detail"]["retry_after"] > 0
            # the socket stays open; a refused message changed nothing
            await ws.send({"id": 8, "op": "metrics", "model": "m"})
            assert (await ws.receive())["error"]["code"] == "rate_limited"
        assert engine.stats("m")["n_learns"] == 4
