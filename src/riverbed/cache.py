"""The key-value cache: JSON values under string keys, with an optional time to live.

Small values that clients keep beside their models (an entity's latest features, a queue of
pending work) live here. A key holds either a value (``put``/``get``/``delete``) or a list
used as a stack, as lrnstak's cache does (``push`` onto the front, ``peek`` at a position,
``pop`` the front). A time to live (seconds) makes a key disappear once it has passed; reads
never see an expired key. The cache lives in the configured store: the engine's own SQLite
file (it survives a restart) or memory, or Redis when the ``cache_url`` setting names one
(then every replica shares it).

    >>> from riverbed.stores.kv import MemoryCache
    >>> cache = Cache(MemoryCache())
    >>> cache.put("user:42", {"age": 31, "country": "FR"}, ttl=60)["key"]
    'user:42'
    >>> cache.get("user:42")
    {'age': 31, 'country': 'FR'}
    >>> [cache.push("jobs", n)["length"] for n in (1, 2, 3)]
    [1, 2, 3]
    >>> cache.peek("jobs"), cache.pop("jobs"), cache.peek("jobs", -1)
    (3, 3, 1)

Writes come in the engine's two forms: ``submit_<op>`` returns a :class:`Receipt` (awaited
by the server), ``<op>`` waits for the write.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any

import orjson

from riverbed.exceptions import CacheKeyNotFound, InvalidInput
from riverbed.receipts import Receipt
from riverbed.stores.kv import KEEP, CacheStore

__all__ = ["Cache", "open_cache"]

PURGE_SECONDS = 60.0


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise InvalidInput(f"a cache value must be JSON: {exc}") from None


def _decode(data: bytes) -> Any:
    return orjson.loads(data)


class _After(Receipt[Any]):
    """A receipt whose value is made from the write's result (a pop's item, a length)."""

    def __init__(self, committed: Future[Any], make: Callable[[Any], Any]) -> None:
        super().__init__(None, committed)
        self._make = make

    def wait(self) -> Any:
        return self._make(self.committed.result())

    def __await__(self) -> Generator[Any, None, Any]:
        if not self.committed.done():
            yield from asyncio.wrap_future(self.committed).__await__()
        return self._make(self.committed.result())


class Cache:
    """JSON values with a time to live over a :class:`~riverbed.stores.kv.CacheStore`.

    ``clock`` (seconds since the epoch) decides expiry for the memory and SQLite stores;
    Redis keeps its own clock.
    """

    def __init__(
        self,
        store: CacheStore,
        *,
        clock: Callable[[], float] = time.time,
        max_key_length: int = 1024,
    ) -> None:
        self.store = store
        self.clock = clock
        self.max_key_length = max_key_length
        self._next_purge = 0.0
        self._purge_lock = threading.Lock()

    # -- values ------------------------------------------------------------------------------

    def put(self, key: str, value: Any, *, ttl: float | None = None) -> dict[str, Any]:
        """Store ``value`` under ``key`` (replacing a value or a list) for ``ttl`` seconds
        (None or 0: no expiry)."""
        return self.submit_put(key, value, ttl=ttl).wait()

    def submit_put(
        self, key: str, value: Any, *, ttl: float | None = None
    ) -> Receipt[dict[str, Any]]:
        key = self._check_key(key)
        data = _encode(value)
        now = self.clock()
        expires_at = self._expires_at(ttl, now)
        future = self.store.kv_set(key, data, expires_at)
        self._maybe_purge(now)
        return Receipt({"key": key, "expires_at": expires_at}, future)

    def get(self, key: str) -> Any:
        """The value under ``key``; :class:`CacheKeyNotFound` if absent or expired."""
        key = self._check_key(key)
        data = self.store.kv_get(key, self.clock())
        if data is None:
            raise CacheKeyNotFound(f"no cache entry under {key!r}", detail={"key": key})
        return _decode(data)

    def delete(self, key: str) -> dict[str, Any]:
        return self.submit_delete(key).wait()

    def submit_delete(self, key: str) -> Receipt[dict[str, Any]]:
        """Remove a key (value or list); ``deleted`` says whether it was there."""
        key = self._check_key(key)
        future = self.store.kv_delete(key, self.clock())
        return _After(future, lambda existed: {"key": key, "deleted": bool(existed)})

    # -- lists -------------------------------------------------------------------------------

    def push(self, key: str, value: Any, *, ttl: float | None = None) -> dict[str, Any]:
        """Push ``value`` onto the front of the list under ``key``; a ``ttl`` sets the
        list's expiry, without one the expiry stays as it was."""
        return self.submit_push(key, value, ttl=ttl).wait()

    def submit_push(
        self, key: str, value: Any, *, ttl: float | None = None
    ) -> Receipt[dict[str, Any]]:
        key = self._check_key(key)
        data = _encode(value)
        now = self.clock()
        expires_at = KEEP if ttl is None else self._expires_at(ttl, now)
        future = self.store.kv_push(key, data, expires_at, now)
        self._maybe_purge(now)
        return _After(future, lambda length: {"key": key, "length": int(length)})

    def peek(self, key: str, position: int = 0) -> Any:
        """The list item at ``position`` (0: the front, the last pushed; -1: the back)."""
        key = self._check_key(key)
        if isinstance(position, bool) or not isinstance(position, int):
            raise InvalidInput(f"a list position must be an integer, got {position!r}")
        data = self.store.kv_index(key, position, self.clock())
        if data is None:
            raise CacheKeyNotFound(
                f"no list item at position {position} under {key!r}",
                detail={"key": key, "position": position},
            )
        return _decode(data)

    def pop(self, key: str) -> Any:
        return self.submit_pop(key).wait()

    def submit_pop(self, key: str) -> Receipt[Any]:
        """Remove and return the front item of a list; :class:`CacheKeyNotFound` if empty."""
        key = self._check_key(key)
        future = self.store.kv_pop(key, self.clock())

        def value(data: bytes | None) -> Any:
            if data is None:
                raise CacheKeyNotFound(f"no list under {key!r} to pop from", detail={"key": key})
            return _decode(data)

        return _After(future, value)

    def length(self, key: str) -> int:
        """How many items the list under ``key`` holds (0 if there is none)."""
        return self.store.kv_length(self._check_key(key), self.clock())

    # -- expiry ------------------------------------------------------------------------------

    def ttl(self, key: str) -> dict[str, Any]:
        """Seconds left before ``key`` expires (``ttl`` None: it never does)."""
        key = self._check_key(key)
        now = self.clock()
        exists, expires_at = self.store.kv_expiry(key, now)
        if not exists:
            raise CacheKeyNotFound(f"no cache entry under {key!r}", detail={"key": key})
        left = None if expires_at is None else max(0.0, expires_at - now)
        return {"key": key, "ttl": left, "expires_at": expires_at}

    def expire(self, key: str, ttl: float | None) -> dict[str, Any]:
        return self.submit_expire(key, ttl).wait()

    def submit_expire(self, key: str, ttl: float | None) -> Receipt[dict[str, Any]]:
        """Give ``key`` a new time to live (None or 0: never expire)."""
        key = self._check_key(key)
        now = self.clock()
        expires_at = self._expires_at(ttl, now)
        future = self.store.kv_expire(key, expires_at, now)

        def check(found: bool) -> dict[str, Any]:
            if not found:
                raise CacheKeyNotFound(f"no cache entry under {key!r}", detail={"key": key})
            return {"key": key, "expires_at": expires_at}

        return _After(future, check)

    def purge(self) -> int:
        """Drop every expired entry now (reads already ignore them); returns how many."""
        return int(self.store.kv_purge(self.clock()).result())

    # -- checks ------------------------------------------------------------------------------

    def _check_key(self, key: Any) -> str:
        if not isinstance(key, str) or not key or len(key) > self.max_key_length:
            raise InvalidInput(
                f"a cache key must be a non-empty string of at most {self.max_key_length} "
                f"characters, got {key!r}"
            )
        return key

    @staticmethod
    def _expires_at(ttl: Any, now: float) -> float | None:
        if ttl is None or (ttl == 0 and not isinstance(ttl, bool)):
            return None
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
            raise InvalidInput(f"ttl must be a number of seconds, got {ttl!r}")
        if ttl < 0:
            raise InvalidInput(f"ttl must be positive (0 or none: no expiry), got {ttl!r}")
        return now + float(ttl)

    def _maybe_purge(self, now: float) -> None:
        with self._purge_lock:
            if now < self._next_purge:
                return
            self._next_purge = now + PURGE_SECONDS
        self.store.kv_purge(now)


def open_cache(store: Any, *, url: str = "", prefix: str = "riverbed:cache:") -> Cache:
    """The cache a configuration names: Redis for a ``redis://`` URL, else ``store``'s own."""
    if url:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidInput(f"cache_url must be a redis:// URL (or empty), got {url!r}")
        from riverbed.stores.redis import RedisCacheStore

        return Cache(RedisCacheStore(url, prefix=prefix))
    if not isinstance(store, CacheStore):
        raise InvalidInput(
            f"the {type(store).__name__} has no key-value cache; set cache_url to a Redis server"
        )
    return Cache(store)
