"""Compatibility layers: the HTTP APIs of the systems riverbed replaces, over the same engine.

Each older system has one thin route module here that translates its requests into engine
calls and the engine's answers into its response shapes, so that its clients and scripts work
against riverbed by changing a URL:

- :mod:`.chantilly` (``/api/...``, chantilly's Flask API);
- :mod:`.django_river_ml` (``/api/.../`` with trailing slashes, what the ``riverapi`` client
  calls);
- :mod:`.lrnstak` (``/models``, ``/predict/model/{name}``, ``/cache/{key}``);
- :mod:`.maisie` (``/api/v1/...``, what the ``maisie`` client calls);
- :mod:`.beaver` (``/models``, ``/predict/{name}``, ``/label/{loop_id}``, ``/train/{name}``,
  what Beaver's ``HTTPClient`` calls).

The ``compat`` setting chooses which layers are served; ``docs/migration/`` says what maps to
what for each system and where riverbed deliberately answers differently. lrnstak and Beaver
both have ``GET /models`` and ``POST /train/{name}``, with different answers: one layer
answers them, the one the ``compat_shared`` setting names (see :func:`enabled`).
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
    "beaver": "beaver",
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
    owner = settings.compat_shared.strip()
    if owner not in ("lrnstak", "beaver"):
        raise ValueError(f"compat_shared is lrnstak or beaver, not {settings.compat_shared!r}")
    off = set(LAYERS) - set(chosen)
    served = [e for e in all_endpoints if e.tag not in off]
    return _one_layer_a_route(served, owner)


def _shape(endpoint: Endpoint) -> tuple[str, str]:
    """A route's method and path with its parameters unnamed (``/train/{}``)."""
    parts = ["{}" if s.startswith("{") else s for s in endpoint.path.split("/")]
    return endpoint.method.upper(), "/".join(parts)


def _one_layer_a_route(served: list[Endpoint], owner: str) -> list[Endpoint]:
    """``served`` less the routes that another compatibility layer also declares and that
    belong to ``owner`` (or, when ``owner`` has none of them, to the layer listed first)."""
    layers = set(LAYERS)
    by_shape: dict[tuple[str, str], set[str]] = {}
    for e in served:
        if e.tag in layers:
            by_shape.setdefault(_shape(e), set()).add(e.tag)
    kept: list[Endpoint] = []
    for e in served:
        tags = by_shape.get(_shape(e), set())
        if len(tags) > 1:
            winner = owner if owner in tags else next(t for t in LAYERS if t in tags)
            if e.tag != winner:
                continue
        kept.append(e)
    return kept
