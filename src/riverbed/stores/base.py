"""The store interface: records, and the handful of methods every backend implements.

Writes return a :class:`concurrent.futures.Future` that completes once the write is durable
(committed); the engine acknowledges a request only after that. Writes submitted from one
thread are applied in the order they were submitted, so a model's learn log, its checkpoints
and its deletion never overtake each other. Reads return committed data.

Values are stored as JSON through :func:`dump` / :func:`load`, which keep the key types of
mappings that JSON cannot express (a classifier's ``{True: 0.8, False: 0.2}``).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import orjson

from riverbed.stores.futures import done

if TYPE_CHECKING:
    from riverbed.stores.tokens import TokenStore
    from riverbed.stores.webhookstore import WebhookStore

__all__ = [
    "AliasChange",
    "AliasRecord",
    "CanaryArm",
    "Checkpoint",
    "DriftAlarm",
    "LearnRecord",
    "MetricPoint",
    "ModelRecord",
    "PredictionRecord",
    "Pruned",
    "Retention",
    "Store",
    "VersionRecord",
    "decode",
    "done",
    "dump",
    "encode",
    "learn_rows",
    "load",
]


@dataclasses.dataclass
class ModelRecord:
    name: str
    task: str
    description: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    metrics: list[str] = dataclasses.field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    flavor: str = "river"  # river (served live), sklearn (batch, served) or file (kept only)
    # task and metric options chosen at creation (windows, horizon, custom methods...)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class VersionRecord:
    """An immutable version. ``artifact`` holds the bytes exactly as they were stored
    (uploaded or written by riverbed); ``format`` says how to read them. Only
    ``description``, ``tags`` and the ``metrics`` entry of ``metadata`` change later.

    Listings (:meth:`Store.list_versions`) leave ``artifact`` empty to stay light.
    """

    model: str
    version: int
    artifact: bytes
    spec: Any = None
    source: str = "object"  # spec, object, upload, snapshot, job
    created_at: float = 0.0
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    format: str = "riverbed"  # riverbed, pickle, joblib, skops, file
    description: str = ""
    tags: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class AliasRecord:
    model: str
    alias: str
    version: int
    updated_at: float
    updated_by: str = ""


@dataclasses.dataclass
class AliasChange:
    """One move of an alias, kept forever: ``version`` None means the alias was removed."""

    model: str
    alias: str
    version: int | None
    previous: int | None
    at: float
    by: str = ""


@dataclasses.dataclass(slots=True)
class PredictionRecord:
    id: str
    model: str
    seq: int
    features: dict[str, Any]
    prediction: Any
    created_at: float
    labelled: bool = False


@dataclasses.dataclass(slots=True)
class LearnRecord:
    model: str
    seq: int
    features: dict[str, Any]
    target: Any
    prediction: Any  # what the model predicted before learning, for the metrics
    prediction_id: str | None
    created_at: float


@dataclasses.dataclass
class MetricPoint:
    """A snapshot of a model's metrics after its ``seq``-th learn, for charts."""

    model: str
    seq: int
    time: float
    values: dict[str, Any]


@dataclasses.dataclass
class DriftAlarm:
    """A drift detector's alarm on a model, raised by its ``seq``-th learn (riverbed.drift):
    ``detector`` is the detector's name on that model, ``data`` the rest (its kind, stream,
    index, value, statistics and action)."""

    model: str
    seq: int
    detector: str
    time: float
    data: dict[str, Any]


@dataclasses.dataclass
class CanaryArm:
    """The arm of a canary split that answered prediction ``id`` of a model (riverbed.canary):
    ``run`` names the split (a new one each time a split is set), ``seq`` is the
    prediction's."""

    model: str
    id: str
    seq: int
    run: str
    arm: str


@dataclasses.dataclass
class Checkpoint:
    model: str
    seq: int  # the last learn the state includes
    state: bytes
    created_at: float


@dataclasses.dataclass(frozen=True)
class Retention:
    """How much of a model's history a store keeps: the newest N of each kind (0: all).

    Learns after the model's checkpoint are always kept, whatever ``learns`` says: loading
    the model replays them (see ``Engine._load``).
    """

    predictions: int = 0
    learns: int = 0
    metric_points: int = 0

    def __bool__(self) -> bool:
        return bool(self.predictions or self.learns or self.metric_points)


@dataclasses.dataclass
class Pruned:
    """What one :meth:`Store.prune` deleted. When it deleted predictions, every prediction
    of the model with a ``seq`` up to ``predictions_through`` is gone (else that is 0)."""

    predictions: int = 0
    learns: int = 0
    metric_points: int = 0
    predictions_through: int = 0


