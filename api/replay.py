"""GET answers replayed byte for byte while nothing they show has changed.

A small JSON answer through uvicorn and the framework costs ~50-100 us of the event loop's one
thread; dockerd's Go server answers on every core. Clients that poll (`docker ps` in a loop,
compose and test frameworks waiting on containers, dashboards) send the very same request bytes
again and again, and between two polls the engine's state mostly has not moved. So a route that
opts in (`allow`) has its answer kept, as the bytes the server wrote, under the exact bytes of the
request head, and the HTTP protocol (api/hijack.py) writes them again for the same request head
without parsing it, as it answers `/_ping`: one dict look-up and one write.

An answer is replayed only while all of these hold, else the request goes through the app:

- the engine's revision is the one the request was read at (daemon/revision.py: every record
  written, event published and container state changed moves it) and no request other than a
  GET or HEAD has been read or answered since (`invalidate`, called by the protocol: whatever an
  API call changes, its answer reaches the client only after this);
- the time is before the answer's own `until`, for answers that show time (`docker ps`'s
  "Up 3 seconds": api/routers/containers.py passes when the first such text changes);
- the request is a whole `GET ... HTTP/1.1` head in one read, without a body, Upgrade or Expect
  headers or a Connection header other than `keep-alive`; the answer a 200 with a Content-Length
  and no Connection: close.

An answer is kept from the second time the same request comes with nothing changed in between
(requests never repeated, such as a query that changes each time, pay nothing for it), and a kept
one is dropped as soon as anything changes: memory is held only for answers that are being asked
for again (MAX_BYTES at most). The Date header is the current one (rebuilt when it changes);
everything else is as written. With `--metrics-addr` nothing is replayed, so that the request
metrics count every request. GET /debug/vars shows how many answers were replayed.

Which routes opt in: `GET /containers/json` (not with `size`), `/version`, `/networks` and
`/networks/{id}`: what they show is containers, images' names, networks and endpoints, all of it
followed by the revision. Not `/containers/{id}/json`: its health log grows with every probe,
which writes no record and publishes no event (a route must not opt in before every change of what
it shows moves the revision).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response

SCOPE_KEY = "pydockerd.replay"

MAX_HEAD = 2048  # request heads longer than this are not kept
MAX_ANSWER = 256 * 1024  # bytes of one answer
MAX_BYTES = 1024 * 1024  # of all kept answers: the oldest go first
MAX_ENTRIES = 64
MAX_SEEN = 256  # request heads seen once, remembered until the state changes

_OK = b"HTTP/1.1 200 OK\r\n"
_DATE = b"date: "
_SPECIAL = (b"content-length", b"transfer-encoding", b"upgrade", b"expect")
# What requests-based clients (docker-py, compose v1, testcontainers) send: in HTTP/1.1 it changes
# nothing; any other Connection header (close, upgrade) does.
_KEEP_ALIVE = b"\r\nconnection: keep-alive\r\n"


class StateRevision(Protocol):
    """The engine's revision (daemon/revision.py): moves whenever an answer may have changed."""

    @property
    def value(self) -> int: ...


class _Unchanging:
    value = 0


@dataclass
class Slot:
    """What the protocol knows of a request that could be kept, and what its route said."""

    head: bytes
    stamp: tuple[int, int]
    allowed: bool = False
    until: float | None = None


class _Answer:
    __slots__ = ("stamp", "until", "before", "after", "date", "whole", "size")

    def __init__(self, stamp: tuple[int, int], until: float | None, before: bytes, after: bytes,
                 date: bytes) -> None:
        self.stamp = stamp
        self.until = until
        self.before = before  # up to the Date header's value
        self.after = after  # from the end of the Date header's value
        self.date = date
        self.whole = before + date + after
        self.size = len(self.whole)


def _plain_get(head: bytes) -> bool:
    """A whole `GET ... HTTP/1.1` head without a body or headers that change the connection."""
    if not head.startswith(b"GET ") or len(head) > MAX_HEAD:
        return False
    end = head.find(b"\r\n")
    if not head[:end].endswith(b" HTTP/1.1") or head.find(b"\r\n\r\n") != len(head) - 4:
        return False
    lowered = head.lower()
    if b"connection" in lowered and (lowered.count(b"connection") != 1 or _KEEP_ALIVE not in lowered):
        return False
    return not any(name in lowered for name in _SPECIAL)


