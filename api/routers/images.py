"""/images/...: import (create?fromSrc), list, inspect, tag, remove, history, prune."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from api.backends.distribution import DistributionBackend
from api.backends.images import ImageArchiveBackend, ImageBackend
from api.params import qbool, qint, qstr
from api.responses import JSONResponse
from api.streams import json_stream, json_stream_first

router = APIRouter(prefix="/images")


def _svc(request: Request) -> ImageBackend:
    return request.app.state.backends.images


def _archives(request: Request) -> ImageArchiveBackend:
    return request.app.state.backends.image_archives


def _distribution(request: Request) -> DistributionBackend:
    return request.app.state.backends.distribution


@router.post("/create")
async def create(request: Request) -> Response:
    src = qstr(request, "fromSrc")
    if not src:
        # Errors found before the first progress record are plain error responses, as dockerd's.
        return await json_stream_first(_distribution(request).pull(
            qstr(request, "fromImage"), qstr(request, "tag"), qstr(request, "platform"),
            request.headers.get("X-Registry-Auth")))
    img = await _svc(request).import_image(
        request.stream() if src == "-" else None, src, qstr(request, "repo"), qstr(request, "tag"),
        request.query_params.getlist("changes"), qstr(request, "message"), qstr(request, "platform"))

    async def body() -> AsyncIterator[dict]:
        yield {"status": img.id}

    return json_stream(body())


@router.get("/get")
async def save(request: Request) -> Response:
    return _save(request, request.query_params.getlist("names"))


@router.get("/{name:path}/get")
async def save_one(name: str, request: Request) -> Response:
    return _save(request, [name])


def _save(request: Request, names: list[str]) -> Response:
    return StreamingResponse(_archives(request).save(names), media_type="application/x-tar")


@router.post("/load")
async def load(request: Request) -> Response:
    # The upload must be read before the response starts (a streaming response consumes the
    # request's messages). A failure is a 200 with the error as the stream's line, as dockerd
    # writes it (the CLI prints either form; docker-py raises ImageLoadError only for this one).
    return await json_stream_first(_archives(request).load(request.stream()), errors_in_stream=True)


@router.get("/search")
async def search(request: Request) -> JSONResponse:
    return JSONResponse(await _distribution(request).search(
        qstr(request, "term"), qint(request, "limit"), qstr(request, "filters") or None,
        request.headers.get("X-Registry-Auth")))


@router.get("/json")
async def list_images(request: Request) -> JSONResponse:
    return JSONResponse(_svc(request).list(qbool(request, "all"), qstr(request, "filters") or None,
                                           qbool(request, "digests")))


@router.post("/prune")
async def prune(request: Request) -> JSONResponse:
    return JSONResponse(await _svc(request).prune(qstr(request, "filters") or None))


@router.get("/{name:path}/json")
async def inspect(name: str, request: Request) -> JSONResponse:
    return JSONResponse(_svc(request).inspect(name))


@router.get("/{name:path}/history")
async def history(name: str, request: Request) -> JSONResponse:
    return JSONResponse(_svc(request).history(name))


@router.post("/{name:path}/push")
async def push_image(name: str, request: Request) -> Response:
    return await json_stream_first(_distribution(request).push(name, qstr(request, "tag"),
                                                               request.headers.get("X-Registry-Auth")))


@router.post("/{name:path}/tag", status_code=201)
async def tag(name: str, request: Request) -> Response:
    await _svc(request).tag(name, qstr(request, "repo"), qstr(request, "tag") or None)
    return Response(status_code=201)


@router.delete("/{name:path}")
async def remove(name: str, request: Request) -> JSONResponse:
    return JSONResponse(await _svc(request).remove(name, force=qbool(request, "force"),
                                                   prune=not qbool(request, "noprune")))
