"""/_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from api.params import qstr
from api.responses import JSONResponse
from api.streams import json_stream, until_stopping
from api.versioning import API_VERSION, MIN_API_VERSION
from daemon.util.filters import Filters
from daemon.util.timeutil import parse_time_filter

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


@router.api_route("/_ping", methods=["GET", "HEAD"])
async def ping(request: Request) -> Response:
    if request.method == "HEAD":
        return Response(status_code=200, headers={**_PING_HEADERS, "Content-Type": "text/plain; charset=utf-8",
                                                  "Content-Length": "0"})
    return PlainTextResponse("OK", headers=_PING_HEADERS)


@router.get("/version")
async def version(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.daemon.version(API_VERSION, MIN_API_VERSION))


@router.get("/info")
async def info(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.daemon.info())


EVENT_FILTERS = {"container", "event", "image", "label", "type", "volume", "network", "daemon", "plugin",
                 "node", "service", "secret", "config", "scope"}


@router.get("/events")
async def events(request: Request) -> Response:
    daemon = request.app.state.daemon
    f = Filters.parse(qstr(request, "filters") or None, EVENT_FILTERS)
    since_raw, until_raw = qstr(request, "since"), qstr(request, "until")
    since = parse_time_filter(since_raw) if since_raw else None
    until = parse_time_filter(until_raw) if until_raw else None

    def match(ev: dict) -> bool:
        actor = ev["Actor"]
        attrs = actor.get("Attributes", {})
        if not f.match_any("type", ev["Type"]) or not f.match_any("event", ev["Action"]):
            return False
        for key in ("container", "image", "volume", "network"):
            vals = f.get(key)
            if vals and (ev["Type"] != key or not (actor["ID"] in vals or attrs.get("name") in vals
                                                   or any(actor["ID"].startswith(v) for v in vals))):
                if not (key == "image" and attrs.get("image") in vals):
                    return False
        return f.match_labels(attrs)

    async def stream() -> AsyncIterator[dict]:
        async for ev in daemon.events.subscribe(since, until):
            if match(ev):
                yield ev

    return json_stream(until_stopping(request, stream()))


@router.get("/system/df")
async def system_df(request: Request) -> JSONResponse:
    daemon = request.app.state.daemon
    imgs = daemon.images.list(False, None)
    ctrs = daemon.containers.list(True, 0, None)
    await daemon.containers.add_sizes(ctrs)
    counts: dict[str, int] = {}
    for c in ctrs:
        counts[c["ImageID"]] = counts.get(c["ImageID"], 0) + 1
    for img in imgs:
        img["Containers"] = counts.get(img["Id"], 0)
        img["SharedSize"] = 0
    return JSONResponse({"LayersSize": daemon.images.total_size(), "Images": imgs, "Containers": ctrs,
                         "Volumes": await asyncio.to_thread(daemon.volumes.usage), "BuildCache": []})
