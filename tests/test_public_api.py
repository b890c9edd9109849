"""The public API is pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import riverbed


def test_exported_members() -> None:
    assert riverbed.__all__ == sorted(riverbed.__all__)
    assert riverbed.__all__ == [
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
    for name in riverbed.__all__:
        assert getattr(riverbed, name) is not None
