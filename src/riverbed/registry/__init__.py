"""The model registry, as :class:`~riverbed.engine.Engine` methods: numbered immutable
versions, aliases, metadata, search and artifacts.

Addresses: ``name`` is the model (for an online model, its live learning state; for a batch
model, its latest version); ``name@alias`` is the version an alias points to (``latest`` is
implicit); ``name@3`` or ``version=3`` is version 3. Versions never change: learning
addressed to ``name@alias`` updates the model's live state, which a new ``snapshot`` freezes
again as a version.

Every write follows the engine's ``submit_<op>`` / ``<op>`` pattern and is published as an
event once durable: ``version.created``, ``version.updated``, ``version.deleted``,
``alias.moved`` (a removal is a move to None), ``model.updated``.
"""

from __future__ import annotations

from riverbed.registry.base import RESERVED_ALIASES, split_ref
from riverbed.registry.serving import Serving

__all__ = ["RESERVED_ALIASES", "Registry", "split_ref"]


class Registry(Serving):
    """The registry half of the engine (mixed into :class:`~riverbed.engine.Engine`):
    versions and metadata (:mod:`.versions`), aliases and search (:mod:`.catalog`), serving
    versions (:mod:`.serving`), on what :mod:`.base` shares."""
