"""EventFilter and EventBus: which events GET /events sends, as dockerd's daemon/events/filter.go
decides (type/event/container/image/volume/network/label/scope) and its since/until window."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from daemon.errors import InvalidParameter
from daemon.events import EventBus, EventFilter

CID = "3f2a" + "0" * 60
IMG = "sha256:" + "ab" * 32


def ev(type_: str, action: str, actor: str, attrs: dict[str, str] | None = None, t: float = 1000.0) -> dict:
    return {"Type": type_, "Action": action, "Actor": {"ID": actor, "Attributes": attrs or {}}, "scope": "local",
            "time": int(t), "timeNano": int(t * 1e9)}


def flt(**filters: list[str]) -> EventFilter:
    return EventFilter.parse(json.dumps(filters))


START = ev("container", "start", CID, {"name": "web", "image": "busybox", "tier": "front"})
PULL = ev("image", "pull", IMG, {"name": "busybox:latest"})
VOL = ev("volume", "create", "data", {"driver": "local"})
NET = ev("network", "connect", "f00d" * 16, {"container": CID, "name": "bridge", "type": "bridge"})
EXEC = ev("container", "exec_start: sh -c true", CID, {"name": "web", "image": "busybox", "execID": "e1"})
HEALTH = ev("container", "health_status: healthy", CID, {"name": "web", "image": "busybox"})


def test_no_filter_matches_everything() -> None:
    f = EventFilter()
    assert all(f.match(e) for e in (START, PULL, VOL, NET, EXEC))


def test_type_is_exact() -> None:
    f = flt(type=["volume", "network"])
    assert [f.match(e) for e in (START, PULL, VOL, NET)] == [False, False, True, True]


def test_event_is_exact_except_the_detailed_actions() -> None:
    assert flt(event=["start"]).match(START)
    assert not flt(event=["sta"]).match(START)
    assert not flt(event=["exec_die"]).match(EXEC)
    # exec_create, exec_start and health_status carry a detail after a colon: matched by prefix.
    assert flt(event=["exec_start"]).match(EXEC)
    assert flt(event=["health_status"]).match(HEALTH)
    assert not flt(event=["exec_create"]).match(EXEC)


def test_container_by_name_id_or_id_prefix() -> None:
    for value in ("web", CID, CID[:12], "we"):
        assert flt(container=[value]).match(START), value
    assert not flt(container=["db"]).match(START)
    # Another type's event matches only if its own id or name does (dockerd's fuzzyMatchName).
    assert not flt(container=["web"]).match(VOL)
    assert not flt(container=["web"]).match(NET)


def test_volume_and_network_by_name_or_id() -> None:
    assert flt(volume=["data"]).match(VOL)
    assert not flt(volume=["other"]).match(VOL)
    assert not flt(volume=["data"]).match(START)
    assert flt(network=["bridge"]).match(NET)
    assert flt(network=["f00d"]).match(NET)
    assert not flt(network=["host"]).match(NET)


def test_image_matches_image_events_and_containers_created_from_it() -> None:
    assert flt(image=[IMG]).match(PULL)
    assert flt(image=["busybox:latest"]).match(PULL)
    assert flt(image=["busybox"]).match(PULL)  # the tag stripped, as dockerd
    assert flt(image=["busybox"]).match(START)  # a container's image attribute
    assert flt(image=["docker.io/library/busybox"]).match(START) is False
    assert not flt(image=["alpine"]).match(PULL)
    assert not flt(image=["alpine"]).match(START)
    assert not flt(image=["busybox"]).match(VOL)
    tagged = ev("container", "create", CID, {"name": "x", "image": "docker.io/library/busybox:1.36"})
    assert flt(image=["busybox"]).match(tagged)


def test_labels_against_the_actor_attributes() -> None:
    assert flt(label=["tier"]).match(START)
    assert flt(label=["tier=front"]).match(START)
    assert not flt(label=["tier=back"]).match(START)
    assert not flt(label=["tier"]).match(PULL)


def test_scope() -> None:
    assert flt(scope=["local"]).match(START)
    assert not flt(scope=["swarm"]).match(START)


def test_filters_combine_with_and() -> None:
    f = flt(type=["container"], event=["start"], container=["web"], image=["busybox"])
    assert f.match(START)
    assert not f.match(EXEC)
    assert not f.match(PULL)


def test_bad_filters_and_times_fail_at_parse() -> None:
    with pytest.raises(InvalidParameter):
        EventFilter.parse(json.dumps({"nope": ["x"]}))
    with pytest.raises(InvalidParameter):
        EventFilter.parse(None, since="yesterday")
    with pytest.raises(InvalidParameter):
        EventFilter.parse("[1]")


def test_time_window() -> None:
    f = EventFilter.parse(None, since="1000", until="2000")
    assert f.since == 1000 and f.until == 2000 and f.replays
    assert f.in_window(ev("container", "start", CID, t=1000))
    assert f.in_window(ev("container", "start", CID, t=2000))
    assert not f.in_window(ev("container", "start", CID, t=999.5))
    assert not f.in_window(ev("container", "start", CID, t=2000.5))
    assert not EventFilter.parse(None).replays
    relative = EventFilter.parse(None, since="10m", now=5000.0)
    assert relative.since == 4400.0


def _collect(bus: EventBus, f: EventFilter, during: list[tuple[str, str, str]] | None = None,
             limit: float = 1.0) -> list[dict]:
    async def run() -> list[dict]:
        out: list[dict] = []

        async def consume() -> None:
            async for e in bus.subscribe(f):
                out.append(e)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.01)
        for args in during or []:
            bus.publish(*args)
        try:
            await asyncio.wait_for(task, limit)
        except TimeoutError:
            pass
        return out

    return asyncio.run(run())


def test_since_replays_history_and_until_ends_the_stream() -> None:
    bus = EventBus()
    bus.publish("container", "create", CID, {"name": "web"})
    bus.publish("volume", "create", "data")
    now = time.time()
    got = _collect(bus, EventFilter.parse(json.dumps({"type": ["container"]}), since=str(now - 60),
                                          until=str(now + 0.2)),
                   during=[("container", "start", CID, {"name": "web"}), ("volume", "destroy", "data", {})])
    assert [e["Action"] for e in got] == ["create", "start"]
    assert bus.listeners == 0


def test_until_alone_replays_up_to_it_and_no_window_replays_nothing() -> None:
    bus = EventBus()
    bus.publish("container", "create", CID, {"name": "web"})
    got = _collect(bus, EventFilter.parse(None, until=str(time.time() - 0.0)))
    assert [e["Action"] for e in got] == ["create"]
    live = _collect(bus, EventFilter(), during=[("container", "start", CID, {"name": "web"})], limit=0.2)
    assert [e["Action"] for e in live] == ["start"]
