"""The errors riverbed raises, one tree for the engine, the server and the client.

    RiverbedError                      anything riverbed raises on purpose
     ├── InvalidInput                  the caller sent something unusable; nothing changed
     │    ├── InvalidSpec              a model spec names a forbidden or unknown class
     │    ├── InvalidFeatures          features are not a flat mapping of finite scalars
     │    ├── InvalidTarget            the ground truth does not fit the model's task
     │    ├── InvalidBatch             items of a batch are bad (detail["errors"]); none applied
     │    ├── InvalidData              training data unusable; detail names the row and column
     │    ├── MalformedJSON            the body is not JSON
     │    ├── InvalidFilter            a registry search filter or order_by does not parse
     │    ├── InvalidArtifact          uploaded bytes cannot be read in the format stated
     │    ├── LimitExceeded            nested too deep, a string too long (a configured limit)
     │    ├── HostNotAllowed           the Host header is not a name of this server (allowed_hosts)
     │    └── PayloadTooLarge          a request body or batch is over the configured limit
     ├── Forbidden                     the caller may not do this (a token's scope, a pickle)
     │    ├── CrossOriginRefused       a web page on another origin tried to change state
     │    └── BrowserPickleRefused     a pickle from a browser, auth off (pickle_origins)
     ├── NotFound                      the thing named does not exist
     │    ├── ModelNotFound
     │    ├── PredictionNotFound
     │    ├── VersionNotFound          also an alias that points nowhere
     │    ├── ChallengerNotFound       the model has no challenger of that name
     │    ├── CacheKeyNotFound         no unexpired cache entry under that key
     │    ├── JobNotFound              no training job with that id
     │    ├── TokenNotFound
     │    └── WebhookNotFound          no webhook subscription (or delivery of it) with that id
     ├── Conflict                      the request clashes with what is stored
     │    ├── ModelExists
     │    ├── VersionExists
     │    ├── NotServable              the version is kept for the registry, not served
     │    ├── PredictionExists
     │    ├── AlreadyLabelled
     │    ├── ModelDiverged            the model predicts no finite number (or its metrics overflow)
     │    ├── WrongCacheKind           a cache key holds a value, not a list, or the reverse
     │    └── ClusterUnsupported       a scale-out replica cannot do this (yet); nothing changed
     ├── Unauthorized                  no credentials where some are needed
     │    └── InvalidToken             a token that is unknown ...
     │         ├── TokenExpired        ... past its expiry ...
     │         └── TokenRevoked        ... or revoked
     ├── RateLimited                   too many requests; ``retry_after`` says when to retry
     ├── Unavailable                   the store cannot take writes now (read-only, I/O error);
     │    │                            nothing was changed: retry once it is fixed
     │    ├── StorageFull              the store's disk (or its size limit) is full
     │    ├── CommitInDoubt            the connection broke during the commit: maybe stored
     │    └── Unreachable              (client side) nothing answers at the server's URL
     └── ServerError                   something broke on the server side (a bug)

Every error carries a short machine-readable ``code`` and a message written for a person.
HTTP status codes are chosen at the edge (``riverbed.server``), never here; the client turns
an error payload back into the same class through :func:`error_from_payload`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyLabelled",
    "BrowserPickleRefused",
    "CacheKeyNotFound",
    "ClusterUnsupported",
    "CommitInDoubt",
    "ChallengerNotFound",
    "Conflict",
    "CrossOriginRefused",
    "Forbidden",
    "HostNotAllowed",
    "InvalidArtifact",
    "InvalidBatch",
    "InvalidFeatures",
    "InvalidFilter",
    "InvalidData",
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
    "RiverbedError",
    "ServerError",
    "TokenExpired",
    "TokenNotFound",
    "TokenRevoked",
    "StorageFull",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "VersionExists",
    "VersionNotFound",
    "WebhookNotFound",
    "WrongCacheKind",
    "error_from_payload",
]


class RiverbedError(Exception):
    """Base class of every error riverbed raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_payload(self) -> dict[str, Any]:
        """The JSON error body: ``{"error": {"code", "message", "detail"}}``."""
        return {"error": {"code": self.code, "message": self.message, "detail": self.detail}}


class InvalidInput(RiverbedError):
    code = "invalid_input"


class InvalidSpec(InvalidInput):
    code = "invalid_spec"


class InvalidFeatures(InvalidInput):
    code = "invalid_features"


class InvalidTarget(InvalidInput):
    code = "invalid_target"


class InvalidBatch(InvalidInput):
    code = "invalid_batch"


class InvalidData(InvalidInput):
    """Training data that cannot be used; ``detail`` holds ``row`` (1-based, data rows only)
    and ``column`` where they are known."""

    code = "invalid_data"


