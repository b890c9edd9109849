"""The token store: API credentials, kept hashed, beside a backend's other data.

A :class:`TokenStore` is a small interface of its own (four methods); every backend hands
one out through :meth:`riverbed.stores.base.Store.token_store`. The secret of a token is
never stored: only its SHA-256 digest (see :mod:`riverbed.tokens` for why a fast digest
is right for 256-bit random secrets). One contract suite (tests/test_tokens.py) runs
against every backend.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
import threading
from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import Conflict
from riverbed.stores.futures import done

__all__ = ["TOKEN_COLUMNS", "MemoryTokenStore", "TokenRecord", "TokenStore", "token_record"]


@dataclasses.dataclass
class TokenRecord:
    id: str  # public, appears in the secret and in listings; the lookup key
    name: str
    scopes: tuple[str, ...]
    digest: str  # hex SHA-256 of the whole secret
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    created_by: str | None = None  # id of the token that created it; None from the CLI


class TokenStore(abc.ABC):
    @abc.abstractmethod
    def add_token(self, record: TokenRecord) -> Future[None]:
        """Store a new token; a taken id fails with :class:`Conflict`."""

    @abc.abstractmethod
    def get_token(self, token_id: str) -> TokenRecord | None: ...

    @abc.abstractmethod
    def list_tokens(self) -> list[TokenRecord]:
        """Every token, revoked and expired ones included, oldest first."""

    @abc.abstractmethod
    def revoke_token(self, token_id: str, revoked_at: float) -> Future[bool]:
        """Mark a token revoked (an earlier revocation time is kept); False if unknown."""


class MemoryTokenStore(TokenStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, TokenRecord] = {}

    def add_token(self, record: TokenRecord) -> Future[None]:
        with self._lock:
            if record.id in self._tokens:
                return done(error=Conflict(f"token id {record.id!r} is taken"))
            self._tokens[record.id] = copy.copy(record)
        return done()

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self._lock:
            record = self._tokens.get(token_id)
            return copy.copy(record) if record else None

    def list_tokens(self) -> list[TokenRecord]:
        with self._lock:
            return sorted(
                (copy.copy(r) for r in self._tokens.values()), key=lambda r: (r.created_at, r.id)
            )

    def revoke_token(self, token_id: str, revoked_at: float) -> Future[bool]:
        with self._lock:
            record = self._tokens.get(token_id)
            if record is None:
                return done(False)
            if record.revoked_at is None:
                record.revoked_at = revoked_at
        return done(True)


#: The tokens table's columns, in the order token_record reads them (SQLite and PostgreSQL).
TOKEN_COLUMNS = "id, name, scopes, digest, created_at, expires_at, revoked_at, created_by"


def token_record(row: tuple[Any, ...]) -> TokenRecord:
    """A TokenRecord from a row of TOKEN_COLUMNS."""
    return TokenRecord(
        id=row[0],
        name=row[1],
        scopes=tuple(s for s in row[2].split(",") if s),
        digest=row[3],
        created_at=row[4],
        expires_at=row[5],
        revoked_at=row[6],
        created_by=row[7],
    )
