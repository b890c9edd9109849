"""``python -m riverbed.grafana``: print riverbed's Grafana dashboard JSON."""

import sys

from riverbed.grafana import DASHBOARD

sys.stdout.write(DASHBOARD.read_text(encoding="utf-8"))
