"""The FastAPI application: routers per resource, error mapping, version prefix, hijack routes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.backends import Backends
from api.hijack import HijackRoutes
from api.metrics import RequestMetrics
from api.replay import ReplayCache
from api.responses import JSONResponse
from api.routers import (
    archive,
    attach,
    build,
    commit,
    containers,
    distribution,
    execs,
    images,
    networks,
    swarm,
    system,
    volumes,
)
from api.routing import RouteIndex
from api.stack import EngineAPI
from api.versioning import VersionPrefixMiddleware
from daemon.errors import DaemonError

log = logging.getLogger("pydockerd.api")


def route_index() -> RouteIndex:
    """Every router's routes, in the order they are tried."""
    return RouteIndex(module.router for module in (system, containers, images, commit, build, execs, attach,
                                                   volumes, archive, networks, swarm, distribution))


def add_error_handlers(app: FastAPI) -> None:
    """DaemonError, validation, HTTP and unexpected errors as dockerd's `{"message": ...}` answers."""

    @app.exception_handler(DaemonError)
    async def _daemon_error(request: Request, exc: DaemonError) -> Response:
        if exc.status == 304:
            return Response(status_code=304)
        if exc.status >= 500:
            # A 500 is a failure of ours or of the host: its cause (the chained exception
            # included) must be in the log, not only in the client's message.
            log.error("%s %s answered %d: %s", request.method, request.url.path, exc.status, exc.message,
                      exc_info=exc)
        return JSONResponse({"message": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"message": f"invalid parameter {where}: {first.get('msg', 'invalid')}"},
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        message = "page not found" if exc.status_code == 404 else str(exc.detail)
        return JSONResponse({"message": message}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed unexpectedly (answered 500)", request.method, request.url.path)
        return JSONResponse({"message": str(exc) or type(exc).__name__}, status_code=500)


def create_app(backends: Backends) -> tuple[Any, HijackRoutes, ReplayCache]:
    # The routers' routes behind one index (api/routing.py) rather than include_router:
    # matching them one by one cost more than the rest of a small request. EngineAPI
    # (api/stack.py): FastAPI with only the middleware that does something here.
    app = EngineAPI(routes=[route_index()])
    app.state.backends = backends

    add_error_handlers(app)

    routes = HijackRoutes()
    attach.register(routes, backends)
    execs.register(routes, backends)
    if backends.metrics is not None:
        # Inside the version prefix: the route matched is the one without /v1.NN.
        app.add_middleware(RequestMetrics, observer=backends.metrics)
    # With metrics, every request goes through the app to be counted: nothing is replayed.
    replay = ReplayCache(backends.revision, enabled=backends.metrics is None)
    app.state.replay = replay
    return VersionPrefixMiddleware(app), routes, replay
