"""API tokens in an SQLite store's file (the interface is :mod:`riverbed.stores.tokens`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import Conflict
from riverbed.stores.tokens import TOKEN_COLUMNS, TokenRecord, TokenStore, token_record

__all__ = ["SQLiteTokenStore"]

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
_COLUMNS = TOKEN_COLUMNS


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
