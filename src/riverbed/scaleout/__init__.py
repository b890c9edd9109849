"""Scale-out: many replicas, one ordered learner per model, nothing lost (docs/scale-out.md).

Two process kinds share a PostgreSQL database and a Redis broker:

- a *replica* (``riverbed serve --database postgresql://... --broker redis://...``,
  :mod:`riverbed.scaleout.replica`) serves every route and predicts from its local copy of
  each model; its learns are handed to the model's stream on the broker (acknowledged once
  the broker has them), never applied locally, and a follower thread applies the learner's
  log from the database to the local copies;
- a *learner* (``riverbed learner``, :mod:`riverbed.scaleout.learner`) holds a lease per
  model (:mod:`riverbed.scaleout.cluster`), applies the model's stream in order and commits
  the learns, metric points, checkpoint and stream position in one transaction fenced by
  the lease's epoch.

The package sits with the interfaces (it drives an :class:`~riverbed.engine.Engine` through
its ``scaleout`` hook); the engine knows nothing of it.
"""

from __future__ import annotations

__all__: list[str] = []
