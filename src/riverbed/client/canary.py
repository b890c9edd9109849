"""Canary splits over HTTP, with the engine's method names (mixed into
:class:`riverbed.Client` and :class:`riverbed.AsyncClient`; see riverbed.canary)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

__all__ = ["CanaryMethods"]


def _canary(ref: str, *tail: str) -> str:
    return "/".join(("/v1/models", quote(ref, safe="@"), "canary", *tail))


class CanaryMethods:
    def _request(self, method: str, path: str, json: Any = None, *, pick: str | None = None) -> Any:
        raise NotImplementedError

    def set_canary(
        self,
        ref: str,
        arms: Mapping[Any, Any],
        *,
        sticky: str = "id",
        guard: Mapping[str, Any] | None = None,
        baseline: Any = None,
    ) -> Any:
        """Split a route between arms (see :meth:`riverbed.Engine.set_canary`)."""
        body: dict[str, Any] = {"arms": {str(k): v for k, v in arms.items()}, "sticky": sticky}
        if guard is not None:
            body["guard"] = dict(guard)
        if baseline is not None:
            body["baseline"] = str(baseline)
        return self._request("PUT", _canary(ref), body)

    def update_canary(self, ref: str, weights: Mapping[Any, Any]) -> Any:
        """Move a split's percentages."""
        return self._request(
            "PATCH", _canary(ref), {"weights": {str(k): v for k, v in weights.items()}}
        )

    def stop_canary(self, ref: str, *, remove: bool = False) -> Any:
        """Stop a split (every canary arm to 0%); ``remove=True`` takes it off the route."""
        return self._request("DELETE", _canary(ref) + ("?remove=true" if remove else ""))

    def canary(self, ref: str) -> Any:
        """A route's split, each arm's counts and metrics."""
        return self._request("GET", _canary(ref))

    def canaries(self, name: str) -> Any:
        """Every split of a model's routes."""
        path = "/".join(("/v1/models", quote(name, safe="@"), "canaries"))
        return self._request("GET", path, pick="canaries")

    def canary_history(self, ref: str, *, limit: int = 1000) -> Any:
        """Each arm's metric history, oldest first."""
        return self._request("GET", _canary(ref, "history") + "?" + urlencode({"limit": limit}))
