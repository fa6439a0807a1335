"""api/stack.py: EngineAPI (its lean middleware, the index's routes as PlainRoutes) answers every
request as FastAPI does with the same routers included its own way: status, headers, body, the
exception that escapes, the metrics' observation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from api.app import add_error_handlers
from api.metrics import RequestMetrics
from api.params import json_body, qbool, qint, qstr
from api.responses import JSONResponse
from api.routing import PlainRoute, RouteIndex
from api.stack import EngineAPI
from daemon.errors import Conflict, DaemonError, NotFound, NotModified


def _routers() -> list[APIRouter]:
    things = APIRouter(prefix="/things")

    @things.get("/json")
    async def listing(request: Request) -> JSONResponse:
        return JSONResponse({"all": qbool(request, "all"), "limit": qint(request, "limit", 0),
                             "filters": qstr(request, "filters"), "q": request.url.query})

    @things.post("/create", status_code=201)
    async def create(request: Request) -> JSONResponse:
        return JSONResponse(await json_body(request, allow_empty=False), status_code=201)

    @things.get("/{name}/json")
    async def inspect(name: str, request: Request) -> JSONResponse:
        if name == "missing":
            raise NotFound(f"No such thing: {name}")
        if name == "busy":
            raise Conflict("busy")
        if name == "same":
            raise NotModified("")
        if name == "broken":
            raise DaemonError("the host failed")
        if name == "bug":
            raise ValueError("a bug")
        if name == "teapot":
            raise HTTPException(418, "short and stout")
        return JSONResponse({"name": name})

    @things.get("/{name}/typed")
    async def typed(name: str, size: int = 0) -> JSONResponse:  # FastAPI solves this one
        return JSONResponse({"name": name, "size": size})

    @things.get("/{name}/logs")
    async def logs(name: str) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            yield b"one\n"
            if name == "midway":  # a handled error after the response started
                raise NotFound("gone")
            if name == "bug":
                raise ValueError("a bug")
            yield b"two\n"

        return StreamingResponse(lines(), media_type="text/plain")

    @things.delete("/{name}", status_code=204)
    async def remove(name: str) -> Response:
        return Response(status_code=204)

    async def counted(request: Request) -> JSONResponse:  # a Starlette route, as /version is
        return JSONResponse({"path": request.url.path})

    things.add_route("/counted", counted, methods=["GET"])
    return [things]


class _Observer:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.seen.append((method, route, status))


def _apps(metrics: bool = True) -> tuple[tuple[Any, _Observer], tuple[Any, _Observer]]:
    """FastAPI's way and ours; with metrics the user middleware sits between the error layers."""
    reference = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    for router in _routers():
        reference.include_router(router)
    ours = EngineAPI(routes=[RouteIndex(_routers())])
    out = []
    for app in (reference, ours):
        add_error_handlers(app)
        observer = _Observer()
        if metrics:
            app.add_middleware(RequestMetrics, observer=observer)
        out.append((app, observer))
    return out[0], out[1]


def _call(app: Any, method: str, path: str, query: bytes = b"", body: bytes = b"") -> tuple[Any, ...]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
             "root_path": "", "headers": [(b"host", b"x"), (b"content-length", str(len(body)).encode())],
             "server": ("x", 80), "client": None, "state": {}}
    sent: list[dict[str, Any]] = []
    bodies = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return bodies.pop() if bodies else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raised = None
    try:
        asyncio.run(app(scope, receive, send))
    except Exception as e:  # noqa: BLE001 - compared between the two apps
        raised = type(e)
    start = sent[0] if sent else {}
    return (start.get("status"), sorted(start.get("headers", [])),
            b"".join(m.get("body", b"") for m in sent[1:]), raised)


REQUESTS = [
    ("GET", "/things/json", b""), ("GET", "/things/json", b"all=1&limit=3&filters=%7B%7D&limit=4"),
    ("GET", "/things/json", b"limit=x"), ("HEAD", "/things/json", b""), ("POST", "/things/json", b""),
    ("GET", "/things/json/", b""), ("GET", "/things/abc/json", b""), ("GET", "/things/missing/json", b""),
    ("GET", "/things/busy/json", b""), ("GET", "/things/same/json", b""), ("GET", "/things/broken/json", b""),
    ("GET", "/things/bug/json", b""), ("GET", "/things/teapot/json", b""), ("GET", "/things/abc/typed", b"size=3"),
    ("GET", "/things/abc/typed", b"size=x"), ("GET", "/things/abc/logs", b""),
    ("GET", "/things/midway/logs", b""), ("GET", "/things/bug/logs", b""), ("DELETE", "/things/abc", b""),
    ("GET", "/nothing", b""), ("GET", "/", b""), ("PUT", "/things/abc", b""), ("GET", "/counted", b""),
    ("HEAD", "/counted", b""), ("POST", "/counted", b""),
]


@pytest.mark.parametrize("metrics", [False, True], ids=["plain", "metrics"])
@pytest.mark.parametrize("method,path,query", REQUESTS)
def test_same_answers_as_fastapi(method: str, path: str, query: bytes, metrics: bool,
                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL)
    (reference, ref_seen), (ours, our_seen) = _apps(metrics)
    assert _call(ours, method, path, query) == _call(reference, method, path, query)
    if path == "/counted":
        # include_router hides a Starlette route's template from the metrics ("unmatched"); the
        # index (as before EngineAPI) shows it.
        assert our_seen.seen == [(m, "/counted", s) for m, _, s in ref_seen.seen]
    else:
        assert our_seen.seen == ref_seen.seen


@pytest.mark.parametrize("metrics", [False, True], ids=["plain", "metrics"])
@pytest.mark.parametrize("body", [b'{"a": 1}', b"", b"{", b"[" * 100 + b"]" * 100])
def test_same_answers_with_a_body(body: bytes, metrics: bool) -> None:
    (reference, _), (ours, _) = _apps(metrics)
    assert _call(ours, "POST", "/things/create", b"", body) == _call(reference, "POST", "/things/create", b"", body)


def test_plain_routes_where_fastapi_has_nothing_to_solve() -> None:
    index = RouteIndex(_routers())
    plain = {r.path for r in index.routes if isinstance(r, PlainRoute)}
    assert "/things/{name}/json" in plain and "/things/json" in plain and "/counted" in plain
    assert "/things/{name}/typed" not in plain