class ReplayCache:
    def __init__(self, revision: StateRevision, enabled: bool = True) -> None:
        self._revision = revision
        self.enabled = enabled
        self._epoch = 0  # moved by invalidate()
        self._answers: dict[bytes, _Answer] = {}
        self._bytes = 0
        # Heads seen once since the state last changed: an answer is kept from the second time a
        # request comes with nothing changed in between, so that requests that are never repeated
        # (a changing query), or not before the next change, do not pay for keeping theirs.
        self._seen: set[bytes] = set()
        self._seen_stamp = self.stamp()
        self.replayed = 0  # answers written again, for GET /debug/vars

    @classmethod
    def off(cls) -> ReplayCache:
        """One that keeps nothing (a server given none)."""
        return cls(_Unchanging(), enabled=False)

    def stamp(self) -> tuple[int, int]:
        return (self._revision.value, self._epoch)

    def invalidate(self) -> None:
        """A request that may change state was read or answered: nothing kept is replayed again."""
        self._epoch += 1
        if self._answers:
            self._answers.clear()
            self._bytes = 0
        self._seen.clear()

    def slot(self, head: bytes) -> Slot | None:
        """For a read that is exactly one request head: a slot when its answer could be kept (a
        GET seen before)."""
        if not self.enabled:
            return None
        seen = self._seen
        stamp = self.stamp()
        if stamp != self._seen_stamp:
            seen.clear()
            self._seen_stamp = stamp
        if head not in seen:
            if len(seen) >= MAX_SEEN:
                seen.clear()
            seen.add(head)
            return None
        if not _plain_get(head):
            return None
        return Slot(head, stamp)

    def answer(self, head: bytes, date: bytes) -> bytes | None:
        """The kept answer for this request head, if it is still what the app would answer."""
        found = self._answers.get(head)
        if found is None:
            return None
        if found.stamp != (self._revision.value, self._epoch) or (
                found.until is not None and time.time() >= found.until):
            self._drop(head, found)
            return None
        if found.date != date:
            found.date = date
            found.whole = found.before + date + found.after
        self.replayed += 1
        return found.whole

    def keep(self, slot: Slot, written: list[bytes]) -> None:
        """The bytes written for the request of `slot`, as uvicorn wrote them (head, then body)."""
        if not slot.allowed or slot.stamp != self.stamp() or not written:
            return
        data = b"".join(written)
        if len(data) > MAX_ANSWER or not data.startswith(_OK):
            return
        end = data.find(b"\r\n\r\n")
        head = data[:end + 2].lower()
        if b"\r\ncontent-length: " not in head or b"\r\nconnection: " in head or b"\r\ntransfer-encoding: " in head:
            return
        # uvicorn writes its default headers first: Date is the line after the status line.
        start = len(_OK) + len(_DATE)
        stop = data.find(b"\r\n", start)
        if not data.startswith(_DATE, len(_OK)) or stop < 0:
            return
        old = self._answers.pop(slot.head, None)
        if old is not None:
            self._bytes -= old.size
        while self._answers and (len(self._answers) >= MAX_ENTRIES or self._bytes + len(data) > MAX_BYTES):
            first = next(iter(self._answers))
            self._drop(first, self._answers[first])
        self._answers[slot.head] = _Answer(slot.stamp, slot.until, data[:start], data[stop:], data[start:stop])
        self._bytes += len(data)

    def _drop(self, head: bytes, found: _Answer) -> None:
        del self._answers[head]
        self._bytes -= found.size

    def __len__(self) -> int:
        return len(self._answers)

    def figures(self) -> dict[str, int | bool]:
        """For GET /debug/vars."""
        return {"enabled": self.enabled, "replayed": self.replayed, "kept": len(self._answers),
                "kept_bytes": self._bytes}


R = TypeVar("R", bound=Response)


def allow(request: Request, response: R, until: float | None = None) -> R:
    """Let `response` be replayed for the same request (see the module's docstring): for routes
    whose answer depends only on what the engine's revision follows, and on time only up to
    `until` (a time.time() value)."""
    slot = request.scope.get(SCOPE_KEY)
    if slot is not None and response.status_code == 200:
        slot.allowed = True
        slot.until = until
    return response


__all__ = ["MAX_ANSWER", "ReplayCache", "SCOPE_KEY", "Slot", "StateRevision", "allow"]