class MalformedJSON(InvalidInput):
    code = "malformed_json"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class InvalidFilter(InvalidInput):
    code = "invalid_filter"


class InvalidArtifact(InvalidInput):
    code = "invalid_artifact"


class Forbidden(RiverbedError):
    code = "forbidden"


class LimitExceeded(InvalidInput):
    code = "limit_exceeded"


class HostNotAllowed(InvalidInput):
    code = "host_not_allowed"


class CrossOriginRefused(Forbidden):
    code = "cross_origin_refused"


class BrowserPickleRefused(Forbidden):
    code = "browser_pickle_refused"


class NotFound(RiverbedError):
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class PredictionNotFound(NotFound):
    code = "prediction_not_found"


class CacheKeyNotFound(NotFound):
    code = "cache_key_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class ChallengerNotFound(NotFound):
    code = "challenger_not_found"


class TokenNotFound(NotFound):
    code = "token_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


class Conflict(RiverbedError):
    code = "conflict"


class ModelExists(Conflict):
    code = "model_exists"


class VersionExists(Conflict):
    code = "version_exists"


class NotServable(Conflict):
    code = "not_servable"


class PredictionExists(Conflict):
    code = "prediction_exists"


class AlreadyLabelled(Conflict):
    code = "already_labelled"


class ModelDiverged(Conflict):
    """The model's prediction is not a finite number, or too large for its metrics: the
    model's state is the problem, not the request. Nothing was changed or stored."""

    code = "model_diverged"


class WrongCacheKind(Conflict):
    code = "wrong_cache_kind"


class ClusterUnsupported(Conflict):
    """A scale-out replica (docs/scale-out.md) refused an operation the cluster does not
    carry yet: one that changes a model's live state by hand, which only the checkpoint of
    the model's learner would make durable and bring to the other replicas. Nothing was
    changed; do it on a server that serves the database alone."""

    code = "cluster_unsupported"


class Unauthorized(RiverbedError):
    """No usable credentials. ``challenge`` is the ``WWW-Authenticate`` value to answer with
    (None: the server's default, ``Bearer realm="riverbed"``)."""

    code = "unauthorized"

    def __init__(self, message: str, *, detail: Any = None, challenge: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.challenge = challenge


class InvalidToken(Unauthorized):
    code = "invalid_token"


class TokenExpired(InvalidToken):
    code = "token_expired"


class TokenRevoked(InvalidToken):
    code = "token_revoked"


class RateLimited(RiverbedError):
    """Too many requests; ``retry_after`` is the number of seconds to wait."""

    code = "rate_limited"

    def __init__(self, message: str, *, detail: Any = None, retry_after: int | None = None) -> None:
        super().__init__(message, detail=detail)
        if retry_after is None:  # rebuilt from a payload: the detail says it
            given = detail.get("retry_after") if isinstance(detail, dict) else None
            retry_after = given if isinstance(given, int) and given > 0 else 1
        self.retry_after = retry_after


class Unavailable(RiverbedError):
    """The store refused a write for a reason of its own (its file is read-only, an I/O
    error, another write before this one failed); the message names the cause. Nothing the
    write carried was applied."""

    code = "unavailable"


class StorageFull(Unavailable):
    code = "storage_full"


class CommitInDoubt(Unavailable):
    """The connection to the database broke while the write's commit was on its way, and
    the database could not yet say whether it was committed: the write may or may not be
    stored (never both, never twice). Read before retrying: a retried prediction may find
    its id taken, a retried label its prediction labelled."""

    code = "commit_in_doubt"


class Unreachable(Unavailable):
    """Raised by the client, never sent by a server: nothing answers at the server's URL (no
    server runs there, the name does not resolve, the connection timed out). ``detail`` holds
    the ``url``. No request was sent, so nothing was changed."""

    code = "unreachable"


class ServerError(RiverbedError):
    code = "server_error"


def _all_subclasses(cls: type[RiverbedError]) -> list[type[RiverbedError]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_from_payload(
    payload: Any, *, fallback: type[RiverbedError] = ServerError
) -> RiverbedError:
    """Rebuild the exception that an error payload describes (used by the client).

    >>> err = error_from_payload(ModelNotFound("no model named 'm'").to_payload())
    >>> type(err).__name__, err.message
    ('ModelNotFound', "no model named 'm'")
    """
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return fallback(f"unexpected error payload: {payload!r}")
    classes: list[type[RiverbedError]] = [RiverbedError, *_all_subclasses(RiverbedError)]
    by_code = {c.code: c for c in classes}
    cls = by_code.get(str(error.get("code")), fallback)
    return cls(str(error.get("message", "")), detail=error.get("detail"))
