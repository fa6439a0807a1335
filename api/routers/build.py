"""POST /build (docker build with the classic builder) and POST /build/prune."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.backends.build import BuildBackend
from api.params import qbool, qstr
from api.responses import JSONResponse
from api.streams import json_stream_first

router = APIRouter()


def _svc(request: Request) -> BuildBackend:
    return request.app.state.backends.build


@router.post("/build")
async def build(request: Request) -> Response:
    # The context is read before the response starts: a bad one is an error response. A client
    # that goes away cancels the stream (starlette watches for the disconnect), and so the build.
    q = request.query_params
    # A parameter given twice counts with its first value, as Go's FormValue (docker-py sends
    # `dockerfile` twice for a Dockerfile outside the context).
    first: dict[str, str] = {}
    for k, v in q.multi_items():
        first.setdefault(k, v)
    return await json_stream_first(_svc(request).build(first, q.getlist("t"), q.getlist("extrahosts"),
                                                       request.stream(), request.headers.get("X-Registry-Config")))


@router.post("/build/prune")
async def prune(request: Request) -> JSONResponse:
    return JSONResponse(await _svc(request).prune(qstr(request, "filters") or None, qbool(request, "all")))
