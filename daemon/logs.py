"""Reading a container's json-file log for `docker logs` (the monitor writes it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from daemon.timeutil import parse_timestamp

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


async def read_log(path: Path, *, follow: bool, tail: int | None, since: float, until: float | None,
                   stdout: bool, stderr: bool, is_running: Callable[[], bool]) -> AsyncIterator[dict]:
    """Yields {"log","stream","time"} records. With follow, keeps reading until the container
    stops (and the rest of the file has been read) or the client goes away."""
    if tail == 0 and not follow:
        return
    offset = 0
    if tail is not None and tail > 0 and path.exists():
        offset = await asyncio.to_thread(_tail_offset, path, tail)
    elif tail == 0 and path.exists():
        offset = path.stat().st_size
    pending = b""
    f = None
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
                for line in lines:
                    rec = _decode(line)
                    if rec is None:
                        continue
                    ts = parse_timestamp(rec["time"]) if rec.get("time") else 0
                    if ts < since:
                        continue
                    if until is not None and ts > until:
                        return
                    if (rec.get("stream") == "stderr" and stderr) or (rec.get("stream") != "stderr" and stdout):
                        yield rec
                continue
            if not follow:
                return
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
