"""A store opened to read only, beside the one process that writes the database.

One process writes a database (stores/sqlite/lock.py); a command that only reads
(``riverbed models ls``, ``show``, ``search``, ``download``) need not be that process. Its
store takes no writer lock, starts no writer and changes nothing in the file: its reads see
what the writer has committed, and every write it is asked for is refused with
:class:`~riverbed.exceptions.Unavailable` (:class:`RefusingWriter` stands where the writer
would). :func:`riverbed.stores.open_store` opens a store so with ``read_only=True`` when the
database is at the layout this riverbed writes (an older one is opened as a writer, which
brings it up to date, when no other process holds it).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import Unavailable

__all__ = ["RefusingWriter"]


class RefusingWriter:
    """A store's writer for a read-only store: it starts and stops, and refuses every write."""

    checkpointer: Any = None

    def __init__(self, where: str) -> None:
        self.where = where

    def submit(self, op: Any) -> Future[Any]:
        refused: Future[Any] = Future()
        refused.set_exception(
            Unavailable(
                f"{self.where} is open to read only here (beside the process that writes it): "
                "nothing was written"
            )
        )
        return refused

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def serve_on(self, loop: asyncio.AbstractEventLoop | None) -> None:
        raise Unavailable(f"{self.where} is open to read only here: it cannot be served")


class NoHold:
    """Stands for the writer lock a read-only store does not take."""

    def release(self) -> None:
        pass
