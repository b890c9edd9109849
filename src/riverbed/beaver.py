"""Beaver's client call shapes over riverbed's client, so that Beaver scripts port by
changing one import::

    from riverbed.beaver import HTTPClient      # was: from beaver import HTTPClient

    client = HTTPClient(host="http://127.0.0.1:8000")
    client.models.upload("my_model", model)
    answer = client.predict({"x": 1.0}, model_name="my_model", loop_id="order-42")
    client.label("order-42", True)              # the ground truth, by loop id

A *loop* is Beaver's name for one prediction and the label that comes back for it later; its
``loop_id`` is riverbed's prediction id. Beaver trained either at once when a label arrived
(``ASAP``) or when asked (``MANUAL``, then :meth:`HTTPClient.train`); both are offered. The
model travels as riverbed's declarative spec, never as a pickle, and ``docs/migration/beaver.md``
says what else maps to what.
"""

from __future__ import annotations

import collections
from typing import Any

from riverbed.client import Client
from riverbed.exceptions import InvalidInput

__all__ = ["ASAP", "MANUAL", "HTTPClient", "Models"]

ASAP = "ASAP"
MANUAL = "MANUAL"
_REMEMBERED_LOOPS = 100_000


class Models:
    """``client.models``: upload, list and delete models."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(self, name: str, model: Any) -> dict[str, Any]:
        """Serve ``model`` (a river object) under ``name``; it is sent as its spec."""
        result: dict[str, Any] = self._client.create_model(name, model)
        return result

    def list_names(self) -> list[str]:
        """Every model's name (Beaver's ``client.models.list_names()``)."""
        return [m["name"] for m in self._client.list_models()]

    def list(self) -> list[str]:
        return self.list_names()

    def delete(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client.delete_model(name)
        return result


class HTTPClient:
    """Beaver's ``HTTPClient`` over a riverbed server.

    ``training`` is ``ASAP`` (learn as soon as a label arrives, the default) or ``MANUAL``
    (labels wait in this client until :meth:`train` sends them for a model).
    """

    def __init__(
        self,
        host: str = "http://127.0.0.1:8000",
        *,
        training: str = ASAP,
        token: str | None = None,
        client: Client | None = None,
    ) -> None:
        if training not in (ASAP, MANUAL):
            raise InvalidInput(f"training is {ASAP!r} or {MANUAL!r}, got {training!r}")
        self.host = host
        self.training = training
        self._client = client if client is not None else Client(host, token=token)
        self.models = Models(self._client)
        # loop id -> model name, for the loops this client opened (label needs the model)
        self._loops: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._pending: list[tuple[str, str, Any]] = []

    def predict(
        self, event: dict[str, Any], model_name: str, loop_id: str | None = None
    ) -> dict[str, Any]:
        """Predict for one event; the answer carries the ``loop_id`` to label it by
        (generated when not given)."""
        answer: dict[str, Any] = self._client.predict(model_name, event, id=loop_id)
        self._remember(answer["id"], model_name)
        return {**answer, "loop_id": answer["id"]}

    def label(self, loop_id: str, label: Any, model_name: str | None = None) -> dict[str, Any]:
        """The ground truth of a loop. ``model_name`` is needed only for a loop that another
        client opened. With ``MANUAL`` training the label waits for :meth:`train`."""
        model = model_name or self._loops.get(loop_id)
        if model is None:
            raise InvalidInput(
                f"loop {loop_id!r} was not opened by this client: give model_name as well"
            )
        if self.training == MANUAL:
            self._pending.append((model, loop_id, label))
            return {"model": model, "loop_id": loop_id, "queued": True}
        return self._learn(model, loop_id, label)

    def train(self, model_name: str) -> dict[str, Any]:
        """Send the labels waiting for ``model_name`` (``MANUAL`` training), in order."""
        sent = [item for item in self._pending if item[0] == model_name]
        self._pending = [item for item in self._pending if item[0] != model_name]
        for model, loop_id, label in sent:
            self._learn(model, loop_id, label)
        return {"model": model_name, "n_learned": len(sent)}

    def learn(self, event: dict[str, Any], label: Any, model_name: str) -> dict[str, Any]:
        """Learn from an event and its label without a prediction first."""
        result: dict[str, Any] = self._client.learn(model_name, event, label)
        return result

    def metrics(self, model_name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client.metrics(model_name)
        return result

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HTTPClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _learn(self, model: str, loop_id: str, label: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._client.learn(model, ground_truth=label, id=loop_id)
        self._loops.pop(loop_id, None)
        return {**result, "loop_id": loop_id}

    def _remember(self, loop_id: str, model: str) -> None:
        self._loops[loop_id] = model
        while len(self._loops) > _REMEMBERED_LOOPS:
            self._loops.popitem(last=False)
