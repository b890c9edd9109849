"""The in-memory store: a real backend for tests, notebooks and throwaway servers.

It keeps everything in dictionaries and forgets it on exit. Writes complete at once.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from concurrent.futures import Future

from riverbed.exceptions import ModelExists, PredictionExists
from riverbed.stores.base import (
    Checkpoint,
    LearnRecord,
    ModelRecord,
    PredictionRecord,
    Store,
    VersionRecord,
    done,
)
from riverbed.stores.kv import MemoryCache

__all__ = ["MemoryStore"]


class MemoryStore(MemoryCache, Store):
    def __init__(self) -> None:
        MemoryCache.__init__(self)
        self._lock = threading.Lock()
        self._models: dict[str, ModelRecord] = {}
        self._versions: dict[str, list[VersionRecord]] = {}
        self._predictions: dict[str, PredictionRecord] = {}
        self._learns: dict[str, list[LearnRecord]] = {}
        self._checkpoints: dict[str, Checkpoint] = {}

    def create_model(self, model: ModelRecord, version: VersionRecord) -> Future[None]:
        with self._lock:
            if model.name in self._models:
                return done(error=ModelExists(f"a model named {model.name!r} already exists"))
            self._models[model.name] = copy.deepcopy(model)
            self._versions[model.name] = [version]
            self._learns[model.name] = []
        return done()

    def delete_model(self, name: str) -> Future[None]:
        with self._lock:
            self._models.pop(name, None)
            self._versions.pop(name, None)
            self._learns.pop(name, None)
            self._checkpoints.pop(name, None)
            self._predictions = {k: p for k, p in self._predictions.items() if p.model != name}
        return done()

    def get_model(self, name: str) -> ModelRecord | None:
        with self._lock:
            model = self._models.get(name)
            return copy.deepcopy(model) if model else None

    def list_models(self) -> list[ModelRecord]:
        with self._lock:
            return [copy.deepcopy(m) for _, m in sorted(self._models.items())]

    def get_version(self, name: str, version: int | None = None) -> VersionRecord | None:
        with self._lock:
            versions = self._versions.get(name) or []
            if version is None:
                return versions[-1] if versions else None
            return next((v for v in versions if v.version == version), None)

    def add_prediction(self, record: PredictionRecord) -> Future[None]:
        with self._lock:
            if record.id in self._predictions:
                return done(error=PredictionExists(f"prediction id {record.id!r} is taken"))
            self._predictions[record.id] = copy.copy(record)
        return done()

    def get_prediction(self, prediction_id: str) -> PredictionRecord | None:
        with self._lock:
            record = self._predictions.get(prediction_id)
            return copy.copy(record) if record else None

    def max_prediction_seq(self, name: str) -> int:
        with self._lock:
            return max((p.seq for p in self._predictions.values() if p.model == name), default=0)

    def add_learn(self, record: LearnRecord) -> Future[None]:
        with self._lock:
            if record.model not in self._models:
                return done()
            self._learns[record.model].append(record)
            if record.prediction_id in self._predictions:
                self._predictions[record.prediction_id].labelled = True
        return done()

    def learns_after(self, name: str, seq: int) -> Iterator[LearnRecord]:
        with self._lock:
            learns = [r for r in self._learns.get(name, []) if r.seq > seq]
        return iter(learns)

    def save_checkpoint(self, checkpoint: Checkpoint) -> Future[None]:
        with self._lock:
            if checkpoint.model in self._models:
                self._checkpoints[checkpoint.model] = checkpoint
        return done()

    def get_checkpoint(self, name: str) -> Checkpoint | None:
        with self._lock:
            return self._checkpoints.get(name)
