"""Exec instances are not kept after their container is gone (memory after work)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.errors import NotFound
from daemon.events import EventBus
from daemon.execs.service import ExecService
from tests.unit.containers_fakes import fake_seccomp, make_service


def test_execs_of_removed_containers_are_dropped(tmp_path: Path) -> None:
    svc, _, _ = make_service(tmp_path)
    first = asyncio.run(svc.create({"Image": "busybox"}, "first"))["Id"]
    second = asyncio.run(svc.create({"Image": "busybox"}, "second"))["Id"]
    for cid in (first, second):
        svc.get(cid).state["Running"] = True  # exec create only checks the record
    execs = ExecService(svc.registry, EventBus(), None, fake_seccomp(),  # type: ignore[arg-type] - no cgroups at create
                        link_env=lambda c: [])
    never_started = execs.create(first, {"Cmd": ["true"]})
    kept = execs.create(second, {"Cmd": ["true"]})
    svc.get(first).state["Running"] = False
    asyncio.run(svc.remove(first))
    execs.create(second, {"Cmd": ["true"]})
    with pytest.raises(NotFound):
        execs.get(never_started)
    assert execs.get(kept).container_id == second


def test_execs_go_when_their_container_is_removed(tmp_path: Path) -> None:
    """At once, not at the next exec create: after a suite's last `docker rm` nothing is held."""
    svc, _, _ = make_service(tmp_path)
    cid = asyncio.run(svc.create({"Image": "busybox"}, "only"))["Id"]
    svc.get(cid).state["Running"] = True
    execs = ExecService(svc.registry, EventBus(), None, fake_seccomp(),  # type: ignore[arg-type] - no cgroups at create
                        link_env=lambda c: [])
    svc.registry.on_discard.append(execs.forget_container)
    execs.create(cid, {"Cmd": ["true"]})
    svc.get(cid).state["Running"] = False
    asyncio.run(svc.remove(cid))
    assert execs.execs == {}
