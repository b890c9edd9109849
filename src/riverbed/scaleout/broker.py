"""The broker: one Redis stream a model (``riverbed:learns:<model>``) holding its learns in
the order the replicas handed them over.

A replica adds the learns of the requests waiting in one script (all of a request's or
none) and acknowledges them once Redis answered; with ``appendonly yes`` and ``appendfsync
always`` (the test's and the docs' configuration) Redis answers only after the entries are
in its append-only file. A label (a learn by prediction id) claims its prediction in the
same script: the key ``riverbed:label:<id>`` is set with the entries, and a request that
names a prediction claimed already adds nothing, so a prediction is labelled once and a
label is never claimed without its entry (a replica killed mid-request leaves both or
neither). An entry's id starts with Redis's clock in milliseconds: the time it was acknowledged.
A learner reads a model's stream from the position it committed in PostgreSQL (``XREAD``
from that id, not a consumer group's delivery cursor, which a learner fenced out of its
lease could still move) and trims what it committed.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from riverbed.exceptions import Unavailable

__all__ = ["CLAIM_PREFIX", "CLAIM_SECONDS", "STREAM_PREFIX", "Broker", "broker_error", "stream_key"]

log = logging.getLogger(__name__)

STREAM_PREFIX = "riverbed:learns:"
CLAIM_PREFIX = "riverbed:label:"
# How long a label's claim is kept: past it the prediction's stored labelled flag (set by the
# learner's commit, seconds after) is what refuses a second label.
CLAIM_SECONDS = 86_400

# ARGV: the claims' lifetime in seconds, the number of requests, then per request the
# number of its claims, the claim keys, the number of its entries and (stream, message)
# per entry. Per request it returns {0, the claimed key found} (nothing added) or {1, ids}.
_ADD = """
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local i = 3
local out = {}
for j = 1, n do
  local nc = tonumber(ARGV[i])
  local claims = {}
  for k = 1, nc do claims[k] = ARGV[i + k] end
  i = i + nc + 1
  local ne = tonumber(ARGV[i])
  i = i + 1
  local taken = nil
  for k = 1, nc do
    if redis.call('EXISTS', claims[k]) == 1 then
      taken = claims[k]
      break
    end
  end
  if taken then
    out[j] = {0, taken}
  else
    local ids = {}
    for k = 1, ne do
      ids[k] = redis.call('XADD', ARGV[i + 2 * k - 2], '*', 'm', ARGV[i + 2 * k - 1])
    end
    for k = 1, nc do
      redis.call('SET', claims[k], ids[1], 'EX', ttl)
    end
    out[j] = {1, ids}
  end
  i = i + 2 * ne
