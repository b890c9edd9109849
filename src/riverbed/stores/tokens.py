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
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import Conflict
from riverbed.stores.futures import done

__all__ = ["MemoryTokenStore", "SQLiteTokenStore", "TokenRecord", "TokenStore"]


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


_TABLE = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    digest TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL,
    created_by TEXT
)
"""
#: The tokens table's columns, in the order token_record reads them (SQLite and PostgreSQL).
TOKEN_COLUMNS = "id, name, scopes, digest, created_at, expires_at, revoked_at, created_by"
_COLUMNS = TOKEN_COLUMNS
_MARKS = ", ".join("?" * 8)


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


class SQLiteTokenStore(TokenStore):
    """Tokens in the ``tokens`` table of an SQLite store's file, written by its writer thread
    (so a token's creation shares the group commit) and read on the caller's connection."""

    def __init__(
        self,
        submit: Callable[[Callable[[sqlite3.Connection], Any]], Future[Any]],
        read: Callable[[], sqlite3.Connection],
    ) -> None:
        self._submit = submit
        self._read = read
        self._submit(lambda conn: conn.execute(_TABLE)).result()

    def add_token(self, record: TokenRecord) -> Future[None]:
        row = (
            record.id,
            record.name,
            ",".join(record.scopes),
            record.digest,
            record.created_at,
            record.expires_at,
            record.revoked_at,
            record.created_by,
        )

        def op(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"token id {record.id!r} is taken") from None

        return self._submit(op)

    def get_token(self, token_id: str) -> TokenRecord | None:
        row = (
            self._read()
            .execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,))
            .fetchone()
        )
        return token_record(row) if row else None

    def list_tokens(self) -> list[TokenRecord]:
        rows = self._read().execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at, id")
        return [token_record(row) for row in rows.fetchall()]

    def revoke_token(self, token_id: str, revoked_at: float) -> Future[bool]:
        def op(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                (revoked_at, token_id),
            )
            return cursor.rowcount > 0

        return self._submit(op)
