"""Many predictions or learns in one operation: one lock, one commit, all or nothing.

The rule for a bad item, the same over HTTP, the WebSocket and the embedded engine:

1. every item is checked first (its fields, features, ground truth, prediction id and, for
   a batch of learns, that no id comes twice); if any item is bad, the batch is refused with
   :class:`~riverbed.exceptions.InvalidBatch`, whose ``detail["errors"]`` lists each bad item
   as ``{"index", "code", "message", "detail"}``, and nothing is applied;
2. otherwise the items are applied in order under the model's lock -- a learn is scored with
   the prediction the model makes after the items before it, exactly as one learn after the
   other would be -- and written in one atomic store write (one commit);
3. if the model itself fails on an item (``learn_one`` raises), the model is rebuilt from its
   checkpoint and log, which hold no item of the batch, and the batch is refused naming that
   item: again nothing is applied.

So a batch is never half applied, and the model state after a batch equals the state after
the same items sent one at a time (the tests check both).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from riverbed.events import pack_rows
from riverbed.exceptions import (
    AlreadyLabelled,
    InvalidBatch,
    InvalidInput,
    PayloadTooLarge,
    PredictionExists,
    RiverbedError,
)
from riverbed.receipts import Receipt
from riverbed.stores.base import done
from riverbed.tasks import MISSING

if TYPE_CHECKING:
    from riverbed.config import Settings
    from riverbed.events import EventBus
    from riverbed.live import _Live
    from riverbed.stores.base import LearnRecord, PredictionRecord, Store

__all__ = ["BulkOps", "item_error"]

_PREDICT_FIELDS = frozenset({"features", "id"})
_LEARN_FIELDS = frozenset({"features", "id", "ground_truth"})


def item_error(index: int, exc: RiverbedError) -> dict[str, Any]:
    return {"index": index, "code": exc.code, "message": exc.message, "detail": exc.detail}


class BulkOps:
    """Batch operations of the engine (mixed into :class:`~riverbed.engine.Engine`)."""

    if TYPE_CHECKING:  # what the engine provides
        settings: Settings
        store: Store
        events: EventBus
        _live: dict[str, _Live]

        scaleout: Any  # engine.ScaleOut (riverbed/scaleout), or None

        def _get_live(self, name: str) -> _Live: ...
        def _learner_of(self, ref: str) -> str: ...
        def _remember(self, record: PredictionRecord) -> None: ...
        def _mark(self, record: PredictionRecord) -> None: ...
        def _forget_predictions(self, records: Sequence[PredictionRecord]) -> None: ...
        def _reload(self, live: _Live) -> None: ...
        def _predictions_failed(
            self, live: _Live, records: list[PredictionRecord], seconds: float, ewm: float
        ) -> Callable[[], None]: ...
        def _learn_failed(
            self, live: _Live, marked: list[PredictionRecord], n: int, seconds: float, ewm: float
        ) -> Callable[[], None]: ...
        def _predict_one(
            self,
            live: _Live,
            features: Any,
            id: str | None,
            inputs: Mapping[str, Any],
            *,
            stored_ids: Container[str] | None,
        ) -> PredictionRecord: ...
        def _check_learn(
            self,
            live: _Live,
            features: Any,
            ground_truth: Any,
            id: str | None,
            inputs: Mapping[str, Any],
        ) -> tuple[Any, Any, PredictionRecord | None, Any]: ...
        def _make_learn(
            self, live: _Live, sample: Any, y: Any, prediction: PredictionRecord | None, stored: Any
        ) -> LearnRecord: ...
        def _apply(self, live: _Live, record: LearnRecord) -> None: ...
        def _after_learn(self, live: _Live, record: LearnRecord) -> None: ...
        def _learn_event(
            self, live: _Live, record: LearnRecord
        ) -> tuple[str, str, dict[str, Any] | bytes]: ...

    # -- predict many ------------------------------------------------------------------------

    def predict_many(self, name: str, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Predict for many samples, in order; each item is a predict body (``features``,
        ``id`` and the task's fields). All are stored, or none (see the module docstring)."""
        return self.submit_predict_many(name, items).wait()

    def submit_predict_many(
        self, name: str, items: Sequence[Mapping[str, Any]]
    ) -> Receipt[list[dict[str, Any]]]:
        live = self._get_live(name)
        items = self._check_batch(items)
        allowed = _PREDICT_FIELDS | live.task.inputs
        errors: list[dict[str, Any]] = []
        records: list[PredictionRecord] = []
        with live.lock:
            before, spent = live.n_predictions, live.predict_stats.total
            ewm = live.predict_stats.ewm
            ids: set[str] = set()
            # The batch's own ids, looked up in the store in one query (not one an item).
            stored_ids = self.store.stored_prediction_ids(
                {
                    item["id"]
                    for item in items
                    if isinstance(item, Mapping) and isinstance(item.get("id"), str)
                }
            )
            for index, item in enumerate(items):
                try:
                    fields = _fields(item, allowed)
                    features, id = fields.pop("features", None), fields.pop("id", None)
                    if id is not None and id in ids:
                        raise PredictionExists(f"prediction id {id!r} comes twice in the batch")
                    record = self._predict_one(live, features, id, fields, stored_ids=stored_ids)
                except RiverbedError as exc:
                    errors.append(item_error(index, exc))
                    continue
                ids.add(record.id)
                records.append(record)
            if errors:
                live.n_predictions = before
                raise _refused(errors, len(items))
            for record in records:
                self._remember(record)
            if live.arena is not None:
                for record in records:
                    live.arena.offer(record.id, record.features)
            future = self.store.add_predictions(records) if records else done()
            spent = live.predict_stats.total - spent
        failed = self._predictions_failed(live, records, spent, ewm) if records else None
        wire = live.task.wire
        results = [{"id": r.id, "model": name, **wire(r.prediction)} for r in records]

        def stored(f: Future[None]) -> None:
            if f.exception() is not None:
                if failed is not None:
                    failed()
                return
            self.events.publish_many(
                [
                    ("predict", name, functools.partial(_predict_data, record, result))
                    for record, result in zip(records, results, strict=True)
                ]
            )

        future.add_done_callback(stored)
        return Receipt(results, future, failed)

    # -- learn many --------------------------------------------------------------------------

    def learn_many(self, name: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Learn from many samples, in order; each item is a learn body (``features`` and
        ``ground_truth``, or ``id`` and ``ground_truth``). All are learned, or none."""
        return self.submit_learn_many(name, items).wait()

    def submit_learn_many(
        self, name: str, items: Sequence[Mapping[str, Any]]
    ) -> Receipt[dict[str, Any]]:
        if self.scaleout is not None:
            return self.scaleout.submit_learn_many(name, items)
        if name not in self._live:
            name = self._learner_of(name)
        live = self._get_live(name)
        items = self._check_batch(items)
        allowed = _LEARN_FIELDS | live.task.inputs
        with live.lock:
            # 1. check every item; nothing changes
            checked = []
            errors: list[dict[str, Any]] = []
            ids: set[str] = set()
            for index, item in enumerate(items):
                try:
                    features, id, ground_truth, fields = learn_item(item, allowed)
                    if id is not None and id in ids:
                        raise AlreadyLabelled(f"prediction id {id!r} comes twice in the batch")
                    checked.append(self._check_learn(live, features, ground_truth, id, fields))
                    if id is not None:
                        ids.add(id)
                except RiverbedError as exc:
                    errors.append(item_error(index, exc))
            if errors:
                raise _refused(errors, len(items))
            # 2. apply in order; a model failure undoes the whole batch
            spent, ewm = live.learn_stats.total, live.learn_stats.ewm
            applied: list[LearnRecord] = []
            marked: list[PredictionRecord] = []
            for index, (sample, y, prediction, stored) in enumerate(checked):
                try:
                    record = self._make_learn(live, sample, y, prediction, stored)
                    if prediction is not None:
                        marked.append(prediction)
                    self._apply(live, record)
                except RiverbedError as exc:
                    for p in marked:
                        p.labelled = False
                        self._mark(p)
                    if applied:
                        self._reload(live)
                    raise _refused([item_error(index, exc)], len(items)) from None
                applied.append(record)
            if not applied:
                return Receipt({"model": name, "n_learns": live.n_learns, "items": []}, done())
            future = self.store.add_learns(applied)
            self._after_learn(live, applied[-1])
            publish = self._learn_events(live, applied)
            spent = live.learn_stats.total - spent
            failed = self._learn_failed(live, marked, len(applied), spent, ewm)
        result = {
            "model": name,
            "n_learns": applied[-1].seq,
            "items": [{"id": r.prediction_id, "n_learns": r.seq} for r in applied],
        }

        def learned(f: Future[None]) -> None:
            if f.exception() is None:
                publish()
            else:
                failed()

        future.add_done_callback(learned)
        return Receipt(result, future, failed)

    # -- helpers -----------------------------------------------------------------------------

    def _learn_events(self, live: _Live, records: list[LearnRecord]) -> Callable[[], None]:
        """What publishes the events of a batch of learns once it is durable: their data
        packed together (one event a learn, as :meth:`_learn_event` makes them), or one by
        one if the batch's values do not pack."""
        pids = [r.prediction_id for r in records]
        wire = live.task.wire
        rows = pack_rows(
            {
                "features": [r.features for r in records],
                "ground_truth": [r.target for r in records],
                "prediction_id": pids,
                "n_learns": [r.seq for r in records],
            },
            [wire(r.prediction) for r in records],
        )
        name = live.record.name
        if rows is None:
            events = [self._learn_event(live, record) for record in records]
            return functools.partial(self.events.publish_many, events)
        types = ["learn" if pid is None else "label" for pid in pids]
        return functools.partial(self.events.publish_rows, name, types, rows)

    def _check_batch(self, items: Any) -> list[Mapping[str, Any]]:
        if isinstance(items, Mapping) or not isinstance(items, Sequence) or isinstance(items, str):
            raise InvalidInput("items must be an array of objects")
        limit = self.settings.max_batch_size
        if len(items) > limit:
            raise PayloadTooLarge(
                f"{len(items)} items is more than the limit of {limit} per request",
                detail={"limit": "max_batch_size", "max": limit, "given": len(items)},
            )
        return list(items)


def _predict_data(record: PredictionRecord, result: dict[str, Any]) -> dict[str, Any]:
    return {"features": record.features, **result}


def learn_item(item: Any, allowed: frozenset[str]) -> tuple[Any, Any, Any, dict[str, Any]]:
    """A learn_many item's ``(features, id, ground_truth, the task's other fields)``; an
    item that is not an object, or has a field outside ``allowed``, is refused
    (InvalidInput). ``ground_truth`` is MISSING when the item has none."""
    if type(item) is dict and _LEARN_FIELDS.issuperset(item):
        # the common item: nothing else to check
        return item.get("features"), item.get("id"), item.get("ground_truth", MISSING), {}
    fields = _fields(item, allowed)
    features, id = fields.pop("features", None), fields.pop("id", None)
    return features, id, fields.pop("ground_truth", MISSING), fields


def _fields(item: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise InvalidInput(f"an item must be an object, got {type(item).__name__}")
    if allowed.issuperset(item):
        return dict(item)
    unknown = sorted(k for k in item if k not in allowed)
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(sorted(allowed))}",
            detail={"fields": unknown},
        )
    return dict(item)


def _refused(errors: list[dict[str, Any]], n: int) -> InvalidBatch:
    first = errors[0]
    return InvalidBatch(
        f"{len(errors)} of {n} items cannot be applied, so none was (item {first['index']}: "
        f"{first['message']})",
        detail={"errors": errors},
    )
