"""Reading a container's json-file log for `docker logs` and attach's replay (the monitor writes it)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from daemon.containers import runtime_options
from daemon.containers.container import Container
from daemon.errors import InvalidParameter
from daemon.util.timeutil import parse_time_filter, parse_timestamp

_POLL = 0.05
_CHUNK = 256 << 10


def _tail_scan(path: Path, n: int) -> tuple[int, int]:
    """(byte offset where the last n lines of the file start, lines found): reads backwards
    in blocks and stops there, so `--tail` costs the same on a 1 GB log as on a small one.
    Fewer than n lines: (0, how many there are)."""
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
                    return pos + idx + 1, n
        return 0, count + 1 if end else 0


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
            offset, found = _tail_scan(chain[idx], n)
        except FileNotFoundError:
            continue
        if found >= n:
            return idx, offset
        n -= found
    return 0, 0


def _line_at(f: BinaryIO, pos: int) -> tuple[int, float] | None:
    """(start, time) of the first complete record that starts at or after `pos`."""
    f.seek(pos)
    if pos > 0:
        f.readline()  # the rest of the line `pos` falls in
    start = f.tell()
    line = f.readline()
    if not line.endswith(b"\n"):
        return None
    rec = _decode(line)
    try:
        return start, parse_timestamp(rec["time"]) if rec and rec.get("time") else 0.0
    except ValueError:
        return start, 0.0


def _since_offset(path: Path, since: float) -> int | None:
    """A byte offset at or before the first record of `path` not older than `since` (None:
    every record is older). The monitor writes records in time order, so this is a binary
    search (`--since` on a big log reads a few blocks, not the whole file); the filter still
    drops what is older from there."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        last = _line_at(f, max(0, size - 65536))
        while last is not None and (nxt := _line_at(f, last[0] + 1)) is not None:
            last = nxt
        if last is None or last[1] < since:
            return None
        lo, hi = 0, size  # the record we want starts after lo's line and at or before hi
        while hi - lo > 65536:
            mid = (lo + hi) // 2
            at = _line_at(f, mid)
            if at is None or at[1] >= since:
                hi = mid
            else:
                lo = at[0]
        at = _line_at(f, lo) if lo else None
        return at[0] if at else lo


def _since_start(chain: list[Path], since: float) -> tuple[int, int]:
    """(index in chain, byte offset) from which records may be as new as `since`."""
    for idx, path in enumerate(chain):
        try:
            offset = _since_offset(path, since)
        except FileNotFoundError:
            continue
        if offset is not None:
            return idx, offset
    return len(chain) - 1, chain[-1].stat().st_size if chain[-1].exists() else 0


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def _same(records: list[dict]) -> list[dict]:
    return records


class _Filter:
    def __init__(self, since: float, until: float | None, stdout: bool, stderr: bool,
                 transform: Callable[[list[dict]], Any] = _same) -> None:
        self.since, self.until, self.stdout, self.stderr = since, until, stdout, stderr
        self.transform = transform
        self.done = False  # a record after `until` was seen

    def records(self, lines: list[bytes]) -> list[dict]:
        recs = _decode_all(lines)
        # Parsing each record's time costs more than decoding it: only when asked to filter.
        timed = self.since > 0 or self.until is not None
        if not timed and self.stdout and self.stderr:
            return recs
        out = []
        for rec in recs:
            if timed:
                ts = parse_timestamp(rec["time"]) if rec.get("time") else 0
                if ts < self.since:
                    continue
                if self.until is not None and ts > self.until:
                    self.done = True
                    break
            if (rec.get("stream") == "stderr" and self.stderr) or (rec.get("stream") != "stderr" and self.stdout):
                out.append(rec)
        return out

    def read(self, f: BinaryIO, pending: bytes) -> tuple[Any, bytes, bool]:
        """Up to 1 MiB more of `f` (blocking): (its complete records transformed, or None when
        there are none; the partial last line; whether anything was read)."""
        data = f.read(_CHUNK)
        if not data:
            return None, pending, False
        *lines, pending = (pending + data).split(b"\n")
        recs = self.records(lines)
        return (self.transform(recs) if recs else None), pending, True

    def read_file(self, path: Path, offset: int) -> Any:
        """Every record of a (rotated, complete) file from `offset` (blocking), transformed;
        None when there are none."""
        recs = self.records(_read_from(path, offset).split(b"\n"))
        return self.transform(recs) if recs else None


