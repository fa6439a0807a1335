"""Swarm endpoints (/swarm, /nodes, /services, /tasks, /secrets, /configs) and PUT /volumes/{name}:
each asks the cluster backend, which answers as a node outside a swarm."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.backends.swarm import SwarmBackend

router = APIRouter()

_MANAGER_PATHS = [
    ("/swarm", ["GET"]),
    ("/swarm/update", ["POST"]),
    ("/swarm/unlockkey", ["GET"]),
    ("/swarm/unlock", ["POST"]),
    *[(f"/{kind}", ["GET"]) for kind in ("nodes", "services", "tasks", "secrets", "configs")],
    *[(f"/{kind}/create", ["POST"]) for kind in ("services", "secrets", "configs")],
    *[(f"/{kind}/{{ref}}", ["GET", "DELETE"]) for kind in ("nodes", "services", "tasks", "secrets", "configs")],
    *[(f"/{kind}/{{ref}}/update", ["POST"]) for kind in ("nodes", "services", "secrets", "configs")],
    ("/services/{ref}/logs", ["GET"]),
    ("/tasks/{ref}/logs", ["GET"]),
]


def _svc(request: Request) -> SwarmBackend:
    return request.app.state.backends.swarm


async def _manager_action(request: Request) -> Response:
    _svc(request).manager_action()
    return Response(status_code=200)  # not reached: this node is never a manager


for _path, _methods in _MANAGER_PATHS:
    router.add_api_route(_path, _manager_action, methods=_methods)


@router.post("/swarm/leave")
async def leave(request: Request) -> Response:
    _svc(request).leave()
    return Response(status_code=200)


@router.post("/swarm/init")
@router.post("/swarm/join")
async def join(request: Request) -> Response:
    _svc(request).join()
    return Response(status_code=200)


@router.put("/volumes/{name}")
async def update_volume(name: str, request: Request) -> Response:
    _svc(request).update_volume()
    return Response(status_code=200)
