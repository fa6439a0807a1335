"""Route dispatch by the first path segment.

Starlette (and FastAPI's included routers, which match the chosen router twice) try the
routes one after another: with ~90 routes a request for `/networks/x` or
`/distribution/x/json` spent 100-140 us matching regexes before its handler ran, more than
the rest of the request. Every Engine API path starts with a literal segment (`containers`,
`images`, `_ping`...), so the routes are grouped by it once and a request only tries its
group, in the order the routers declared them. The routes themselves stay FastAPI's
APIRoutes: parameters, validation, exception handlers and the metrics' route template are
unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound, get_route_path
from starlette.types import Receive, Scope, Send


def _first_segment(path: str) -> str | None:
    """`/containers/{name}/json` -> "containers"; None when the segment is a parameter."""
    segment = path.split("/", 2)[1] if path.startswith("/") else path
    return None if "{" in segment else segment


class RouteIndex(BaseRoute):
    """One entry of the app's route list standing for all the routers' routes."""

    def __init__(self, routers: Iterable[APIRouter]) -> None:
        routes = [route for router in routers for route in router.routes]
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
        await scope["route"].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)
