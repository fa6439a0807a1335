"""The event bus behind GET /events: services publish, the API subscribes with an EventFilter
(which events, and the since/until window), matched as dockerd's daemon/events/filter.go."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from daemon.errors import InvalidParameter
from daemon.images import reference
from daemon.revision import Revision
from daemon.util.filters import Filters
from daemon.util.timeutil import parse_time_filter

_HISTORY = 256  # events kept for `docker events --since`: dockerd keeps 256 (eventsLimit)

EVENT_FILTERS = {"container", "event", "image", "label", "type", "volume", "network", "daemon", "plugin",
                 "node", "service", "secret", "config", "scope"}
# Actions that carry their detail after a colon ("exec_start: sh -c ..."): dockerd matches these by prefix.
_DETAILED_ACTIONS = {"health_status", "exec_create", "exec_start"}


def _exact(values: list[str], source: str) -> bool:
    return not values or source in values


def _fuzzy(values: list[str], source: str) -> bool:
    return not values or any(source.startswith(v) for v in values)


def _strip_tag(name: str) -> str:
    """The repository of a reference, familiar (docker.io/library/busybox:1 -> busybox); anything
    that is not a reference as it is."""
    try:
        return reference.parse(name, default_tag=False).name
    except InvalidParameter:
        return name


@dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber gets: the `filters` of GET /events and its since/until window
    (unix seconds; since also replays the history, until ends the stream)."""

    filters: Filters = field(default_factory=lambda: Filters({}))
    since: float | None = None
    until: float | None = None

    @classmethod
    def parse(cls, filters_raw: str | None, since: str = "", until: str = "",
              now: float | None = None) -> EventFilter:
        """From the query's raw values; InvalidParameter for an unknown filter or a bad time."""
        return cls(Filters.parse(filters_raw or None, EVENT_FILTERS),
                   parse_time_filter(since, now) if since else None,
                   parse_time_filter(until, now) if until else None)

    @property
    def replays(self) -> bool:
        """Whether the kept history is sent first (dockerd: when either end of the window is given)."""
        return self.since is not None or self.until is not None

    def in_window(self, ev: dict) -> bool:
        t = ev["timeNano"]
        return (self.since is None or t >= self.since * 1e9) and (self.until is None or t <= self.until * 1e9)

    def match(self, ev: dict) -> bool:
        f = self.filters
        actor = ev["Actor"]
        attrs = actor.get("Attributes") or {}
        return (self._match_action(ev["Action"])
                and _exact(f.get("type"), ev["Type"])
                and _exact(f.get("scope"), ev.get("scope", ""))
                and all(self._match_name(key, actor["ID"], attrs) for key in ("container", "volume", "network"))
                and self._match_image(ev["Type"], actor["ID"], attrs)
                and f.match_labels(attrs))

    def _match_action(self, action: str) -> bool:
        values = self.filters.get("event")
        if any(v in _DETAILED_ACTIONS for v in values):
            return _fuzzy(values, action)
        return _exact(values, action)

    def _match_name(self, key: str, actor_id: str, attrs: dict[str, str]) -> bool:
        """By id or name, either of them by prefix (dockerd's fuzzyMatchName)."""
        values = self.filters.get(key)
        return _fuzzy(values, actor_id) or _fuzzy(values, attrs.get("name", ""))

    def _match_image(self, type_: str, actor_id: str, attrs: dict[str, str]) -> bool:
        """An image's own events by its id or name; a container's by the image it was created from;
        each also without its tag."""
        values = self.filters.get("image")
        if not values:
            return True  # no reference parsing for every event when nobody filters by image
        name = attrs.get("name" if type_ == "image" else "image", "")
        return any(s in values for s in (actor_id, name, _strip_tag(actor_id), _strip_tag(name)))


class EventBus:
    def __init__(self, revision: Revision | None = None) -> None:
        self._revision = revision or Revision()
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
        self._revision.bump()
        self._history.append(event)
        for q in self._subscribers:
            q.put_nowait(event)

    async def subscribe(self, flt: EventFilter | None = None) -> AsyncIterator[dict]:
        """The kept events of the filter's window, then live ones until its `until`."""
        flt = flt or EventFilter()
        q: asyncio.Queue[dict] = asyncio.Queue()
        self._subscribers.add(q)
        try:
            if flt.replays:
                for ev in list(self._history):
                    if flt.in_window(ev) and flt.match(ev):
                        yield ev
            until = flt.until
            if until is not None and until <= time.time():
                return
            while True:
                timeout = None if until is None else max(0.0, until - time.time())
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                if flt.since is not None and ev["timeNano"] < flt.since * 1e9:
                    continue
                if flt.match(ev):
                    yield ev
        finally:
            self._subscribers.discard(q)
