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
from _json import encode_basestring

from .lean import encode_string

MAX_LINE = 16 * 1024
# Bytes that stand for themselves inside a JSON string: printable ASCII but '"' and '\\'.
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\')
_NEWLINE = "\ud800"


def rfc3339nano(ns: int | None = None) -> str:
    """UTC time as Go's time.RFC3339Nano prints it (trailing zeros of the fraction dropped)."""
    if ns is None:
        ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def open_file(path: str) -> int:
    return os.open(path, _FLAGS, 0o640)


class JsonLog:
    """``max_size`` > 0 rotates as dockerd's json-file driver does (max-size / max-file): once
    the file has reached it, the next write first renames ``<log>.N-2`` .. ``<log>`` to
    ``<log>.N-1`` .. ``<log>.1`` and starts an empty ``<log>`` (with one file: truncates)."""

    def __init__(self, path: str, max_size: int = 0, max_file: int = 1, fd: int | None = None) -> None:
        """`fd`: `path` already opened (as open_file() does), e.g. by another process."""
        self._path = path
        self._max_size = max_size
        self._max_file = max(1, max_file)
        self._fd = fd if fd is not None else open_file(path) if path else -1
        # Only rotation needs the size: no stat (and its result object) otherwise.
        self._size = os.fstat(self._fd).st_size if self._fd >= 0 and max_size else 0
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._failed = False

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        for i in range(self._max_file - 1, 1, -1):
            try:
                os.rename(f"{self._path}.{i - 1}", f"{self._path}.{i}")
            except FileNotFoundError:
                pass
        if self._max_file > 1:
            os.rename(self._path, f"{self._path}.1")
        self._fd = os.open(self._path, _FLAGS | os.O_TRUNC, 0o640)
        self._size = 0

    def _record(self, stream: str, line: bytes, stamp: str) -> bytes:
        text = encode_string(line.decode("utf-8", "replace"))
        return f'{{"log":{text},"stream":"{stream}","time":"{stamp}"}}\n'.encode()

    def _emit(self, records: list[bytes]) -> None:
        if not records or self._fd < 0:
            return
        data = b"".join(records)
        try:
            if not self._max_size:
                self._write_all(data)
                return
            # Records are checked one by one, as dockerd does: a file ends up at most one
            # record over max-size, however large the chunk of output was.
            start = 0
            while start < len(data):
                if self._size >= self._max_size:
                    self._rotate()
                end = data.find(b"\n", start + max(0, self._max_size - self._size - 1)) + 1 or len(data)
                self._write_all(memoryview(data)[start:end])
                self._size += end - start
                start = end
        except OSError as e:
            # A full disk must not take the container down: report once, keep running.
            if not self._failed:
                print(f"monitor: cannot write log: {e}", file=sys.stderr, flush=True)
                self._failed = True

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def write(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream]
        stamp = rfc3339nano()
        if buf:
            buf += data
            del buf[:self._write_fast(stream, buf, stamp)]
        else:
            # The usual case (no partial line pending): no copy of the whole chunk.
            buf += memoryview(data)[self._write_fast(stream, data, stamp):]
        start = 0
        records = []
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

    def _write_fast(self, stream: str, buf: bytes | bytearray, stamp: str) -> int:
        """Writes the complete lines at the start of ``buf`` with a few C calls for the whole
        chunk (the per-line loop in write() ran at ~35 MB/s, which capped `docker run -i
        cat`). Returns how many bytes it consumed: 0 when a line may need splitting at
        MAX_LINE, which it leaves to that loop."""
        end = buf.rfind(b"\n") + 1
        if end == 0:
            return 0
        # A line longer than MAX_LINE covers a whole aligned window of MAX_LINE/2 bytes
        # without a newline; finding none such proves that no line needs splitting.
        half = MAX_LINE // 2
        for k in range(0, end, half):
            if buf.find(b"\n", k, min(k + half, end)) < 0:
                return 0
        head = '{"log":"'
        tail = f'\\n","stream":"{stream}","time":"{stamp}"}}\n'
        rest = buf[:end].translate(None, _PLAIN) if buf.isascii() else b"-"
        if rest.count(b"\n") == len(rest):  # nothing but newlines left: plain text
            # Plain ASCII lines (the usual output): the records are the bytes themselves.
            head_b, tail_b = head.encode(), tail.encode()
            self._emit([head_b + buf[:end - 1].replace(b"\n", tail_b + head_b) + tail_b])
            return end
        with memoryview(buf) as view:
            text = str(view[:end], "utf-8", "replace")
        # Newlines become lone surrogates (which text decoded from UTF-8 never contains, and
        # encode_basestring copies through unescaped), so that after encoding the whole
        # chunk at once each one marks a record boundary: no per-line work even for binary
        # output.
        encoded = encode_basestring(text.replace("\n", _NEWLINE))[1:-2]
        if "\u2028" in encoded or "\u2029" in encoded:
            # Escaped as Go does, so line-oriented readers of the file never split there.
            encoded = encoded.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        self._emit([(head + encoded.replace(_NEWLINE, tail + head) + tail).encode()])
        return end

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
