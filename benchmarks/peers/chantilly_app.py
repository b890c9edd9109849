"""chantilly 0.3.0 as a WSGI app, with the one shim it needs on Python 3.11 / river 0.2x.

chantilly's ``flavors`` module annotates with ``river.metrics.Metric``, which river moved to
``river.metrics.base.Metric``; the alias below is set before chantilly is imported.
Run with: gunicorn --workers 1 --chdir benchmarks/peers chantilly_app:app
"""

import river.metrics
import river.metrics.base

if not hasattr(river.metrics, "Metric"):
    river.metrics.Metric = river.metrics.base.Metric  # type: ignore[attr-defined]

import chantilly  # noqa: E402

app = chantilly.create_app()
