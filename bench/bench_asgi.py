#!/usr/bin/env python3
"""What each layer of a small JSON request costs, in-process: no socket, no client, no other process.

bench_http.py measures the daemon's CPU per request from outside, where the clients share the
cores and every figure is noisy; this one peels the request apart and times each layer alone
(µs per request, best of `--repeat` runs of `--number` requests), from the outside in:

  protocol   uvicorn's httptools protocol (ours, api/hijack.py) on a fake transport in a running event
             loop: parse, scope, RequestResponseCycle, asyncio Task, the app, the writes
  app        the ASGI app create_app() returns, called with a scope as the protocol builds it
  fastapi    the FastAPI app behind the version middleware
  stack      Starlette's middleware stack (ServerErrorMiddleware, ExceptionMiddleware, router)
  router     the stack's innermost layer: route matching (api/routing.py) and the route
  route      the matched route's handle(): Request, exception wrapper, handler, response
  handler    the endpoint alone, given a Request
  response   JSONResponse(rows) built and sent
  canned     the protocol with an app that sends two prebuilt messages: the protocol's floor

The layers that never await are driven without an event loop (coroutine.send(None)), so what is
timed is their Python alone. The backends are stubs: `list` returns `--rows` empty-ish rows.

    python bench/bench_asgi.py [--path /v1.41/containers/json] [--number 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import os
import sys
import time
from collections.abc import Callable
from typing import Any

# The code measured is the checkout in the current directory (run it from the one to measure:
# `cd /other/checkout && python /this/bench/bench_asgi.py` times the other one's layers).
sys.path.insert(0, os.getcwd())

from api.app import create_app  # noqa: E402
from api.hijack import protocol_class  # noqa: E402
from api.responses import JSONResponse  # noqa: E402


class _Stub:
    """Any backend: every method returns the rows (sync) or None."""

    def __init__(self, rows: list[dict]) -> None:
        self._rows = rows

    def list(self, *args: Any, **kwargs: Any) -> list[dict]:
        return self._rows

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


class _Backends:
    metrics = None

    def __init__(self, rows: list[dict]) -> None:
        self._stub = _Stub(rows)
        self.stopping = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return self._stub


def _drive(coro: Any) -> None:
    """Run a coroutine that must not wait on anything."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("the request awaited something: this layer needs an event loop")


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict) -> None:
    pass


def _scope(path: str) -> dict:
    path, _, query = path.partition("?")
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "server": None, "client": None, "scheme": "http", "root_path": "",
        "headers": [(b"host", b"localhost"), (b"user-agent", b"bench")], "state": {},
        "method": "GET", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
    }


def _time(fn: Callable[[], None], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, time.process_time() - t0)
    return best / number * 1e6


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def writelines(self, data: Any) -> None:
        for d in data:
            self.write(d)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        pass


async def _protocol_cost(app: Any, path: str, number: int, repeat: int) -> float:
    import uvicorn
    from uvicorn.server import ServerState

    config = uvicorn.Config(app, http=protocol_class(_routes), lifespan="off", log_config=None,
                            access_log=False, server_header=False, proxy_headers=False)
    config.load()
    state = ServerState()
    # What uvicorn's server loop keeps there (server_header off): the Date header.
    state.default_headers = [(b"date", b"Sat, 05 Dec 2026 13:00:00 GMT")]
    proto = config.http_protocol_class(config=config, server_state=state, app_state={})
    proto.connection_made(_Transport())
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n\r\n".encode()
    tasks = proto.tasks

    loop = asyncio.get_running_loop()

    async def run(n: int) -> None:
        # Each read is fed from a callback of its own, as the transport does (not from a task).
        left = n
        done = loop.create_future()

        def step() -> None:
            nonlocal left
            if tasks:  # the last request is still running
                loop.call_soon(step)
                return
            if not left:
                done.set_result(None)
                return
            left -= 1
            proto.data_received(request)
            loop.call_soon(step)

        loop.call_soon(step)
        await done

    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.process_time()
        await run(number)
        best = min(best, time.process_time() - t0)
    proto.connection_lost(None)
    return best / number * 1e6


