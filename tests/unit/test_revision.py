"""The engine's revision (daemon/revision.py) moves with every change an API answer can show, and
a container's STATUS text says when it next reads otherwise (what a kept `docker ps` answer's
lifetime is cut to, api/replay.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from daemon.containers.container import Container, new_state
from daemon.containers.registry import ContainerRegistry
from daemon.events import EventBus
from daemon.revision import Revision
from daemon.store import Store
from daemon.util.timeutil import format_time


def _ctr(cid: str = "c" * 64, name: str = "/one") -> Container:
    return Container(id=cid, name=name, created=format_time(1_000_000_000_000_000_000), path="sh", args=[],
                     config={}, host_config={}, image_id="sha256:" + "1" * 64, state=new_state())


def test_store_writes_move_it_before_and_after(tmp_path: Path) -> None:
    rev = Revision()
    store = Store(tmp_path / "db", rev)
    store.open()
    seen: list[int] = []
    try:
        async def write() -> None:
            task = asyncio.ensure_future(store.put_container("c" * 64, "/one", {}))
            await asyncio.sleep(0)
            seen.append(rev.value)  # moved when the write began
            await task
            seen.append(rev.value)  # and again when it is done (the service changes memory then)

        asyncio.run(write())
    finally:
        store.close()
    assert seen == [1, 2]


def test_events_move_it() -> None:
    rev = Revision()
    bus = EventBus(rev)
    bus.publish("container", "die", "c" * 64, {})
    bus.publish("image", "tag", "sha256:x", {})
    assert rev.value == 2


def test_registry_membership_names_and_unwritten_changes_move_it() -> None:
    rev = Revision()
    reg = ContainerRegistry(None, rev)  # type: ignore[arg-type] - no writes here
    c = _ctr()
    steps = []
    reg.reserve("/one", c.id)
    steps.append(rev.value)
    reg.add(c)
    steps.append(rev.value)
    reg.changed()
    steps.append(rev.value)
    reg.reserve("/two", c.id)
    reg.release("/one", c.id)
    steps.append(rev.value)
    reg.release("/one", c.id)  # not its name any more: nothing changed
    steps.append(rev.value)
    reg.discard(c)
    steps.append(rev.value)
    assert steps == [1, 2, 3, 5, 5, 6]


def test_status_text_and_when_it_next_reads_otherwise() -> None:
    c = _ctr()
    assert c.status(2000.0) == ("Created", None)
    c.state.update(Status="running", Running=True, StartedAt=format_time(1000_250_000_000))
    assert c.status(1000.5) == ("Up Less than a second", 1001.25)
    assert c.status(1003.3) == ("Up 3 seconds", 1004.25)
    assert c.status(1000.25 + 90.5) == ("Up About a minute", 1000.25 + 91)
    c.state["Paused"] = True
    assert c.status(1003.3) == ("Up 3 seconds (Paused)", 1004.25)
    c.state.update(Status="exited", Running=False, Paused=False, ExitCode=2, FinishedAt=format_time(1010 * 10**9))
    assert c.status(1012.0) == ("Exited (2) 2 seconds ago", 1013.0)
    assert c.status_text(1012.0) == "Exited (2) 2 seconds ago"
    c.removing = True
    assert c.status(1012.0) == ("Removal In Progress", None)
