"""/_ping, answered by the HTTP protocol itself (api/ping.py, api/hijack.py): the same bytes on every
path through the protocol (the quick one for a whole plain ping in one read, the parser's for the
rest), and the connection handled as for any other request (pipelining, bodies, close, idle timeout).

The server is test_api_hijack's toy engine served by api.server.serve(); its app has no /_ping.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from api import ping
from api.server import open_listeners
from tests.unit.test_api_hijack import Engine, ServerThread, make_app, raw_exchange, split_response

# The header names dockerd 20.10 answers GET /_ping with (shared/reference/cli-traffic), plus ours.
DOCKERD_PING_HEADERS = {"api-version", "cache-control", "docker-experimental", "ostype", "pragma", "server",
                        "date", "content-length", "content-type"}
OURS = {"builder-version", "swarm"}


@pytest.fixture(scope="module")
def sock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("ping") / "d.sock")
    app, routes = make_app(Engine())
    server = ServerThread(app, routes, open_listeners([f"unix://{path}"], None, socket_group="")).start()
    try:
        yield path
    finally:
        server.stop()


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    return s


def _responses(raw: bytes, heads: list[bool]) -> list[tuple[int, dict[str, str], bytes]]:
    """Split consecutive responses (Content-Length bodies; no body for a HEAD)."""
    out = []
    for head in heads:
        end = raw.index(b"\r\n\r\n") + 4
        status, headers, _ = split_response(raw[:end])
        length = 0 if head else int(headers.get("content-length", "0"))
        out.append((status, headers, raw[end:end + length]))
        raw = raw[end + length:]
    assert raw == b""
    return out


def _read_until_closed(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


# --------------------------------------------------------------------------- the answers


def test_is_ping() -> None:
    assert ping.is_ping(b"GET", b"/_ping") is False
    assert ping.is_ping(b"HEAD", b"/_ping") is True
    assert ping.is_ping(b"GET", b"/_ping?x=1") is False
    assert ping.is_ping(b"GET", b"/v1.41/_ping") is False
    assert ping.is_ping(b"HEAD", b"/v1.24/_ping?a") is True
    for method, url in ((b"POST", b"/_ping"), (b"GET", b"/_ping/"), (b"GET", b"/v1.99/_ping"),
                        (b"GET", b"/v1.12/_ping"), (b"GET", b"/v1.41x/_ping"), (b"GET", b"/v/_ping"),
                        (b"GET", b"/v.1/_ping"), (b"GET", b"/x/_ping"), (b"GET", b"/_pingx")):
        assert ping.is_ping(method, url) is None, (method, url)


def test_is_plain_ping() -> None:
    assert ping.is_plain_ping(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n") is False
    assert ping.is_plain_ping(b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nUser-Agent: Docker-Client\r\n\r\n") is True
    for data in (
        b"GET /_ping HTTP/1.1\r\nHost: x\r\n",  # not complete
        b"GET /_ping HTTP/1.1\r\n\r\nGET /_ping HTTP/1.1\r\n\r\n",  # two requests
        b"GET /_ping HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nCONNECTION: close\r\n\r\n",
        b"GET /_ping HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        b"GET /_ping HTTP/1.0\r\n\r\n",
        b"GET /_ping?x HTTP/1.1\r\n\r\n",
        b"POST /_ping HTTP/1.1\r\n\r\n",
    ):
        assert ping.is_plain_ping(data) is None, data
    # Known reads are remembered, within a bound.
    for n in range(3 * ping._KNOWN_MAX):
        assert ping.is_plain_ping(f"GET /_ping HTTP/1.1\r\nUser-Agent: c{n}\r\n\r\n".encode()) is False
        assert len(ping._KNOWN) <= ping._KNOWN_MAX
    assert ping.is_plain_ping(b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nUser-Agent: Docker-Client/28.2.2 (linux)\r\n\r\n")


def test_answers_follow_the_date() -> None:
    answers = ping.PingAnswers()
    first = answers.answer(False, b"Sat, 05 Dec 2026 13:00:00 GMT")
    assert answers.answer(False, b"Sat, 05 Dec 2026 13:00:00 GMT") is first  # built once per date
    status, headers, body = split_response(first)
    assert (status, body, headers["date"], headers["content-length"]) == (
        200, b"OK", "Sat, 05 Dec 2026 13:00:00 GMT", "2")
    later = answers.answer(True, b"Sat, 05 Dec 2026 13:00:01 GMT")
    assert later.endswith(b"\r\n\r\n") and b"Date: Sat, 05 Dec 2026 13:00:01 GMT\r\n" in later
    assert split_response(later)[1]["content-length"] == "0"


# --------------------------------------------------------------------------- through the protocol


def _check_ping(status: int, headers: dict[str, str], body: bytes, head: bool) -> None:
    assert status == 200
    assert set(headers) == DOCKERD_PING_HEADERS | OURS
    assert body == (b"" if head else b"OK")
    assert headers["content-length"] == ("0" if head else "2")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["api-version"] == "1.50" and headers["ostype"] == "linux"
    assert headers["cache-control"] == "no-cache, no-store, must-revalidate" and headers["pragma"] == "no-cache"
    assert headers["server"].startswith("pydockerd/")


def test_ping_quick_and_parser_paths_answer_alike(sock: str) -> None:
    # One request per read (the quick path), then the same requests with what sends them to the
    # parser (a query string, a version prefix, a Connection header): same answers.
    with _connect(sock) as s:
        answers = []
        for req in (b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /_ping?a=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"HEAD /v1.41/_ping HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"):
            s.sendall(req)
            head = req.startswith(b"HEAD")
            data = b""
            while b"\r\n\r\n" not in data or (not head and not data.endswith(b"OK")):
                data += s.recv(4096)
            answers.append(_responses(data, [head])[0])
    for (status, headers, body), head in zip(answers, (False, True, False, True), strict=True):
        _check_ping(status, headers, body, head)


def _exchange(path: str, data: bytes) -> bytes:
    """Send, then read until the server closes (no half-close from this side: uvicorn stops serving
    pipelined requests once it has seen the client's EOF)."""
    with _connect(path) as s:
        s.sendall(data)
        return _read_until_closed(s)


def test_pipelined_pings_and_requests_answer_in_order(sock: str) -> None:
    # The pings behind /version wait for it (uvicorn's cycle carries them), the last one closes.
    raw = _exchange(sock, b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, version, head, last = _responses(raw, [False, False, True, False])
    _check_ping(*first, head=False)
    assert version[0] == 200 and b'"ApiVersion"' in version[2]
    _check_ping(*head, head=True)
    assert last[0] == 200 and last[2] == b"OK" and last[1]["connection"] == "close"


def test_ping_split_across_reads(sock: str) -> None:
    with _connect(sock) as s:
        for byte in b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n":
            s.sendall(bytes([byte]))
        data = b""
        while not data.endswith(b"OK"):
            data += s.recv(4096)
    _check_ping(*_responses(data, [False])[0], head=False)


def test_ping_body_is_not_taken_for_a_request(sock: str) -> None:
    raw = _exchange(sock, b"GET /_ping HTTP/1.1\r\nHost: x\r\nContent-Length: 25\r\n\r\n"
                          b"GET /version HTTP/1.1\r\n\r\n"
                          b"HEAD /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, second = _responses(raw, [False, True])
    assert (first[0], first[2], second[0]) == (200, b"OK", 200)


@pytest.mark.parametrize("req", [b"GET /_ping HTTP/1.0\r\n\r\n",
                                 b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
def test_ping_that_closes_the_connection(sock: str, req: bytes) -> None:
    with _connect(sock) as s:
        s.sendall(req)
        raw = _read_until_closed(s)  # the server closes: no shutdown from this side
    status, headers, body = split_response(raw)
    assert (status, body) == (200, b"OK")


def test_not_a_ping_goes_to_the_app(sock: str) -> None:
    for method, path, status in (("POST", "/_ping", 404), ("GET", "/_ping/", 404), ("GET", "/v1.99/_ping", 400),
                                 ("PUT", "/v1.41/_ping", 404)):
        raw = raw_exchange(sock, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        got, headers, _ = split_response(raw)
        assert got == status, (method, path, raw[:200])
        assert headers["api-version"] == "1.50"


def test_idle_connection_after_pings_is_closed(sock: str) -> None:
    # uvicorn's keep-alive timeout (5 s) still ends a connection that pinged and went quiet.
    with _connect(sock) as s:
        for _ in range(3):
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"OK"):
                data += s.recv(4096)
        assert _read_until_closed(s) == b""
