"""Receipts: the value of an engine operation and the future of its durable write.

Every engine operation that writes returns a :class:`Receipt` from ``submit_<op>``; the
blocking ``<op>`` is ``submit_<op>(...).wait()`` and the server awaits receipts, so that many
requests share one group commit without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

__all__ = ["Receipt", "call_when_committed", "state_written"]

log = logging.getLogger("riverbed.server")

T = TypeVar("T")


class Receipt(Generic[T]):
    """The value of an operation and the future of its durable write.

    ``receipt.wait()`` blocks until the write is committed; ``await receipt`` does the same
    without blocking an event loop. Either raises the write's error, if it failed.
    """

    __slots__ = ("value", "committed", "failed")

    def __init__(
        self, value: T, committed: Future[Any], failed: Callable[[], None] | None = None
    ) -> None:
        self.value = value
        self.committed = committed
        # Called (as well as by a callback of the future) before a failed write's error is
        # raised to its waiter, who may look at the engine's state next: a future wakes
        # its waiters before it runs its callbacks.
        self.failed = failed

    def wait(self) -> T:
        try:
            self.committed.result()
        except BaseException:
            if self.failed is not None:
                self.failed()
            raise
        return self.value

    def __await__(self) -> Generator[Any, None, T]:
        committed = self.committed
        if not committed.done():
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            call_when_committed(self, loop, functools.partial(_release, waiter))
            yield from waiter.__await__()
        if committed.exception() is not None and self.failed is not None:
            self.failed()
        committed.result()
        return self.value


def state_written(live: Any, value: T, written: Future[Any]) -> Receipt[T]:
    """The receipt of a change to a live model's state whose durable write is its checkpoint
    (``written``): if that fails, the model is rebuilt from the checkpoint and log written
    before, before its next call."""

    def failed() -> None:
        live.stale = live.unsettled = True

    def settled(f: Future[Any]) -> None:
        if f.exception() is not None:
            failed()

    written.add_done_callback(settled)
    return Receipt(value, written, failed)


def call_when_committed(
    receipt: Receipt[Any], loop: asyncio.AbstractEventLoop, callback: Callable[[], None]
) -> None:
    """Call ``callback()`` in ``loop``'s thread once ``receipt``'s write has committed (or
    failed); the writes of one group commit share one wake-up of the loop."""
    wakeups = _wakeups_of(loop)
    receipt.committed.add_done_callback(lambda _: wakeups.add(callback))


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a cancelled request is not woken
        waiter.set_result(None)


class _Wakeups:
    """Wakes an event loop once for all the writes a group commit completed.

    A commit completes its writes' futures one after the other in the store's writer thread.
    Waking the loop for each of them (as ``asyncio.wrap_future`` does) costs a system call
    and a loop iteration per request; here the first completion schedules one wake-up and
    the others join it, so the loop resumes every waiting request in one pass.
    """

    __slots__ = ("loop", "thread", "lock", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.get_ident()  # made in the loop's thread
        self.lock = threading.Lock()
        self.waiters: list[Callable[[], None]] = []

    def add(self, waiter: Callable[[], None]) -> None:
        if threading.get_ident() == self.thread:
            # A commit run by the loop itself: answer in this pass. Scheduled instead, the
            # answers would wait for the next pass's new requests to be handled first.
            waiter()
            return
        with self.lock:
            self.waiters.append(waiter)
            first = len(self.waiters) == 1
        if first:
            try:
                self.loop.call_soon_threadsafe(self.wake)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def wake(self) -> None:
        with self.lock:
            waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            try:
                waiter()
            except Exception:  # one waiter's failure must not strand the others
                log.exception("a commit's callback failed")


_loop_wakeups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wakeups] = (
    weakref.WeakKeyDictionary()
)
_last_wakeups: _Wakeups | None = None


def _wakeups_of(loop: asyncio.AbstractEventLoop) -> _Wakeups:
    global _last_wakeups
    last = _last_wakeups
    if last is not None and last.loop is loop:
        return last
    wakeups = _loop_wakeups.get(loop)
    if wakeups is None:
        wakeups = _loop_wakeups.setdefault(loop, _Wakeups(loop))
    _last_wakeups = wakeups
    return wakeups
