"""The engine's state revision: a number that moves whenever anything the API shows may have changed.

The API replays a GET's answer byte for byte while the revision it was computed at is still the
current one (api/replay.py), so every change to what an answer shows must move it before a client
can learn of the change from the engine, and before the next request is read:

- every record the store writes (containers, images, tags, volumes, networks), before and after;
- every event published (what `docker events`, wait and health report);
- containers added to or removed from the registry, and names taken or released;
- a container's state changed where the change is not written at once (its exit and its
  removal, whose release runs first): ContainerRegistry.changed().

A change and its bump in the same synchronous stretch of the event loop (no await between) is
enough: no request is answered in between. Moving it when nothing changed costs only a recomputed
answer, so places that are not sure move it.
"""

from __future__ import annotations


class Revision:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1


__all__ = ["Revision"]
