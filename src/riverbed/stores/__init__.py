"""Storage backends behind one small interface (:class:`riverbed.stores.base.Store`).

``open_store(url)`` picks the backend from a database string: ``:memory:`` (or
``memory://``) for the in-memory store, ``sqlite:///path`` or a plain path for an SQLite
file, ``postgresql://user@host:port/db`` (or ``postgres://``) for a PostgreSQL database
(stores/postgres/store.py). Any other URL (``mysql://``, a typo) is refused with
:class:`UnsupportedDatabase`, before anything is created.

``open_store(url, read_only=True)`` opens an existing database to read only, beside the
process that writes it (stores/readonly.py); :func:`require_database` refuses a database
that is not there (:class:`NoDatabase`) before a command that must not create one opens it.
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
    "NoDatabase",
    "PredictionRecord",
    "Store",
    "UnsupportedDatabase",
    "VersionRecord",
    "backend_name",
    "check_database",
    "open_store",
    "open_token_file",
    "require_database",
]


# The URL schemes riverbed serves a database on.
SCHEMES = ("sqlite://", "memory://", "postgresql://")


class UnsupportedDatabase(ValueError):
    """A database URL whose scheme riverbed does not serve."""


class NoDatabase(ValueError):
    """No riverbed database where one was named: no such SQLite file, or a PostgreSQL
    database without riverbed's tables. Only ``riverbed serve`` (and ``riverbed db copy``'s
    target) create one."""


def require_database(database: str) -> None:
    """Refuse with :class:`NoDatabase` a database that is not there yet, creating nothing (the
    in-memory store always is); other refusals as :func:`open_store`'s."""
    if _postgres(database):
        from riverbed.stores.postgres.store import postgres_schema

        if postgres_schema(database) is None:
            from riverbed.stores.postgres.writer import redact

            raise NoDatabase(
                f"no riverbed database at {redact(database)} (it has no riverbed tables)"
            )
        return
    path = _sqlite_path(database)
    if path is not None and not os.path.isfile(path):
        raise NoDatabase(f"no database at {path}")


def check_database(database: str, *, shared: bool = False) -> None:
    """Refuse, before anything opens it, a database riverbed cannot serve (ValueErrors all):
    a URL of a scheme it does not know (:class:`UnsupportedDatabase`), a file that a newer
    riverbed wrote (:class:`~riverbed.stores.sqlite.schema.NewerDatabase`) or that another
    process holds (:class:`~riverbed.stores.sqlite.lock.DatabaseInUse`). ``shared``: for a
    scale-out replica or learner (PostgreSQL only), which share a database."""
    if _postgres(database):
        from riverbed.stores.postgres.store import check_postgres

        check_postgres(database, shared=shared)
        return
    path = _sqlite_path(database)
    if path is not None:
        from riverbed.stores.sqlite.lock import DatabaseLock
        from riverbed.stores.sqlite.schema import check_schema

        check_schema(path)
        if os.path.exists(path):
            DatabaseLock(path).release()


def open_store(
    database: str,
    *,
    synchronous: str = "NORMAL",
    read_only: bool = False,
    pool_size: int = 8,
    pool_timeout: float = 5.0,
    connect_timeout: float = 5.0,
) -> Store:
    """Open the store a database string names. ``read_only``: an existing database
    (:class:`NoDatabase` otherwise), opened without the writer lock and unable to change
    anything, when it is at this version's layout; an older one is opened as a writer, which
    brings it up to date (and needs no other process to hold it). ``pool_size``,
    ``pool_timeout`` and ``connect_timeout``: a PostgreSQL store's (settings postgres_*)."""
    if read_only:
        require_database(database)
    if _postgres(database):
        from riverbed.stores.postgres.store import PostgresStore

        return PostgresStore(
            database,
            read_only=read_only,
            pool_size=pool_size,
            pool_timeout=pool_timeout,
            connect_timeout=connect_timeout,
        )
    path = _sqlite_path(database)
    if path is None:
        from riverbed.stores.memory import MemoryStore

        return MemoryStore()
    from riverbed.stores.sqlite.schema import check_schema, is_current
    from riverbed.stores.sqlite.store import SQLiteStore

    if read_only:
        check_schema(path)  # a newer layout is refused, not read
        read_only = is_current(path)
    return SQLiteStore(path, synchronous=synchronous, read_only=read_only)


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
    on a running server's file. A file that does not exist is refused (:class:`NoDatabase`),
    not created."""
    if _postgres(database):
        from riverbed.stores.postgres.store import open_postgres_tokens

        return open_postgres_tokens(database)
    path = _sqlite_path(database)
    if path is None:
        raise ValueError("the in-memory store keeps its tokens in its own process")
    require_database(database)
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
