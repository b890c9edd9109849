"""The event feed: what happened, in order, for streams, dashboards and webhooks.

The engine publishes an :class:`Event` once the change it describes is durable. Listeners
are plain callables called on the publishing thread; they must be quick and thread-safe
(the server's streams hand events to their event loop with ``call_soon_threadsafe``).
The bus keeps the most recent events in memory so that a late subscriber can catch up.

It keeps them as marshalled bytes (:func:`_kept`): a learn event held as objects (the event,
its data, the record's features and prediction) is a handful of objects that the garbage
collector tracks and, as they outlive its young generations, walks again and again; in a
busy engine that cost more than everything else riverbed does per learn. Bytes are not
tracked. An event whose data marshal cannot encode is kept as it is.

The events of a batch (a ``learn_many``) are packed together (:func:`pack_rows`, one
``marshal`` call for the batch's columns rather than a dict and a call an event); each kept
event names its row of the shared bytes, and reading one decodes the batch once for all of
its rows (the last batch decoded is remembered).
"""

from __future__ import annotations

import collections
import itertools
import logging
import marshal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Event", "EventBus", "Gap", "Listener", "pack_rows", "packed"]

log = logging.getLogger(__name__)


class Event:
    """One thing that happened. ``data`` may be given as a function that makes it (made on
    first read), as its :func:`packed` bytes, or as ``(rows, index)``, its row of
    :func:`pack_rows`' bytes (both decoded on first read). Read-only: the events of one batch
    may share the values of their data."""

    __slots__ = ("id", "type", "model", "time", "_data")

    def __init__(
        self,
        id: int,
        type: str,  # predict, learn, model.created, model.deleted, ...
        model: str | None,
        time: float,
        data: dict[str, Any] | Callable[[], dict[str, Any]] | bytes | tuple[bytes, int],
    ) -> None:
        self.id, self.type, self.model, self.time, self._data = id, type, model, time, data

    @property
    def data(self) -> dict[str, Any]:
        data = self._data
        if not isinstance(data, dict):
            if isinstance(data, bytes):
                data = marshal.loads(data)
            elif isinstance(data, tuple):
                data = _row(*data)
            else:
                data = data()
            self._data = data
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.id, self.type, self.model, self.time, self.data) == (
            other.id,
            other.type,
            other.model,
            other.time,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Event(id={self.id}, type={self.type!r}, model={self.model!r}, data={self.data!r})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "model": self.model,
            "time": self.time,
            "data": self.data,
        }


Listener = Callable[[Event], None]


class EventBus:
    def __init__(self, keep: int = 1000) -> None:
        self._listeners: list[Listener] = []
        # each kept event: (id, type, model, time, marshalled data), (id, type, model,
        # time, packed rows, row), or the Event itself
        self._recent: collections.deque[tuple[Any, ...] | Event] = collections.deque(maxlen=keep)
        # Ids start from the clock (microseconds), so that they keep growing across restarts
        # and a client resuming with Last-Event-ID never skips the events of a new process.
        self._first = int(time.time() * 1_000_000)
        self._ids = itertools.count(self._first)
        self._last = self._first - 1  # the id of the latest event published
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every future event; returns a function that unsubscribes."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = [x for x in self._listeners if x is not listener]

        return unsubscribe

    def publish(
        self,
        type: str,
        model: str | None,
        data: dict[str, Any] | Callable[[], dict[str, Any]] | bytes,
    ) -> Event:
        with self._lock:
            event = Event(next(self._ids), type, model, time.time(), data)
            self._recent.append(_kept(event))
            self._last = event.id
            listeners = self._listeners
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not break the write path
                log.exception("event listener failed")
        return event

    def publish_many(
        self,
        events: Sequence[
            tuple[str, str | None, dict[str, Any] | Callable[[], dict[str, Any]] | bytes]
        ],
    ) -> None:
        """Publish ``(type, model, data)`` events in order (a batch's: one lock, one clock
        read)."""
        if not events:
            return
        with self._lock:
            now = time.time()
            ids = self._ids
            made = [Event(next(ids), kind, model, now, data) for kind, model, data in events]
            self._recent.extend(map(_kept, made))
            self._last = made[-1].id
            listeners = self._listeners
        _notify(listeners, made)

    def publish_rows(self, model: str | None, types: Sequence[str], rows: bytes) -> None:
        """Publish the events of a batch, in order: ``types[i]`` with row ``i`` of ``rows``
        (:func:`pack_rows`) as its data."""
        with self._lock:
            now = time.time()
            ids = self._ids
            # (rows, i) flat in the kept tuple: a tuple in a tuple leaves the outer one
            # tracked by the collector until a second pass
            kept = [(next(ids), kind, model, now, rows, i) for i, kind in enumerate(types)]
            self._recent.extend(kept)
            if kept:
                self._last = kept[-1][0]
            listeners = self._listeners
        if listeners:
            _notify(listeners, [_event(k) for k in kept])

    @property
    def last_id(self) -> int:
        """The id of the latest event published (one less than the first, before any)."""
        return self._last

    def recent(self, *, model: str | None = None, after: int = 0) -> list[Event]:
        """Events still held in memory, oldest first, optionally for one model."""
        return self.replay(model=model, after=after)[0]

    def replay(self, *, model: str | None = None, after: int = 0) -> tuple[list[Event], Gap | None]:
        """The held events after event ``after`` (oldest first, optionally one model's), and
        the :class:`Gap` before them when some events after ``after`` are no longer held: the
        window moved past them, or they were published by an earlier process. ``after=0``
        asks for everything held, which is never a gap."""
        with self._lock:
            kept = list(self._recent)
            last = self._last
        gap = self._gap(after, last, _id_of(kept[0]) if kept else last + 1)
        start = after if gap is None else gap.until
        events = [
            _event(e)
            for e in kept
            if _id_of(e) > start and (model is None or _model_of(e) == model)
        ]
        return events, gap

    def _gap(self, after: int, last: int, oldest: int) -> Gap | None:
        if after <= 0 or after == last:
            return None
        if after < self._first - 1:
            # the reader's last event came from an earlier process: what happened between
            # it and this process's start was never in this memory
            return Gap(after, oldest - 1, None, "restart")
        if after > last:
            # an id this process never gave (a clock that went back across a restart)
            return Gap(after, oldest - 1, None, "unknown_id")
        if after + 1 < oldest:
            return Gap(after, oldest - 1, oldest - after - 1, "window")
        return None


