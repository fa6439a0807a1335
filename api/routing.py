"""Route dispatch by the first path segment.

Starlette (and FastAPI's included routers, which match the chosen router twice) try the
routes one after another: with ~90 routes a request for `/networks/x` or
`/distribution/x/json` spent 100-140 us matching regexes before its handler ran, more than
the rest of the request. Every Engine API path starts with a literal segment (`containers`,
`images`, `_ping`...), so the routes are grouped by it once and a request only tries its
group, in the order the routers declared them.

FastAPI's per-request dependency solving cost about 20 us of a small request (in-process: a
`request: Request` handler 65 us through the app as an APIRoute, 45 us as a Starlette Route), and
nearly every handler here needs none of it: it takes the Request (reading the query itself, see
api/params.py) and string path parameters, and returns a Response. Such routes are served as plain
Starlette Routes (same path, methods, name and endpoint; the app's exception handlers and the
metrics' route template are unchanged); any route with more (typed or query parameters, a body,
dependencies, a non-Response return) stays FastAPI's.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route, get_route_path
from starlette.types import Receive, Scope, Send

# What FastAPI's AsyncExitStackMiddleware puts in the scope for its routes.
_ASTACK = "fastapi_middleware_astack"


def _first_segment(path: str) -> str | None:
    """`/containers/{name}/json` -> "containers"; None when the segment is a parameter."""
    segment = path.split("/", 2)[1] if path.startswith("/") else path
    return None if "{" in segment else segment


def _path_param_names(route: APIRoute) -> list[str] | None:
    """The endpoint's path parameters when it takes nothing FastAPI must solve, else None."""
    d = route.dependant
    if (d.query_params or d.header_params or d.cookie_params or d.body_params or d.dependencies
            or d.websocket_param_name or d.http_connection_param_name or d.response_param_name
            or d.background_tasks_param_name or d.security_scopes_param_name or route.dependencies
            or route.response_model is not None):
        return None
    try:
        hints = typing.get_type_hints(route.endpoint)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: leave the route to FastAPI
        return None
    returns = hints.get("return")
    if not (isinstance(returns, type) and issubclass(returns, Response)):
        return None
    names = []
    for name in inspect.signature(route.endpoint).parameters:
        if name == d.request_param_name and hints.get(name) is Request:
            continue
        if hints.get(name) is not str or name not in route.param_convertors:
            return None
        names.append(name)
    return names


class PlainRoute(Route):
    """A Starlette Route whose handle() calls the endpoint and sends its response, and nothing else.

    Starlette's request_response wraps every call in its own exception-handling layer (two
    closures and a wrapper around every message sent) although the app's ExceptionMiddleware, one
    layer out, runs the same handlers on the same scope: an exception here is answered there.
    """

    def __init__(self, path: str, call: Callable[[Request], Awaitable[Response]], *, methods: set[str] | None,
                 name: str | None) -> None:
        super().__init__(path, call, methods=list(methods or ()), name=name, include_in_schema=False)
        # Starlette adds HEAD to every GET route; FastAPI does not, and a HEAD stays a 405 as before.
        self.methods = set(methods) if methods else None
        self._call = call

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            await super().handle(scope, receive, send)  # the 405
            return
        response = await self._call(Request(scope, receive, send))
        await response(scope, receive, send)


def _plain(route: BaseRoute) -> BaseRoute:
    """The route as a PlainRoute when FastAPI has nothing to do for it (see the module doc)."""
    if type(route) is Route and inspect.isfunction(route.endpoint) and inspect.iscoroutinefunction(route.endpoint):
        # A Starlette route (router.add_route) of `async def f(request)`: the same call, minus the
        # per-route exception wrapper. Its methods as Starlette made them (GET with HEAD).
        return PlainRoute(route.path, route.endpoint, methods=route.methods, name=route.name)
    if not isinstance(route, APIRoute) or not inspect.iscoroutinefunction(route.endpoint):
        return route
    names = _path_param_names(route)
    if names is None:
        return route
    endpoint: Callable[..., Awaitable[Response]] = route.endpoint
    call: Callable[[Request], Awaitable[Response]]
    if not names and route.dependant.request_param_name:
        call = endpoint
    else:
        request_name = route.dependant.request_param_name

        async def call(request: Request) -> Response:
            kwargs = {name: request.path_params[name] for name in names}
            if request_name:
                kwargs[request_name] = request
            return await endpoint(**kwargs)

    return PlainRoute(route.path, call, methods=route.methods, name=route.name)


class RouteIndex(BaseRoute):
    """One entry of the app's route list standing for all the routers' routes."""

    def __init__(self, routers: Iterable[APIRouter]) -> None:
        routes = [_plain(route) for router in routers for route in router.routes]
        # A route whose first segment is a parameter could match any path: it goes into
        # every group, at its place in the declared order.
        segments = {s for r in routes if (s := _first_segment(getattr(r, "path", "/"))) is not None}
        self._groups: dict[str, list[BaseRoute]] = {}
        self._anywhere: list[BaseRoute] = []
        for route in routes:
            segment = _first_segment(getattr(route, "path", "/"))
            if segment is None:
                self._anywhere.append(route)
                for group in segments:
                    self._groups.setdefault(group, []).append(route)
            else:
                self._groups.setdefault(segment, []).append(route)
        self.routes = routes

    def candidates(self, path: str) -> list[BaseRoute]:
        return self._groups.get(_first_segment(path) or "", self._anywhere)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: Scope | None = None
        for route in self.candidates(get_route_path(scope)):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, {**child_scope, "route": route}
            if match is Match.PARTIAL and partial is None:
                # Path matched, method did not: the route answers 405, as without the index.
                partial = {**child_scope, "route": route}
        if partial is not None:
            return Match.PARTIAL, partial
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope["route"]
        if isinstance(route, APIRoute) and _ASTACK not in scope:
            # FastAPI's own routes close uploaded files through this stack; the app's lean
            # middleware (api/stack.py) leaves it to the few routes that need one.
            async with AsyncExitStack() as stack:
                scope[_ASTACK] = stack
                await route.handle(scope, receive, send)
            return
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)
