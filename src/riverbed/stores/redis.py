"""The key-value store on Redis: a cache shared by every replica that points at the server.

Keys live under a prefix (``riverbed:cache:`` by default), values as Redis strings, lists
as Redis lists (``LPUSH``/``LPOP``/``LINDEX``, the stack lrnstak used), expiry as Redis's
own (``PXAT``/``PEXPIREAT``, millisecond precision), so Redis drops expired keys itself.
Needs the ``redis`` package (``pip install 'riverbed[redis]'``).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from riverbed.exceptions import ServerError
from riverbed.stores.base import done
from riverbed.stores.kv import CacheStore, _Keep, list_held, value_held

__all__ = ["RedisCacheStore"]

_PUSH = """
local n = redis.call('LPUSH', KEYS[1], ARGV[1])
if ARGV[2] == 'persist' then
  redis.call('PERSIST', KEYS[1])
elseif ARGV[2] ~= '' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return n
"""
_EXPIRE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('PERSIST', KEYS[1])
else redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
return 1
"""


def _ms(expires_at: float) -> int:
    return max(1, round(expires_at * 1000))


class RedisCacheStore(CacheStore):
    """The cache operations on a Redis server named by a ``redis://`` URL."""

    def __init__(self, url: str, *, prefix: str = "riverbed:cache:") -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - the test extra installs it
            raise ServerError(
                "a Redis cache needs the redis package: pip install 'riverbed[redis]'"
            ) from None
        self._redis_errors = redis.exceptions
        self._client: Any = redis.Redis.from_url(url)
        self.prefix = prefix
        self._push = self._client.register_script(_PUSH)
        self._expire = self._client.register_script(_EXPIRE)

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _wrong_kind(self, exc: Exception) -> bool:
        return isinstance(exc, self._redis_errors.ResponseError) and "WRONGTYPE" in str(exc)

    def kv_set(self, key: str, value: bytes, expires_at: float | None) -> Future[None]:
        if expires_at is None:
            self._client.set(self._k(key), value)
        else:
            self._client.set(self._k(key), value, pxat=_ms(expires_at))
        return done()

    def kv_get(self, key: str, now: float) -> bytes | None:
        try:
            value: bytes | None = self._client.get(self._k(key))
        except Exception as exc:
            if self._wrong_kind(exc):
                raise list_held(key) from None
            raise
        return value

    def kv_delete(self, key: str, now: float) -> Future[bool]:
        return done(bool(self._client.delete(self._k(key))))

    def kv_push(
        self, key: str, value: bytes, expires_at: float | None | _Keep, now: float
    ) -> Future[int]:
        if isinstance(expires_at, _Keep):
            when = ""
        elif expires_at is None:
            when = "persist"
        else:
            when = str(_ms(expires_at))
        try:
            return done(int(self._push(keys=[self._k(key)], args=[value, when])))
        except Exception as exc:
            if self._wrong_kind(exc):
                return done(error=value_held(key))
            raise

    def kv_index(self, key: str, position: int, now: float) -> bytes | None:
        try:
            value: bytes | None = self._client.lindex(self._k(key), position)
        except Exception as exc:
            if self._wrong_kind(exc):
                raise value_held(key) from None
            raise
        return value

    def kv_pop(self, key: str, now: float) -> Future[bytes | None]:
        try:
            return done(self._client.lpop(self._k(key)))
        except Exception as exc:
            if self._wrong_kind(exc):
                return done(error=value_held(key))
            raise

    def kv_length(self, key: str, now: float) -> int:
        try:
            return int(self._client.llen(self._k(key)))
        except Exception as exc:
            if self._wrong_kind(exc):
                raise value_held(key) from None
            raise

    def kv_expire(self, key: str, expires_at: float | None, now: float) -> Future[bool]:
        when = "" if expires_at is None else str(_ms(expires_at))
        return done(bool(self._expire(keys=[self._k(key)], args=[when])))

    def kv_expiry(self, key: str, now: float) -> tuple[bool, float | None]:
        ms = int(self._client.pttl(self._k(key)))
        if ms == -2:
            return False, None
        if ms == -1:
            return True, None
        return True, now + ms / 1000  # remaining time as Redis counts it

    def kv_purge(self, now: float) -> Future[int]:
        return done(0)  # Redis expires keys on its own

    def clear(self) -> int:
        """Delete every key under this store's prefix (tests and resets)."""
        keys = list(self._client.scan_iter(match=self.prefix + "*", count=1000))
        return int(self._client.delete(*keys)) if keys else 0

    def close(self) -> None:
        self._client.close()
