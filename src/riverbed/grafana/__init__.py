"""riverbed's Grafana dashboard (``riverbed.json``) and provisioning examples.

``python -m riverbed.grafana`` prints the dashboard's JSON; ``dashboard()`` returns it as a
dict; ``PROVISIONING`` is the folder of provisioning files. docs/prometheus.md explains them.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["DASHBOARD", "PROVISIONING", "dashboard", "queries"]

DASHBOARD = resources.files(__name__) / "riverbed.json"
PROVISIONING = resources.files(__name__) / "provisioning"


def dashboard() -> dict[str, Any]:
    """The dashboard's JSON model."""
    result: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return result


def queries() -> list[str]:
    """Every PromQL expression the dashboard's panels evaluate."""
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", ())]
