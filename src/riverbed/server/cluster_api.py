"""A scale-out cluster's status and its leases under ``/v1/cluster`` (docs/scale-out.md);
a server that is not a replica (no ``--broker``) answers 404 ``not_found``."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from riverbed.exceptions import NotFound
from riverbed.server.http import JSONResponse, field, read_json, reject_unknown
from riverbed.server.routing import Endpoint

__all__ = ["ENDPOINTS"]


def _replica(request: Request) -> Any:
    engine = request.app.state.engine
    replica = None
    if engine.scaleout is not None:  # psycopg and redis are imported by replicas only
        from riverbed.scaleout.replica import replica_of

        replica = replica_of(engine)
    if replica is None:
        raise NotFound(
            "this server is not a scale-out replica (it was started without --broker)",
            detail={"setting": "broker"},
        )
    return replica


async def cluster_status(request: Request) -> Response:
    replica = _replica(request)
    return JSONResponse(await run_in_threadpool(replica.status))


async def move_lease(request: Request) -> Response:
    replica = _replica(request)
    body = await read_json(request)
    reject_unknown(body, {"learner"})
    learner = field(
        body, "learner", lambda v: isinstance(v, str) and bool(v), "a learner's id", required=True
    )
    moved = await run_in_threadpool(replica.move, request.path_params["model"], learner)
    return JSONResponse(moved)


_MEMBERS: dict[str, Any] = {"type": "array", "items": {"type": "object"}}

ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/cluster",
        cluster_status,
        "A scale-out cluster: replicas, learners, leases, per model the learns not applied "
        "yet and each replica's staleness",
        "cluster",
        errors=(404,),
        response={
            "type": "object",
            "properties": {
                "replica": {"type": "string"},
                "broker": {"type": "string"},
                "replicas": _MEMBERS,
                "learners": _MEMBERS,
                "leases": _MEMBERS,
                "models": _MEMBERS,
            },
        },
    ),
    Endpoint(
        "POST",
        "/v1/cluster/leases/{model}",
        move_lease,
        "Hand a model's lease to a running learner now",
        "cluster",
        scope="admin",
        errors=(404,),
        body={
            "type": "object",
            "required": ["learner"],
            "properties": {"learner": {"type": "string"}},
            "additionalProperties": False,
        },
    ),
]
