"""RouteIndex: the app's routes grouped by first path segment answer as Starlette's route list did."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import PlainTextResponse

from api.routing import RouteIndex


def _routers() -> list[APIRouter]:
    first = APIRouter(prefix="/things")

    @first.get("/json")
    async def listing() -> PlainTextResponse:
        return PlainTextResponse("list")

    @first.get("/{name}/json")
    async def inspect(name: str, size: int = 0) -> PlainTextResponse:
        return PlainTextResponse(f"inspect {name} {size}")

    @first.delete("/{name}")
    async def remove(name: str) -> PlainTextResponse:
        return PlainTextResponse(f"remove {name}")

    second = APIRouter()

    async def ping(request: Request) -> PlainTextResponse:
        return PlainTextResponse("OK")

    second.add_route("/_ping", ping, methods=["GET", "HEAD"])

    # Declared after /things/{name}/json in another router: the first declared still wins.
    @second.get("/things/{name}/json")
    async def shadowed(name: str) -> PlainTextResponse:
        return PlainTextResponse("shadowed")

    # A first segment that is a parameter can match any path: it is tried in every group, in order.
    @second.get("/{kind}/special")
    async def special(kind: str) -> PlainTextResponse:
        return PlainTextResponse(f"special {kind}")

    return [first, second]


def _call(app: Any, method: str, path: str, query: bytes = b"") -> tuple[int, bytes, Any]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
             "root_path": "", "headers": [], "server": None, "client": None, "state": {}}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), scope.get("route")


def test_route_index_dispatch() -> None:
    app = FastAPI(routes=[RouteIndex(_routers())])
    assert _call(app, "GET", "/things/json")[:2] == (200, b"list")
    status, body, route = _call(app, "GET", "/things/abc/json", b"size=3")
    assert (status, body) == (200, b"inspect abc 3")
    assert route is not None and route.path == "/things/{name}/json"  # the metrics' label
    assert _call(app, "GET", "/things/abc/json", b"size=x")[0] == 422  # FastAPI's validation still runs
    assert _call(app, "DELETE", "/things/abc")[:2] == (200, b"remove abc")
    assert _call(app, "GET", "/_ping")[:2] == (200, b"OK")
    assert _call(app, "HEAD", "/_ping")[0] == 200
    assert _call(app, "GET", "/things/special")[:2] == (200, b"special things")
    assert _call(app, "GET", "/_ping/special")[:2] == (200, b"special _ping")
    assert _call(app, "GET", "/other/special")[:2] == (200, b"special other")


def test_route_index_misses() -> None:
    app = FastAPI(routes=[RouteIndex(_routers())])
    assert _call(app, "POST", "/_ping")[0] == 405  # path known, method not
    assert _call(app, "POST", "/things/abc/json")[0] == 405
    assert _call(app, "GET", "/nothing/here")[0] == 404
    assert _call(app, "GET", "/")[0] == 404
    assert _call(app, "GET", "")[0] == 404


def test_route_index_candidates_are_the_segment_group() -> None:
    index = RouteIndex(_routers())
    paths = [getattr(r, "path", "") for r in index.candidates("/things/abc/json")]
    assert paths == ["/things/json", "/things/{name}/json", "/things/{name}", "/things/{name}/json",
                     "/{kind}/special"]
    assert [getattr(r, "path", "") for r in index.candidates("/_ping")] == ["/_ping", "/{kind}/special"]
    assert [getattr(r, "path", "") for r in index.candidates("/unknown/x")] == ["/{kind}/special"]


PATHS = ["/containers/json", "/containers/abc/json", "/containers/abc", "/containers/abc/start",
         "/containers/a%2Fb/json",
         "/containers/abc/logs", "/containers/create", "/images/json", "/images/busybox:latest/json",
         "/images/library/busybox/json", "/images/reg.io:5000/a/b:c/json", "/images/abc/push", "/networks/none",
         "/networks/abc/connect", "/volumes/v", "/_ping", "/version", "/info", "/nothing", "/", "",
         "/distribution/busybox/json", "/exec/abc/json", "/build", "/things/x/special"]
