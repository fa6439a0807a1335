"""Drivers for interactive sessions: the docker CLI on a pseudo-terminal, and raw hijacked
API connections (`Upgrade: tcp` -> `101 UPGRADED` -> a byte stream on the same socket)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import time
from typing import Any

from tests.e2e.helpers import wait_for
from tests.helpers import Daemon

TIOCSWINSZ = 0x5414


class PtyCli:
    """The docker CLI with a pty as stdin/stdout/stderr, driven like `expect`."""

    def __init__(self, d: Daemon, *args: str, rows: int = 30, cols: int = 100,
                 env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        self.set_size(rows, cols, fd=slave)
        self.proc = subprocess.Popen(["docker", *args], stdin=slave, stdout=slave, stderr=slave,
                                     env=env or d.env, start_new_session=True, close_fds=True)
        os.close(slave)
        os.set_blocking(self.master, False)
        self.out = b""

    def set_size(self, rows: int, cols: int, fd: int | None = None) -> None:
        fcntl.ioctl(self.master if fd is None else fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def resize(self, rows: int, cols: int) -> None:
        """What a terminal emulator does: new size, then SIGWINCH (the CLI then calls /resize)."""
        self.set_size(rows, cols)
        self.proc.send_signal(signal.SIGWINCH)

    def wait_for_shell_size(self, rows: int, cols: int, what: str) -> None:
        """After resize(): polls `stty size` in the shell at the other end until it reports
        rows x cols. The size travels asynchronously (SIGWINCH, the CLI's /resize call), and
        the CLI reads the window size once before it starts listening for SIGWINCH: a signal
        in between is lost in the CLI, not in the daemon. So each look that still sees the
        old size signals the CLI again, as a terminal does on every change."""
        sizes: list[bytes] = []
        want = f"{rows} {cols}".encode()

        def seen() -> bool:
            self.send("stty size\n")
            sizes.append(self.expect(r"\d+ \d+\r\n", 5).group().strip())
            if sizes[-1] != want:
                self.proc.send_signal(signal.SIGWINCH)
            return sizes[-1] == want

        try:
            wait_for(seen, timeout=10, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; sizes seen: {sizes}") from None

    def send(self, data: str | bytes) -> None:
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except BlockingIOError:
            return True
        except OSError:  # EIO: the CLI closed the terminal (it exited)
            return False
        self.out += chunk
        return bool(chunk)

    def expect(self, pattern: str | bytes, timeout: float = 15) -> re.Match[bytes]:
        """Waits until `pattern` (a regex) appears in the output after the last match."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.out)
            if m:
                self.out = self.out[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.5)) and self.proc.poll() is not None:
                raise AssertionError(f"{pattern!r} not seen within {timeout}s; output: {self.out[-2000:]!r}")

    def wait(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.1)
        try:
            return self.proc.wait(max(0.1, deadline - time.monotonic()))
        finally:
            self._read(0)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self.master)

    def __enter__(self) -> PtyCli:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hijacked:
    """One hijacked request on the daemon's unix socket. upgrade=False sends it without the
    upgrade headers (as dockerode and curl do): dockerd takes the connection over anyway."""

    def __init__(self, d: Daemon, path: str, body: dict[str, Any] | None = None, timeout: float = 20,
                 upgrade: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(d.sock))
        data = json.dumps(body).encode() if body is not None else b""
        upgrade_headers = "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
        head = (f"POST {path} HTTP/1.1\r\nHost: api.moby.localhost\r\n{upgrade_headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        self.sock.sendall(head.encode() + data)
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            raw += chunk
        header, _, self.buf = raw.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines[0] else 0
        self.headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        if self.status != 101 and "content-length" in self.headers:  # else a stream until close
            length = int(self.headers["content-length"])
            while len(self.buf) < length:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                self.buf += chunk

    def json(self) -> Any:
        return json.loads(self.buf)

    def read_all(self) -> bytes:
        """Everything until the daemon ends the stream."""
        data, self.buf = self.buf, b""
        while chunk := self.sock.recv(1 << 16):
            data += chunk
        return data

    def read_until(self, needle: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise AssertionError(f"stream ended before {needle!r}: {self.buf[-500:]!r}")
            self.buf += chunk
        out, _, self.buf = self.buf.partition(needle)
        return out + needle

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Hijacked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def demux(data: bytes) -> list[tuple[int, bytes]]:
    """stdcopy frames -> [(stream, payload)]; fails on anything that is not a whole frame."""
    frames = []
    while data:
        assert len(data) >= 8, f"truncated frame header: {data!r}"
        stream, length = data[0], struct.unpack(">I", data[4:8])[0]
        assert data[1:4] == b"\0\0\0" and stream in (0, 1, 2), f"bad frame header {data[:8]!r}"
        assert len(data) >= 8 + length, "truncated frame"
        frames.append((stream, data[8:8 + length]))
        data = data[8 + length:]
    return frames


def joined(frames: list[tuple[int, bytes]], stream: int) -> bytes:
    return b"".join(p for s, p in frames if s == stream)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
