"""Unexpected errors in a daemon's log: what the harness fails a test on.

A request that ends in a 500 the daemon did not mean (the app's catch-all handler), a
background task that died (asyncio's "Task exception was never retrieved"), a failed release
or health check: the daemon logs each with its traceback, and the client may see nothing
wrong (a release happens after the answer). So every test's share of each daemon's log is
read for tracebacks.

One kind is expected: a DaemonError the API answers with a 5xx status is logged with its
traceback too (api/app.py: "METHOD PATH answered 5NN: message"), because its cause is a
failure of the host or of a remote (a registry that refuses the connection) or a refusal
dockerd also answers with 5xx (501 for a logging driver that cannot be read). The client is
told; the traceback is for whoever reads the log. Any other traceback is unexpected.
"""

from __future__ import annotations

import re

_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_ANSWERED = re.compile(r" pydockerd\.api: \S+ \S+ answered 5\d\d: ")


def unexpected_tracebacks(text: str) -> list[str]:
    """Each unexpected traceback in `text`, with the log record it belongs to."""
    found: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("Traceback (most recent call last):"):
            i += 1
            continue
        # The record a traceback belongs to is the last line before it that starts one.
        k = i - 1
        while k >= 0 and not _RECORD.match(lines[k]):
            k -= 1
        j = i + 1
        while j < len(lines) and not _RECORD.match(lines[j]):
            j += 1
        record = lines[k] if k >= 0 else ""
        if not _ANSWERED.search(record):
            found.append("\n".join(lines[max(k, 0):j]))
        i = j
    return found


_RECORD_BYTES = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", re.M)


def complete_part(data: bytes) -> bytes:
    """`data` up to its last record: that one (a traceback being written) is read next time."""
    starts = [m.start() for m in _RECORD_BYTES.finditer(data)]
    return data[:starts[-1]] if starts else b""
