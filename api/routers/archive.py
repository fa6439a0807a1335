"""/containers/{id}/archive (docker cp) and /containers/{id}/export: thin handlers over the ArchiveBackend."""

from __future__ import annotations

import base64
import json

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from api.backends.archive import ArchiveBackend
from api.params import qbool, qstr

router = APIRouter(prefix="/containers")

STAT_HEADER = "X-Docker-Container-Path-Stat"


def stat_header(st: dict) -> str:
    """The stat as dockerd sends it: base64 of compact JSON."""
    return base64.b64encode(json.dumps(st, separators=(",", ":")).encode()).decode()


def _svc(request: Request) -> ArchiveBackend:
    return request.app.state.backends.archive


@router.head("/{name}/archive")
async def stat(name: str, request: Request) -> Response:
    info = await _svc(request).stat(name, qstr(request, "path"))
    return Response(status_code=200, headers={STAT_HEADER: stat_header(info)})


@router.get("/{name}/archive")
async def get_archive(name: str, request: Request) -> StreamingResponse:
    info, body = await _svc(request).get(name, qstr(request, "path"))
    return StreamingResponse(body, media_type="application/x-tar", headers={STAT_HEADER: stat_header(info)})


@router.put("/{name}/archive")
async def put_archive(name: str, request: Request) -> Response:
    await _svc(request).put(name, qstr(request, "path"), request.stream(),
                            no_overwrite_dir_nondir=qbool(request, "noOverwriteDirNonDir"),
                            copy_uid_gid=qbool(request, "copyUIDGID"))
    return Response(status_code=200)


@router.get("/{name}/export")
async def export(name: str, request: Request) -> StreamingResponse:
    return StreamingResponse(await _svc(request).export(name), media_type="application/x-tar")
