"""The newest predictions by id, kept in memory for the labels that follow them.

A label (a learn by prediction id) needs the prediction's features and value; most labels
come soon after their prediction, so the engine keeps the newest ``prediction_cache_size``
predictions here and reads older ones from the store.

The cache is built so that Python's cyclic garbage collector never walks it. A full
collection visits every entry of every tracked container, and with 100,000 cached records
that paused the server for 10-20 ms every few thousand predictions. Here each entry is one
``bytes`` value under its id in a plain dict: a byte for the ``labelled`` mark (so that
:meth:`PredictionCache.mark` changes one byte), then the record packed with :mod:`marshal`,
which keeps the exact types of plain data (bool and int keys, floats); a dict of strings and bytes
is untracked, so the collector skips it whole. Records that are not plain data (a numpy
number in the features, say) are kept as tuples and make their dict tracked again: correct,
only slower to collect.

Eviction is by generations rather than a linked LRU list (which would be a tracked
container): new entries go into the young dict; when it holds half the size, it becomes the
old one and the previous old one is dropped. So the cache holds between ``size / 2`` and
``size`` of the newest predictions, and a lookup is at most two dict reads.

>>> from riverbed.stores.base import PredictionRecord
>>> cache = PredictionCache(size=4)
>>> for n in range(1, 8):
...     cache.put(PredictionRecord(f"p{n}", "m", n, {"x": n}, {True: 0.25}, 0.0))
>>> [f"p{n}" in cache for n in range(1, 8)]
[False, False, False, False, True, True, True]
>>> cache.get("p7").features, cache.get("p7").prediction
({'x': 7}, {True: 0.25})
>>> import numpy as np
>>> cache.put(PredictionRecord("p8", "m", 8, {"x": np.float64(0.5)}, 1.0, 0.0))
>>> cache.get("p8").features
{'x': np.float64(0.5)}
"""

from __future__ import annotations

import marshal
import threading
from collections.abc import Iterable
from typing import Any

from riverbed.stores.base import PredictionRecord

__all__ = ["PredictionCache"]

_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    """Whether ``value`` is built of exact str/int/float/bool/None, dicts, lists, tuples.

    marshal would take a numpy number through its buffer protocol and give back bytes, so
    only exact plain types are packed."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        # flat dicts of scalars (features, probabilities) are checked in C loops
        if _SCALARS.issuperset(map(type, value.values())):
            return _SCALARS.issuperset(map(type, value))
        return all(type(k) in _SCALARS and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(map(_plain, value))
    return False


_LABELLED, _UNLABELLED = b"\x01", b"\x00"


def _pack(record: PredictionRecord) -> bytes | tuple[Any, ...]:
    """One byte for the label mark, then the record (without its id) marshalled; a tuple
    when the record is not plain data."""
    if _plain(record.features) and _plain(record.prediction):
        entry = (record.model, record.seq, record.features, record.prediction, record.created_at)
        # version 2: binary floats, no back-references (the quickest of marshal's formats)
        return (_LABELLED if record.labelled else _UNLABELLED) + marshal.dumps(entry, 2)
    return (
        record.model,
        record.seq,
        record.features,
        record.prediction,
        record.created_at,
        record.labelled,
    )


class PredictionCache:
    """The newest ``size / 2`` to ``size`` predictions by id; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._young: dict[str, bytes | tuple[Any, ...]] = {}
        self._old: dict[str, bytes | tuple[Any, ...]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._young) + sum(1 for k in self._old if k not in self._young)

    def __contains__(self, prediction_id: object) -> bool:
        return prediction_id in self._young or prediction_id in self._old

    def _entry(self, prediction_id: str) -> tuple[Any, ...] | None:
        packed = self._young.get(prediction_id)
        if packed is None:
            packed = self._old.get(prediction_id)
            if packed is None:
                return None
        if type(packed) is bytes:
            return (*marshal.loads(memoryview(packed)[1:]), packed[0] == 1)
        return packed  # type: ignore[return-value]

    def get(self, prediction_id: str) -> PredictionRecord | None:
        entry = self._entry(prediction_id)
        return None if entry is None else PredictionRecord(prediction_id, *entry)

    def put(self, record: PredictionRecord) -> None:
        """Keep ``record`` (replacing the entry of its id, with its ``labelled`` mark)."""
        if self.size <= 0:
            return
        packed = _pack(record)
        with self._lock:
            self._young[record.id] = packed
            if len(self._young) * 2 >= self.size:
                self._old, self._young = self._young, {}

    def mark(self, record: PredictionRecord) -> None:
        """Keep ``record``'s ``labelled`` mark: one byte of its entry changes (the record is
        put whole when it is not held, or not packed)."""
        with self._lock:
            for generation in (self._young, self._old):
                packed = generation.get(record.id)
                if packed is not None:
                    if type(packed) is bytes:
                        flag = _LABELLED if record.labelled else _UNLABELLED
                        generation[record.id] = flag + packed[1:]
                        return
                    break
        self.put(record)

    def discard(self, records: Iterable[PredictionRecord]) -> None:
        """Forget these predictions (whose write failed), unless their ids now hold others."""
        with self._lock:
            for record in records:
                entry = self._entry(record.id)
                if entry is not None and entry[0] == record.model and entry[1] == record.seq:
                    self._young.pop(record.id, None)
                    self._old.pop(record.id, None)

    def drop_model(self, name: str) -> None:
        """Forget every prediction of model ``name``."""
        with self._lock:
            for generation in (self._young, self._old):
                for key in list(generation):
                    entry = self._entry(key)
                    if entry is not None and entry[0] == name:
                        del generation[key]
