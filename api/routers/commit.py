"""Top-level image routes: POST /commit (docker commit) and POST /auth (docker login)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.backends.distribution import DistributionBackend
from api.backends.images import CommitBackend
from api.params import json_body, qbool, qstr
from api.responses import JSONResponse

router = APIRouter()


def _commits(request: Request) -> CommitBackend:
    return request.app.state.backends.commit


def _distribution(request: Request) -> DistributionBackend:
    return request.app.state.backends.distribution


@router.post("/commit", status_code=201)
async def commit(request: Request) -> JSONResponse:
    # The CLI and docker-py send an empty body; others send the container config overrides.
    body = await json_body(request)
    image_id = await _commits(request).commit(qstr(request, "container"), qstr(request, "repo"),
                                              qstr(request, "tag"), qstr(request, "comment"), qstr(request, "author"),
                                              request.query_params.getlist("changes"), body,
                                              qbool(request, "pause", True))
    return JSONResponse({"Id": image_id}, status_code=201)


@router.post("/auth")
async def auth(request: Request) -> JSONResponse:
    # Checked against the registry; the CLI stores the credentials itself and sends them per request.
    return JSONResponse(await _distribution(request).login(await json_body(request)))
