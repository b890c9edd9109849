"""The model registry, as :class:`~riverbed.engine.Engine` methods: numbered immutable
versions, aliases, metadata, search and artifacts.

Addresses: ``name`` is the model (for an online model, its live learning state; for a batch
model, its latest version); ``name@alias`` is the version an alias points to (``latest`` is
implicit); ``name@3`` or ``version=3`` is version 3. Versions never change: learning
addressed to ``name@alias`` updates the model's live state, which a new ``snapshot`` freezes
again as a version.

Every write follows the engine's ``submit_<op>`` / ``<op>`` pattern and is published as an
event once durable: ``version.created``, ``version.updated``, ``version.deleted``,
``alias.moved`` (a removal is a move to None), ``model.updated``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from riverbed import artifacts, search, serialization, specs
from riverbed.exceptions import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidSpec,
    ModelNotFound,
    NotServable,
    PayloadTooLarge,
    VersionNotFound,
)
from riverbed.stores.base import ModelRecord, VersionRecord, done
from riverbed.tasks import get_task

if TYPE_CHECKING:
    from riverbed.config import Settings
    from riverbed.engine import Receipt, _Live
    from riverbed.events import EventBus
    from riverbed.stores.base import PredictionRecord, Store

__all__ = ["Registry", "split_ref"]

_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
RESERVED_ALIASES = ("latest",)
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
    if tail.isdigit():
        return name, int(tail), None
    if not tail:
        raise InvalidInput(f"{ref!r} names no alias after '@'")
    return name, None, tail


class _Loaded:
    """A version loaded for serving; the lock guards calls into the object."""

    __slots__ = ("record", "obj", "lock", "flavor", "metric")

    def __init__(self, record: VersionRecord, obj: Any, flavor: str, metric: Any) -> None:
        self.record, self.obj, self.flavor, self.metric = record, obj, flavor, metric
        self.lock = threading.Lock()


class Registry:
    """The registry half of the engine (mixed into :class:`~riverbed.engine.Engine`)."""

    if TYPE_CHECKING:  # what the engine provides
        settings: Settings
        store: Store
        events: EventBus
        _allowed: tuple[str, ...]
        _live: dict[str, _Live]
        _lock: threading.RLock
        _cache: OrderedDict[str, PredictionRecord]

        def _check_name(self, name: Any) -> str: ...
        def _check_text(self, field: str, value: Any) -> str: ...
        def _check_tags(self, tags: Mapping[str, str] | None) -> dict[str, str]: ...
        def _check_features(self, features: Any) -> dict[str, Any]: ...
        def _check_id(self, id: Any) -> str: ...
        def _get_live(self, name: str) -> _Live: ...
        def _remember(self, record: PredictionRecord) -> None: ...
        def _publisher(self, type: str, name: str, data: dict[str, Any]) -> Any: ...
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
        self._model_record(name)
        if alias is not None and alias != "latest":
            found = {a.alias: a.version for a in self.store.list_aliases(name)}
            if alias not in found:
                raise VersionNotFound(
                    f"model {name!r} has no alias {alias!r}",
                    detail={"aliases": sorted(found)},
                )
            number = found[alias]
        if number is None:
            latest = self.store.get_version(name)
            if latest is None:
                raise VersionNotFound(f"model {name!r} has no versions")
            number = latest.version
        elif self.store.get_version(name, number) is None:
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
            from riverbed.tasks import make_metrics

            metric = make_metrics(get_task(model.task), model.metrics)
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
        if self._flavor(name) != "river":
            raise NotServable(f"model {name!r} is a batch model: it does not learn online")
        return name

    def _with_registry(self, described: dict[str, Any]) -> dict[str, Any]:
        name = described["name"]
        versions = self.store.list_versions(name)
        described["flavor"] = self._flavor(name)
        described["latest_version"] = versions[-1].version if versions else None
        described["n_versions"] = len(versions)
        described["aliases"] = self.aliases(name)
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

    # -- creating versions -----------------------------------------------------------------

    def upload(self, name: str, artifact: Any, **options: Any) -> dict[str, Any]:
        """Add a version from bytes (an artifact in one of :data:`artifacts.FORMATS`) or an
        in-process object; creates the model when the name is new. See :meth:`submit_upload`.
        """
        return self.submit_upload(name, artifact, **options).wait()

    def submit_upload(
        self,
        name: str,
        artifact: Any,
        *,
        format: str | None = None,
        filename: str | None = None,
        task: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        dataset: Any = None,
        git: Mapping[str, Any] | None = None,
        created_by: str = "",
        parent: int | None = None,
        feature_names: Sequence[str] | None = None,
        source: str = "upload",
        allow_pickle: bool | None = None,
    ) -> Receipt[dict[str, Any]]:
        """Validate an artifact, read what it holds and queue it as the model's next version.

        ``allow_pickle`` None follows the ``allow_pickle_uploads`` setting; the server passes
        whether the caller may run code. Hyperparameters are read from the object (river's
        ``_get_params``, scikit-learn's ``get_params``); ``hyperparameters`` adds to them.
        """
        name = self._check_name(name)
        if isinstance(artifact, bytes | bytearray | memoryview):
            data = bytes(artifact)
            format = format or artifacts.guess_format(data, filename)
            if format not in artifacts.FORMATS:
                raise InvalidInput(
                    f"unknown artifact format {format!r}; one of {', '.join(artifacts.FORMATS)}"
                )
            if format in artifacts.PICKLED:
                allowed = (
                    self.settings.pickle_uploads_allowed if allow_pickle is None else allow_pickle
                )
                if not allowed:
                    raise Forbidden(
                        f"uploading a {format} artifact runs its code on the server, which this "
                        "server does not allow; upload a skops file or a spec instead",
                        detail={"format": format},
                    )
        else:
            if format not in (None, "riverbed", "skops"):
                raise InvalidInput("an in-process object is stored as riverbed or skops")
            data, format = artifacts.dump_object(artifact)
        limit = self.settings.max_artifact_bytes
        if len(data) > limit:
            raise PayloadTooLarge(f"the artifact is {len(data)} bytes; the limit is {limit}")
        if source not in ("upload", "job", "spec", "object"):
            raise InvalidInput("source is upload, job, spec or object")
        obj = (
            None
            if format == "file"
            else self._object_of(VersionRecord(name, 0, data, format=format))
        )
        flavor = "file" if obj is None else artifacts.flavor_of(obj)
        existing = self.store.get_model(name)
        if existing is not None and existing.flavor != flavor:
            raise Conflict(
                f"model {name!r} holds {existing.flavor} versions; a {flavor} artifact cannot "
                "be one of its versions (use another name)",
                detail={"model_flavor": existing.flavor, "artifact_flavor": flavor},
            )
        if existing is not None:
            if task is not None and task != existing.task:
                raise Conflict(f"model {name!r} serves the {existing.task} task, not {task}")
            task = existing.task
        elif flavor == "river":
            from riverbed.tasks import detect_task

            task = (get_task(task) if task is not None else detect_task(obj)).name
        elif flavor == "sklearn":
            task = task or artifacts.task_of(obj)
        else:
            task = task or "custom"
        if flavor == "river":
            get_task(task).check_model(obj)
        spec = None
        if obj is not None:
            try:
                spec = specs.to_spec(obj)
            except InvalidSpec:
                spec = None
        found = artifacts.hyperparameters(obj) if obj is not None else {}
        metadata = self._metadata(
            hyperparameters={**found, **self._json_object("hyperparameters", hyperparameters)},
            params=params,
            metrics=metrics,
            dataset=dataset,
            git=git,
            created_by=created_by,
            parent=parent,
            filename=filename,
            feature_names=feature_names,
        )
        metadata.update(size=len(data), checksum=serialization.checksum(data))
        return self._add_version(
            name,
            VersionRecord(
                model=name,
                version=0,
                artifact=data,
                spec=spec,
                source=source,
                created_at=time.time(),
                metadata=metadata,
                format=format,
                description=self._check_text("description", description),
                tags=self._check_tags(tags),
            ),
            ModelRecord(
                name=name,
                task=task,
                description=self._check_text("description", description),
                tags=self._check_tags(tags),
                metrics=[],
                created_at=time.time(),
                updated_at=time.time(),
                flavor=flavor,
            )
            if existing is None
            else None,
        )

    def snapshot(self, name: str, **options: Any) -> dict[str, Any]:
        """Freeze what an online model has learned so far as a new version."""
        return self.submit_snapshot(name, **options).wait()

    def submit_snapshot(
        self,
        name: str,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        dataset: Any = None,
        git: Mapping[str, Any] | None = None,
        created_by: str = "",
    ) -> Receipt[dict[str, Any]]:
        """The live model's state now becomes version N+1 (source ``snapshot``); the live
        model keeps learning apart from it. Its progressive metrics are logged with it."""
        if "@" in name:
            raise InvalidInput("snapshot takes a model name: it freezes the live state")
        if self._flavor(name) != "river":
            raise NotServable(f"model {name!r} has no live learning state to snapshot")
        live = self._get_live(name)
        with live.lock:
            data = serialization.dumps(live.model)
            hyper = artifacts.hyperparameters(live.model)
            try:
                spec = specs.to_spec(live.model)
            except InvalidSpec:
                spec = None
            learned = {type(m).__name__: m.get() for m in live.metric} if live.n_scored else {}
            n_learns = live.n_learns
        measured = {k: float(v) for k, v in learned.items() if isinstance(v, int | float)}
        metadata = self._metadata(
            hyperparameters=hyper,
            params=params,
            metrics={
                **{k: v for k, v in measured.items() if math.isfinite(v)},
                **self._check_metrics(metrics),
            },
            dataset=dataset,
            git=git,
            created_by=created_by,
            parent=live.version,
            filename=None,
            feature_names=None,
        )
        metadata.update(size=len(data), checksum=serialization.checksum(data), n_learns=n_learns)
        record = VersionRecord(
            model=name,
            version=0,
            artifact=data,
            spec=spec,
            source="snapshot",
            created_at=time.time(),
            metadata=metadata,
            format="riverbed",
            description=self._check_text("description", description),
            tags=self._check_tags(tags),
        )
        return self._add_version(name, record, None)

    def _add_version(
        self,
        name: str,
        record: VersionRecord,
        new_model: ModelRecord | None,
    ) -> Receipt[dict[str, Any]]:
        from riverbed.engine import Receipt

        with self._lock:
            record.version = self._next_number(name) if new_model is None else 1
            if new_model is not None:
                if self.store.get_model(name) is not None or name in self._live:
                    from riverbed.exceptions import ModelExists

                    raise ModelExists(f"a model named {name!r} was created meanwhile; retry")
                future = self.store.create_model(new_model, record)
                self._numbers[name] = 1
            else:
                future = self.store.add_version(record)
        value = self._version_dict(record, new_model or self._model_record(name), [])

        def published(f: Future[None]) -> None:
            if f.exception() is None:
                if new_model is not None:
                    self.events.publish(
                        "model.created", name, {"task": new_model.task, "source": record.source}
                    )
                self.events.publish(
                    "version.created",
                    name,
                    {"version": record.version, "source": record.source, "format": record.format},
                )

        future.add_done_callback(published)
        return Receipt(value, future)

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

    def _metadata(
        self,
        *,
        hyperparameters: dict[str, Any],
        params: Any,
        metrics: Any,
        dataset: Any,
        git: Any,
        created_by: Any,
        parent: Any,
        filename: Any,
        feature_names: Any,
    ) -> dict[str, Any]:
        if isinstance(dataset, str):
            dataset = {"name": dataset}
        if dataset is not None and (
            not isinstance(dataset, Mapping)
            or set(dataset) - {"name", "description"}
            or not all(isinstance(v, str) for v in dataset.values())
        ):
            raise InvalidInput("dataset is a name, or an object with a name and a description")
        git = self._json_object("git", git)
        unknown = set(git) - {"commit", "branch", "remote", "dirty"}
        if unknown:
            raise InvalidInput(f"unknown git field(s) {sorted(unknown)}: commit, branch, remote")
        if parent is not None and (
            isinstance(parent, bool) or not isinstance(parent, int) or parent < 1
        ):
            raise InvalidInput("parent is the number of an earlier version")
        if feature_names is not None and (
            not isinstance(feature_names, Sequence)
            or isinstance(feature_names, str)
            or not all(isinstance(n, str) for n in feature_names)
        ):
            raise InvalidInput("feature_names is a list of strings")
        metadata: dict[str, Any] = {
            "hyperparameters": hyperparameters,
            "params": self._json_object("params", params),
            "metrics": self._check_metrics(metrics),
            "dataset": {k: self._check_text("dataset", v) for k, v in (dataset or {}).items()},
            "git": git,
            "created_by": self._check_text("created_by", created_by or ""),
            "parent": parent,
        }
        if filename is not None:
            metadata["filename"] = self._check_text("filename", filename)
        if feature_names is not None:
            metadata["feature_names"] = list(feature_names)
        return metadata

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

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of a model, oldest first (without artifacts)."""
        model = self._model_record(name)
        aliases = self._aliases_by_version(name)
        return [
            self._version_dict(v, model, aliases.get((name, v.version), []))
            for v in self.store.list_versions(name)
        ]

    def get_version(self, ref: str, version: int | None = None) -> dict[str, Any]:
        """One version's metadata, by ``name`` (latest), ``name@alias``, ``name@N`` or
        ``version=N``."""
        resolved = self.resolve(ref, version)
        name, number = resolved["model"], resolved["version"]
        record = self.store.get_version(name, number)
        if record is None:  # deleted in between
            raise VersionNotFound(f"model {name!r} has no version {number}")
        aliases = self._aliases_by_version(name).get((name, number), [])
        return self._version_dict(record, self._model_record(name), aliases)

    def download(self, ref: str, version: int | None = None) -> bytes:
        """The artifact's bytes, exactly as they were stored."""
        return self.get_artifact(ref, version)[0]

    def get_artifact(self, ref: str, version: int | None = None) -> tuple[bytes, dict[str, Any]]:
        """The artifact's bytes and the version's metadata."""
        resolved = self.resolve(ref, version)
        record = self.store.get_version(resolved["model"], resolved["version"])
        if record is None:
            raise VersionNotFound(
                f"model {resolved['model']!r} has no version {resolved['version']}"
            )
        model = self._model_record(record.model)
        return record.artifact, self._version_dict(record, model, [])

    def model_json(self, ref: str, version: int | None = None) -> dict[str, Any]:
        """A JSON view of a version: its spec (None when it has no spec form) and params."""
        info = self.get_version(ref, version)
        return {
            key: info[key]
            for key in ("model", "version", "flavor", "format", "spec", "hyperparameters", "params")
        }

    # -- editing and deleting ------------------------------------------------------------

    def _merged_tags(
        self, current: Mapping[str, str], tags: Any, remove_tags: Any
    ) -> dict[str, str] | None:
        if tags is None and not remove_tags:
            return None
        if remove_tags is not None and (
            isinstance(remove_tags, str) or not all(isinstance(k, str) for k in remove_tags)
        ):
            raise InvalidInput("remove_tags is a list of tag names")
        merged = {**current, **self._check_tags(tags)}
        for key in remove_tags or ():
            merged.pop(key, None)
        return merged

    def update_model(self, name: str, **changes: Any) -> dict[str, Any]:
        return self.submit_update_model(name, **changes).wait()

    def submit_update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        remove_tags: Sequence[str] | None = None,
    ) -> Receipt[dict[str, Any]]:
        """Edit a model's description; set tags (merged into the current ones) and remove
        the tags named in ``remove_tags``."""
        from riverbed.engine import Receipt

        record = self._model_record(name)
        if description is not None:
            record.description = self._check_text("description", description)
        new_tags = self._merged_tags(record.tags, tags, remove_tags)
        if new_tags is not None:
            record.tags = new_tags
        record.updated_at = time.time()
        future = self.store.update_model(
            name, description=description, tags=new_tags, at=record.updated_at
        )
        live = self._live.get(name)
        if live is not None:
            live.record = record
        future.add_done_callback(
            self._publisher("model.updated", name, {"description": record.description})
        )
        return Receipt(self._record_dict(record), future)

    def update_version(
        self, ref: str, version: int | None = None, **changes: Any
    ) -> dict[str, Any]:
        return self.submit_update_version(ref, version, **changes).wait()

    def submit_update_version(
        self,
        ref: str,
        version: int | None = None,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        remove_tags: Sequence[str] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> Receipt[dict[str, Any]]:
        """Edit what may change on a version: its description, its tags (merged; names in
        ``remove_tags`` removed) and its logged metrics (merged). The artifact and the
        hyperparameters never change."""
        from riverbed.engine import Receipt

        resolved = self.resolve(ref, version)
        name, number = resolved["model"], resolved["version"]
        record = self.store.get_version(name, number)
        if record is None:
            raise VersionNotFound(f"model {name!r} has no version {number}")
        if description is not None:
            record.description = self._check_text("description", description)
        new_tags = self._merged_tags(record.tags, tags, remove_tags)
        if new_tags is not None:
            record.tags = new_tags
        metadata = None
        if metrics is not None:
            record.metadata["metrics"] = {
                **record.metadata.get("metrics", {}),
                **self._check_metrics(metrics),
            }
            metadata = record.metadata
        future = self.store.update_version(
            name, number, description=description, tags=new_tags, metadata=metadata
        )
        aliases = self._aliases_by_version(name).get((name, number), [])
        value = self._version_dict(record, self._model_record(name), aliases)
        future.add_done_callback(self._publisher("version.updated", name, {"version": number}))
        return Receipt(value, future)

    def delete_version(self, name: str, version: int) -> dict[str, Any]:
        return self.submit_delete_version(name, version).wait()

    def submit_delete_version(self, name: str, version: int) -> Receipt[dict[str, Any]]:
        """Delete a version and its artifact for good. Refused while an alias points to it;
        its number is never given again."""
        from riverbed.engine import Receipt

        resolved = self.resolve(name, version)
        name, number = resolved["model"], resolved["version"]
        pointing = sorted(self._aliases_by_version(name).get((name, number), []))
        if pointing:
            raise Conflict(
                f"alias(es) {', '.join(pointing)} point to version {number}; move them first",
                detail={"aliases": pointing},
            )
        live = self._live.get(name)
        if live is not None and live.version == number:
            # The live model was started from this version: keep its state in a checkpoint.
            self.checkpoint(name)
        elif self._flavor(name) == "river" and self.store.get_checkpoint(name) is None:
            first = self.store.list_versions(name)
            if first and first[0].version == number:
                self._get_live(name)
                self.checkpoint(name)
        future = self.store.delete_version(name, number)
        self._forget(name, number)
        future.add_done_callback(self._publisher("version.deleted", name, {"version": number}))
        return Receipt({"model": name, "version": number, "deleted": True}, future)

    # -- aliases -------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int, *, by: str = "") -> dict[str, Any]:
        return self.submit_set_alias(name, alias, version, by=by).wait()

    def submit_set_alias(
        self, name: str, alias: str, version: int | None, *, by: str = ""
    ) -> Receipt[dict[str, Any]]:
        """Point ``name@alias`` at a version (None removes the alias). The move is kept in
        the alias history and published as an ``alias.moved`` event."""
        from riverbed.engine import Receipt

        if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
            raise InvalidInput(
                f"invalid alias {alias!r}: 1 to 64 letters, digits, '_', '-' or '.', "
                "starting with a letter"
            )
        if alias in RESERVED_ALIASES:
            raise InvalidInput(f"{alias!r} is implicit: it always means the newest version")
        self._model_record(name)
        current = {a.alias: a.version for a in self.store.list_aliases(name)}
        if version is None:
            if alias not in current:
                raise VersionNotFound(f"model {name!r} has no alias {alias!r}")
        else:
            version = self.resolve(name, version)["version"]
        future = self.store.set_alias(
            name, alias, version, at=time.time(), by=self._check_text("by", by)
        )
        data = {"alias": alias, "version": version, "previous": current.get(alias)}
        future.add_done_callback(self._publisher("alias.moved", name, data))
        return Receipt({"model": name, **data}, future)

    def delete_alias(self, name: str, alias: str, *, by: str = "") -> dict[str, Any]:
        return self.submit_set_alias(name, alias, None, by=by).wait()

    def aliases(self, name: str) -> dict[str, int]:
        """``{alias: version}`` of a model."""
        self._model_record(name)
        return {a.alias: a.version for a in self.store.list_aliases(name)}

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        """Every move of the model's aliases, oldest first."""
        self._model_record(name)
        return [
            {
                "alias": c.alias,
                "version": c.version,
                "previous": c.previous,
                "at": c.at,
                "by": c.by,
            }
            for c in self.store.alias_history(name)
        ]

    # -- search --------------------------------------------------------------------------

    def search_versions(
        self,
        filter: str | None = None,
        *,
        order_by: str | Sequence[str] | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        """Versions of every model that pass ``filter`` (see :mod:`riverbed.search`), sorted
        by ``order_by`` (default: model name, newest version first), one page at a time."""
        parsed = search.parse_filter(filter)
        order = search.parse_order(order_by, "name, version desc")
        models = {m.name: m for m in self.store.list_models()}
        aliases = self._aliases_by_version(None)
        entries = []
        for record in self.store.list_versions():
            model = models.get(record.model)
            if model is None:
                continue
            entry = self._version_dict(
                record, model, aliases.get((record.model, record.version), [])
            )
            entry["model_tags"] = model.tags
            entry["updated_at"] = model.updated_at
            if parsed.match(entry):
                entries.append(entry)
        page, token = search.paginate(order.sort(entries), page_size, page_token)
        for entry in page:
            entry.pop("model_tags", None)
            entry.pop("updated_at", None)
        return {"versions": page, "next_page_token": token, "total": len(entries)}

    def search_models(
        self,
        filter: str | None = None,
        *,
        order_by: str | Sequence[str] | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        """Models that pass ``filter``: a model passes when one of its versions does (fields
        of the model itself, such as ``name`` or ``tags.team``, apply to all of them)."""
        parsed = search.parse_filter(filter)
        order = search.parse_order(order_by, "name")
        by_model: dict[str, list[VersionRecord]] = {}
        for record in self.store.list_versions():
            by_model.setdefault(record.model, []).append(record)
        aliases = self._aliases_by_version(None)
        entries = []
        for model in self.store.list_models():
            summary = {
                **self._record_dict(model),
                "flavor": model.flavor,
                "n_versions": len(by_model.get(model.name, [])),
                "latest_version": max(
                    (v.version for v in by_model.get(model.name, [])), default=None
                ),
                "aliases": {
                    a: v for (m, v), names in aliases.items() if m == model.name for a in names
                },
            }
            candidates = [
                {
                    **self._version_dict(v, model, aliases.get((model.name, v.version), [])),
                    "name": model.name,
                    "model_tags": model.tags,
                    "updated_at": model.updated_at,
                }
                for v in by_model.get(model.name, [])
            ] or [{**summary, "aliases": []}]
            if any(parsed.match(c) for c in candidates):
                entries.append(summary)
        page, token = search.paginate(order.sort(entries), page_size, page_token)
        return {"models": page, "next_page_token": token, "total": len(entries)}

    # -- serving versions ----------------------------------------------------------------

    def _submit_predict_version(
        self, target: _Loaded, features: Any, id: str | None
    ) -> Receipt[dict[str, Any]]:
        """Predict with a frozen version. A river version's prediction is stored like the
        live model's, so its ground truth can be learned later by id (by the live model)."""
        from riverbed import batch
        from riverbed.engine import Receipt
        from riverbed.stores.base import PredictionRecord

        record = target.record
        name = record.model
        x = self._check_features(features)
        if target.flavor == "sklearn":
            with target.lock:
                (row,) = batch.predict_rows(target.obj, [x], record.metadata)
            return Receipt({"model": name, "version": record.version, **row}, done())
        live = self._get_live(name)
        if id is None:
            import uuid

            id = uuid.uuid4().hex
        else:
            id = self._check_id(id)
            if id in self._cache or self.store.get_prediction(id) is not None:
                from riverbed.exceptions import PredictionExists

                raise PredictionExists(f"prediction id {id!r} is taken; use a new id")
        task = live.task
        with target.lock:
            try:
                y_pred = task.predict(target.obj, x, target.metric)
            except Exception as exc:
                from riverbed.exceptions import InvalidFeatures

                raise InvalidFeatures(
                    f"the model could not predict from these features: {type(exc).__name__}: {exc}"
                ) from None
        with live.lock:
            live.n_predictions += 1
            prediction = PredictionRecord(id, name, live.n_predictions, x, y_pred, time.time())
            self._remember(prediction)
            future = self.store.add_prediction(prediction)
        result = {"id": id, "model": name, "version": record.version, **task.wire(y_pred)}
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
        from riverbed import batch
        from riverbed.engine import Receipt

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
        return Receipt(
            {"model": name, "version": number, "predictions": predictions},
            _all([r.committed for r in receipts]),
        )


def _all(futures: list[Future[Any]]) -> Future[None]:
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
