"""/version, /info, /events, /system/df, /debug/vars (/_ping: api/ping.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api import replay
from api.backends.system import SystemBackend
from api.params import qstr
from api.responses import JSONResponse
from api.streams import json_stream, until_stopping
from api.versioning import API_VERSION, MIN_API_VERSION

router = APIRouter()

# /_ping is not here: the HTTP protocol answers it (api/ping.py).


# /version takes no parameters and is called by every `docker version`: a plain Starlette
# route, which skips FastAPI's dependency solving (measured: 20 of a small request's 36 us
# in the framework).


def _svc(request: Request) -> SystemBackend:
    return request.app.state.backends.system


async def version(request: Request) -> Response:
    return replay.allow(request, JSONResponse(_svc(request).version(API_VERSION, MIN_API_VERSION)))


router.add_route("/version", version, methods=["GET"])


@router.get("/info")
async def info(request: Request) -> JSONResponse:
    return JSONResponse(_svc(request).info())


@router.get("/events")
async def events(request: Request) -> Response:
    stream = _svc(request).events_stream(qstr(request, "filters") or None, qstr(request, "since"),
                                         qstr(request, "until"))
    return json_stream(until_stopping(request, stream))


@router.get("/system/df")
async def system_df(request: Request) -> JSONResponse:
    return JSONResponse(await _svc(request).disk_usage())


@router.get("/debug/vars")
async def debug_vars(request: Request) -> JSONResponse:
    """As dockerd's expvar page: figures about the daemon itself (memory, event-loop lag, answers
    replayed)."""
    doc = _svc(request).debug_vars()
    doc["replay"] = request.app.state.replay.figures()
    return JSONResponse(doc)
