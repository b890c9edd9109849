"""Futures for stores whose writes are done at once (the memory stores, reads)."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

__all__ = ["all_done", "done"]


def done(result: Any = None, error: BaseException | None = None) -> Future[Any]:
    """A future that is already complete."""
    future: Future[Any] = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
    return future


def all_done(futures: list[Future[Any]]) -> Future[None]:
    """A future that completes when every one of ``futures`` has (with the first error)."""
    if not futures:
        return done()
    combined: Future[None] = Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def finished(f: Future[Any]) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            errors = [x.exception() for x in futures if x.exception() is not None]
            if errors:
                combined.set_exception(errors[0])
            else:
                combined.set_result(None)

    for f in futures:
        f.add_done_callback(finished)
    return combined
