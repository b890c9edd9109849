"""The in-memory store: a real backend for tests, notebooks and throwaway servers.

It keeps everything in dictionaries and forgets it on exit. Writes complete at once.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import (
    ModelExists,
    ModelNotFound,
    PredictionExists,
    VersionExists,
    VersionNotFound,
)
from riverbed.stores.base import (
    AliasChange,
    AliasRecord,
    CanaryArm,
    Checkpoint,
    DriftAlarm,
    LearnRecord,
    MetricPoint,
    ModelRecord,
    PredictionRecord,
    Pruned,
    Retention,
    Store,
    VersionRecord,
    done,
)
from riverbed.stores.jobstore import MemoryJobs
from riverbed.stores.kv import MemoryCache
from riverbed.stores.tokens import MemoryTokenStore, TokenStore
from riverbed.stores.webhookstore import MemoryWebhooks, WebhookStore

__all__ = ["MemoryStore"]


class MemoryStore(MemoryCache, MemoryJobs, Store):
    def __init__(self) -> None:
        MemoryCache.__init__(self)
        MemoryJobs.__init__(self)
        self._lock = threading.Lock()
        self._models: dict[str, ModelRecord] = {}
        self._versions: dict[str, list[VersionRecord]] = {}
        self._predictions: dict[str, PredictionRecord] = {}
        self._prediction_seqs: dict[str, list[tuple[int, str]]] = {}  # model -> (seq, id)
        self._learns: dict[str, list[LearnRecord]] = {}
        self._checkpoints: dict[str, Checkpoint] = {}
        self._last_version: dict[str, int] = {}
        self._aliases: dict[str, dict[str, AliasRecord]] = {}
        self._alias_history: dict[str, list[AliasChange]] = {}
        self._points: dict[str, dict[int, MetricPoint]] = {}
        self._alarms: dict[str, dict[tuple[int, str], DriftAlarm]] = {}
        self._arms: dict[str, dict[str, CanaryArm]] = {}
        self._tokens = MemoryTokenStore()
        self._webhooks = MemoryWebhooks()

    def token_store(self) -> TokenStore:
        return self._tokens

    def webhook_store(self) -> WebhookStore:
        return self._webhooks

    def create_model(self, model: ModelRecord, version: VersionRecord) -> Future[None]:
        with self._lock:
            if model.name in self._models:
                return done(error=ModelExists(f"a model named {model.name!r} already exists"))
            self._models[model.name] = copy.deepcopy(model)
            self._versions[model.name] = [copy.deepcopy(version)]
            self._learns[model.name] = []
            self._last_version[model.name] = version.version
            self._aliases[model.name] = {}
            self._alias_history[model.name] = []
        return done()

    def delete_model(self, name: str) -> Future[None]:
        with self._lock:
            self._models.pop(name, None)
            self._versions.pop(name, None)
            self._learns.pop(name, None)
            self._checkpoints.pop(name, None)
            self._last_version.pop(name, None)
            self._aliases.pop(name, None)
            self._alias_history.pop(name, None)
            self._points.pop(name, None)
            self._alarms.pop(name, None)
            self._arms.pop(name, None)
            self._prediction_seqs.pop(name, None)
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
                found = versions[-1] if versions else None
            else:
                found = next((v for v in versions if v.version == version), None)
            return copy.deepcopy(found)

    def update_model(
        self, name: str, *, description: str | None, tags: dict[str, str] | None, at: float
    ) -> Future[None]:
        with self._lock:
            model = self._models.get(name)
            if model is None:
                return done(error=ModelNotFound(f"no model named {name!r}"))
            if description is not None:
                model.description = description
            if tags is not None:
                model.tags = dict(tags)
            model.updated_at = at
        return done()

    def add_version(self, version: VersionRecord) -> Future[None]:
        with self._lock:
            versions = self._versions.get(version.model)
            if versions is None:
                return done(error=ModelNotFound(f"no model named {version.model!r}"))
            if any(v.version == version.version for v in versions):
                return done(
                    error=VersionExists(
                        f"model {version.model!r} already has a version {version.version}"
                    )
                )
            versions.append(copy.deepcopy(version))
            versions.sort(key=lambda v: v.version)
            last = self._last_version.get(version.model, 0)
            self._last_version[version.model] = max(last, version.version)
        return done()

    def list_versions(self, name: str | None = None) -> list[VersionRecord]:
        with self._lock:
            names = sorted(self._versions) if name is None else [name]
            return [
                dataclasses.replace(copy.deepcopy(v), artifact=b"")
                for n in names
                for v in self._versions.get(n, [])
            ]

    def last_version(self, name: str) -> int:
        with self._lock:
            return self._last_version.get(name, 0)

    def update_version(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Future[None]:
        with self._lock:
            found = next((v for v in self._versions.get(name, []) if v.version == version), None)
            if found is None:
                return done(error=VersionNotFound(f"model {name!r} has no version {version}"))
            if description is not None:
                found.description = description
            if tags is not None:
                found.tags = dict(tags)
            if metadata is not None:
                found.metadata = copy.deepcopy(metadata)
        return done()

    def delete_version(self, name: str, version: int) -> Future[None]:
        with self._lock:
            if name in self._versions:
                self._versions[name] = [v for v in self._versions[name] if v.version != version]
        return done()

    def set_alias(
        self, name: str, alias: str, version: int | None, *, at: float, by: str = ""
    ) -> Future[None]:
        with self._lock:
            aliases = self._aliases.get(name)
            if aliases is None:
                return done(error=ModelNotFound(f"no model named {name!r}"))
            previous = aliases.get(alias)
            if version is None:
                aliases.pop(alias, None)
            else:
                aliases[alias] = AliasRecord(name, alias, version, at, by)
            self._alias_history[name].append(
                AliasChange(name, alias, version, previous.version if previous else None, at, by)
            )
        return done()

    def list_aliases(self, name: str | None = None) -> list[AliasRecord]:
        with self._lock:
            names = sorted(self._aliases) if name is None else [name]
            return [
                copy.copy(a) for n in names for _, a in sorted(self._aliases.get(n, {}).items())
            ]

    def alias_history(self, name: str) -> list[AliasChange]:
        with self._lock:
            return [copy.copy(c) for c in self._alias_history.get(name, [])]

    def add_prediction(self, record: PredictionRecord) -> Future[None]:
        with self._lock:
            if record.id in self._predictions:
                return done(
                    error=PredictionExists(f"prediction id {record.id!r} is taken; use a new id")
                )
            self._add_prediction(record)
        return done()

    def _add_prediction(self, record: PredictionRecord) -> None:
        # The caller holds the lock.
        self._predictions[record.id] = copy.copy(record)
        self._prediction_seqs.setdefault(record.model, []).append((record.seq, record.id))

    def get_prediction(self, prediction_id: str) -> PredictionRecord | None:
        with self._lock:
            record = self._predictions.get(prediction_id)
            return copy.copy(record) if record else None

    def predictions_after(self, name: str, seq: int) -> list[PredictionRecord]:
        with self._lock:
            found = [p for p in self._predictions.values() if p.model == name and p.seq > seq]
            return [copy.copy(p) for p in sorted(found, key=lambda p: p.seq)]

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

    def add_predictions(self, records: list[PredictionRecord]) -> Future[None]:
        with self._lock:
            ids = [r.id for r in records]
            taken = [i for i in ids if i in self._predictions]
            if taken or len(set(ids)) != len(ids):
                first = taken[0] if taken else ids[0]
                return done(error=PredictionExists(f"prediction id {first!r} is taken"))
            for record in records:
                self._add_prediction(record)
        return done()

    def add_learns(self, records: list[LearnRecord]) -> Future[None]:
        for record in records:
            self.add_learn(record)
        return done()

    def add_metric_point(self, point: MetricPoint) -> Future[None]:
        with self._lock:
            if point.model in self._models:
                self._points.setdefault(point.model, {}).setdefault(point.seq, point)
        return done()

    def metric_history(
        self, name: str, *, after: int = 0, since: float | None = None, limit: int = 1000
    ) -> list[MetricPoint]:
        with self._lock:
            points = sorted(self._points.get(name, {}).values(), key=lambda p: p.seq)
        return [p for p in points if p.seq > after and (since is None or p.time >= since)][:limit]

    def add_drift_alarm(self, alarm: DriftAlarm) -> Future[None]:
        with self._lock:
            if alarm.model in self._models:
                kept = self._alarms.setdefault(alarm.model, {})
                kept.setdefault((alarm.seq, alarm.detector), copy.deepcopy(alarm))
        return done()

    def drift_alarms(self, name: str, *, after: int = 0, limit: int = 1000) -> list[DriftAlarm]:
        with self._lock:
            kept = self._alarms.get(name, {})
            keys = sorted(k for k in kept if k[0] > after)[:limit]
            return [copy.deepcopy(kept[k]) for k in keys]

    def add_canary_arm(self, arm: CanaryArm) -> Future[None]:
        with self._lock:
            if arm.model in self._models:
                self._arms.setdefault(arm.model, {}).setdefault(arm.id, copy.copy(arm))
        return done()

    def canary_arm(self, name: str, prediction_id: str) -> CanaryArm | None:
        with self._lock:
            arm = self._arms.get(name, {}).get(prediction_id)
            return copy.copy(arm) if arm is not None else None

    def canary_arm_counts(self, name: str, *, after: int = 0) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for arm in self._arms.get(name, {}).values():
                if arm.seq > after:
                    key = (arm.run, arm.arm)
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def learns_after(self, name: str, seq: int) -> Iterator[LearnRecord]:
        with self._lock:
            learns = [r for r in self._learns.get(name, []) if r.seq > seq]
        return iter(learns)

    def prune(self, name: str, retention: Retention) -> Future[Pruned]:
        pruned = Pruned()
        with self._lock:
            seqs = self._prediction_seqs.get(name)
            if retention.predictions and seqs and len(seqs) > retention.predictions:
                seqs.sort()
                cut = len(seqs) - retention.predictions
                for _, prediction_id in seqs[:cut]:
                    self._predictions.pop(prediction_id, None)
                pruned.predictions, pruned.predictions_through = cut, seqs[cut - 1][0]
                del seqs[:cut]
            learns = self._learns.get(name)
            if retention.learns and learns and len(learns) > retention.learns:
                learns.sort(key=lambda r: r.seq)
                checkpoint = self._checkpoints.get(name)
                through = min(
                    learns[-1 - retention.learns].seq, checkpoint.seq if checkpoint else 0
                )
                cut = sum(1 for r in learns if r.seq <= through)
                pruned.learns = cut
                del learns[:cut]
            points = self._points.get(name)
            if retention.metric_points and points and len(points) > retention.metric_points:
                old = sorted(points)[: len(points) - retention.metric_points]
                for seq in old:
                    del points[seq]
                pruned.metric_points = len(old)
        return done(pruned)

    def save_checkpoint(self, checkpoint: Checkpoint) -> Future[None]:
        with self._lock:
            if checkpoint.model in self._models:
                self._checkpoints[checkpoint.model] = checkpoint
        return done()

    def get_checkpoint(self, name: str) -> Checkpoint | None:
        with self._lock:
            return self._checkpoints.get(name)
