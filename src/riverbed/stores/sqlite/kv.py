"""The key-value store on SQLite: :class:`riverbed.stores.sqlite.store.SQLiteStore` mixes this in.

Writes go through the store's writer thread (group commits), so a pop or a push reads and
changes a key in one step; reads use the per-thread reader connections. A list is kept as
rows of ``cache_items`` ordered by ``pos``: a push takes the lowest position minus one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from riverbed.stores.kv import CacheStore, _Keep, list_held, value_held

__all__ = ["SCHEMA", "SQLiteCache"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    is_list INTEGER NOT NULL DEFAULT 0,
    value BLOB,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS cache_expiry ON cache (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS cache_items (
    key TEXT NOT NULL,
    pos INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (key, pos)
) WITHOUT ROWID;
"""


def _row(conn: sqlite3.Connection, key: str, now: float) -> tuple[int, bytes | None] | None:
    """(is_list, value) of an unexpired key, or None."""
    row = conn.execute(
        "SELECT is_list, value, expires_at FROM cache WHERE key = ?", (key,)
    ).fetchone()
    if row is None or (row[2] is not None and row[2] <= now):
        return None
    return row[0], row[1]


def _drop(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("DELETE FROM cache_items WHERE key = ?", (key,))
    conn.execute("DELETE FROM cache WHERE key = ?", (key,))


class SQLiteCache(CacheStore):
    """Cache operations over the SQLite store's writer thread and reader connections."""

    def _read(self) -> sqlite3.Connection:  # pragma: no cover - SQLiteStore provides it
        raise NotImplementedError

    def _submit(self, op: Callable[[sqlite3.Connection], Any]) -> Future[Any]:
        writer: Any = getattr(self, "_writer")  # noqa: B009 - set by SQLiteStore.__init__
        future: Future[Any] = writer.submit(op)
        return future

    def kv_set(self, key: str, value: bytes, expires_at: float | None) -> Future[None]:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM cache_items WHERE key = ?", (key,))
            conn.execute(
                "INSERT OR REPLACE INTO cache (key, is_list, value, expires_at)"
                " VALUES (?, 0, ?, ?)",
                (key, value, expires_at),
            )

        return self._submit(op)

    def kv_get(self, key: str, now: float) -> bytes | None:
        row = _row(self._read(), key, now)
        if row is None:
            return None
        if row[0]:
            raise list_held(key)
        return row[1]

    def kv_delete(self, key: str, now: float) -> Future[bool]:
        def op(conn: sqlite3.Connection) -> bool:
            existed = _row(conn, key, now) is not None
            _drop(conn, key)
            return existed

        return self._submit(op)

    def kv_push(
        self, key: str, value: bytes, expires_at: float | None | _Keep, now: float
    ) -> Future[int]:
        def op(conn: sqlite3.Connection) -> int:
            row = _row(conn, key, now)
            if row is None:
                _drop(conn, key)
                conn.execute(
                    "INSERT INTO cache (key, is_list, value, expires_at) VALUES (?, 1, NULL, NULL)",
                    (key,),
                )
            elif not row[0]:
                raise value_held(key)
            if not isinstance(expires_at, _Keep):
                conn.execute("UPDATE cache SET expires_at = ? WHERE key = ?", (expires_at, key))
            (front,) = conn.execute(
                "SELECT MIN(pos) FROM cache_items WHERE key = ?", (key,)
            ).fetchone()
            conn.execute(
                "INSERT INTO cache_items (key, pos, value) VALUES (?, ?, ?)",
                (key, 0 if front is None else front - 1, value),
            )
            (length,) = conn.execute(
                "SELECT COUNT(*) FROM cache_items WHERE key = ?", (key,)
            ).fetchone()
            return int(length)

        return self._submit(op)

    def _list(self, conn: sqlite3.Connection, key: str, now: float) -> bool:
        row = _row(conn, key, now)
        if row is None:
            return False
        if not row[0]:
            raise value_held(key)
        return True

    def kv_index(self, key: str, position: int, now: float) -> bytes | None:
        conn = self._read()
        if not self._list(conn, key, now):
            return None
        order, offset = ("ASC", position) if position >= 0 else ("DESC", -position - 1)
        row = conn.execute(
            f"SELECT value FROM cache_items WHERE key = ? ORDER BY pos {order} LIMIT 1 OFFSET ?",
            (key, offset),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def kv_pop(self, key: str, now: float) -> Future[bytes | None]:
        def op(conn: sqlite3.Connection) -> bytes | None:
            if not self._list(conn, key, now):
                return None
            row = conn.execute(
                "SELECT pos, value FROM cache_items WHERE key = ? ORDER BY pos LIMIT 1", (key,)
            ).fetchone()
            if row is None:  # pragma: no cover - an empty list is always dropped
                _drop(conn, key)
                return None
            conn.execute("DELETE FROM cache_items WHERE key = ? AND pos = ?", (key, row[0]))
            if conn.execute("SELECT 1 FROM cache_items WHERE key = ?", (key,)).fetchone() is None:
                _drop(conn, key)
            return bytes(row[1])

        return self._submit(op)

    def kv_length(self, key: str, now: float) -> int:
        conn = self._read()
        if not self._list(conn, key, now):
            return 0
        (length,) = conn.execute(
            "SELECT COUNT(*) FROM cache_items WHERE key = ?", (key,)
        ).fetchone()
        return int(length)

    def kv_expire(self, key: str, expires_at: float | None, now: float) -> Future[bool]:
        def op(conn: sqlite3.Connection) -> bool:
            if _row(conn, key, now) is None:
                return False
            conn.execute("UPDATE cache SET expires_at = ? WHERE key = ?", (expires_at, key))
            return True

        return self._submit(op)

    def kv_expiry(self, key: str, now: float) -> tuple[bool, float | None]:
        row = self._read().execute("SELECT expires_at FROM cache WHERE key = ?", (key,)).fetchone()
        if row is None or (row[0] is not None and row[0] <= now):
            return False, None
        return True, row[0]

    def kv_purge(self, now: float) -> Future[int]:
        def op(conn: sqlite3.Connection) -> int:
            conn.execute(
                "DELETE FROM cache_items WHERE key IN"
                " (SELECT key FROM cache WHERE expires_at IS NOT NULL AND expires_at <= ?)",
                (now,),
            )
            cursor = conn.execute(
                "DELETE FROM cache WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            )
            return int(cursor.rowcount)

        return self._submit(op)
