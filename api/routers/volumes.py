"""/volumes/...: each handler translates HTTP to one VolumeService call."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.backends.volumes import VolumeBackend
from api.params import json_body, qbool, qstr
from api.responses import JSONResponse
from api.versioning import request_version

router = APIRouter(prefix="/volumes")


def _svc(request: Request) -> VolumeBackend:
    return request.app.state.backends.volumes


def _older_than(request: Request, version: str) -> bool:
    current = request_version(request)
    if not current:
        return False
    return tuple(int(x) for x in current.split(".")) < tuple(int(x) for x in version.split("."))


@router.get("")
async def list_volumes(request: Request) -> JSONResponse:
    return JSONResponse(_svc(request).list(qstr(request, "filters") or None))


@router.post("/create", status_code=201)
async def create(request: Request) -> JSONResponse:
    return JSONResponse(await _svc(request).create(await json_body(request)), status_code=201)


@router.post("/prune")
async def prune(request: Request) -> JSONResponse:
    # Before API 1.42 prune removed every unused volume; since then only anonymous ones
    # unless the all=true filter is given.
    result = await _svc(request).prune(qstr(request, "filters") or None, all_by_default=_older_than(request, "1.42"))
    return JSONResponse(result)


@router.get("/{name}")
async def inspect(name: str, request: Request) -> JSONResponse:
    return JSONResponse(_svc(request).inspect(name))


@router.delete("/{name}", status_code=204)
async def remove(name: str, request: Request) -> Response:
    await _svc(request).remove(name, force=qbool(request, "force"))
    return Response(status_code=204)
