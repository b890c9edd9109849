"""The registry's operations over HTTP, with the engine's method names (mixed into
:class:`riverbed.Client` and :class:`riverbed.AsyncClient`).

``upload`` captures where a version comes from on the caller's side: the git commit, branch
and remote of the working directory, and the user name (pass ``git=False`` to leave them
out). Objects are sent in a safe form when there is one: scikit-learn estimators as skops
files; river objects need the server to accept pickles (or send a spec to ``create_model``).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from riverbed import artifacts
from riverbed.provenance import caller, current_user

__all__ = ["RegistryMethods"]

RAW = "\x00raw"


def _path(*parts: Any) -> str:
    return "/v1/" + "/".join(quote(str(p), safe="@") for p in parts)


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _version_path(ref: str, version: int | str | None, *tail: str) -> str:
    name, _, at = ref.partition("@")
    if version is not None and at:
        raise ValueError("give the version in ref ('name@3') or as version=, not both")
    return _path(
        "models", name, "versions", version if version is not None else at or "latest", *tail
    )


class RegistryMethods:
    def _request(self, method: str, path: str, json: Any = None, *, pick: str | None = None) -> Any:
        raise NotImplementedError

    def upload(
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
        git: Mapping[str, Any] | bool | None = None,
        created_by: str | None = None,
        parent: int | None = None,
        feature_names: Sequence[str] | None = None,
        source: str | None = None,
    ) -> Any:
        """Upload a version: bytes, a file path, or an object (scikit-learn: sent as skops).

        ``git`` None captures the working directory's checkout; False sends none.
        """
        if isinstance(artifact, str | os.PathLike):
            path = os.fspath(artifact)
            with open(path, "rb") as f:
                data = f.read()
            filename = filename or os.path.basename(path)
        elif isinstance(artifact, bytes | bytearray | memoryview):
            data = bytes(artifact)
        else:
            data, format = artifacts.dump_object(artifact)
        body = _body(
            artifact=base64.b64encode(data).decode("ascii"),
            format=format or artifacts.guess_format(data, filename),
            filename=filename,
            task=task,
            description=description or None,
            tags=dict(tags) if tags else None,
            hyperparameters=dict(hyperparameters) if hyperparameters else None,
            params=dict(params) if params else None,
            metrics=dict(metrics) if metrics else None,
            dataset=dataset,
            **caller(git, created_by),
            parent=parent,
            feature_names=list(feature_names) if feature_names is not None else None,
            source=source,
        )
        return self._request("POST", _path("models", name, "versions"), body)

    def snapshot(
        self,
        name: str,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        dataset: Any = None,
        git: Mapping[str, Any] | bool | None = None,
        created_by: str | None = None,
    ) -> Any:
        """Freeze the live model's learned state as a new version."""
        body = _body(
            description=description or None,
            tags=tags,
            params=params,
            metrics=metrics,
            dataset=dataset,
            **caller(git, created_by),
        )
        return self._request("POST", _path("models", name, "snapshot"), body)

    def list_versions(self, name: str) -> Any:
        return self._request("GET", _path("models", name, "versions"), pick="versions")

    def get_version(self, ref: str, version: int | None = None) -> Any:
        return self._request("GET", _version_path(ref, version))

    def update_version(
        self,
        ref: str,
        version: int | None = None,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        remove_tags: Sequence[str] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> Any:
        body = _body(
            description=description,
            tags=tags,
            remove_tags=list(remove_tags) if remove_tags else None,
            metrics=metrics,
        )
        return self._request("PATCH", _version_path(ref, version), body)

    def delete_version(self, name: str, version: int) -> Any:
        return self._request("DELETE", _version_path(name, version))

    def download(self, ref: str, version: int | None = None) -> Any:
        """The artifact's bytes, exactly as uploaded."""
        return self._request("GET", _version_path(ref, version, "artifact"), pick=RAW)

    def model_json(self, ref: str, version: int | None = None) -> Any:
        return self._request("GET", _version_path(ref, version, "json"))

    def predict_rows(self, ref: str, rows: Sequence[Any], *, version: int | None = None) -> Any:
        """Predict many rows with a version (``name`` alone means its latest)."""
        return self._request("POST", _version_path(ref, version, "predict"), {"rows": list(rows)})

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        remove_tags: Sequence[str] | None = None,
    ) -> Any:
        body = _body(
            description=description,
            tags=tags,
            remove_tags=list(remove_tags) if remove_tags else None,
        )
        return self._request("PATCH", _path("models", name), body)

    def set_alias(self, name: str, alias: str, version: int, *, by: str | None = None) -> Any:
        body = _body(version=version, by=current_user() if by is None else by)
        return self._request("PUT", _path("models", name, "aliases", alias), body)

    def delete_alias(self, name: str, alias: str, *, by: str | None = None) -> Any:
        by = current_user() if by is None else by
        query = f"?{urlencode({'by': by})}" if by else ""
        return self._request("DELETE", _path("models", name, "aliases", alias) + query)

    def restore(
        self, name: str, version: int, *, metrics: str = "restart", by: str | None = None
    ) -> Any:
        body = _body(version=version, metrics=metrics, by=current_user() if by is None else by)
        return self._request("POST", _path("models", name, "restore"), body)

    def aliases(self, name: str) -> Any:
        return self._request("GET", _path("models", name, "aliases"), pick="aliases")

    def alias_history(self, name: str) -> Any:
        return self._request("GET", _path("models", name, "aliases"), pick="history")

    def _search(self, kind: str, filter: str | None, **args: Any) -> Any:
        query = urlencode({k: v for k, v in {"filter": filter, **args}.items() if v is not None})
        return self._request("GET", f"/v1/search/{kind}" + (f"?{query}" if query else ""))

    def search_models(
        self,
        filter: str | None = None,
        *,
        order_by: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Any:
        """Models passing ``filter`` (the syntax of :mod:`riverbed.search`)."""
        return self._search(
            "models", filter, order_by=order_by, page_size=page_size, page_token=page_token
        )

    def search_versions(
        self,
        filter: str | None = None,
        *,
        order_by: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Any:
        """Versions passing ``filter`` (the syntax of :mod:`riverbed.search`)."""
        return self._search(
            "versions", filter, order_by=order_by, page_size=page_size, page_token=page_token
        )
