"""/containers/...: each handler translates HTTP into one call on the ContainerBackend (stats: StatsBackend)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from api import replay
from api.backends.containers import ContainerBackend, LoggedContainer
from api.backends.stats import StatsBackend
from api.backends.updates import UpdateBackend
from api.params import json_body, qbool, qint, qint_required, qstr
from api.responses import JSONResponse
from api.streams import STDERR, STDOUT, frame, json_line, json_stream, stream_content_type, until_stopping
from api.versioning import request_version, version_at_least

router = APIRouter(prefix="/containers")


def _svc(request: Request) -> ContainerBackend:
    return request.app.state.backends.containers


@router.get("/json")
async def list_containers(request: Request) -> JSONResponse:
    svc = _svc(request)
    rows, changes_at = svc.list(qbool(request, "all"), qint(request, "limit", 0) or 0,
                                qstr(request, "filters") or None, qstr(request, "before"), qstr(request, "since"))
    if qbool(request, "size"):
        await svc.add_sizes(rows)  # sizes change with what the containers write: not replayed
        return JSONResponse(rows)
    # Replayed until a STATUS text ("Up 3 seconds") would read otherwise.
    return replay.allow(request, JSONResponse(rows), until=changes_at)


@router.post("/create", status_code=201)
async def create(request: Request) -> JSONResponse:
    body = await json_body(request, allow_empty=False)
    health = body.get("Healthcheck") if isinstance(body, dict) else None
    if isinstance(health, dict) and not version_at_least(request_version(request), "1.44"):
        health.pop("StartInterval", None)  # dockerd's router: StartInterval came with API 1.44
    result = await _svc(request).create(body, qstr(request, "name") or None)
    return JSONResponse(result, status_code=201)


@router.post("/prune")
async def prune(request: Request) -> JSONResponse:
    return JSONResponse(await _svc(request).prune(qstr(request, "filters") or None))


@router.get("/{name}/json")
async def inspect(name: str, request: Request) -> JSONResponse:
    doc = _svc(request).inspect(name)
    if qbool(request, "size"):
        await _svc(request).add_sizes([doc])
    return JSONResponse(doc)


@router.post("/{name}/start", status_code=204)
async def start(name: str, request: Request) -> Response:
    await _svc(request).start(name)
    return Response(status_code=204)


@router.post("/{name}/stop", status_code=204)
async def stop(name: str, request: Request) -> Response:
    await _svc(request).stop(name, qint(request, "t"), qstr(request, "signal") or None)
    return Response(status_code=204)


@router.post("/{name}/pause", status_code=204)
async def pause(name: str, request: Request) -> Response:
    await _svc(request).pause(name)
    return Response(status_code=204)


@router.post("/{name}/unpause", status_code=204)
async def unpause(name: str, request: Request) -> Response:
    await _svc(request).unpause(name)
    return Response(status_code=204)


@router.post("/{name}/restart", status_code=204)
async def restart(name: str, request: Request) -> Response:
    await _svc(request).restart(name, qint(request, "t"), qstr(request, "signal") or None)
    return Response(status_code=204)


@router.post("/{name}/kill", status_code=204)
async def kill(name: str, request: Request) -> Response:
    await _svc(request).kill(name, qstr(request, "signal") or None)
    return Response(status_code=204)


@router.delete("/{name:path}", status_code=204)
async def remove(name: str, request: Request) -> Response:
    # :path because a link's name (`docker rm --link /parent/alias`) has slashes.
    if qbool(request, "link"):
        await _svc(request).remove_link(name)
    else:
        await _svc(request).remove(name, force=qbool(request, "force"), volumes=qbool(request, "v"))
    return Response(status_code=204)


@router.post("/{name}/wait")
async def wait(name: str, request: Request) -> StreamingResponse:
    # The waiter is registered before the headers go out: the CLI sends /wait, reads the
    # headers, and only then sends /start.
    fut = await _svc(request).wait_future(name, qstr(request, "condition"))

    async def outcome() -> AsyncIterator[tuple[int, str | None]]:
        yield await fut

    async def body() -> AsyncIterator[bytes]:
        async for code, error in until_stopping(request, outcome()):
            yield json_line({"Error": {"Message": error} if error else None, "StatusCode": code})

    return StreamingResponse(body(), media_type="application/json")


@router.get("/{name}/logs")
async def logs(name: str, request: Request) -> StreamingResponse:
    svc = _svc(request)
    timestamps = qbool(request, "timestamps")
    details = qbool(request, "details")

    def render(container: LoggedContainer, batch: list[dict]) -> bytes:
        # Runs in the daemon's reading thread: a batch of a big log is ~10k records.
        tty = container.tty
        out = []
        for rec in batch:
            data = rec.get("log", "").encode()
            prefix = ""
            if timestamps:
                prefix = rec.get("time", "") + " "
            if details:
                # dockerd prefixes the --log-opt attributes, and a space even when there are none
                attrs = rec.get("attrs") or {}
                prefix += ",".join(f"{k}={v}" for k, v in sorted(attrs.items())) + " "
            if prefix:
                data = prefix.encode() + data
            out.append(data if tty else frame(STDERR if rec.get("stream") == "stderr" else STDOUT, data))
        return b"".join(out)

    container, chunks = svc.logs(
        name, follow=qbool(request, "follow"), tail=qstr(request, "tail", "all"), since=qstr(request, "since"),
        until=qstr(request, "until"), stdout=qbool(request, "stdout"), stderr=qbool(request, "stderr"),
        render=render)
    return StreamingResponse(until_stopping(request, chunks),
                             media_type=stream_content_type(container.tty, request_version(request)))


@router.get("/{name}/stats")
async def stats(name: str, request: Request) -> Response:
    svc: StatsBackend = request.app.state.backends.stats
    samples = svc.stream(name, qbool(request, "stream", True), qbool(request, "one-shot"))
    if qbool(request, "stream", True):
        return json_stream(until_stopping(request, samples))
    # Not streamed: one document with a Content-Length, as dockerd answers `stats --no-stream`.
    async for doc in samples:
        return JSONResponse(doc)
    return JSONResponse({})


@router.get("/{name}/top")
async def top(name: str, request: Request) -> JSONResponse:
    return JSONResponse(await _svc(request).top(name, qstr(request, "ps_args")))


@router.get("/{name}/changes")
async def changes(name: str, request: Request) -> JSONResponse:
    return JSONResponse(await _svc(request).changes(name))


@router.post("/{name}/rename", status_code=204)
async def rename(name: str, request: Request) -> Response:
    await _svc(request).rename(name, qstr(request, "name"))
    return Response(status_code=204)


@router.post("/{name}/update")
async def update(name: str, request: Request) -> JSONResponse:
    body = await json_body(request, allow_empty=False)
    if isinstance(body, dict):
        # dockerd's router: KernelMemory is ignored from API 1.42, PidsLimit before 1.40.
        version = request_version(request)
        if version_at_least(version, "1.42"):
            body.pop("KernelMemory", None)
        if not version_at_least(version, "1.40"):
            body.pop("PidsLimit", None)
    backend: UpdateBackend = request.app.state.backends.updates
    return JSONResponse(await backend.update(name, body))


@router.post("/{name}/resize")
async def resize(name: str, request: Request) -> Response:
    await _svc(request).resize(name, qint_required(request, "h"), qint_required(request, "w"))
    return Response(status_code=200)
