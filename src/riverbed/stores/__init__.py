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
    "open_store",
]


def open_store(database: str, *, synchronous: str = "NORMAL") -> Store:
    """Open the store a database string names."""
    if database in (":memory:", "memory://"):
        from riverbed.stores.memory import MemoryStore

        return MemoryStore()
    from riverbed.stores.sqlite import SQLiteStore

    path = database.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SQLiteStore(path, synchronous=synchronous)
