"""A model's challengers, promotions and promotion rule over HTTP, with the engine's method
names (mixed into :class:`riverbed.Client` and :class:`riverbed.AsyncClient`; see
riverbed.challengers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

__all__ = ["ChallengerMethods"]


def _model(name: str, *tail: str) -> str:
    return "/".join(("/v1/models", quote(name, safe=""), *(quote(t, safe="") for t in tail)))


class ChallengerMethods:
    def _request(self, method: str, path: str, json: Any = None, *, pick: str | None = None) -> Any:
        raise NotImplementedError

    def add_challenger(
        self,
        name: str,
        challenger: str | None = None,
        *,
        version: int | str | None = None,
        spec: Any = None,
        ref: str | None = None,
    ) -> Any:
        """Put a challenger beside a model's champion (see
        :meth:`riverbed.Engine.add_challenger`): a ``version`` of the model, a ``spec``, or
        a ``ref`` to another model's version of the same task."""
        body: dict[str, Any] = {"version": version, "spec": spec, "ref": ref}
        body = {k: v for k, v in body.items() if v is not None}
        if challenger is not None:
            body["name"] = challenger
        return self._request("POST", _model(name, "challengers"), body)

    def challengers(self, name: str) -> Any:
        """The champion and its challengers side by side."""
        return self._request("GET", _model(name, "challengers"))

    def challenger(self, name: str, challenger: str, *, history: int = 1000) -> Any:
        """One challenger, with its metric history."""
        return self._request(
            "GET", _model(name, "challengers", challenger) + f"?history={int(history)}"
        )

    def remove_challenger(self, name: str, challenger: str) -> Any:
        """Take a challenger away."""
        return self._request("DELETE", _model(name, "challengers", challenger))

    def promote(self, name: str, challenger: str, *, by: str | None = None) -> Any:
        """Make a challenger the champion (the old champion stays on as a challenger)."""
        body = {"by": by} if by is not None else {}
        return self._request("POST", _model(name, "challengers", challenger, "promote"), body)

    def rollback(self, name: str, *, by: str | None = None) -> Any:
        """Undo the last promotion."""
        body = {"by": by} if by is not None else {}
        return self._request("POST", _model(name, "rollback"), body)

    def set_promotion_rule(self, name: str, rule: Mapping[str, Any]) -> Any:
        """Promote by rule: ``{"metric", "margin", "min_samples", "window"}``."""
        return self._request("PUT", _model(name, "promotion-rule"), dict(rule))

    def promotion_rule(self, name: str) -> Any:
        """A model's promotion rule and each challenger's numbers under it."""
        return self._request("GET", _model(name, "promotion-rule"))

    def promotion_rule_off(self, name: str) -> Any:
        """No more promotions by rule."""
        return self._request("DELETE", _model(name, "promotion-rule"))
