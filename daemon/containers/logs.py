"""Reading a container's json-file log for `docker logs` and attach's replay (the monitor writes it)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from daemon.containers import runtime_options
from daemon.containers.container import Container
from daemon.errors import InvalidParameter
from daemon.util.timeutil import parse_time_filter, parse_timestamp

_POLL = 0.05


def _tail_offset(path: Path, n: int) -> int:
    """Byte offset where the last n lines of the file start (reads backwards in blocks)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        end = pos = f.tell()
        count = 0
        block = 65536
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step)
            if pos + step == end and data.endswith(b"\n"):
                data = data[:-1]
            idx = len(data)
            while True:
                idx = data.rfind(b"\n", 0, idx)
                if idx < 0:
                    break
                count += 1
                if count >= n:
                    return pos + idx + 1
        return 0


def _rotated(path: Path) -> list[Path]:
    """The json-file driver's rotated files (``<log>.1`` is the newest), oldest first."""
    files = []
    i = 1
    while (older := path.with_name(f"{path.name}.{i}")).exists():
        files.append(older)
        i += 1
    return files[::-1]


def _tail_start(chain: list[Path], n: int) -> tuple[int, int]:
    """(index in chain, byte offset) where the last n lines of the files in chain start."""
    for idx in range(len(chain) - 1, -1, -1):
        try:
            with open(chain[idx], "rb") as f:
                lines = f.read().count(b"\n")
        except FileNotFoundError:
            continue
        if lines >= n:
            return idx, _tail_offset(chain[idx], n)
        n -= lines
    return 0, 0


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


class _Filter:
    def __init__(self, since: float, until: float | None, stdout: bool, stderr: bool) -> None:
        self.since, self.until, self.stdout, self.stderr = since, until, stdout, stderr
        self.done = False  # a record after `until` was seen

    def records(self, lines: list[bytes]) -> list[dict]:
        out = []
        for line in lines:
            rec = _decode(line)
            if rec is None:
                continue
            ts = parse_timestamp(rec["time"]) if rec.get("time") else 0
            if ts < self.since:
                continue
            if self.until is not None and ts > self.until:
                self.done = True
                break
            if (rec.get("stream") == "stderr" and self.stderr) or (rec.get("stream") != "stderr" and self.stdout):
                out.append(rec)
        return out


def _rotated_away(path: Path, f: BinaryIO) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


async def read_log(path: Path, *, follow: bool, tail: int | None, since: float, until: float | None,
                   stdout: bool, stderr: bool, is_running: Callable[[], bool]) -> AsyncIterator[dict]:
    """Yields {"log","stream","time"} records, the rotated files' first. With follow, keeps
    reading until the container stops (and the rest of the file has been read) or the
    client goes away."""
    if tail == 0 and not follow:
        return
    flt = _Filter(since, until, stdout, stderr)
    chain = [*await asyncio.to_thread(_rotated, path), path]
    first, offset = 0, 0
    if tail is not None and tail > 0:
        first, offset = await asyncio.to_thread(_tail_start, chain, tail)
    elif tail == 0:
        first, offset = len(chain) - 1, path.stat().st_size if path.exists() else 0
    for older in chain[first:-1]:
        data = await asyncio.to_thread(_read_from, older, offset)
        offset = 0
        for rec in flt.records(data.split(b"\n")):
            yield rec
        if flt.done:
            return
    pending = b""
    f: BinaryIO | None = None
    try:
        while True:
            if f is None:
                try:
                    f = open(path, "rb")  # noqa: SIM115 - kept open while following
                    f.seek(offset)
                except FileNotFoundError:
                    if not follow or not is_running():
                        return
                    await asyncio.sleep(_POLL)
                    continue
            data = f.read(1 << 20)
            if data:
                pending += data
                *lines, pending = pending.split(b"\n")
                for rec in flt.records(lines):
                    yield rec
                if flt.done:
                    return
                continue
            if not follow:
                return
            if _rotated_away(path, f):
                # The monitor rotated the file: what we have is complete, go on with the new one.
                f.close()
                f, offset = None, 0
                continue
            if not is_running():
                # one more read: the monitor may have written the last lines after we looked
                data = f.read()
                if not data:
                    return
                pending += data
                continue
            await asyncio.sleep(_POLL)
    finally:
        if f is not None:
            f.close()


def _decode(line: bytes) -> dict | None:
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


def container_log(c: Container, path: Path, *, follow: bool, tail: str, since: str, until: str, stdout: bool,
                  stderr: bool) -> AsyncIterator[dict]:
    """`docker logs` of `c` with the API's query values: checked now, read as iterated."""
    runtime_options.check_logs_readable(c.host_config)
    if not stdout and not stderr:
        raise InvalidParameter("Bad parameters: you must choose at least one stream")
    tail_n: int | None = None
    if tail not in ("", "all"):
        try:
            tail_n = int(tail)
        except ValueError:
            tail_n = -1  # as dockerd: what is not a number means all of it
        if tail_n < 0:
            tail_n = None
    since_t = parse_time_filter(since) if since and since != "0" else 0.0
    until_t = parse_time_filter(until) if until and until != "0" else None
    return read_log(path, follow=follow, tail=tail_n, since=since_t, until=until_t, stdout=stdout, stderr=stderr,
                    is_running=lambda: c.running or c.state["Restarting"])
