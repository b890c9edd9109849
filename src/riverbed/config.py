"""Settings, declared once as data.

Each :class:`Setting` has a name, a default, a type and a help text. From this one list come
the ``riverbed serve`` flags, the ``RIVERBED_*`` environment variables, the settings table in
``docs/settings.md`` (a test checks it covers every setting) and :class:`Settings` itself.
Precedence: explicit arguments (CLI flags) > environment > defaults.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ENV_PREFIX",
    "SETTINGS",
    "Setting",
    "Settings",
    "check_broker",
    "check_cluster_address",
    "settings_markdown",
]

ENV_PREFIX = "RIVERBED_"


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    type: type
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: str) -> Any:
        if self.type is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(f"{self.env}: expected true or false, got {raw!r}")
        try:
            return self.type(raw)
        except ValueError:
            raise ValueError(f"{self.env}: expected a {self.type.__name__}, got {raw!r}") from None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database",
        "riverbed.db",
        str,
        "Where state lives: an SQLite file path or sqlite:///path (created by `riverbed serve` "
        "if missing; one process writes it at a time), a postgresql://user@host:port/db URL "
        "(an existing database; "
        "docs/postgresql.md) or ':memory:' for the in-memory store. Other URLs are refused.",
    ),
    Setting("host", "127.0.0.1", str, "Address the server binds to."),
    Setting(
        "auth",
        "auto",
        str,
        "Token authentication: 'auto' (off when bound to a loopback address, on otherwise), "
        "'on' or 'off'. Off on a non-loopback address lets anyone who can reach the server "
        "do anything, uploading pickles (running code) included; see docs/auth.md.",
    ),
    Setting(
        "route_groups",
        "*",
        str,
        "Comma-separated route groups (the tags of `riverbed routes`) the server answers; "
        "'*' for all. Routes of other groups answer 404 and leave the OpenAPI document.",
    ),
    Setting(
        "rate_limit_address",
        "",
        str,
        "Requests allowed per client address, per route group: e.g. '*=600/m,models=30/m' "
        "('*' is every other group; units s, m, h, d). Empty: no limit. Over it: 429.",
    ),
    Setting(
        "rate_limit_token",
        "",
        str,
        "Requests allowed per token, per route group, in the same form as "
        "rate_limit_address. Empty: no limit.",
    ),
    Setting(
        "allowed_hosts",
        "",
        str,
        "Comma-separated names the server answers to (the Host header) besides the address "
        "it is bound to and the loopback names (localhost, 127.0.0.1, [::1]); '.example.com' "
        "also matches its subdomains, '*' any name (only behind a proxy that checks Host). "
        "Other hosts get 400 host_not_allowed: the defence against DNS rebinding. See "
        "docs/security.md.",
    ),
    Setting(
        "cors_origins",
        "",
        str,
        "Comma-separated origins (scheme://host:port) of web pages that may change this "
        "server's state besides its own (the dashboard's). A state-changing request or "
        "WebSocket from a page on any other origin gets 403 cross_origin_refused. See "
        "docs/security.md.",
    ),
    Setting(
        "pickle_origins",
        "",
        str,
        "Comma-separated origins (scheme://host:port) of web pages that may upload a pickle "
        "(which runs code on the server) when auth is off. Otherwise, with auth off, a "
        "pickled upload is taken only from a client that is not a browser (no Origin and no "
        "Sec-Fetch-Site header), even from the server's own origin or one in cors_origins: "
        "a browser's gets 403 browser_pickle_refused. With auth on only admin tokens upload "
        "pickles, as before. See docs/security.md.",
    ),
    Setting(
        "forwarded_allow_ips",
        "",
        str,
        "Comma-separated addresses or networks (10.0.0.0/8, '*' for any) of proxies whose "
        "X-Forwarded-For, Forwarded and X-Forwarded-Proto headers are believed: the client "
        "address (rate limits, audit) is then the last hop they did not add. Empty (the "
        "default): none are, and the address is the connection's; set 127.0.0.1 behind a "
        "proxy on this machine. uvicorn's convention; see docs/security.md.",
    ),
    Setting("port", 8000, int, "Port the server listens on."),
    Setting("log_level", "info", str, "Log level: debug, info, warning or error."),
    Setting("checkpoint_every", 1000, int, "Checkpoint a live model after this many learns."),
    Setting(
        "checkpoint_seconds",
        30.0,
        float,
        "Checkpoint a live model that has learned at most this many seconds after its "
        "last checkpoint (or later, if checkpoint_share says so).",
    ),
    Setting(
        "checkpoint_share",
        0.02,
        float,
        "The most of a live model's time that its checkpoints (after checkpoint_every learns "
        "or checkpoint_seconds) may take: after a checkpoint that took d seconds, the next "
        "waits at least d * (1 - share) / share seconds (1 turns the bound off). A large "
        "model (a forest of megabytes) then stalls its requests rarely rather than every "
        "checkpoint_every learns; every learn is in the log either way, so a restart only "
        "replays more.",
    ),
    Setting(
        "sqlite_synchronous",
        "NORMAL",
        str,
        "SQLite's synchronous pragma. NORMAL (WAL) survives a crash of the process; "
        "FULL also survives a power cut, at the cost of an fsync per group commit.",
    ),
    Setting(
        "postgres_pool_size",
        8,
        int,
        "On PostgreSQL: most connections the read pool holds (writes go through one more, "
        "the writer's). A read that finds every one busy for postgres_pool_timeout seconds "
        "gets 503 unavailable (cause pool_busy) with Retry-After.",
    ),
    Setting(
        "postgres_pool_timeout",
        5.0,
        float,
        "On PostgreSQL: seconds a read waits for a connection of the pool. While the server "
        "is out of reach a read waits 1 s at most, then gets 503 (cause "
        "database_unreachable) with Retry-After; see docs/postgresql.md.",
    ),
    Setting(
        "postgres_connect_timeout",
        5.0,
        float,
        "On PostgreSQL: seconds opening a connection may take (at start, and each time the "
        "writer or the pool opens one again after a fault) before it fails: a write then "
        "gets 503 with Retry-After. A server that refuses connections fails at once.",
    ),
    Setting(
        "max_body_bytes",
        1_048_576,
        int,
        "Largest request body of every route but the uploads, in bytes, and of each WebSocket "
        "message and each line of an NDJSON learn stream; larger ones get 413 "
        "payload_too_large naming this setting (before the body is read when its "
        "Content-Length says so).",
    ),
    Setting("max_features", 10_000, int, "Most features one sample may have."),
    Setting(
        "max_batch_size",
        10_000,
        int,
        "Most samples one batch request may carry (predict many, learn many, rank).",
    ),
    Setting(
        "max_json_depth",
        32,
        int,
        "Deepest nesting of arrays and objects accepted in a JSON body.",
    ),
    Setting(
        "max_string_length",
        10_000,
        int,
        "Longest string accepted as a feature value, label or identifier.",
    ),
    Setting(
        "allowed_modules",
        "river,sklearn",
        str,
        "Comma-separated module prefixes that model specs may import from.",
    ),
    Setting(
        "cache_url",
        "",
        str,
        "Where the key-value cache lives: empty for the database itself (SQLite or memory), "
        "or a redis:// URL, shared by every replica that names it.",
    ),
    Setting("cache_prefix", "riverbed:cache:", str, "Prefix of the cache's keys in Redis."),
    Setting("job_workers", 1, int, "Training jobs run at once (each in a worker thread)."),
    Setting(
        "jobs_cluster",
        "",
        str,
        "A Dask distributed scheduler, tcp://HOST:PORT, whose workers train each job's "
        "candidates at once, one task each (needs riverbed[cluster] on the server and the "
        "workers; docs/training.md). Empty: candidates train one after another in this "
        "process.",
    ),
    Setting(
        "broker",
        "",
        str,
        "Scale-out (docs/scale-out.md): a Redis broker, redis://HOST:PORT/DB, whose streams "
        "order the learns of the replicas (riverbed serve) for the learners (riverbed learner) "
        "that share a postgresql:// database; run Redis with appendonly yes and appendfsync "
        "always. Empty: this process learns by itself, as on one machine.",
    ),
    Setting(
        "staleness_seconds",
        1.0,
        float,
        "Scale-out: how long after a learn is acknowledged every replica serves a model that "
        "includes it (the replicas follow the learners' log this often and more).",
    ),
    Setting(
        "lease_seconds",
        10.0,
        float,
        "Scale-out: how long a learner's lease on a model lasts without being renewed; a "
        "learner that dies is replaced after at most this long.",
    ),
    Setting(
        "max_upload_bytes",
        104_857_600,
        int,
        "Largest request body of POST /v1/jobs (the training data, inline, multipart or raw), "
        "in bytes; larger ones get 413 payload_too_large naming this setting.",
    ),
    Setting("max_candidates", 50, int, "Most candidate models one training job may train."),
    Setting(
        "prediction_cache_size",
        100_000,
        int,
        "Recent predictions kept in memory so that learning by id needs no disk read.",
    ),
    Setting(
        "challenger_pending",
        100_000,
        int,
        "Predictions a model's challengers keep per model: the samples queued for them off "
        "the request path, and their predictions waiting for a label, each up to N. A "
        "prediction the full queue has no room for is dropped and counted (n_dropped); its "
        "label is scored with a prediction made at the label (n_late).",
    ),
    Setting(
        "retention_predictions",
        0,
        int,
        "Predictions kept in the database per model: the newest N (0 keeps them all). "
        "Older ones are deleted in the background, about once a second; labelling one "
        "answers 404 prediction_not_found.",
    ),
    Setting(
        "retention_learns",
        0,
        int,
        "Learn records (the replay log) kept per model: the newest N (0 keeps them all), "
        "and always every learn after the model's last checkpoint, which a restart replays.",
    ),
    Setting(
        "retention_metric_points",
        0,
        int,
        "Metric history points (the charts' data) kept per model: the newest N (0 keeps them all).",
    ),
    Setting(
        "allow_pickle_uploads",
        "auto",
        str,
        "Whether uploaded pickles (formats riverbed, pickle, joblib) are accepted: loading "
        "one runs its code on the server. auto: yes when bound to a loopback address, no "
        "otherwise; true; false. skops files and specs are always accepted.",
    ),
    Setting(
        "compat",
        "chantilly,django-river-ml,lrnstak,maisie,beaver",
        str,
        "Comma-separated compatibility layers to serve (chantilly, django-river-ml, lrnstak, "
        "maisie, beaver), so older clients work unchanged; empty turns them all off. See "
        "docs/migration/.",
    ),
    Setting(
        "compat_shared",
        "lrnstak",
        str,
        "Which layer answers the routes that lrnstak and Beaver both have (GET /models, "
        "POST /train/{name}) when both are served: lrnstak or beaver. A layer that is not "
        "served leaves them to the other.",
    ),
    Setting(
        "max_artifact_bytes",
        268_435_456,
        int,
        "Largest model artifact accepted by an upload, in bytes: the body of the upload "
        "routes (chantilly, django-river-ml, Maisie), or four thirds of it plus max_body_bytes "
        "where the artifact is base64 (POST /v1/models/{name}/versions, Beaver); larger ones "
        "get 413 payload_too_large naming this setting.",
    ),
    Setting(
        "webhook_timeout",
        5.0,
        float,
        "Seconds a webhook receiver has to answer one delivery attempt (connecting and "
        "reading the reply); a slower one counts as a failed attempt (docs/webhooks.md).",
    ),
    Setting(
        "webhook_attempts",
        10,
        int,
        "Attempts made at a webhook delivery before it is marked failed (a retry queues it "
        "for as many again).",
    ),
    Setting(
        "webhook_backoff",
        1.0,
        float,
        "Seconds before a failed webhook delivery's second attempt; the pause doubles after "
        "each failure, up to one hour.",
    ),
    Setting(
        "version_cache_size",
        32,
        int,
        "Loaded model versions kept in memory to answer predictions by version or alias.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved settings of one engine or server."""

    database: str = "riverbed.db"
    host: str = "127.0.0.1"
    auth: str = "auto"
    route_groups: str = "*"
    rate_limit_address: str = ""
    rate_limit_token: str = ""
    allowed_hosts: str = ""
    cors_origins: str = ""
    pickle_origins: str = ""
    forwarded_allow_ips: str = ""
    port: int = 8000
    log_level: str = "info"
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 30.0
    checkpoint_share: float = 0.02
    sqlite_synchronous: str = "NORMAL"
    postgres_pool_size: int = 8
    postgres_pool_timeout: float = 5.0
    postgres_connect_timeout: float = 5.0
    max_body_bytes: int = 1_048_576
    max_features: int = 10_000
    max_batch_size: int = 10_000
    max_json_depth: int = 32
    max_string_length: int = 10_000
    allowed_modules: str = "river,sklearn"
    cache_url: str = ""
    cache_prefix: str = "riverbed:cache:"
    job_workers: int = 1
    jobs_cluster: str = ""
    broker: str = ""
    staleness_seconds: float = 1.0
    lease_seconds: float = 10.0
    max_upload_bytes: int = 104_857_600
    max_candidates: int = 50
    prediction_cache_size: int = 100_000
    challenger_pending: int = 100_000
    retention_predictions: int = 0
    retention_learns: int = 0
    retention_metric_points: int = 0
    allow_pickle_uploads: str = "auto"
    compat: str = "chantilly,django-river-ml,lrnstak,maisie,beaver"
    compat_shared: str = "lrnstak"
    max_artifact_bytes: int = 268_435_456
    webhook_timeout: float = 5.0
    webhook_attempts: int = 10
    webhook_backoff: float = 1.0
    version_cache_size: int = 32

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Defaults, then ``RIVERBED_*`` variables, then ``overrides`` that are not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.env in environ:
                values[setting.name] = setting.parse(environ[setting.env])
        for name, value in (overrides or {}).items():
            if name not in _BY_NAME:
                raise TypeError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = value
        return cls(**values)

    def __post_init__(self) -> None:
        self.pickle_uploads_allowed  # noqa: B018 - refuse a bad value when loading
        for name in ("retention_predictions", "retention_learns", "retention_metric_points"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (keep all) or a positive count")
        if self.jobs_cluster:
            check_cluster_address(self.jobs_cluster)
        if not self.webhook_timeout > 0 or not self.webhook_backoff > 0:
            raise ValueError("webhook_timeout and webhook_backoff must be above 0 seconds")
        if self.webhook_attempts < 1:
            raise ValueError(f"webhook_attempts must be 1 or more, not {self.webhook_attempts!r}")
        if self.broker:
            check_broker(self.broker)
            if not self.database.lower().startswith(("postgresql://", "postgres://")):
                raise ValueError(
                    "broker: the replicas and learners of a scale-out cluster share a "
                    f"PostgreSQL database (--database postgresql://...), not {self.database!r}"
                )
        if not self.staleness_seconds > 0 or not self.lease_seconds > 0:
            raise ValueError("staleness_seconds and lease_seconds must be above 0")
        if not 0 < self.checkpoint_share <= 1:
            raise ValueError(
                f"checkpoint_share must be above 0 and at most 1, not {self.checkpoint_share!r}"
            )
        if self.postgres_pool_size < 1:
            raise ValueError(
                f"postgres_pool_size must be 1 or more, not {self.postgres_pool_size!r}"
            )
        for name in ("postgres_pool_timeout", "postgres_connect_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0 seconds, not {getattr(self, name)!r}")

    @property
    def allowed_module_prefixes(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.allowed_modules.split(",") if p.strip())

    @property
    def compat_layers(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.compat.split(",") if p.strip())

    @property
    def pickle_uploads_allowed(self) -> bool:
        """``allow_pickle_uploads`` resolved: ``auto`` means only on a loopback address."""
        choice = self.allow_pickle_uploads.strip().lower()
        if choice in ("1", "true", "yes", "on"):
            return True
        if choice in ("0", "false", "no", "off"):
            return False
        if choice != "auto":
            raise ValueError(
                "allow_pickle_uploads must be auto, true or false, not "
                f"{self.allow_pickle_uploads!r}"
            )
        host = self.host.strip("[]").lower()
        return host in ("localhost", "::1") or host.startswith("127.")


def check_cluster_address(address: str) -> str:
    """A Dask scheduler's address, ``tcp://HOST:PORT``, as given; else ValueError."""
    parsed = urllib.parse.urlsplit(address)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme != "tcp" or not parsed.hostname or port is None or parsed.path:
        raise ValueError(
            f"jobs_cluster must be a Dask scheduler's address, tcp://HOST:PORT, not {address!r}"
        )
    return address


def check_broker(url: str) -> str:
    """A scale-out broker's URL, ``redis://HOST:PORT/DB``, as given; else ValueError (NATS
    JetStream is not wired in yet: docs/scale-out.md says why Redis Streams came first)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "nats":
        raise ValueError(
            f"broker {url!r}: NATS JetStream is not supported as a scale-out broker yet; "
            "use Redis Streams, redis://HOST:PORT/DB (docs/scale-out.md)"
        )
    path = parsed.path.strip("/")
    try:
        parsed.port  # noqa: B018 - a port that is not a number is refused here
    except ValueError:
        path = "not a port"
    if parsed.scheme != "redis" or not parsed.hostname or (path and not path.isdigit()):
        raise ValueError(f"broker must be a Redis URL, redis://HOST:PORT/DB, not {url!r}")
    return url


def settings_markdown() -> str:
    """The settings table of ``docs/settings.md``, generated from :data:`SETTINGS`."""
    lines = [
        "# Settings",
        "",
        "Every setting is a `riverbed serve` flag and a `RIVERBED_*` environment variable;",
        "flags win over the environment, which wins over the default. The embedded",
        "`Engine(...)` takes the same names as keyword arguments.",
        "",
        "| setting | flag | environment | default | what it does |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        lines.append(f"| `{s.name}` | `{s.flag}` | `{s.env}` | `{s.default!r}` | {s.help} |")
    return "\n".join(lines) + "\n"
