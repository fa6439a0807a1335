"""The FastAPI app with its per-request layers cut to what the engine's routes use.

FastAPI's middleware stack is ServerErrorMiddleware, ExceptionTelemetryMiddleware,
AppBodyLimitMiddleware, the user middleware, ExceptionMiddleware, AsyncExitStackMiddleware and
the router, and FastAPI.__call__ asks its telemetry whether anyone listens first: each layer is a
coroutine call per request and most wrap `send` in one more closure. Measured in-process
(bench/bench_asgi.py) for GET /containers/json: ~10 us of the request went to layers that do
nothing here. EngineAPI keeps the ones that do something, unchanged:

- ServerErrorMiddleware: the Exception handler (500 with a JSON message, logged);
- the user middleware (RequestMetrics with --metrics-addr), where it was;
- ExceptionMiddleware: the handlers of DaemonError, HTTPException and validation errors;

and drops the rest: telemetry (off by construction: create_app never turns it on), the body limit
(no max_body_size is set; api/params.py bounds bodies itself) and the AsyncExitStack, which only
FastAPI's own routes use (to close uploaded files) and which api/routing.py now opens for them.
The router's index (api/routing.py) is called directly; a path it does not know goes through the
router as before (404, and Starlette's trailing-slash redirect). Starlette's two error layers are
kept as they are: merging them into one (measured: ~2 us less per request) meant copying their code
and reading their private handler tables.
tests/unit/test_api_stack.py checks the answers against FastAPI's own stack, request by request.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from api.routing import RouteIndex

_NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False}


class _Routed:
    """The router with a shortcut: a path the index matches goes straight to its route."""

    def __init__(self, router: Router) -> None:
        self.router = router
        routes = router.routes
        self.index = routes[0] if len(routes) == 1 and isinstance(routes[0], RouteIndex) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        index = self.index
        if index is not None and scope["type"] == "http":
            match, child = index.matches(scope)
            if match is not Match.NONE:
                if "router" not in scope:
                    scope["router"] = self.router
                scope.update(child)
                await index.handle(scope, receive, send)
                return
        await self.router(scope, receive, send)


class EngineAPI(FastAPI):
    """FastAPI without OpenAPI, docs or telemetry, and with the lean middleware stack above."""

    def __init__(self, **kwargs: Any) -> None:
        # No OpenTelemetry: with it on, FastAPI asks the global providers (and os.environ)
        # whether anyone listens, on every request: 5% of the event loop's time on /_ping.
        super().__init__(openapi_url=None, docs_url=None, redoc_url=None, telemetry=dict(_NO_TELEMETRY),
                         **kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        error_handler = None
        handlers: dict[Any, Any] = {}
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value
        routed = _Routed(self.router)
        app: ASGIApp = ExceptionMiddleware(routed, handlers=handlers, debug=self.debug)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return ServerErrorMiddleware(app, handler=error_handler, debug=self.debug)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette.__call__ for HTTP (FastAPI's own asks the telemetry first, which is off here).
        if scope["type"] != "http" or self.root_path:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        stack = self.middleware_stack
        if stack is None:
            stack = self.middleware_stack = self.build_middleware_stack()
        await stack(scope, receive, send)
