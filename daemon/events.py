"""The event bus behind GET /events: publish from services, subscribe from the API."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from typing import Any

_HISTORY = 1024  # events kept for `docker events --since`


class EventBus:
    def __init__(self) -> None:
        self._history: collections.deque[dict] = collections.deque(maxlen=_HISTORY)
        self._subscribers: set[asyncio.Queue[dict]] = set()

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    def publish(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
        now = time.time_ns()
        event: dict[str, Any] = {
            "Type": type_,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        # The pre-1.22 top-level fields: the CLI's default format still reads them for containers.
        if type_ in ("container", "image"):
            event["status"] = action
            event["id"] = actor_id
            if type_ == "container" and attributes and "image" in attributes:
                event["from"] = attributes["image"]
        self._history.append(event)
        for q in self._subscribers:
            q.put_nowait(event)

    async def subscribe(self, since: float | None = None, until: float | None = None) -> AsyncIterator[dict]:
        q: asyncio.Queue[dict] = asyncio.Queue()
        self._subscribers.add(q)
        try:
            if since is not None:
                for ev in list(self._history):
                    if ev["timeNano"] >= since * 1e9 and (until is None or ev["timeNano"] <= until * 1e9):
                        yield ev
            if until is not None and until <= time.time():
                return
            while True:
                timeout = None if until is None else max(0.0, until - time.time())
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                if since is not None and ev["timeNano"] < since * 1e9:
                    continue
                yield ev
        finally:
            self._subscribers.discard(q)
