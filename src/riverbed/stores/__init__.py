"""Storage backends behind one small interface (:class:`riverbed.stores.base.Store`).

``open_store(url)`` picks the backend from a database string: ``:memory:`` for the in-memory
store, anything else is an SQLite file path (``sqlite:///path`` works too).
"""

from __future__ import annotations

from riverbed.stores.base import (
    Checkpoint,
    LearnRecord,
    ModelRecord,
    PredictionRecord,
    Store,
    VersionRecord,
)

__all__ = [
    "Checkpoint",
    "LearnRecord",
    "ModelRecord",
    "PredictionRecord",
    "Store",
    "VersionRecord",
    "check_database",
    "open_store",
]


def check_database(database: str) -> None:
    """Refuse, before anything opens it, a database that a newer riverbed wrote
    (:class:`~riverbed.stores.sqlite_schema.NewerDatabase`, a ValueError)."""
    path = _sqlite_path(database)
    if path is not None:
        from riverbed.stores.sqlite_schema import check_schema

        check_schema(path)


def open_store(database: str, *, synchronous: str = "NORMAL") -> Store:
    """Open the store a database string names."""
    path = _sqlite_path(database)
    if path is None:
        from riverbed.stores.memory import MemoryStore

        return MemoryStore()
    from riverbed.stores.sqlite import SQLiteStore

    return SQLiteStore(path, synchronous=synchronous)


def _sqlite_path(database: str) -> str | None:
    """The SQLite file a database string names; None for the in-memory store."""
    if database in (":memory:", "memory://"):
        return None
    return database.removeprefix("sqlite:///").removeprefix("sqlite://")
