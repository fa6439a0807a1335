"""api/cycle.py: the cycle writes what uvicorn's RequestResponseCycle writes (same bytes, same errors,
same end of response), in one write when the body follows the head at once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from api.cycle import BODY_FOLLOWS, COALESCE_MAX, Cycle, start


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _cycle(cls: type[RequestResponseCycle], method: str = "GET", keep_alive: bool = True
           ) -> tuple[RequestResponseCycle, _Transport, list[int]]:
    transport = _Transport()
    done: list[int] = []
    cycle = cls(scope={"type": "http", "method": method, "http_version": "1.1", "path": "/x",  # type: ignore[arg-type]
                       "query_string": b"", "client": None},
                transport=transport, flow=FlowControl(transport), logger=logging.getLogger("test"),
                access_logger=logging.getLogger("test"),
                access_log=False, default_headers=[(b"date", b"Sat, 05 Dec 2026 13:00:00 GMT")],
                message_event=asyncio.Event(), expect_100_continue=False, keep_alive=keep_alive,
                on_response=lambda: done.append(1))
    return cycle, transport, done


def _start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None, follows: bool = True
           ) -> dict[str, Any]:
    message = {"type": "http.response.start", "status": status, "headers": headers or []}
    if follows:
        message[BODY_FOLLOWS] = True  # uvicorn's cycle ignores it
    return message


def _body(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": more}


JSON = [(b"content-length", b"2"), (b"content-type", b"application/json"), (b"Api-Version", b"1.50")]
CASES: list[tuple[str, str, bool, list[dict[str, Any]]]] = [
    ("json", "GET", True, [_start(200, JSON), _body(b"[]")]),
    ("head", "HEAD", True, [_start(200, JSON), _body(b"[]")]),
    ("closing", "GET", False, [_start(404, JSON), _body(b"{}")]),
    ("in parts", "GET", True, [_start(200, [(b"content-length", b"4")]), _body(b"ab", True), _body(b"cd")]),
    ("chunked", "GET", True, [_start(200, [(b"content-type", b"text/plain")]), _body(b"ab", True), _body(b"")]),
    ("empty 204", "GET", True, [_start(204), _body(b"")]),
    ("zero length", "GET", True, [_start(200, [(b"content-length", b"0")]), _body(b"")]),
    ("connection close", "GET", True, [_start(200, [(b"content-length", b"1"), (b"connection", b"close")]),
                                       _body(b"x")]),
    ("too long", "GET", True, [_start(200, [(b"content-length", b"1")]), _body(b"xy")]),
    ("too short", "GET", True, [_start(200, [(b"content-length", b"3")]), _body(b"xy")]),
    ("bad name", "GET", True, [_start(200, [(b"content-length", b"1"), (b"a b", b"v")]), _body(b"x")]),
    ("bad value", "GET", True, [_start(200, [(b"content-length", b"1"), (b"a", b"v\r\nx: y")]), _body(b"x")]),
    ("body first", "GET", True, [_body(b"x")]),
    ("start twice", "GET", True, [_start(200, [(b"content-length", b"1")]), _start(200)]),
    ("after the end", "GET", True, [_start(200, [(b"content-length", b"1")]), _body(b"x"), _body(b"y")]),
    ("big", "GET", True, [_start(200, [(b"content-length", b"%d" % (COALESCE_MAX + 1))]),
                          _body(b"x" * (COALESCE_MAX + 1))]),
]


async def _play(cls: type[RequestResponseCycle], method: str, keep_alive: bool,
                messages: list[dict[str, Any]]) -> tuple[bytes, str, bool, bool, int, int]:
    cycle, transport, done = _cycle(cls, method, keep_alive)
    error = ""
    for message in messages:
        try:
            await cycle.send(message)
        except RuntimeError as e:
            error = str(e)
            break
    await asyncio.sleep(0)  # a head held back goes out at the loop's next turn
    return (b"".join(transport.writes), error, cycle.response_complete, transport.closed, len(done),
            len(transport.writes))


@pytest.mark.parametrize("name,method,keep_alive,messages", CASES, ids=[c[0] for c in CASES])
def test_same_answer_as_uvicorn(name: str, method: str, keep_alive: bool, messages: list[dict[str, Any]]) -> None:
    ours = asyncio.run(_play(Cycle, method, keep_alive, messages))
    theirs = asyncio.run(_play(RequestResponseCycle, method, keep_alive, messages))
    assert ours[:5] == theirs[:5]


def test_small_answer_is_one_write() -> None:
    written, error, complete, _, _, writes = asyncio.run(_play(Cycle, "GET", True, CASES[0][3]))
    assert not error and complete and writes == 1 and written.endswith(b"\r\n\r\n[]")


def test_head_without_the_promise_is_written_at_once() -> None:
    async def run() -> list[bytes]:
        cycle, transport, _ = _cycle(Cycle)
        await cycle.send(_start(200, JSON, follows=False))
        return list(transport.writes)

    writes = asyncio.run(run())
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_broken_promise_head_goes_out_when_the_app_returns(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> list[bytes]:
        cycle, transport, _ = _cycle(Cycle)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send(_start(200, JSON))

        tasks: set[asyncio.Task[None]] = set()
        start(asyncio.get_running_loop(), cycle, app, tasks)
        await asyncio.gather(*tasks)
        return transport.writes

    writes = asyncio.run(run())
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert "without completing response" in caplog.text


def test_task_leaves_the_set_when_done() -> None:
    async def run() -> tuple[int, int]:
        cycle, _, _ = _cycle(Cycle)
        tasks: set[asyncio.Task[None]] = set()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send(_start(200, JSON))
            await send(_body(b"[]"))

        start(asyncio.get_running_loop(), cycle, app, tasks)
        during = len(tasks)
        task = next(iter(tasks))
        await task
        return during, len(tasks)

    assert asyncio.run(run()) == (1, 0)
