"""Storage backends behind one small interface (:class:`riverbed.stores.base.Store`).

``open_store(url)`` picks the backend from a database string: ``:memory:`` (or
``memory://``) for the in-memory store, ``sqlite:///path`` or a plain path for an SQLite
file, ``postgresql://user@host:port/db`` (or ``postgres://``) for a PostgreSQL database
(stores/postgres/store.py). Any other URL (``mysql://``, a typo) is refused with
:class:`UnsupportedDatabase`, before anything is created.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from riverbed.stores.base import (
    Checkpoint,
    LearnRecord,
    ModelRecord,
    PredictionRecord,
    Store,
    VersionRecord,
)
from riverbed.stores.tokens import TokenStore

__all__ = [
    "Checkpoint",
    "LearnRecord",
    "ModelRecord",
    "PredictionRecord",
    "Store",
    "UnsupportedDatabase",
    "VersionRecord",
    "backend_name",
    "check_database",
    "open_store",
    "open_token_file",
]


# The URL schemes riverbed serves a database on.
SCHEMES = ("sqlite://", "memory://", "postgresql://")


class UnsupportedDatabase(ValueError):
    """A database URL whose scheme riverbed does not serve."""


def check_database(database: str) -> None:
    """Refuse, before anything opens it, a database riverbed cannot serve (ValueErrors all):
    a URL of a scheme it does not know (:class:`UnsupportedDatabase`), a file that a newer
    riverbed wrote (:class:`~riverbed.stores.sqlite.schema.NewerDatabase`) or that another
    process holds (:class:`~riverbed.stores.sqlite.lock.DatabaseInUse`)."""
    if _postgres(database):
        from riverbed.stores.postgres.store import check_postgres

        check_postgres(database)
        return
    path = _sqlite_path(database)
    if path is not None:
        from riverbed.stores.sqlite.lock import DatabaseLock
        from riverbed.stores.sqlite.schema import check_schema

        check_schema(path)
        if os.path.exists(path):
            DatabaseLock(path).release()


def open_store(database: str, *, synchronous: str = "NORMAL") -> Store:
    """Open the store a database string names."""
    if _postgres(database):
        from riverbed.stores.postgres.store import PostgresStore

        return PostgresStore(database)
    path = _sqlite_path(database)
    if path is None:
        from riverbed.stores.memory import MemoryStore

        return MemoryStore()
    from riverbed.stores.sqlite.store import SQLiteStore

    return SQLiteStore(path, synchronous=synchronous)


def backend_name(database: str) -> str:
    """The kind of store a database string names: memory, sqlite or postgresql."""
    if database in (":memory:", "memory://"):
        return "memory"
    return "postgresql" if _postgres(database) else "sqlite"


def _postgres(database: str) -> bool:
    return database.lower().startswith(("postgresql://", "postgres://"))


def _sqlite_path(database: str) -> str | None:
    """The SQLite file a database string names; None for the in-memory store."""
    if database in (":memory:", "memory://"):
        return None
    scheme, sep, _ = database.partition("://")
    if sep and scheme.lower() != "sqlite":
        raise UnsupportedDatabase(
            f"riverbed cannot serve the database {database!r}: its scheme {scheme!r} is not one "
            f"it knows ({', '.join(SCHEMES)}, or a plain file path for SQLite)"
        )
    if sep and scheme != "sqlite":
        database = "sqlite" + database[len(scheme) :]
    return database.removeprefix("sqlite:///").removeprefix("sqlite://")


def open_token_file(database: str) -> tuple[TokenStore, Callable[[], None]]:
    """The tokens of an SQLite database file, and how to close them: a connection of its own
    beside the process that serves the file (tokens take no part in the learns that one
    process writes, see :mod:`riverbed.stores.sqlite.lock`), so ``riverbed tokens`` works
    on a running server's file. A file that does not exist yet is created as a store."""
    if _postgres(database):
        from riverbed.stores.postgres.store import open_postgres_tokens

        return open_postgres_tokens(database)
    path = _sqlite_path(database)
    if path is None:
        raise ValueError("the in-memory store keeps its tokens in its own process")
    if not os.path.exists(path):
        store = open_store(database)
        return store.token_store(), store.close
    from riverbed.stores.sqlite.schema import check_schema
    from riverbed.stores.sqlite.tokens import SQLiteTokenStore
    from riverbed.stores.sqlite.writer import connect

    check_schema(path)
    conn = connect(path, "NORMAL")

    def submit(op: Callable[[sqlite3.Connection], Any]) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = op(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except Exception as exc:
            done.set_exception(exc)
        else:
            done.set_result(result)
        return done

    return SQLiteTokenStore(submit, lambda: conn), conn.close
