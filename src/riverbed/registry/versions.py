"""Creating, reading, editing and deleting versions; editing models."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from riverbed import artifacts, serialization, specs
from riverbed.exceptions import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidSpec,
    NotServable,
    PayloadTooLarge,
    VersionNotFound,
)
from riverbed.provenance import caller
from riverbed.receipts import Receipt
from riverbed.registry.base import RegistryBase
from riverbed.stores.base import ModelRecord, VersionRecord
from riverbed.tasks import get_task

__all__ = ["Versions"]


class Versions(RegistryBase):
    """Versions and model edits."""

    # -- creating versions -----------------------------------------------------------------

    def upload(
        self,
        name: str,
        artifact: Any,
        *,
        git: Mapping[str, Any] | bool | None = None,
        created_by: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Add a version from bytes (an artifact in one of :data:`artifacts.FORMATS`) or an
        in-process object; creates the model when the name is new. See :meth:`submit_upload`.

        As :meth:`riverbed.Client.upload` does, the caller's side is recorded: ``git`` None
        captures the working directory's checkout (False records none) and ``created_by``
        None the user name.
        """
        return self.submit_upload(name, artifact, **caller(git, created_by), **options).wait()

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

    def snapshot(
        self,
        name: str,
        *,
        git: Mapping[str, Any] | bool | None = None,
        created_by: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Freeze what an online model has learned so far as a new version, recording the
        caller's git checkout and user name as :meth:`upload` does."""
        return self.submit_snapshot(name, **caller(git, created_by), **options).wait()

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
            record = self._live_version(
                live,
                source="snapshot",
                description=self._check_text("description", description),
                tags=self._check_tags(tags),
                params=params,
                metrics=metrics,
                dataset=dataset,
                git=git,
                created_by=created_by,
            )
        return self._add_version(name, record, None)

    def _live_version(
        self,
        live: Any,
        *,
        source: str,
        description: str = "",
        tags: dict[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        dataset: Any = None,
        git: Mapping[str, Any] | None = None,
        created_by: str = "",
        extra: Mapping[str, Any] | None = None,
    ) -> VersionRecord:
        """The live model's state now as a version record (numbered when added), its
        progressive metrics logged with it (the caller holds live.lock)."""
        frozen = self._replace_model(live)  # pickling it is reading all of it
        data = serialization.dumps(frozen)
        hyper = artifacts.hyperparameters(frozen)
        try:
            spec = specs.to_spec(frozen)
        except InvalidSpec:
            spec = None
        learned = live.metric.values()["metrics"] if live.n_scored else {}
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
        metadata.update(
            size=len(data),
            checksum=serialization.checksum(data),
            n_learns=live.n_learns,
            **(extra or {}),
        )
        return VersionRecord(
            model=live.record.name,
            version=0,
            artifact=data,
            spec=spec,
            source=source,
            created_at=time.time(),
            metadata=metadata,
            format="riverbed",
            description=description,
            tags=dict(tags or {}),
        )

    def _add_version(
        self,
        name: str,
        record: VersionRecord,
        new_model: ModelRecord | None,
    ) -> Receipt[dict[str, Any]]:
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
        for key, value in git.items():
            expected = bool if key == "dirty" else str
            if value is not None and not isinstance(value, expected):
                raise InvalidInput(f"git {key} must be a {expected.__name__}")
            if isinstance(value, str):
                self._check_text(f"git {key}", value)
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
