"""Serving versions: frozen river versions and scikit-learn estimators."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from riverbed.evaluated import Evaluated, evaluated
from riverbed.exceptions import InvalidInput
from riverbed.receipts import Receipt
from riverbed.registry.base import MAX_ROWS, _Loaded, split_ref
from riverbed.registry.catalog import Catalog
from riverbed.stores.futures import all_done, done

__all__ = ["Serving"]

_NO_LOCK = contextlib.nullcontext()  # Evaluated takes the version's lock itself


class Serving(Catalog):
    """Serving versions."""

    # -- serving versions ----------------------------------------------------------------

    def _submit_predict_version(
        self,
        target: _Loaded,
        features: Any,
        id: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> Receipt[dict[str, Any]]:
        """Predict with a frozen version. A river version's prediction is stored like the
        live model's, so its ground truth can be learned later by id (by the live model).
        ``extra``: fields added to the answer."""
        from riverbed import batch
        from riverbed.stores.base import PredictionRecord

        record = target.record
        name = record.model
        x = self._check_features(features)
        if target.flavor == "sklearn" and not evaluated(self._model_record(name)):
            with target.lock:
                (row,) = batch.predict_rows(target.obj, [x], record.metadata)
            return Receipt({"model": name, "version": record.version, **row}, done())
        live = self._get_live(name)
        if id is None:
            import uuid

            id = uuid.uuid4().hex
        else:
            id = self._check_id(id)
            if self._id_taken(id) or self.store.get_prediction(id) is not None:
                from riverbed.exceptions import PredictionExists

                raise PredictionExists(f"prediction id {id!r} is taken; use a new id")
        task = live.task
        lock: Any
        if target.flavor == "sklearn":  # evaluated online: scored by the model's metrics
            obj, lock, metric = Evaluated(lambda: target), _NO_LOCK, live.metric
        else:
            obj, lock, metric = target.obj, target.lock, target.metric
        start = time.perf_counter()
        with lock:
            try:
                y_pred = task.predict(obj, x, metric)
            except InvalidInput:
                raise
            except Exception as exc:
                from riverbed.exceptions import InvalidFeatures

                raise InvalidFeatures(
                    f"the model could not predict from these features: {type(exc).__name__}: {exc}"
                ) from None
        seconds = time.perf_counter() - start
        with live.lock:
            live.predict_stats.add(seconds)
            live.n_predictions += 1
            prediction = PredictionRecord(id, name, live.n_predictions, x, y_pred, time.time())
            self._remember(prediction)
            future = self.store.add_prediction(prediction)
        result = {"id": id, "model": name, "version": record.version, **task.wire(y_pred)}
        if extra:
            result.update(extra)
        future.add_done_callback(
            self._publisher("predict", name, {"id": id, "features": x, **result})
        )
        return Receipt(result, future)

    def predict_rows(
        self, ref: str, rows: Sequence[Any], *, version: int | None = None
    ) -> dict[str, Any]:
        return self.submit_predict_rows(ref, rows, version=version).wait()

    def submit_predict_rows(
        self, ref: str, rows: Sequence[Any], *, version: int | None = None
    ) -> Receipt[dict[str, Any]]:
        """Predict many rows in one call: ``{"model", "version", "predictions": [...]}`` with
        one ``{"prediction", "probabilities"?}`` per row (an ``id`` too for river models)."""
        if type(rows) is list and len(rows) == 1 and version is None and type(rows[0]) is dict:
            live = self._live.get(ref)  # a bare name: no address with @ is a key here
            if live is not None and not live.evaluated and live.canary is None:
                return self._submit_predict_row(ref, rows[0])
        from riverbed import batch

        if not isinstance(rows, list | tuple):
            raise InvalidInput("rows must be an array")
        if len(rows) > MAX_ROWS:
            raise InvalidInput(f"{len(rows)} rows is more than the limit of {MAX_ROWS}")
        target = self._serving_target(ref, version)
        if target is not None and target.flavor == "sklearn":
            with target.lock:
                out = batch.predict_rows(target.obj, rows, target.record.metadata)
            value = {"model": target.record.model, "version": target.record.version}
            return Receipt({**value, "predictions": out}, done())
        name = split_ref(ref)[0]
        for row in rows:
            self._check_features(row)  # every row is checked before any is predicted
        if target is None:
            receipts = [self.submit_predict(name, row) for row in rows]
        else:
            receipts = [self._submit_predict_version(target, row, None) for row in rows]
        predictions = []
        for receipt in receipts:
            item = dict(receipt.value)
            item.pop("model", None)
            item.pop("version", None)
            predictions.append(item)
        number = target.record.version if target is not None else None
        # One row (lrnstak's usual request) waits on its own write, with no combined future.
        committed = (
            receipts[0].committed
            if len(receipts) == 1
            else all_done([r.committed for r in receipts])
        )
        return Receipt({"model": name, "version": number, "predictions": predictions}, committed)

    def _submit_predict_row(self, name: str, row: dict[str, Any]) -> Receipt[dict[str, Any]]:
        """One row for a river model's live state (lrnstak's usual request): what the general
        path answers, without its second look at the row's features (the predict checks
        them, as the first thing it does with them), its address lookup and its copies."""
        receipt = self.submit_predict(name, row)
        item = dict(receipt.value)  # the value is also the predict event's data: not changed
        del item["model"]
        value = {"model": name, "version": None, "predictions": [item]}
        return Receipt(value, receipt.committed, receipt.failed)