class Store(abc.ABC):
    """What the engine needs from a backend."""

    # True for a store opened to read only (stores/readonly.py): its writes are refused, and
    # an engine on it writes nothing of its own (no checkpoints, no job recovery).
    read_only: bool = False

    # models and versions
    @abc.abstractmethod
    def create_model(self, model: ModelRecord, version: VersionRecord) -> Future[None]: ...

    @abc.abstractmethod
    def delete_model(self, name: str) -> Future[None]: ...

    @abc.abstractmethod
    def get_model(self, name: str) -> ModelRecord | None: ...

    @abc.abstractmethod
    def list_models(self) -> list[ModelRecord]: ...

    @abc.abstractmethod
    def get_version(self, name: str, version: int | None = None) -> VersionRecord | None:
        """One version of a model; the latest when ``version`` is None."""

    @abc.abstractmethod
    def update_model(
        self, name: str, *, description: str | None, tags: dict[str, str] | None, at: float
    ) -> Future[None]:
        """Replace the fields given (None leaves a field alone); ``updated_at`` becomes ``at``."""

    # the registry: versions, aliases
    @abc.abstractmethod
    def add_version(self, version: VersionRecord) -> Future[None]:
        """Add a version to an existing model. Fails with ``VersionExists`` if the number is
        taken and ``ModelNotFound`` if the model is gone."""

    @abc.abstractmethod
    def list_versions(self, name: str | None = None) -> list[VersionRecord]:
        """Versions of one model (or of every model), by model then number, artifacts empty."""

    @abc.abstractmethod
    def last_version(self, name: str) -> int:
        """The highest version number the model ever had, deleted ones included (0 if none):
        numbers are never reused, so a version's URL always means the same bytes."""

    @abc.abstractmethod
    def update_version(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Future[None]:
        """Replace the mutable fields given; the artifact never changes."""

    @abc.abstractmethod
    def delete_version(self, name: str, version: int) -> Future[None]: ...

    @abc.abstractmethod
    def set_alias(
        self, name: str, alias: str, version: int | None, *, at: float, by: str = ""
    ) -> Future[None]:
        """Point ``alias`` at ``version`` (None removes it) and append the move to the alias
        history, in one write."""

    @abc.abstractmethod
    def list_aliases(self, name: str | None = None) -> list[AliasRecord]:
        """The aliases of one model (or of every model), by model then alias."""

    @abc.abstractmethod
    def alias_history(self, name: str) -> list[AliasChange]:
        """Every move of the model's aliases, oldest first."""

    # the prediction and learn log
    @abc.abstractmethod
    def add_prediction(self, record: PredictionRecord) -> Future[None]: ...

    @abc.abstractmethod
    def get_prediction(self, prediction_id: str) -> PredictionRecord | None: ...

    def stored_prediction_ids(self, prediction_ids: Iterable[str]) -> set[str]:
        """Which of these ids the store holds predictions under (one query where it can)."""
        return {i for i in prediction_ids if self.get_prediction(i) is not None}

    @abc.abstractmethod
    def max_prediction_seq(self, name: str) -> int: ...

    @abc.abstractmethod
    def predictions_after(self, name: str, seq: int) -> list[PredictionRecord]:
        """The predictions of a model with a sequence number above ``seq``, in order."""

    @abc.abstractmethod
    def add_learn(self, record: LearnRecord) -> Future[None]:
        """Append a learn; if it names a prediction, mark that prediction labelled."""

    @abc.abstractmethod
    def learns_after(self, name: str, seq: int) -> Iterator[LearnRecord]:
        """The learns of a model with a sequence number above ``seq``, in order."""

    @abc.abstractmethod
    def add_predictions(self, records: list[PredictionRecord]) -> Future[None]:
        """Append many predictions atomically: all are stored or none is."""

    @abc.abstractmethod
    def add_learns(self, records: list[LearnRecord]) -> Future[None]:
        """Append many learns atomically (all or none), as :meth:`add_learn` does each."""

    # metric history
    @abc.abstractmethod
    def add_metric_point(self, point: MetricPoint) -> Future[None]:
        """Store a point; a point for a (model, seq) already stored is left as it is."""

    @abc.abstractmethod
    def metric_history(
        self, name: str, *, after: int = 0, since: float | None = None, limit: int = 1000
    ) -> list[MetricPoint]:
        """Points of a model with ``seq > after`` (and ``time >= since``), oldest first."""

    # drift alarms
    @abc.abstractmethod
    def add_drift_alarm(self, alarm: DriftAlarm) -> Future[None]:
        """Store an alarm; one for a (model, seq, detector) already stored is left as it is
        (a replay of the learn log raises the same alarms again)."""

    @abc.abstractmethod
    def drift_alarms(self, name: str, *, after: int = 0, limit: int = 1000) -> list[DriftAlarm]:
        """Alarms of a model with ``seq > after``, by seq then detector."""

    # canary splits
    @abc.abstractmethod
    def add_canary_arm(self, arm: CanaryArm) -> Future[None]:
        """Store which arm answered a prediction; one for an id already stored is left as
        it is, and none is kept for a model that is not there."""

    @abc.abstractmethod
    def canary_arm(self, name: str, prediction_id: str) -> CanaryArm | None:
        """The arm that answered prediction ``prediction_id`` of model ``name``, if one did."""

    @abc.abstractmethod
    def canary_arm_counts(self, name: str, *, after: int = 0) -> dict[tuple[str, str], int]:
        """How many predictions of a model with ``seq > after`` each (run, arm) answered."""

    # retention
    @abc.abstractmethod
    def prune(self, name: str, retention: Retention) -> Future[Pruned]:
        """Delete what ``retention`` does not keep of a model: all but its newest
        ``predictions`` predictions, ``metric_points`` history points and ``learns`` learns
        (by ``seq``; 0 keeps every one), never a learn with a ``seq`` above the model's
        checkpoint. Done as a write, in batches that other writes can pass between."""

    # checkpoints of live models
    @abc.abstractmethod
    def save_checkpoint(self, checkpoint: Checkpoint) -> Future[None]: ...

    @abc.abstractmethod
    def get_checkpoint(self, name: str) -> Checkpoint | None: ...

    def token_store(self) -> TokenStore:
        """The API tokens kept beside this store's data (see :mod:`riverbed.stores.tokens`)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no tokens")

    def webhook_store(self) -> WebhookStore:
        """The webhook subscriptions and delivery log kept beside this store's data (see
        :mod:`riverbed.stores.webhookstore`)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no webhooks")

    def sync(self) -> None:
        """Wait until every write submitted so far is durable."""
        return None

    def serve_on(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """A server's event loop, called from its thread (None when it stops): a store may
        commit the writes submitted from that thread on the loop itself."""
        return None

    def close(self) -> None:
        """Finish pending writes and release resources."""
        return None


_ITEMS = "__items__"  # a mapping with other keys than strings: its [key, value] pairs


def encode(value: Any) -> Any:
    """``value`` in the form its JSON takes: mappings with other keys than strings as pairs
    under ``_ITEMS``, tuples as lists."""
    if isinstance(value, dict):
        if all(type(k) is str for k in value):
            return {k: encode(v) for k, v in value.items()}
        return {_ITEMS: [[k, encode(v)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """The value that :func:`encode` gave ``value`` for (tuples come back as lists)."""
    if isinstance(value, dict):
        if len(value) == 1 and _ITEMS in value:
            return {_key(k): decode(v) for k, v in value[_ITEMS]}
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def _key(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def learn_rows(records: Iterable[LearnRecord]) -> list[tuple[Any, ...]]:
    """The rows of a ``learns`` table for these learns, its columns in order (model, seq,
    features, target, prediction, prediction_id, created_at): the SQLite and PostgreSQL
    stores' and the scale-out learner's."""
    return [
        (
            r.model,
            r.seq,
            dump(r.features),
            dump(r.target),
            dump(r.prediction),
            r.prediction_id,
            r.created_at,
        )
        for r in records
    ]


def dump(value: Any) -> bytes:
    """JSON bytes for a stored value, keeping non-string mapping keys.

    >>> load(dump({True: 0.75, False: 0.25}))
    {True: 0.75, False: 0.25}
    """
    if type(value) is dict:
        for key in value:  # a classifier's probabilities: {label: p}, labels not strings
            if type(key) is not str:
                try:
                    # tuples are arrays to orjson; values holding no mapping with other keys
                    # (labelled probabilities: numbers) need no encoding of their own
                    pairs = list(value.items())
                    return orjson.dumps({_ITEMS: pairs}, option=orjson.OPT_SERIALIZE_NUMPY)
                except TypeError:
                    return orjson.dumps(encode(value), option=orjson.OPT_SERIALIZE_NUMPY)
            break
    try:
        # Most values (feature objects) have string keys only: orjson takes them as they are,
        # and raises TypeError on any other key, which the general encoding handles.
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return orjson.dumps(encode(value), option=orjson.OPT_SERIALIZE_NUMPY)


def load(data: bytes | str | None) -> Any:
    if data is None:
        return None
    return decode(orjson.loads(data))