def _rotated_away(path: Path, f: BinaryIO) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


async def read_log(path: Path, *, follow: bool, tail: int | None, since: float, until: float | None,
                   stdout: bool, stderr: bool, is_running: Callable[[], bool],
                   transform: Callable[[list[dict]], Any] = _same) -> AsyncIterator[Any]:
    """Yields lists of {"log","stream","time"} records, the rotated files' first. With
    follow, keeps reading until the container stops (and the rest of the file has been
    read) or the client goes away. Files are read and decoded in a worker thread, up to
    1 MiB at a time (a big log is over a million records: one at a time through the event
    loop, they were the cost of `docker logs`); ``transform`` (e.g. the API's framing) is
    applied to each batch there too, and what it returns is yielded."""
    if tail == 0 and not follow:
        return
    flt = _Filter(since, until, stdout, stderr, transform)
    chain = [*await asyncio.to_thread(_rotated, path), path]
    first, offset = 0, 0
    if tail is not None and tail > 0:
        first, offset = await asyncio.to_thread(_tail_start, chain, tail)
    elif tail == 0:
        first, offset = len(chain) - 1, path.stat().st_size if path.exists() else 0
    if since > 0:
        first, offset = max((first, offset), await asyncio.to_thread(_since_start, chain, since))
    for older in chain[first:-1]:
        recs = await asyncio.to_thread(flt.read_file, older, offset)
        offset = 0
        if recs is not None:
            yield recs
        if flt.done:
            return
    pending = b""
    f: BinaryIO | None = None
    reading: asyncio.Future | None = None

    async def read_more(f: BinaryIO, pending: bytes) -> tuple[Any, bytes, bool]:
        nonlocal reading
        # Shielded: a cancelled read goes on in its thread, and the file must stay open until then.
        reading = asyncio.ensure_future(asyncio.to_thread(flt.read, f, pending))
        return await asyncio.shield(reading)

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
            recs, pending, got = await read_more(f, pending)
            if got:
                if recs is not None:
                    yield recs
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
                recs, pending, got = await read_more(f, pending)
                if not got:
                    return
                if recs is not None:
                    yield recs
                if flt.done:
                    return
                continue
            await asyncio.sleep(_POLL)
    finally:
        if f is not None:
            if reading is not None and not reading.done():
                reading.add_done_callback(lambda r, f=f: (f.close(), r.cancelled() or r.exception()))
            else:
                f.close()


def _decode_all(lines: list[bytes]) -> list[dict]:
    """The records of many lines, decoded as one JSON array (a line at a time only when one
    of them is broken): the per-call cost was most of the decoding."""
    lines = [line for line in lines if line.strip()]
    try:
        recs = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        return [rec for rec in map(_decode, lines) if rec is not None]
    return [rec for rec in recs if isinstance(rec, dict)]


def _decode(line: bytes) -> dict | None:
    if not line.strip():
        return None
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) else None


def container_log(c: Container, path: Path, *, follow: bool, tail: str, since: str, until: str, stdout: bool,
                  stderr: bool, transform: Callable[[list[dict]], Any] = _same) -> AsyncIterator[Any]:
    """`docker logs` of `c` with the API's query values: checked now, read as iterated; each
    batch of records passes through `transform` in the reading thread."""
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
                    is_running=lambda: c.running or c.state["Restarting"], transform=transform)
