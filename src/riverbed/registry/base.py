"""The registry's shared part: addresses, loaded versions, the shape of a version."""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from riverbed import artifacts
from riverbed.evaluated import evaluated
from riverbed.exceptions import (
    InvalidInput,
    ModelNotFound,
    NotServable,
    VersionNotFound,
)
from riverbed.stores.base import ModelRecord, VersionRecord
from riverbed.tasks import get_task
from riverbed.validation import parse_int

if TYPE_CHECKING:
    from concurrent.futures import Future

    from riverbed.config import Settings
    from riverbed.events import EventBus
    from riverbed.live import _Live
    from riverbed.receipts import Receipt
    from riverbed.stores.base import PredictionRecord, Store

__all__ = ["MAX_ROWS", "RESERVED_ALIASES", "RegistryBase", "split_ref"]

_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
# ``latest`` always means the newest version; ``restored`` is moved by restore alone: the
# version last made the live model's state.
RESERVED_ALIASES = ("latest", "restored")
MAX_ROWS = 100_000


def split_ref(ref: str, version: int | None = None) -> tuple[str, int | None, str | None]:
    """``(name, version, alias)`` of an address: ``name``, ``name@alias`` or ``name@3``.

    >>> split_ref("fraud@production"), split_ref("fraud@3"), split_ref("fraud", 2)
    (('fraud', None, 'production'), ('fraud', 3, None), ('fraud', 2, None))
    """
    if not isinstance(ref, str):
        raise ModelNotFound(f"no model named {ref!r}")
    name, at, tail = ref.partition("@")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidInput(f"a version is a positive integer, got {version!r}")
    if not at:
        return name, version, None
    if version is not None:
        raise InvalidInput(f"give a version or an alias, not both ({ref!r} and version {version})")
    if tail.isascii() and tail.isdigit():
        number = parse_int(tail)
        if number is None:
            raise InvalidInput(f"version {tail} is out of range")
        return name, number, None
    if not tail:
        raise InvalidInput(f"{ref!r} names no alias after '@'")
    return name, None, tail


class _Loaded:
    """A version loaded for serving; the lock guards calls into the object."""

    __slots__ = ("record", "obj", "lock", "flavor", "metric")

    def __init__(self, record: VersionRecord, obj: Any, flavor: str, metric: Any) -> None:
        self.record, self.obj, self.flavor, self.metric = record, obj, flavor, metric
        self.lock = threading.Lock()


