"""The HTTP face of the engine: an ASGI app (Starlette) that stays thin.

Parse and validate, call the engine, shape the response, map engine errors to statuses.
"""

from riverbed.server.app import create_app

__all__ = ["create_app"]
