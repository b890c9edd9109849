"""Webhooks over HTTP: ``client.webhooks``, with the names of :class:`riverbed.webhooks.Webhooks`
(``subscribe``, ``list``, ``get``, ``delete``, ``deliveries``, ``retry``, ``ping``). The same
class serves both clients: the blocking one answers at once, the async one returns
coroutines to await."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

__all__ = ["WebhookMethods"]


def _path(*parts: str) -> str:
    return "/".join(["/v1/webhooks", *(quote(p, safe="") for p in parts)])


class WebhookMethods:
    def __init__(self, request: Callable[..., Any]) -> None:
        self._request = request

    def subscribe(
        self,
        url: str,
        events: Iterable[str] | str,
        *,
        secret: str | None = None,
        description: str = "",
    ) -> Any:
        """Subscribe ``url`` to event kinds; the answer holds the signing secret (once)."""
        body: dict[str, Any] = {
            "url": url,
            "events": [events] if isinstance(events, str) else list(events),
            "description": description,
        }
        if secret is not None:
            body["secret"] = secret
        return self._request("POST", "/v1/webhooks", body)

    def list(self) -> Any:
        return self._request("GET", "/v1/webhooks", pick="webhooks")

    def get(self, webhook_id: str) -> Any:
        return self._request("GET", _path(webhook_id))

    def delete(self, webhook_id: str) -> Any:
        return self._request("DELETE", _path(webhook_id))

    def deliveries(self, webhook_id: str, *, status: str | None = None, limit: int = 100) -> Any:
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        return self._request(
            "GET", _path(webhook_id, "deliveries"), pick="deliveries", params=params
        )

    def retry(self, webhook_id: str, delivery_id: str) -> Any:
        return self._request("POST", _path(webhook_id, "deliveries", delivery_id, "retry"))

    def ping(self, webhook_id: str) -> Any:
        return self._request("POST", _path(webhook_id, "ping"))
