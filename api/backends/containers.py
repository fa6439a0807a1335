"""What the containers and attach routers need from the engine.

Container lifecycle and views: /containers/... (create, start, stop, kill, remove, wait,
logs, list, inspect, top, changes, rename, resize, pause, prune) and attach.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol


class LoggedContainer(Protocol):
    """What the logs handler needs of the container whose log it streams."""

    @property
    def tty(self) -> bool: ...


class AttachSession(Protocol):
    """One attach, decided by the engine (paused refused, which streams replay, StdinOnce)."""

    @property
    def id(self) -> str: ...

    @property
    def tty(self) -> bool: ...

    @property
    def close_stdin(self) -> bool:
        """The client's end of stdin ends the container's stdin (and not the session)."""
        ...

    def replay(self) -> AsyncIterator[tuple[bool, bytes]]:
        """The log so far as (is_stderr, data), for the streams asked for."""
        ...

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The container's stdio, now or at its next start."""
        ...


class ContainerBackend(Protocol):
    def list(self, all_: bool, limit: int, filters_raw: str | None, before_ref: str = "",
             since_ref: str = "") -> tuple[list[dict], float | None]:
        """The rows of `docker ps`, and when the first of their STATUS texts next reads otherwise
        by time alone ("Up 3 seconds"; None when none shows time)."""
        ...

    async def add_sizes(self, docs: list[dict]) -> None:
        """SizeRw and SizeRootFs into list rows or inspect documents."""
        ...

    async def create(self, body: dict, name: str | None) -> dict: ...

    async def prune(self, filters_raw: str | None) -> dict: ...

    def inspect(self, ref: str) -> dict: ...

    async def start(self, ref: str) -> None: ...

    async def stop(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None: ...

    async def restart(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None: ...

    async def kill(self, ref: str, sig: str | None) -> None: ...

    async def pause(self, ref: str) -> None: ...

    async def unpause(self, ref: str) -> None: ...

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None: ...

    async def remove_link(self, ref: str) -> None:
        """`docker rm --link /PARENT/ALIAS`: the parent's link of that alias goes."""
        ...

    async def wait_future(self, ref: str, condition: str) -> asyncio.Future:
        """Registers the waiter now; the future gives (exit code, error or None)."""
        ...

    def logs(self, ref: str, *, follow: bool, tail: str, since: str, until: str, stdout: bool,
             stderr: bool, render: Callable[[LoggedContainer, list[dict]], Any] | None = None
             ) -> tuple[LoggedContainer, AsyncIterator[Any]]:
        """The container and its log records ({"log", "stream", "time"}) in batches, each one
        passed through `render` (in a worker thread) when it is given."""
        ...

    async def top(self, ref: str, ps_args: str) -> dict: ...

    async def changes(self, ref: str) -> list[dict]: ...

    async def rename(self, ref: str, new_name: str) -> None: ...

    async def resize(self, ref: str, height: int, width: int) -> None: ...

    def attach(self, ref: str, *, stdin: bool, stdout: bool, stderr: bool) -> AttachSession:
        """Raises for a missing or paused container."""
        ...
