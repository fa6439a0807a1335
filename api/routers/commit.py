"""Top-level image routes: POST /commit (docker commit) and POST /auth (docker login)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.params import json_body, qbool, qstr
from api.responses import JSONResponse
from daemon.distribution import pull as distribution
from daemon.images.commit import commit as do_commit

router = APIRouter()


@router.post("/commit", status_code=201)
async def commit(request: Request) -> JSONResponse:
    # The CLI and docker-py send an empty body; others send the container config overrides.
    body = await json_body(request)
    image_id = await do_commit(request.app.state.daemon, qstr(request, "container"), qstr(request, "repo"),
                               qstr(request, "tag"), qstr(request, "comment"), qstr(request, "author"),
                               request.query_params.getlist("changes"), body, qbool(request, "pause", True))
    return JSONResponse({"Id": image_id}, status_code=201)


@router.post("/auth")
async def auth(request: Request) -> JSONResponse:
    # Checked against the registry; the CLI stores the credentials itself and sends them per request.
    return JSONResponse(await distribution.login(request.app.state.daemon, await json_body(request)))
