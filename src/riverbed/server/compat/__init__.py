"""Compatibility layers: the HTTP APIs of the systems riverbed replaces, over the same engine.

Each older system has one thin route module here that translates its requests into engine
calls and the engine's answers into its response shapes, so that its clients and scripts work
against riverbed by changing a URL:

- :mod:`.chantilly` (``/api/...``, chantilly's Flask API);
- :mod:`.django_river_ml` (``/api/.../`` with trailing slashes, what the ``riverapi`` client
  calls);
- :mod:`.lrnstak` (``/models``, ``/predict/model/{name}``, ``/cache/{key}``);
- :mod:`.maisie` (``/api/v1/...``, what the ``maisie`` client calls).

Beaver's call shapes live in the Python client (:mod:`riverbed.beaver`), not here.
The ``compat`` setting chooses which layers are served; ``docs/migration/`` says what maps to
what for each system and where riverbed deliberately answers differently.
"""

from __future__ import annotations

import importlib

from riverbed.config import Settings
from riverbed.server.routing import Endpoint

__all__ = ["LAYERS", "enabled", "endpoints"]

# layer name -> its module under riverbed.server.compat
MODULES = {
    "chantilly": "chantilly",
    "django-river-ml": "django_river_ml",
    "lrnstak": "lrnstak",
    "maisie": "maisie",
}
LAYERS = tuple(MODULES)


def _layer(name: str) -> list[Endpoint]:
    module = importlib.import_module(f"riverbed.server.compat.{MODULES[name]}")
    endpoints: list[Endpoint] = module.ENDPOINTS
    return endpoints


def endpoints() -> list[Endpoint]:
    """The endpoints of every layer. chantilly and django-river-ml share the ``/api``
    prefix without clashing: django-river-ml's routes end with a slash, chantilly's do not."""
    return [e for name in LAYERS for e in _layer(name)]


def enabled(all_endpoints: list[Endpoint], settings: Settings) -> list[Endpoint]:
    """``all_endpoints`` without the layers that ``settings.compat`` leaves out (a layer's
    endpoints carry its name as their tag)."""
    chosen = settings.compat_layers
    unknown = sorted(set(chosen) - set(LAYERS))
    if unknown:
        raise ValueError(
            f"unknown compatibility layer(s) {', '.join(unknown)} in the compat setting; "
            f"known: {', '.join(LAYERS)}"
        )
    off = set(LAYERS) - set(chosen)
    return [e for e in all_endpoints if e.tag not in off]
