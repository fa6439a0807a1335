"""Kept GET answers (api/replay.py): what is kept, when it is replayed and when not, and the same
through the real server and protocol (api/hijack.py)."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from fastapi import APIRouter, Request

from api import replay
from api.app import add_error_handlers
from api.hijack import HijackRoutes
from api.replay import MAX_ANSWER, MAX_BYTES, MAX_ENTRIES, MAX_SEEN, ReplayCache
from api.responses import JSONResponse
from api.routing import RouteIndex
from api.server import open_listeners
from api.stack import EngineAPI
from api.versioning import VersionPrefixMiddleware
from tests.unit.test_api_hijack import ServerThread


class Revision:
    def __init__(self) -> None:
        self.value = 0


DATE = b"Sun, 06 Dec 2026 00:00:00 GMT"
LATER = b"Sun, 06 Dec 2026 00:00:01 GMT"
HEAD = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n"


def _written(body: bytes = b'{"a":1}', date: bytes = DATE, extra: bytes = b"", status: bytes = b"200 OK",
             length: bool = True) -> list[bytes]:
    head = b"HTTP/1.1 " + status + b"\r\ndate: " + date + b"\r\n"
    if length:
        head += b"content-length: %d\r\n" % len(body)
    return [head + b"content-type: application/json\r\n" + extra + b"\r\n", body]


def _keep(cache: ReplayCache, head: bytes = HEAD, written: list[bytes] | None = None,
          until: float | None = None, allowed: bool = True) -> None:
    """The request twice: seen, then a slot whose route allows keeping its answer."""
    cache.slot(head)
    slot = cache.slot(head)
    assert slot is not None
    slot.allowed, slot.until = allowed, until
    cache.keep(slot, written if written is not None else _written())


def test_an_answer_is_kept_from_the_second_time_and_replayed_with_the_current_date() -> None:
    cache = ReplayCache(Revision())
    assert cache.slot(HEAD) is None  # first time: nothing is recorded for it
    slot = cache.slot(HEAD)
    assert slot is not None
    slot.allowed = True
    cache.keep(slot, _written())
    assert cache.answer(HEAD, DATE) == b"".join(_written())
    assert cache.answer(HEAD, LATER) == b"".join(_written(date=LATER))
    assert cache.answer(HEAD.replace(b"t\r\n", b"u\r\n"), DATE) is None  # other bytes, other request


def test_a_change_of_state_or_a_request_that_may_change_it_ends_the_replay() -> None:
    rev = Revision()
    cache = ReplayCache(rev)
    _keep(cache)
    rev.value += 1
    assert cache.answer(HEAD, DATE) is None
    assert len(cache) == 0
    _keep(cache)
    cache.invalidate()
    assert cache.answer(HEAD, DATE) is None
    # A slot taken before a change keeps nothing: its answer may show the state before it.
    for change in (lambda: setattr(rev, "value", rev.value + 1), cache.invalidate):
        cache.slot(HEAD)
        slot = cache.slot(HEAD)
        assert slot is not None
        slot.allowed = True
        change()
        cache.keep(slot, _written())
        assert cache.answer(HEAD, DATE) is None


def test_an_answer_that_shows_time_is_replayed_until_it_would_read_otherwise() -> None:
    cache = ReplayCache(Revision())
    _keep(cache, until=time.time() + 60)
    assert cache.answer(HEAD, DATE) is not None
    _keep(cache, until=time.time() - 0.001)
    assert cache.answer(HEAD, DATE) is None


@pytest.mark.parametrize("written, allowed", [
    (_written(), False),  # the route did not allow it
    (_written(status=b"404 Not Found"), True),
    (_written(length=False, extra=b"transfer-encoding: chunked\r\n"), True),
    (_written(extra=b"connection: close\r\n"), True),
    (_written(body=b"x" * (MAX_ANSWER + 1)), True),
    ([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: " + DATE + b"\r\n\r\n", b"{}"], True),  # Date not first
    ([], True),
])
def test_answers_not_kept(written: list[bytes], allowed: bool) -> None:
    cache = ReplayCache(Revision())
    _keep(cache, written=written, allowed=allowed)
    assert cache.answer(HEAD, DATE) is None


@pytest.mark.parametrize("head", [
    b"POST /containers/json HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /containers/json HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /containers/json HTTP/1.0\r\nHost: x\r\n\r\n",
    b"GET /containers/json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    b"GET /containers/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /containers/json HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n",
    b"GET /containers/json HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
    b"GET /containers/json HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    b"GET /containers/json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /containers/json HTTP/1.1\r\nHost: x\r\nUpgrade: tcp\r\n\r\n",
    b"GET /containers/json HTTP/1.1\r\nHost: x\r\n\r\nGET /containers/json HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /containers/json HTTP/1.1\r\nHost: x\r\n",
    b"GET /containers/json HTTP/1.1\r\nX: " + b"y" * 3000 + b"\r\n\r\n",
])
def test_requests_whose_answer_is_never_kept(head: bytes) -> None:
    cache = ReplayCache(Revision())
    cache.slot(head)
    assert cache.slot(head) is None


def test_a_keep_alive_connection_header_is_a_plain_request() -> None:
    # What docker-py and the other requests-based clients send with every request.
    head = (b"GET /v1.41/containers/json HTTP/1.1\r\nHost: localhost\r\nUser-Agent: docker-sdk-python/7.1.0\r\n"
            b"Accept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n")
    cache = ReplayCache(Revision())
    _keep(cache, head)
    assert cache.answer(head, DATE) == b"".join(_written())


def test_kept_answers_are_bounded_in_number_and_bytes() -> None:
    cache = ReplayCache(Revision())
    heads = [HEAD.replace(b"json", b"json?n=%d" % i) for i in range(MAX_ENTRIES + 5)]
    for head in heads:
        _keep(cache, head)
    assert len(cache) == MAX_ENTRIES
    assert cache.answer(heads[0], DATE) is None and cache.answer(heads[-1], DATE) is not None  # oldest went first
    big = _written(body=b"x" * (MAX_ANSWER - 200))
    for head in heads[:10]:
        _keep(cache, head, big)
    kept = [h for h in heads[:10] if cache.answer(h, DATE) is not None]
    assert len(kept) == MAX_BYTES // MAX_ANSWER and kept == heads[10 - len(kept):10]
    # Heads seen once are remembered up to a bound, then forgotten.
    for i in range(MAX_SEEN + 1):
        cache.slot(HEAD.replace(b"json", b"json?s=%d" % i))
    assert cache.slot(HEAD.replace(b"json", b"json?s=0")) is None


def test_a_request_is_kept_from_its_second_time_with_nothing_changed_in_between() -> None:
    rev = Revision()
    cache = ReplayCache(rev)
    for i, change in enumerate((lambda: setattr(rev, "value", rev.value + 1), cache.invalidate)):
        head = HEAD.replace(b"json", b"json?i=%d" % i)
        assert cache.slot(head) is None
        change()
        assert cache.slot(head) is None  # seen before the change only
        assert cache.slot(head) is not None


def test_nothing_is_kept_when_disabled() -> None:
    cache = ReplayCache(Revision(), enabled=False)
    cache.slot(HEAD)
    assert cache.slot(HEAD) is None


class _Req:
    def __init__(self, slot: Any) -> None:
        self.scope = {replay.SCOPE_KEY: slot} if slot is not None else {}


def test_allow_marks_only_a_200_of_a_request_with_a_slot() -> None:
    cache = ReplayCache(Revision())
    cache.slot(HEAD)
    slot = cache.slot(HEAD)
    assert slot is not None
    resp = JSONResponse({"x": 1}, status_code=404)
    assert replay.allow(_Req(slot), resp) is resp and not slot.allowed  # type: ignore[arg-type]
    replay.allow(_Req(slot), JSONResponse({}), until=5.0)  # type: ignore[arg-type]
    assert slot.allowed and slot.until == 5.0
    replay.allow(_Req(None), JSONResponse({}))  # type: ignore[arg-type] - no slot: nothing to mark


# --------------------------------------------------------------------------- through the server


def _app(calls: dict[str, int]) -> Any:
    router = APIRouter()

    @router.get("/count")
    async def count(request: Request) -> JSONResponse:
        calls["count"] += 1
        return replay.allow(request, JSONResponse({"n": calls["count"]}))

    @router.get("/plain")
    async def plain(request: Request) -> JSONResponse:
        calls["plain"] += 1
        return JSONResponse({"n": calls["plain"]})

    @router.post("/touch")
    async def touch(request: Request) -> JSONResponse:
        return JSONResponse({})

    app = EngineAPI(routes=[RouteIndex([router])])
    add_error_handlers(app)
    return VersionPrefixMiddleware(app)


def _exchange(s: socket.socket, request: bytes, answers: int = 1) -> list[tuple[bytes, bytes]]:
    """(head, body) of each answer to `request` (Content-Length bodies)."""
    s.sendall(request)
    out, buf = [], b""
    while len(out) < answers:
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(buf) < length:
            buf += s.recv(65536)
        out.append((head, buf[:length]))
        buf = buf[length:]
    return out


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n".encode()


def test_replayed_through_the_server_until_something_may_have_changed(tmp_path: Any) -> None:
    sock = str(tmp_path / "d.sock")
    rev = Revision()
    calls = {"count": 0, "plain": 0}
    server = ServerThread(_app(calls), HijackRoutes(), open_listeners([f"unix://{sock}"], None, socket_group=""),
                          ReplayCache(rev)).start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
            s.settimeout(5)
            other.settimeout(5)
            s.connect(sock)
            other.connect(sock)
            first = _exchange(s, _get("/v1.41/count"))[0]
            second = _exchange(s, _get("/v1.41/count"))[0]
            third = _exchange(s, _get("/v1.41/count"))[0]
            assert (first[1], second[1], third[1]) == (b'{"n":1}', b'{"n":2}', b'{"n":2}')
            assert calls["count"] == 2
            # The same bytes as the app wrote, the Date line aside.
            assert [x for x in third[0].split(b"\r\n") if not x.startswith(b"date: ")] == \
                [x for x in second[0].split(b"\r\n") if not x.startswith(b"date: ")]
            assert b"\r\napi-version: 1.50" in third[0] and b"\r\ndate: " in third[0]
            assert _exchange(other, _get("/v1.41/count"))[0][1] == b'{"n":2}'  # any connection
            # A request that may change state (any method but GET and HEAD) ends it.
            # Then the answer is kept again from the second time the request comes.
            _exchange(s, b"POST /touch HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            assert [_exchange(s, _get("/v1.41/count"))[0][1] for _ in range(3)] == [b'{"n":3}', b'{"n":4}', b'{"n":4}']
            rev.value += 1  # the engine's state moved
            assert _exchange(s, _get("/v1.41/count"))[0][1] == b'{"n":5}'
            # Routes that do not allow it, HEAD, and requests not alone in their read: the app.
            assert [_exchange(s, _get("/plain"))[0][1] for _ in range(3)] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
            before = calls["count"]
            _exchange(s, _get("/v1.41/count") * 2, answers=2)
            assert calls["count"] == before + 2
            # A HEAD of the same path is the app's (a GET-only route: 405), not the GET's kept answer.
            s.sendall(b"HEAD /v1.41/count HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 405 ")
    finally:
        server.stop()