class RegistryBase:
    """What every part of the registry shares: the engine's parts, resolving addresses,
    loaded versions, and the JSON shape of a version."""

    if TYPE_CHECKING:  # what the engine provides
        settings: Settings
        store: Store
        events: EventBus
        _allowed: tuple[str, ...]
        _live: dict[str, _Live]
        _lock: threading.RLock

        def _id_taken(self, prediction_id: str) -> bool: ...
        def _check_name(self, name: Any) -> str: ...
        def _check_text(self, field: str, value: Any) -> str: ...
        def _check_tags(self, tags: Mapping[str, str] | None) -> dict[str, str]: ...
        def _check_features(self, features: Any) -> dict[str, Any]: ...
        def _check_id(self, id: Any) -> str: ...
        def _get_live(self, name: str) -> _Live: ...
        def _replace_model(self, live: _Live) -> Any: ...
        def _settle(self, live: _Live) -> None: ...
        def _checkpoint(self, live: _Live) -> Future[None]: ...
        def _refuse_in_cluster(self, name: str, what: str) -> None: ...
        def _fresh_tracker(self, live: _Live) -> Any: ...
        def _remember(self, record: PredictionRecord) -> None: ...
        def _publisher(
            self,
            type: str,
            name: str,
            data: dict[str, Any],
            failed: Callable[[], None] | None = None,
        ) -> Any: ...
        def _record_dict(self, record: ModelRecord) -> dict[str, Any]: ...
        def checkpoint(self, name: str | None = None) -> int: ...
        def submit_predict(
            self,
            name: str,
            features: Mapping[str, Any] | None = None,
            *,
            id: str | None = None,
            features_key: str | None = None,
            version: int | None = None,
        ) -> Receipt[dict[str, Any]]: ...

    def _init_registry(self) -> None:
        self._loaded: OrderedDict[tuple[str, int], _Loaded] = OrderedDict()
        self._flavors: dict[str, str] = {}
        self._numbers: dict[str, int] = {}

    # -- resolving addresses ---------------------------------------------------------------

    def _model_record(self, name: str) -> ModelRecord:
        record = self.store.get_model(name)
        if record is None:
            raise ModelNotFound(f"no model named {name!r}")
        return record

    def _flavor(self, name: str) -> str:
        flavor = self._flavors.get(name)
        if flavor is None:
            flavor = self._model_record(name).flavor
            self._flavors[name] = flavor
        return flavor

    def resolve(self, ref: str, version: int | None = None) -> dict[str, Any]:
        """The version an address means: ``{"model", "version", "alias"}``.

        A bare name means the latest version here (its live state is not a version).
        """
        name, number, alias = split_ref(ref, version)
        if name not in self._live and (name, number) not in self._loaded:
            self._model_record(name)
        if alias is not None and alias != "latest":
            found = {a.alias: a.version for a in self.store.list_aliases(name)}
            if alias not in found:
                raise VersionNotFound(
                    f"model {name!r} has no alias {alias!r}",
                    detail={"aliases": sorted(found)},
                )
            number = found[alias]
        if number is None or (name, number) not in self._loaded:
            # Versions are listed without their artifacts: no blob is read to resolve.
            numbers = [v.version for v in self.store.list_versions(name)]
            if number is None:
                if not numbers:
                    raise VersionNotFound(f"model {name!r} has no versions")
                number = numbers[-1]
            elif number not in numbers:
                raise VersionNotFound(f"model {name!r} has no version {number}")
        return {"model": name, "version": number, "alias": alias}

    def _serving_target(self, ref: str, version: int | None) -> _Loaded | None:
        """None when the live model answers; else the loaded version that does."""
        name, number, alias = split_ref(ref, version)
        if number is None and alias is None:
            flavor = self._flavor(name)
            if flavor == "river":
                return None
        if self._flavor(name) == "file":
            raise NotServable(f"model {name!r} holds opaque files: they are kept, not served")
        resolved = self.resolve(ref, version)
        return self._load_version(name, resolved["version"])

    def _load_version(self, name: str, number: int) -> _Loaded:
        key = (name, number)
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is not None:
                self._loaded.move_to_end(key)
                return loaded
        record = self.store.get_version(name, number)
        if record is None:
            raise VersionNotFound(f"model {name!r} has no version {number}")
        model = self._model_record(name)
        obj = self._object_of(record)
        metric = None
        if model.flavor == "river":
            task = get_task(model.task, self._task_options(model.options))  # type: ignore[attr-defined]
            metric = self._tracker(task, model.metrics, model.options)  # type: ignore[attr-defined]
        loaded = _Loaded(record, obj, model.flavor, metric)
        with self._lock:
            self._loaded[key] = loaded
            while len(self._loaded) > max(1, self.settings.version_cache_size):
                self._loaded.popitem(last=False)
        return loaded

    def _learner_of(self, ref: str) -> str:
        """The model whose live state learns for an address (versions never learn)."""
        name, number, alias = split_ref(ref)
        if number is not None or alias is not None:
            self.resolve(ref)  # the address must exist
        if self._flavor(name) != "river" and not evaluated(self._model_record(name)):
            raise NotServable(
                f"model {name!r} is a batch model of the {self._model_record(name).task} task: "
                "it is not evaluated online"
            )
        return name

    def _with_registry(self, described: dict[str, Any]) -> dict[str, Any]:
        name = described["name"]
        versions = self.store.list_versions(name)
        described["flavor"] = self._flavor(name)
        described["latest_version"] = versions[-1].version if versions else None
        described["n_versions"] = len(versions)
        described["aliases"] = {a.alias: a.version for a in self.store.list_aliases(name)}
        return described

    def _describe_batch(self, name: str) -> dict[str, Any]:
        record = self._model_record(name)
        latest = self.store.get_version(name)
        return self._with_registry(
            {
                **self._record_dict(record),
                "version": latest.version if latest else None,
                "source": latest.source if latest else None,
                "spec": latest.spec if latest else None,
                "n_predictions": 0,
                "n_learns": 0,
            }
        )

    def _object_of(self, record: VersionRecord) -> Any:
        return artifacts.load(record.artifact, record.format, allowed=self._allowed)

    def _forget(self, name: str, number: int | None = None) -> None:
        with self._lock:
            for key in [k for k in self._loaded if k[0] == name and number in (None, k[1])]:
                del self._loaded[key]
            if number is None:
                self._flavors.pop(name, None)
                self._numbers.pop(name, None)

    def _next_number(self, name: str) -> int:
        with self._lock:
            number = max(self._numbers.get(name, 0), self.store.last_version(name)) + 1
            self._numbers[name] = number
            return number

    # -- metadata ---------------------------------------------------------------------------

    def _json_object(self, field: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise InvalidInput(f"{field} must be an object with string keys")
        return {k: artifacts.jsonable(v) for k, v in value.items()}

    def _check_metrics(self, metrics: Any) -> dict[str, float]:
        if metrics is None:
            return {}
        if not isinstance(metrics, Mapping):
            raise InvalidInput("metrics must be an object of metric name -> number")
        out = {}
        for key, value in metrics.items():
            if not isinstance(key, str) or isinstance(value, bool):
                raise InvalidInput(f"metric {key!r} must be named by a string and be a number")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InvalidInput(f"metric {key!r} must be a number, got {value!r}") from None
            if not math.isfinite(number):
                raise InvalidInput(f"metric {key!r} must be a finite number")
            out[key] = number
        return out

    def _version_dict(
        self, record: VersionRecord, model: ModelRecord, aliases: list[str]
    ) -> dict[str, Any]:
        meta = record.metadata
        return {
            "model": record.model,
            "version": record.version,
            "task": model.task,
            "flavor": model.flavor,
            "format": record.format,
            "source": record.source,
            "description": record.description,
            "tags": dict(record.tags),
            "aliases": aliases,
            "created_at": record.created_at,
            "created_by": meta.get("created_by", ""),
            "parent": meta.get("parent"),
            "hyperparameters": meta.get("hyperparameters", {}),
            "params": meta.get("params", {}),
            "metrics": meta.get("metrics", {}),
            "dataset": meta.get("dataset", {}),
            "git": meta.get("git", {}),
            "spec": record.spec,
            "filename": meta.get("filename"),
            "size": meta.get("size"),
            "checksum": meta.get("checksum"),
            "n_learns": meta.get("n_learns"),
            "served": model.flavor != "file",
            "url": f"/v1/models/{record.model}/versions/{record.version}/artifact",
        }

    def _aliases_by_version(self, name: str | None) -> dict[tuple[str, int], list[str]]:
        out: dict[tuple[str, int], list[str]] = {}
        for a in self.store.list_aliases(name):
            out.setdefault((a.model, a.version), []).append(a.alias)
        return out
