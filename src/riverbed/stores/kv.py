"""The key-value store interface behind :class:`riverbed.cache.Cache`, and its in-memory twin.

A key holds either a *value* (bytes) or a *list* of values, never both; a key may have an
expiry time (seconds since the epoch), after which it is gone for every read and write.
Lists are stacks as lrnstak's are: ``push`` adds at the front (position 0), ``pop`` takes
from the front, ``index`` reads any position (negative counts from the back). A list whose
last item is popped disappears with its expiry, as in Redis.

Backends: the in-memory and SQLite stores implement this interface themselves (a cache on
SQLite survives a restart), :class:`riverbed.stores.redis.RedisCacheStore` keeps it in
Redis (shared by every replica). Times are passed in by the caller (``now``) so that the
cache's clock decides expiry; Redis, which expires keys on its own clock, ignores them.
Writes return futures like every store write; reads return committed data.
"""

from __future__ import annotations

import abc
import collections
import threading
from concurrent.futures import Future

from riverbed.exceptions import WrongCacheKind
from riverbed.stores.base import done

__all__ = ["KEEP", "CacheStore", "MemoryCache"]


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


#: ``push(..., expires_at=KEEP)`` leaves a list's expiry as it is.
KEEP: _Keep = _Keep()


def value_held(key: str) -> WrongCacheKind:
    return WrongCacheKind(f"cache key {key!r} holds a value, not a list", detail={"key": key})


def list_held(key: str) -> WrongCacheKind:
    return WrongCacheKind(
        f"cache key {key!r} holds a list; use peek or pop to read it", detail={"key": key}
    )


class CacheStore(abc.ABC):
    """What the cache needs from a backend: a handful of key-value operations."""

    @abc.abstractmethod
    def kv_set(self, key: str, value: bytes, expires_at: float | None) -> Future[None]:
        """Store a value under ``key``, replacing whatever it held, with this expiry."""

    @abc.abstractmethod
    def kv_get(self, key: str, now: float) -> bytes | None:
        """The value under ``key``; None if absent or expired. A list raises WrongCacheKind."""

    @abc.abstractmethod
    def kv_delete(self, key: str, now: float) -> Future[bool]:
        """Remove a key; the future says whether it existed (unexpired)."""

    @abc.abstractmethod
    def kv_push(
        self, key: str, value: bytes, expires_at: float | None | _Keep, now: float
    ) -> Future[int]:
        """Push onto the front of the list under ``key`` (created if absent); the future
        holds the new length. A value under ``key`` raises WrongCacheKind."""

    @abc.abstractmethod
    def kv_index(self, key: str, position: int, now: float) -> bytes | None:
        """The list item at ``position`` (0 is the front, -1 the back); None if absent."""

    @abc.abstractmethod
    def kv_pop(self, key: str, now: float) -> Future[bytes | None]:
        """Remove and return the front item of a list; None if the list is absent."""

    @abc.abstractmethod
    def kv_length(self, key: str, now: float) -> int:
        """How many items the list under ``key`` holds (0 if absent)."""

    @abc.abstractmethod
    def kv_expire(self, key: str, expires_at: float | None, now: float) -> Future[bool]:
        """Set (or with None, clear) the expiry of a key; the future says whether it existed."""

    @abc.abstractmethod
    def kv_expiry(self, key: str, now: float) -> tuple[bool, float | None]:
        """Whether the key exists, and its expiry time (None: it never expires)."""

    @abc.abstractmethod
    def kv_purge(self, now: float) -> Future[int]:
        """Drop every expired key (reads already ignore them); returns how many went."""


class _Entry:
    __slots__ = ("value", "items", "expires_at")

    def __init__(
        self,
        value: bytes | None,
        items: collections.deque[bytes] | None,
        expires_at: float | None,
    ) -> None:
        self.value, self.items, self.expires_at = value, items, expires_at


class MemoryCache(CacheStore):
    """The in-memory key-value store: dictionaries under one lock."""

    def __init__(self) -> None:
        self._kv_lock = threading.Lock()
        self._kv: dict[str, _Entry] = {}

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._kv.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
            del self._kv[key]
            return None
        return entry

    def kv_set(self, key: str, value: bytes, expires_at: float | None) -> Future[None]:
        with self._kv_lock:
            self._kv[key] = _Entry(value, None, expires_at)
        return done()

    def kv_get(self, key: str, now: float) -> bytes | None:
        with self._kv_lock:
            entry = self._live(key, now)
            if entry is None:
                return None
            if entry.items is not None:
                raise list_held(key)
            return entry.value

    def kv_delete(self, key: str, now: float) -> Future[bool]:
        with self._kv_lock:
            existed = self._live(key, now) is not None
            self._kv.pop(key, None)
        return done(existed)

    def kv_push(
        self, key: str, value: bytes, expires_at: float | None | _Keep, now: float
    ) -> Future[int]:
        with self._kv_lock:
            entry = self._live(key, now)
            if entry is None:
                entry = self._kv[key] = _Entry(None, collections.deque(), None)
            if entry.items is None:
                return done(error=value_held(key))
            if not isinstance(expires_at, _Keep):
                entry.expires_at = expires_at
            entry.items.appendleft(value)
            return done(len(entry.items))

    def _items(self, key: str, now: float) -> collections.deque[bytes] | None:
        entry = self._live(key, now)
        if entry is None:
            return None
        if entry.items is None:
            raise value_held(key)
        return entry.items

    def kv_index(self, key: str, position: int, now: float) -> bytes | None:
        with self._kv_lock:
            items = self._items(key, now)
            if items is None or not -len(items) <= position < len(items):
                return None
            return items[position]

    def kv_pop(self, key: str, now: float) -> Future[bytes | None]:
        with self._kv_lock:
            try:
                items = self._items(key, now)
            except WrongCacheKind as exc:
                return done(error=exc)
            if items is None:
                return done(None)
            value = items.popleft()
            if not items:
                del self._kv[key]
            return done(value)

    def kv_length(self, key: str, now: float) -> int:
        with self._kv_lock:
            items = self._items(key, now)
            return 0 if items is None else len(items)

    def kv_expire(self, key: str, expires_at: float | None, now: float) -> Future[bool]:
        with self._kv_lock:
            entry = self._live(key, now)
            if entry is not None:
                entry.expires_at = expires_at
            return done(entry is not None)

    def kv_expiry(self, key: str, now: float) -> tuple[bool, float | None]:
        with self._kv_lock:
            entry = self._live(key, now)
            return (False, None) if entry is None else (True, entry.expires_at)

    def kv_purge(self, now: float) -> Future[int]:
        with self._kv_lock:
            expired = [
                k for k, e in self._kv.items() if e.expires_at is not None and e.expires_at <= now
            ]
            for key in expired:
                del self._kv[key]
        return done(len(expired))
