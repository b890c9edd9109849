"""API tokens: scopes, secrets shown once, verification, expiry and revocation.

A token grants one or more scopes:

    read     lists, descriptions, metrics, stats, streams, downloads
    predict  predictions
    learn    learning and labels (ground truth)
    admin    everything: create and delete models, move aliases, upload pickles,
             manage tokens -- and every other scope

Only ``admin`` implies the others. ``read``, ``predict`` and ``learn`` are independent so
that a device can hold a token that predicts and nothing else; give a token several scopes
(``--scope predict --scope learn``) where a caller needs them. A route declares the one
scope it needs (or ``public``); :func:`grants` is the whole rule.

A secret looks like ``rbt_<id>_<43 random characters>``: the id is public (listings, audit
events, revocation) and lets a verification find its record with one key lookup; only the
SHA-256 digest of the whole secret is stored. A slow password hash (bcrypt, scrypt) guards
guessable passwords; a 256-bit random secret cannot be guessed, so one fast digest is as safe
and keeps verification cheap enough to run on every request. Digests are compared in
constant time.

    >>> grants({"admin"}, "learn"), grants({"read"}, "predict"), grants(set(), "public")
    (True, False, True)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from riverbed.exceptions import (
    InvalidInput,
    InvalidToken,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
)
from riverbed.receipts import Receipt
from riverbed.stores.tokens import TokenRecord, TokenStore

__all__ = [
    "ROUTE_SCOPES",
    "SCOPES",
    "Tokens",
    "grants",
    "parse_duration",
    "token_info",
]

SCOPES = ("read", "predict", "learn", "admin")
ROUTE_SCOPES = ("public", *SCOPES)
PREFIX = "rbt_"
_SECRET = re.compile(r"rbt_([a-z0-9]{12})_[A-Za-z0-9_\-]{43}")
_MAX_NAME = 200


def grants(scopes: Collection[str], needed: str) -> bool:
    """Whether a token with ``scopes`` may call a route that needs ``needed``."""
    return needed == "public" or needed in scopes or "admin" in scopes


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: Iterable[Any]) -> tuple[str, ...]:
    """The scopes, validated, deduplicated and in canonical order."""
    if isinstance(scopes, str) or not isinstance(scopes, Iterable):
        raise InvalidInput("scopes must be a list of scope names")
    given = list(scopes)
    unknown = [s for s in given if s not in SCOPES]
    if unknown:
        raise InvalidInput(
            f"unknown scope(s) {', '.join(map(repr, unknown))}; scopes are {', '.join(SCOPES)}",
            detail={"scopes": unknown},
        )
    if not given:
        raise InvalidInput(f"give a token at least one scope: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``12h``, ``30d`` or ``2w``.

    >>> parse_duration("30d"), parse_duration(45)
    (2592000.0, 45.0)
    """
    if isinstance(text, bool):
        raise InvalidInput("a duration is a number of seconds or a string like '30d'")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
        if not match:
            raise InvalidInput(f"{text!r} is not a duration: use e.g. 3600, 90s, 15m, 12h, 30d, 2w")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not seconds > 0 or seconds > 100 * 365 * 86400:
        raise InvalidInput("a duration must be positive and at most 100 years")
    return seconds


def token_info(record: TokenRecord, now: float | None = None) -> dict[str, Any]:
    """What may be shown of a token: everything but its digest."""
    now = time.time() if now is None else now
    if record.revoked_at is not None:
        status = "revoked"
    elif record.expires_at is not None and record.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "id": record.id,
        "name": record.name,
        "scopes": list(record.scopes),
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "created_by": record.created_by,
        "status": status,
    }


class Tokens:
    """Create, verify, list and revoke tokens over a :class:`TokenStore`.

    ``clock`` is injectable for tests. (The server records every admin request, token
    management included, as an ``audit`` event: see :mod:`riverbed.server.auth`.)
    """

    def __init__(
        self,
        store: TokenStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.clock = clock

    def create_token(
        self,
        scopes: Iterable[str],
        *,
        name: str = "",
        expires_in: float | str | None = None,
        created_by: str | None = None,
    ) -> dict[str, Any]:
        return self.submit_create_token(
            scopes, name=name, expires_in=expires_in, created_by=created_by
        ).wait()

    def submit_create_token(
        self,
        scopes: Iterable[str],
        *,
        name: str = "",
        expires_in: float | str | None = None,
        created_by: str | None = None,
    ) -> Receipt[dict[str, Any]]:
        """A new token; the result's ``token`` is the secret, shown this once and never again."""
        checked = check_scopes(scopes)
        if not isinstance(name, str) or len(name) > _MAX_NAME:
            raise InvalidInput(f"a token's name must be a string of at most {_MAX_NAME} characters")
        now = self.clock()
        expires_at = None if expires_in is None else now + parse_duration(expires_in)
        token_id = secrets.token_hex(6)
        secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        record = TokenRecord(token_id, name, checked, digest(secret), now, expires_at, None)
        record.created_by = created_by
        future = self.store.add_token(record)
        info = token_info(record, now)
        return Receipt({**info, "token": secret}, future)

    def verify_token(self, secret: str) -> TokenRecord:
        """The record of an active token, or :class:`InvalidToken` (``TokenExpired``,
        ``TokenRevoked``) saying why not."""
        match = _SECRET.fullmatch(secret) if isinstance(secret, str) else None
        record = self.store.get_token(match.group(1)) if match else None
        if record is None or not hmac.compare_digest(record.digest, digest(secret)):
            raise InvalidToken("the token is not valid")
        if record.revoked_at is not None:
            raise TokenRevoked(f"token {record.id} was revoked")
        if record.expires_at is not None and record.expires_at <= self.clock():
            raise TokenExpired(f"token {record.id} has expired")
        return record

    def get_token(self, token_id: str) -> dict[str, Any]:
        record = self.store.get_token(token_id) if isinstance(token_id, str) else None
        if record is None:
            raise TokenNotFound(f"no token with id {token_id!r}")
        return token_info(record, self.clock())

    def list_tokens(self, *, include_inactive: bool = False) -> list[dict[str, Any]]:
        """Tokens without their digests; only active ones unless ``include_inactive``."""
        now = self.clock()
        infos = [token_info(r, now) for r in self.store.list_tokens()]
        return infos if include_inactive else [i for i in infos if i["status"] == "active"]

    def has_active(self, scope: str) -> bool:
        """Whether some active token grants ``scope``."""
        return any(grants(i["scopes"], scope) for i in self.list_tokens())

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        return self.submit_revoke_token(token_id).wait()

    def submit_revoke_token(self, token_id: str) -> Receipt[dict[str, Any]]:
        """Revoke a token: from the moment this is durable, it verifies no more."""
        self.get_token(token_id)
        future = self.store.revoke_token(token_id, self.clock())
        return Receipt({"id": token_id, "revoked": True}, future)
