"""A model's drift detectors over HTTP, with the engine's method names (mixed into
:class:`riverbed.Client` and :class:`riverbed.AsyncClient`; see riverbed.drift)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["DriftMethods"]


def _drift(name: str, *tail: str) -> str:
    return "/".join(("/v1/models", quote(name, safe="@"), "drift", *tail))


class DriftMethods:
    def _request(self, method: str, path: str, json: Any = None, *, pick: str | None = None) -> Any:
        raise NotImplementedError

    def set_drift(self, name: str, detectors: Sequence[Mapping[str, Any]]) -> Any:
        """Put drift detectors on a model (see :meth:`riverbed.Engine.set_drift`)."""
        return self._request("PUT", _drift(name), {"detectors": [dict(d) for d in detectors]})

    def drift(self, name: str) -> Any:
        """A model's drift detectors and their state."""
        return self._request("GET", _drift(name))

    def drift_alarms(self, name: str, *, after: int = 0, limit: int = 1000) -> Any:
        """A model's drift alarms, oldest first (after that position)."""
        query = urlencode({"after": after, "limit": limit})
        return self._request("GET", _drift(name, "alarms") + "?" + query)

    def drift_off(self, name: str) -> Any:
        """Take every drift detector off a model (its alarms are kept)."""
        return self._request("DELETE", _drift(name))