class Gap:
    """Events a resuming reader can no longer be sent: those after ``after`` up to and
    including ``until``. ``missed`` is their number (across every model) when it is known
    (None after a restart); ``reason`` is ``window`` (more events happened than the bus
    holds), ``restart`` (they belonged to an earlier process) or ``unknown_id``."""

    __slots__ = ("after", "until", "missed", "reason")

    def __init__(self, after: int, until: int, missed: int | None, reason: str) -> None:
        self.after, self.until, self.missed, self.reason = after, until, missed, reason

    def to_dict(self, model: str | None) -> dict[str, Any]:
        return {
            "id": self.until,
            "type": "gap",
            "model": model,
            "time": time.time(),
            "data": {
                "after": self.after,
                "until": self.until,
                "missed": self.missed,
                "reason": self.reason,
            },
        }


def packed(data: dict[str, Any]) -> dict[str, Any] | bytes:
    """``data`` as the bytes an :class:`Event` takes for it (marshal's), or ``data`` itself
    if marshal cannot encode it (an object of another type, a numpy number...). A write
    waiting for its commit holds its event's data packed: as objects, a batch's events
    outlived the collector's young generation and were walked by it again and again."""
    try:
        # Version 2: binary floats and no back-references, the quickest to write of
        # marshal's formats (the references of the newer versions cost a lookup per string).
        return marshal.dumps(data, 2)
    except ValueError:
        return data


def _notify(listeners: list[Listener], events: list[Event]) -> None:
    for listener in listeners:
        for event in events:
            try:
                listener(event)
            except Exception:  # a broken listener must not break the write path
                log.exception("event listener failed")


def pack_rows(
    columns: dict[str, list[Any]], merged: list[dict[str, Any]] | None = None
) -> bytes | None:
    """The data of a batch's events as one value for :meth:`EventBus.publish_rows`: row ``i``
    is ``{name: column[i] for each column}``, with the items of ``merged[i]`` added. None if
    marshal cannot encode it (the caller then publishes the events one by one)."""
    value: Any = (tuple(columns), tuple(columns.values()), merged)
    try:
        return marshal.dumps(value, 2)
    except ValueError:
        return None


# The last rows decoded, as (bytes, decoded): the events of a batch are mostly read together.
_decoded: tuple[bytes | None, Any] = (None, None)


def _row(rows: bytes, index: int) -> dict[str, Any]:
    global _decoded
    last, decoded = _decoded
    if last is not rows:
        decoded = marshal.loads(rows)
        _decoded = (rows, decoded)
    names, columns, merged = decoded
    data = {name: column[index] for name, column in zip(names, columns, strict=True)}
    if merged is not None:
        data.update(merged[index])
    return data


def _kept(event: Event) -> tuple[Any, ...] | Event:
    """How the bus keeps ``event``: its fields and its data packed (made now, if it was
    given as a function), or the event itself if the data does not pack."""
    data = event._data
    if type(data) is not bytes and type(data) is not tuple:
        data = packed(event.data)
        if type(data) is not bytes:
            return event
    return (event.id, event.type, event.model, event.time, data)


def _event(kept: tuple[Any, ...] | Event) -> Event:
    if isinstance(kept, Event):
        return kept
    if len(kept) == 6:  # a row of a batch's packed rows
        return Event(kept[0], kept[1], kept[2], kept[3], (kept[4], kept[5]))
    return Event(*kept)


def _id_of(kept: tuple[Any, ...] | Event) -> int:
    return kept.id if isinstance(kept, Event) else kept[0]


def _model_of(kept: tuple[Any, ...] | Event) -> str | None:
    return kept.model if isinstance(kept, Event) else kept[2]
