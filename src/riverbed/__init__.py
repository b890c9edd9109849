"""riverbed: deploy, serve, learn from and manage online and batch models."""

from riverbed.engine import Engine
from riverbed.exceptions import (
    AlreadyLabelled,
    CacheKeyNotFound,
    Conflict,
    Forbidden,
    InvalidArtifact,
    InvalidBatch,
    InvalidFeatures,
    InvalidFilter,
    InvalidInput,
    InvalidSpec,
    InvalidTarget,
    InvalidToken,
    JobNotFound,
    LimitExceeded,
    MalformedJSON,
    ModelDiverged,
    ModelExists,
    ModelNotFound,
    NotFound,
    NotServable,
    PayloadTooLarge,
    PredictionExists,
    PredictionNotFound,
    RateLimited,
    RiverbedError,
    ServerError,
    StorageFull,
    TokenExpired,
    TokenNotFound,
    TokenRevoked,
    Unauthorized,
    Unavailable,
    Unreachable,
    VersionExists,
    VersionNotFound,
    WebhookNotFound,
    WrongCacheKind,
)
from riverbed.receipts import Receipt
from riverbed.version import __version__

__all__ = [
    "AlreadyLabelled",
    "AsyncClient",
    "CacheKeyNotFound",
    "Client",
    "Conflict",
    "Engine",
    "Forbidden",
    "InvalidArtifact",
    "InvalidBatch",
    "InvalidFeatures",
    "InvalidFilter",
    "InvalidInput",
    "InvalidSpec",
    "InvalidTarget",
    "InvalidToken",
    "JobNotFound",
    "LimitExceeded",
    "MalformedJSON",
    "ModelDiverged",
    "ModelExists",
    "ModelNotFound",
    "NotFound",
    "NotServable",
    "PayloadTooLarge",
    "PredictionExists",
    "PredictionNotFound",
    "RateLimited",
    "Receipt",
    "RiverbedError",
    "ServerError",
    "StorageFull",
    "TokenExpired",
    "TokenNotFound",
    "TokenRevoked",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "VersionExists",
    "VersionNotFound",
    "WebhookNotFound",
    "WrongCacheKind",
    "__version__",
]


def __getattr__(name: str) -> object:
    # The clients import httpx; load them only when asked for.
    if name in ("Client", "AsyncClient"):
        from riverbed import client

        return getattr(client, name)
    raise AttributeError(f"module 'riverbed' has no attribute {name!r}")
