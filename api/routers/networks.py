"""/networks/...: each handler translates HTTP to one call on the networks backend (connect
and disconnect: on the container side of networking)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api import replay
from api.backends.networks import NetworkBackend, NetworkConnectBackend
from api.params import json_body, qstr
from api.responses import JSONResponse

router = APIRouter(prefix="/networks")


def _svc(request: Request) -> NetworkBackend:
    return request.app.state.backends.networks


def _connect(request: Request) -> NetworkConnectBackend:
    return request.app.state.backends.network_connect


@router.get("")
@router.get("/")
async def list_networks(request: Request) -> JSONResponse:
    return replay.allow(request, JSONResponse(_svc(request).list(qstr(request, "filters") or None)))


@router.post("/create", status_code=201)
async def create(request: Request) -> JSONResponse:
    body = await json_body(request, allow_empty=False)
    return JSONResponse(await _svc(request).create(body), status_code=201)


@router.post("/prune")
async def prune(request: Request) -> JSONResponse:
    return JSONResponse(await _svc(request).prune(qstr(request, "filters") or None))


@router.get("/{ref:path}")
async def inspect(ref: str, request: Request) -> JSONResponse:
    return replay.allow(request, JSONResponse(_svc(request).inspect(ref)))


@router.delete("/{ref:path}")
async def remove(ref: str, request: Request) -> Response:
    await _svc(request).remove(ref)
    return Response(status_code=204)


@router.post("/{ref:path}/connect")
async def connect(ref: str, request: Request) -> Response:
    await _connect(request).connect(ref, await json_body(request) or {})
    return Response(status_code=200)


@router.post("/{ref:path}/disconnect")
async def disconnect(ref: str, request: Request) -> Response:
    await _connect(request).disconnect(ref, await json_body(request) or {})
    return Response(status_code=200)
