"""A stand-in Engine API server for `docker run --rm IMAGE CMD` and `docker exec CTR CMD`: it answers
the exact request sequence the stock CLI sends (bench/../reference cli-traffic 06 and 15), with
canned answers at once and no work behind them. What the CLI takes against it is the floor of
those commands: the part of every engine's figure that no engine can take away.

The sequence of `docker run --rm` (no tty): HEAD /_ping; POST /containers/create; on a second
connection POST /containers/ID/attach (hijacked: 101, then the raw stream); POST
/containers/ID/wait?condition=removed (headers at once, the status when "removed"); on a third
connection POST /containers/ID/start. Here the start ends the "container" at once: the attach
stream is half-closed and the wait answered, as an engine does when the command exits
immediately. `docker exec`: HEAD /_ping; GET /containers/CTR/json; POST /containers/CTR/exec;
POST /exec/ID/start (hijacked, ended at once); GET /exec/ID/json.

Run by itself it serves until interrupted and logs every request line, so that the sequence a
CLI version sends can be checked: `python bench/standin.py /tmp/s.sock` then
`DOCKER_HOST=unix:///tmp/s.sock docker run --rm busybox true`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable

_PING = (b"HTTP/1.1 200 OK\r\nApi-Version: 1.50\r\nOstype: linux\r\nDocker-Experimental: false\r\n"
         b"Cache-Control: no-cache, no-store, must-revalidate\r\nPragma: no-cache\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\n")
_UPGRADED = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
             b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")


def ping(method: str) -> bytes:
    return _PING + (b"" if method == "HEAD" else b"OK")


def json_answer(status: str, doc: object) -> bytes:
    body = json.dumps(doc).encode()
    return (f"HTTP/1.1 {status}\r\nApi-Version: 1.50\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _container(cid: str) -> dict:
    # What the CLI reads of an inspect before an exec: running, not paused, no tty.
    return {"Id": cid, "Name": "/standin", "State": {"Status": "running", "Running": True, "Paused": False,
                                                     "Restarting": False, "Pid": 1, "ExitCode": 0},
            "Config": {"Tty": False, "OpenStdin": False}, "HostConfig": {"AutoRemove": False}}


class Server:
    """Serves on the unix socket `sock_path` from daemon threads, one per connection, until close();
    a subclass answers each request (`_answer`)."""

    def __init__(self, sock_path: str, log: Callable[[str], None] | None = None) -> None:
        self.sock_path = sock_path
        self.log = log
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(sock_path)
        self.srv.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.srv.close()
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split()[:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
                length = int(headers.get("content-length") or 0)
                while len(buf) < length:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                if self.log is not None:
                    self.log(f"{method} {target}")
                parts = target.split("?", 1)[0].split("/")
                if parts[1].startswith("v1."):
                    parts = parts[:1] + parts[2:]
                if self._answer(conn, method, parts[1:]):
                    return  # hijacked: the stream is over

    def _answer(self, conn: socket.socket, method: str, route: list[str]) -> bool:
        """Answer one request (`route`: the path's segments without the version); True when
        the connection was hijacked (and is finished)."""
        raise NotImplementedError


class StandIn(Server):
    """`docker run --rm` and `docker exec`."""

    def __init__(self, sock_path: str, log: Callable[[str], None] | None = None) -> None:
        self._ended: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        super().__init__(sock_path, log)

    def _ended_event(self, cid: str) -> threading.Event:
        with self._lock:
            return self._ended.setdefault(cid, threading.Event())

    def _end(self, cid: str) -> None:
        self._ended_event(cid).set()

    def _answer(self, conn: socket.socket, method: str, route: list[str]) -> bool:
        if route == ["_ping"]:
            conn.sendall(ping(method))
        elif route == ["containers", "create"]:
            conn.sendall(json_answer("201 Created", {"Id": uuid.uuid4().hex * 2, "Warnings": []}))
        elif len(route) == 3 and route[0] == "containers" and route[2] in ("attach", "start", "wait"):
            cid = route[1]
            if route[2] == "attach":
                # The events are never dropped (one per run): the attach and the wait may each
                # look theirs up after the start has set it.
                ended = self._ended_event(cid)
                conn.sendall(_UPGRADED)
                ended.wait(60)
                conn.shutdown(socket.SHUT_WR)
                return True
            if route[2] == "start":
                conn.sendall(b"HTTP/1.1 204 No Content\r\nApi-Version: 1.50\r\n\r\n")
                self._end(cid)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nApi-Version: 1.50\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                self._ended_event(cid).wait(60)
                body = b'{"Error":null,"StatusCode":0}\n'
                conn.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        elif len(route) == 3 and route[0] == "containers" and route[2] == "json":
            conn.sendall(json_answer("200 OK", _container(route[1])))
        elif len(route) == 3 and route[0] == "containers" and route[2] == "exec":
            conn.sendall(json_answer("201 Created", {"Id": uuid.uuid4().hex * 2}))
        elif len(route) == 3 and route[0] == "exec" and route[2] == "start":
            conn.sendall(_UPGRADED)
            conn.shutdown(socket.SHUT_WR)
            return True
        elif len(route) == 3 and route[0] == "exec" and route[2] == "json":
            conn.sendall(json_answer("200 OK", {"ID": route[1], "Running": False, "ExitCode": 0, "Pid": 0}))
        else:
            conn.sendall(json_answer("404 Not Found", {"message": "the stand-in server does not serve this"}))
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: standin.py SOCKET_PATH", file=sys.stderr)
        return 2
    server = StandIn(argv[0], log=lambda line: print(line, flush=True))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
