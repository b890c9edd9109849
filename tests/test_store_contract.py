"""The store contract (riverbed.testing) on every backend riverbed ships: memory, SQLite,
PostgreSQL, and Redis for the cache."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from riverbed.stores import open_store
from riverbed.stores.base import Store
from riverbed.stores.kv import CacheStore
from riverbed.stores.redis import RedisCacheStore
from riverbed.testing import CacheStoreContract, StoreContract
from tests.helpers import PostgresDatabase
from tests.test_cache import REDIS_URL


class TestMemoryStore(StoreContract):
    durable = False

    def open_store(self, location: Path) -> Store:
        return open_store(":memory:")


class TestSQLiteStore(StoreContract):
    def open_store(self, location: Path) -> Store:
        return open_store(str(location / "riverbed.db"))

    def small_prune_batches(self, monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
        from riverbed.stores.sqlite import store

        monkeypatch.setattr(store, "_PRUNE_BATCH", rows)


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def location(self) -> Iterator[str]:
        database = PostgresDatabase()
        try:
            yield database.url
        finally:
            database.drop()

    def open_store(self, location: str) -> Store:
        return open_store(location)

    def small_prune_batches(self, monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
        from riverbed.stores.postgres import store

        monkeypatch.setattr(store, "_PRUNE_BATCH", rows)


class TestRedisCache(CacheStoreContract):
    own_clock = True

    @pytest.fixture
    def cache_store(self) -> Iterator[CacheStore]:
        store = RedisCacheStore(REDIS_URL, prefix=f"riverbed-test:{uuid.uuid4().hex}:")
        try:
            yield store
        finally:
            store.clear()
            store.close()
