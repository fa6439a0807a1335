"""Docker's json-file log format, written by the monitor.

One record per line of output: ``{"log":"hi\\n","stream":"stdout","time":"<RFC3339Nano>"}``.
As dockerd's copier does, output is split at newlines; a line longer than 16 KiB is written
in 16 KiB pieces without a trailing newline, and whatever is left when the stream ends is
written as it is.
"""

from __future__ import annotations

import os
import sys
import time

from .lean import encode_string

MAX_LINE = 16 * 1024


def rfc3339nano(ns: int | None = None) -> str:
    """UTC time as Go's time.RFC3339Nano prints it (trailing zeros of the fraction dropped)."""
    if ns is None:
        ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


class JsonLog:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640) if path else -1
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._failed = False

    def _record(self, stream: str, line: bytes, stamp: str) -> bytes:
        text = encode_string(line.decode("utf-8", "replace"))
        return f'{{"log":{text},"stream":"{stream}","time":"{stamp}"}}\n'.encode()

    def _emit(self, records: list[bytes]) -> None:
        if not records or self._fd < 0:
            return
        data = memoryview(b"".join(records))
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as e:
            # A full disk must not take the container down: report once, keep running.
            if not self._failed:
                print(f"monitor: cannot write log: {e}", file=sys.stderr, flush=True)
                self._failed = True

    def write(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream]
        buf += data
        stamp = rfc3339nano()
        records = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            while end + 1 - start > MAX_LINE:
                records.append(self._record(stream, bytes(buf[start:start + MAX_LINE]), stamp))
                start += MAX_LINE
            records.append(self._record(stream, bytes(buf[start:end + 1]), stamp))
            start = end + 1
        while len(buf) - start >= MAX_LINE:
            records.append(self._record(stream, bytes(buf[start:start + MAX_LINE]), stamp))
            start += MAX_LINE
        del buf[:start]
        self._emit(records)

    def flush(self, stream: str | None = None) -> None:
        """Write what is left of an unterminated line: its stream (or every stream) has ended."""
        stamp = rfc3339nano()
        records = []
        for name, buf in self._partial.items():
            if buf and stream in (None, name):
                records.append(self._record(name, bytes(buf), stamp))
                buf.clear()
        self._emit(records)

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
