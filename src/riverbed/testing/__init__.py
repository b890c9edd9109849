"""What riverbed ships for testing: the store contract suite
(:mod:`riverbed.testing.store_contract`), for riverbed's own backends and third-party ones."""

from riverbed.testing.store_contract import CacheStoreContract, StoreContract

__all__ = ["CacheStoreContract", "StoreContract"]
