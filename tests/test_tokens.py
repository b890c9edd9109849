"""Tokens: the store contract on every backend, secrets shown once and kept only hashed,
expiry, revocation, and the scope rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from riverbed.exceptions import (
    InvalidInput,
    InvalidToken,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
)
from riverbed.stores import open_store
from riverbed.stores.base import Store
from riverbed.stores.tokens import TokenRecord
from riverbed.tokens import SCOPES, Tokens, grants, parse_duration
from tests.helpers import STORES, database


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database(request.param, tmp_path) as db:
        s = open_store(db)
        yield s
        s.close()


def record(token_id: str = "aaaaaaaaaaaa", created_at: float = 1.0) -> TokenRecord:
    return TokenRecord(token_id, "ci", ("predict", "read"), "d" * 64, created_at, 99.0, None, "x")


def test_sqlite_tokens_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "t.db")
    first = open_store(path)
    first.token_store().add_token(record()).result()
    first.close()
    second = open_store(path)
    assert second.token_store().get_token("aaaaaaaaaaaa") == record()
    second.close()


# -- the manager ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_created_secret_verifies_and_only_its_digest_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = open_store(str(path))
    tokens = Tokens(store.token_store())
    made = tokens.create_token(["read", "predict"], name="edge")
    secret = made["token"]
    assert secret.startswith("rbt_") and made["scopes"] == ["read", "predict"]
    assert "digest" not in made and made["status"] == "active"
    verified = tokens.verify_token(secret)
    assert verified.id == made["id"] and verified.scopes == ("read", "predict")
    assert secret not in str(tokens.list_tokens()) and secret not in str(
        tokens.get_token(made["id"])
    )
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert made["id"].encode() in raw
    # the random part: 43 characters after "rbt_<id>_" (it may itself hold "_")
    random_part = secret.split("_", 2)[2]
    assert len(random_part) == 43
    assert secret.encode() not in raw and random_part.encode() not in raw


def test_wrong_unknown_and_malformed_secrets_are_refused(store: Store) -> None:
    tokens = Tokens(store.token_store())
    secret = tokens.create_token(["admin"])["token"]
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for bad in (tampered, "rbt_000000000000_" + "x" * 43, "nonsense", "", secret + "x"):
        with pytest.raises(InvalidToken):
            tokens.verify_token(bad)


def test_a_revoked_token_verifies_no_more(store: Store) -> None:
    tokens = Tokens(store.token_store())
    made = tokens.create_token(["learn"])
    assert tokens.revoke_token(made["id"]) == {"id": made["id"], "revoked": True}
    with pytest.raises(TokenRevoked):
        tokens.verify_token(made["token"])
    assert tokens.list_tokens() == []
    assert [t["status"] for t in tokens.list_tokens(include_inactive=True)] == ["revoked"]
    with pytest.raises(TokenNotFound):
        tokens.revoke_token("zzzzzzzzzzzz")


def test_a_token_expires(store: Store) -> None:
    clock = Clock()
    tokens = Tokens(store.token_store(), clock=clock)
    made = tokens.create_token(["read"], expires_in="1h")
    assert made["expires_at"] == clock.now + 3600
    clock.now += 3599
    tokens.verify_token(made["token"])
    clock.now += 1
    with pytest.raises(TokenExpired):
        tokens.verify_token(made["token"])
    assert tokens.get_token(made["id"])["status"] == "expired"
    assert not tokens.has_active("read")


@pytest.mark.parametrize(
    ("scopes", "expires_in", "name"),
    [
        ([], None, ""),
        (["root"], None, ""),
        ("admin", None, ""),
        (["read"], "forever", ""),
        (["read"], -5, ""),
        (["read"], None, "x" * 201),
    ],
)
def test_bad_requests_create_nothing(
    store: Store, scopes: object, expires_in: object, name: str
) -> None:
    tokens = Tokens(store.token_store())
    with pytest.raises(InvalidInput):
        tokens.create_token(scopes, expires_in=expires_in, name=name)  # type: ignore[arg-type]
    assert tokens.list_tokens(include_inactive=True) == []


def test_scopes_are_canonical() -> None:
    tokens = Tokens(open_store(":memory:").token_store())
    assert tokens.create_token(["admin", "read", "read"])["scopes"] == ["read", "admin"]


def test_only_admin_implies_other_scopes() -> None:
    for needed in SCOPES:
        assert grants({"admin"}, needed)
        assert grants({needed}, needed)
        assert grants(set(), "public")
    assert not grants({"read"}, "predict")
    assert not grants({"predict"}, "read")
    assert not grants({"learn"}, "predict")
    assert not grants({"read", "predict", "learn"}, "admin")


def test_durations() -> None:
    assert parse_duration("90s") == 90 and parse_duration("15m") == 900
    assert parse_duration("2w") == 2 * 7 * 86400 and parse_duration(1.5) == 1.5
    for bad in ("", "3 parsecs", "0", True, -1):
        with pytest.raises(InvalidInput):
            parse_duration(bad)  # type: ignore[arg-type]
