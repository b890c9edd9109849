"""Aliases (with their history) and search."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from riverbed import search, serialization
from riverbed.exceptions import (
    InvalidInput,
    NotServable,
    VersionNotFound,
)
from riverbed.provenance import current_user
from riverbed.receipts import Receipt
from riverbed.registry.base import _ALIAS, RESERVED_ALIASES
from riverbed.registry.versions import Versions
from riverbed.stores.base import VersionRecord
from riverbed.stores.futures import all_done

__all__ = ["Catalog"]


class Catalog(Versions):
    """Aliases and search."""

    # -- aliases -------------------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: int, *, by: str | None = None
    ) -> dict[str, Any]:
        """Point ``name@alias`` at a version; ``by`` (the user name when None) is kept in the
        alias history, as the client records it."""
        return self.submit_set_alias(name, alias, version, by=_by(by)).wait()

    def submit_set_alias(
        self, name: str, alias: str, version: int | None, *, by: str = "", restoring: bool = False
    ) -> Receipt[dict[str, Any]]:
        """Point ``name@alias`` at a version (None removes the alias). The move is kept in
        the alias history and published as an ``alias.moved`` event."""
        if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
            raise InvalidInput(
                f"invalid alias {alias!r}: 1 to 64 letters, digits, '_', '-' or '.', "
                "starting with a letter"
            )
        if alias == "latest":
            raise InvalidInput(f"{alias!r} is implicit: it always means the newest version")
        if alias in RESERVED_ALIASES and not restoring:
            raise InvalidInput(
                f"{alias!r} is moved by restore alone: it names the version last made the "
                "live model's state"
            )
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

    def delete_alias(self, name: str, alias: str, *, by: str | None = None) -> dict[str, Any]:
        return self.submit_set_alias(name, alias, None, by=_by(by)).wait()

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

    # -- restoring the live model ------------------------------------------------------------

    def restore(
        self, name: str, version: int, *, metrics: str = "restart", by: str | None = None
    ) -> dict[str, Any]:
        """Make ``version`` the live model's state: it predicts and learns from there on.
        ``metrics`` ``"restart"`` starts the progressive metrics again, ``"carry"`` goes on
        with the running ones. The move is kept in the alias history as ``name@restored``
        (``by``, the user name when None) and published as a ``model.restored`` event."""
        return self.submit_restore(name, version, metrics=metrics, by=_by(by)).wait()

    def submit_restore(
        self, name: str, version: int, *, metrics: str = "restart", by: str = ""
    ) -> Receipt[dict[str, Any]]:
        """Restore ``version`` into the live model (:meth:`restore`); the receipt settles
        when its checkpoint and the alias move are written. A write that fails leaves the
        live model as it was before (rebuilt from what was written)."""
        if metrics not in ("restart", "carry"):
            raise InvalidInput(
                "metrics is 'restart' (measure the restored model afresh) or 'carry' (go on "
                f"with the running metrics), got {metrics!r}"
            )
        if not isinstance(name, str) or "@" in name:
            raise InvalidInput("restore takes a model name; the version is its own argument")
        if self._flavor(name) != "river":
            raise NotServable(
                f"model {name!r} is a batch model: it serves its versions as they are; move an "
                "alias to roll it back"
            )
        self._refuse_in_cluster(name, "restore a version into the live state")
        number = self.resolve(name, version)["version"]
        record = self.store.get_version(name, number)
        if record is None:  # pragma: no cover - resolve found it
            raise VersionNotFound(f"model {name!r} has no version {number}")
        by = self._check_text("by", by)
        obj = serialization.live_copy(self._object_of(record))
        live = self._get_live(name)
        live.task.check_model(obj)
        self._settle(live)
        with live.lock:
            previous = live.version
            live.model = obj
            live.task.bind(obj)
            live.version = number
            if metrics == "restart":
                live.metric = self._fresh_tracker(live)
                live.n_scored = 0
            n_learns = live.n_learns
            written = self._checkpoint(live)
        moved = self.submit_set_alias(name, "restored", number, by=by, restoring=True)
        future = all_done([written, moved.committed])
        data = {"version": number, "previous": previous, "metrics": metrics, "n_learns": n_learns}

        def failed() -> None:  # rebuilt from the checkpoint and log written before
            live.stale = live.unsettled = True

        future.add_done_callback(self._publisher("model.restored", name, data, failed))
        return Receipt({"model": name, **data}, future, failed)

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


def _by(by: str | None) -> str:
    return current_user() if by is None else by
