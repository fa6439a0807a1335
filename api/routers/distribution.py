"""GET /distribution/{name}/json: an image's manifest descriptor and platforms, from its registry."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.backends.distribution import DistributionBackend
from api.responses import JSONResponse

router = APIRouter(prefix="/distribution")


@router.get("/{name:path}/json")
async def inspect(name: str, request: Request) -> JSONResponse:
    svc: DistributionBackend = request.app.state.backends.distribution
    return JSONResponse(await svc.inspect(name, request.headers.get("X-Registry-Auth")))