_routes: Any = None


def main(argv: list[str] | None = None) -> int:
    global _routes
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", default="/v1.41/containers/json")
    ap.add_argument("--rows", type=int, default=0, help="rows the stub list returns (default 0)")
    ap.add_argument("--number", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", action="append", help="layers to time (repeatable)")
    args = ap.parse_args(argv)

    rows = [{"Id": f"{i:064x}", "Names": [f"/c{i}"], "State": "running"} for i in range(args.rows)]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app, _routes = create_app(_Backends(rows))  # type: ignore[arg-type]
    fastapi_app = app.app
    stripped = "/" + args.path.split("/", 2)[2] if args.path.startswith("/v1.") else args.path

    def scoped(call: Callable[[dict], Any], path: str) -> Callable[[], None]:
        return lambda: _drive(call(_scope(path)))

    # The scopes inner layers get: what the outer ones put in.
    def inner_scope(path: str) -> dict:
        s = _scope(path)
        s["docker_api_version"] = "1.41"
        s["state"] = {"docker_api_version": "1.41"}
        s["app"] = fastapi_app
        return s

    first = inner_scope(stripped)
    _drive(fastapi_app(first, _receive, _send))  # builds the middleware stack
    stack = fastapi_app.middleware_stack
    # The innermost layer of the stack: the router (or what stands for it).
    router = stack
    while hasattr(router, "app") and not inspect.ismethod(router.app):
        router = router.app
    index = fastapi_app.router.routes[0]
    matched_scope = inner_scope(stripped)
    match, child = index.matches(matched_scope)
    matched_scope.update(child)
    matched_scope["starlette.exception_handlers"] = first["starlette.exception_handlers"]
    route = matched_scope["route"]
    endpoint = matched_scope["endpoint"]
    from starlette.requests import Request

    def with_scope(make: Callable[[], dict], call: Callable[[dict], Any]) -> Callable[[], None]:
        return lambda: _drive(call(make()))

    layers: dict[str, Callable[[], float]] = {
        "canned": lambda: loop.run_until_complete(_protocol_cost(_canned, args.path, args.number, args.repeat)),
        "protocol": lambda: loop.run_until_complete(_protocol_cost(app, args.path, args.number, args.repeat)),
        "app": lambda: _time(scoped(lambda s: app(s, _receive, _send), args.path), args.number, args.repeat),
        "fastapi": lambda: _time(with_scope(lambda: inner_scope(stripped), lambda s: fastapi_app(s, _receive, _send)),
                                 args.number, args.repeat),
        "stack": lambda: _time(with_scope(lambda: inner_scope(stripped), lambda s: stack(s, _receive, _send)),
                               args.number, args.repeat),
        "router": lambda: _time(with_scope(lambda: {**inner_scope(stripped),
                                                    "starlette.exception_handlers": matched_scope[
                                                        "starlette.exception_handlers"]},
                                           lambda s: router(s, _receive, _send)), args.number, args.repeat),
        "route": lambda: _time(with_scope(lambda: dict(matched_scope), lambda s: route.handle(s, _receive, _send)),
                               args.number, args.repeat),
        "handler": lambda: _time(with_scope(lambda: dict(matched_scope),
                                            lambda s: endpoint(Request(s, _receive, _send))), args.number,
                                 args.repeat),
        "response": lambda: _time(lambda: _drive(JSONResponse(rows)(matched_scope, _receive, _send)),
                                  args.number, args.repeat),
    }
    wanted = args.only or list(layers)
    print(f"GET {args.path} ({args.rows} rows), us per request, best of {args.repeat} x {args.number}")
    for name in wanted:
        print(f"  {name:<10}{layers[name]():8.1f}")
    loop.close()
    return 0


_START = {"type": "http.response.start", "status": 200,
          "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]}
_BODY = {"type": "http.response.body", "body": b"[]"}


async def _canned(scope: dict, receive: Any, send: Any) -> None:
    await send(_START)
    await send(_BODY)


if __name__ == "__main__":
    sys.exit(main())
