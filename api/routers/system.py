"""/_ping, /version, /info, /events, /system/df, /debug/vars."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from api.backends.system import SystemBackend
from api.params import qstr
from api.responses import JSONResponse
from api.streams import json_stream, until_stopping
from api.versioning import API_VERSION, MIN_API_VERSION

router = APIRouter()

_PING_HEADERS = {
    "API-Version": API_VERSION,
    "Builder-Version": "1",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Docker-Experimental": "false",
    "OSType": "linux",
    "Swarm": "inactive",
}


# Parameterless and called before almost every CLI command: plain Starlette routes, which
# skip FastAPI's dependency solving (measured: 20 of a /_ping's 36 us in the framework).
# The answers are the same bytes every time, so they are built once.
_PING = PlainTextResponse("OK", headers=_PING_HEADERS)
_PING_HEAD = Response(status_code=200, headers={**_PING_HEADERS, "Content-Type": "text/plain; charset=utf-8",
                                                 "Content-Length": "0"})


async def ping(request: Request) -> Response:
    return _PING_HEAD if request.method == "HEAD" else _PING


router.add_route("/_ping", ping, methods=["GET", "HEAD"])


def _svc(request: Request) -> SystemBackend:
    return request.app.state.backends.system


async def version(request: Request) -> Response:
    return JSONResponse(_svc(request).version(API_VERSION, MIN_API_VERSION))


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
    """As dockerd's expvar page: figures about the daemon itself (memory, event-loop lag)."""
    return JSONResponse(_svc(request).debug_vars())
