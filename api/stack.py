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
router as before (404, and Starlette's trailing-slash redirect). Without user middleware the two
error layers are one for HTTP (_Errors: their code, one `send` wrapper, a Request only on failure).
tests/unit/test_api_stack.py checks the answers against FastAPI's own stack, request by request.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette._exception_handler import _lookup_exception_handler
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class _Errors:
    """ServerErrorMiddleware around ExceptionMiddleware, for HTTP, as one layer with one wrapper of
    `send` instead of two and no Request unless something fails. Only when nothing stands between
    the two (no user middleware) and not in debug mode; `stack` (the two as Starlette builds them)
    serves every other kind of scope, and lends its handler tables and default 500 answer."""

    def __init__(self, app: ASGIApp, stack: ServerErrorMiddleware) -> None:
        self.app = app
        self.stack = stack
        exceptions = stack.app
        assert isinstance(exceptions, ExceptionMiddleware)
        self.handlers = (exceptions._exception_handlers, exceptions._status_handlers)
        self.error_handler = stack.handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.stack(scope, receive, send)
            return
        exception_handlers, status_handlers = handlers = self.handlers
        scope["starlette.exception_handlers"] = handlers
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            try:
                await self.app(scope, receive, sender)
            except Exception as exc:
                # ExceptionMiddleware (starlette/_exception_handler.py: wrap_app_handling_exceptions)
                handler = None
                if isinstance(exc, HTTPException):
                    handler = status_handlers.get(exc.status_code)
                if handler is None:
                    handler = _lookup_exception_handler(exception_handlers, exc)
                if handler is None:
                    raise
                if started:
                    raise RuntimeError("Caught handled exception, but response already started.") from exc
                request = Request(scope, receive, send)
                if is_async_callable(handler):
                    response = await handler(request, exc)
                else:
                    response = await run_in_threadpool(handler, request, exc)
                if response is not None:
                    await response(scope, receive, sender)
                # Reused exception instances accumulate tracebacks across requests.
                exc.__traceback__ = None
        except Exception as exc:
            # ServerErrorMiddleware (debug mode never comes here)
            request = Request(scope)
            if self.error_handler is None:
                response = self.stack.error_response(request, exc)
            elif is_async_callable(self.error_handler):
                response = await self.error_handler(request, exc)
            else:
                response = await run_in_threadpool(self.error_handler, request, exc)
            if not started:
                await response(scope, receive, send)
            # We always continue to raise the exception (as ServerErrorMiddleware: the server logs it).
            raise exc


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
        stack = ServerErrorMiddleware(app, handler=error_handler, debug=self.debug)
        if self.user_middleware or self.debug:
            return stack
        return _Errors(routed, stack)

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