end
return out
"""
_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def stream_key(model: str) -> str:
    return STREAM_PREFIX + model


def broker_error(url: str, exc: BaseException) -> Unavailable:
    return Unavailable(
        f"the broker {url} cannot be reached ({type(exc).__name__}: {exc}): nothing was "
        "learned; retry",
        detail={"cause": "broker_unreachable"},
    )


def entry_ms(entry_id: str) -> int:
    """The milliseconds an entry id starts with: when Redis added it."""
    return int(entry_id.split("-", 1)[0])


def _after(entry_id: str) -> str:
    """The smallest id above ``entry_id``."""
    ms, seq = entry_id.split("-", 1)
    return f"{ms}-{int(seq) + 1}"


class Broker:
    """A Redis connection for the streams. Commands are not retried by the client: a
    request whose answer was lost is the caller's to retry (it may have been added)."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._add = self.redis.register_script(_ADD)

    def close(self) -> None:
        self.redis.close()

    def ping(self) -> None:
        try:
            self.redis.ping()
        except _ERRORS as exc:
            raise broker_error(self.url, exc) from None

    def durability(self) -> tuple[str, str] | None:
        """Redis's ``appendonly`` and ``appendfsync``, None if it does not say."""
        try:
            config = self.redis.config_get("append*")
        except redis.RedisError:
            return None
        return str(config.get("appendonly", "")), str(config.get("appendfsync", ""))

    def eviction(self) -> str | None:
        """Redis's ``maxmemory-policy`` when it has a ``maxmemory`` and may evict keys (a
        stream's entries, a label's claim), None when it never evicts or does not say."""
        try:
            config = self.redis.config_get("maxmemory*")
        except redis.RedisError:
            return None
        policy = str(config.get("maxmemory-policy", "noeviction"))
        if str(config.get("maxmemory", "0")) == "0" or policy == "noeviction":
            return None
        return policy

    def add(
        self, requests: list[tuple[list[str], list[tuple[str, bytes]]]]
    ) -> list[list[str] | str]:
        """Append each request's ``(model, message)`` entries, and claim the prediction ids
        it names, in one script: per request the entries' ids in order, or the prediction
        id claimed already that made it add nothing. All of it is done or none (an error
        here: maybe all, if the answer was lost)."""
        args: list[Any] = [CLAIM_SECONDS, len(requests)]
        for claims, entries in requests:
            args += [len(claims), *(CLAIM_PREFIX + c for c in claims), len(entries)]
            for model, message in entries:
                args += [stream_key(model), message]
        try:
            found = self._add(args=args)
        except _ERRORS as exc:
            raise Unavailable(
                f"the broker {self.url} failed during the hand-off ({type(exc).__name__}: "
                f"{exc}): not acknowledged, though it may have been taken if only the answer "
                "was lost; retry (a label retried is learned once)",
                detail={"cause": "broker_unreachable"},
            ) from None
        except redis.RedisError as exc:  # out of memory, read-only, its AOF not written...
            raise Unavailable(
                f"the broker {self.url} refused the hand-off ({type(exc).__name__}: {exc}): "
                "not acknowledged; retry (a label retried is learned once)",
                detail={"cause": "broker_refused"},
            ) from None
        out: list[list[str] | str] = []
        for added, value in found:
            if added:
                out.append([_text(i) for i in value])
            else:
                out.append(_text(value)[len(CLAIM_PREFIX) :])
        return out

    def read(
        self, positions: dict[str, str], *, count: int, block_ms: int
    ) -> list[tuple[str, list[tuple[str, bytes]]]]:
        """Entries after each model's position: ``[(model, [(id, message)])]``."""
        if not positions:
            return []
        streams = {stream_key(m): p for m, p in positions.items()}
        try:
            found: Any = self.redis.xread(streams, count=count, block=block_ms)  # type: ignore[arg-type]
        except _ERRORS as exc:
            raise broker_error(self.url, exc) from None
        out = []
        for key, entries in found or []:
            model = _text(key)[len(STREAM_PREFIX) :]
            out.append((model, [(_text(i), fields[b"m"]) for i, fields in entries]))
        return out

    def trim(self, model: str, through: str) -> None:
        """Drop the entries up to ``through`` (committed by a learner)."""
        try:
            self.redis.xtrim(stream_key(model), minid=_after(through), approximate=False)
        except _ERRORS:
            pass  # the next commit trims them

    def waiting(self, positions: dict[str, str]) -> dict[str, tuple[int, int | None]]:
        """For each model: the entries after its position, and the id time (ms) of the
        oldest of them (None when there are none). One round trip."""
        names = list(positions)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                key, position = stream_key(name), positions[name]
                pipe.xlen(key)
                pipe.xrange(key, "-", position)
                pipe.xrange(key, "(" + position, "+", count=1)
            answers = pipe.execute()
        except _ERRORS as exc:
            raise broker_error(self.url, exc) from None
        out: dict[str, tuple[int, int | None]] = {}
        for i, name in enumerate(names):
            length, done, oldest = answers[3 * i : 3 * i + 3]
            behind = int(length) - len(done)
            first = entry_ms(_text(oldest[0][0])) if oldest else None
            out[name] = (max(0, behind), first)
        return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
