"""Decisions behind the SDK fixes of issue 12: Go-style key matching of request JSON, the
answers of a node outside a swarm, link removal, and no record written during a removal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.containers import container_config
from daemon.errors import InvalidParameter, NotFound, Unavailable
from daemon.swarm import NO_CLUSTER_VOLUMES, NOT_A_MANAGER, NOT_PART_OF_SWARM, NoSwarm
from daemon.util.gojson import fold_keys
from tests.conformance.dockerpy.check import compare, read_ids
from tests.unit.containers_fakes import make_service


def test_fold_keys_matches_fields_ignoring_case() -> None:
    body = {"detachKeys": "ctrl-p", "cmd": ["sh"], "Unknown": 1}
    assert fold_keys(body, ("DetachKeys", "Cmd")) == {"DetachKeys": "ctrl-p", "Cmd": ["sh"], "Unknown": 1}


def test_fold_keys_exact_spelling_wins() -> None:
    assert fold_keys({"Tty": True, "tty": False}, ("Tty",)) == {"Tty": True}
    assert fold_keys({"tty": False, "Tty": True}, ("Tty",)) == {"Tty": True}


def test_host_config_keys_as_go_decodes_them() -> None:
    # docker-py writes CPURealtimePeriod; dockerd's HostConfig field is CpuRealtimePeriod.
    _, hc = container_config.merge({"Image": "x", "Cmd": ["true"],
                                    "HostConfig": {"CPURealtimePeriod": 1000, "CPURealtimeRuntime": 500}}, {})
    assert (hc["CpuRealtimePeriod"], hc["CpuRealtimeRuntime"]) == (1000, 500)
    assert "CPURealtimePeriod" not in hc


def test_no_swarm_answers_as_dockerd_outside_a_swarm() -> None:
    cluster = NoSwarm()
    for call, message in ((cluster.manager_action, NOT_A_MANAGER), (cluster.leave, NOT_PART_OF_SWARM),
                          (cluster.update_volume, NO_CLUSTER_VOLUMES)):
        with pytest.raises(Unavailable) as e:
            call()
        assert e.value.status == 503 and e.value.message == message
    with pytest.raises(Unavailable):
        cluster.join()


def test_remove_link(tmp_path: Path) -> None:
    async def run() -> None:
        svc, store, _ = make_service(tmp_path)
        await svc.create({"Image": "busybox", "Cmd": ["true"]}, "/db")
        web = await svc.create({"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Links": ["db:data"]}}, "/web")
        with pytest.raises(InvalidParameter):
            await svc.remove_link("web")  # a container's own name is no link
        with pytest.raises(NotFound):
            await svc.remove_link("nosuch/data")
        with pytest.raises(NotFound):
            await svc.remove_link("web/other")
        await svc.remove_link("/web/data")
        assert not svc.get(web["Id"]).host_config["Links"]
        assert svc.find("db") is not None and svc.find("web") is not None
        store.close()

    asyncio.run(run())


def test_no_record_written_while_removing(tmp_path: Path) -> None:
    """A state change persisted while a removal runs (the exit of a container rm -f killed) must
    not write the row again after the removal deleted it: the name would stay taken forever."""
    async def run() -> None:
        svc, store, _ = make_service(tmp_path)
        cid = (await svc.create({"Image": "busybox", "Cmd": ["true"]}, "/gone"))["Id"]
        c = svc.get(cid)
        c.removing = True
        await store.delete_container(cid)
        await svc.registry.persist(c)  # late write during the removal: skipped
        c.removing = False
        svc.registry.discard(c)
        again = await svc.create({"Image": "busybox", "Cmd": ["true"]}, "/gone")
        assert again["Id"] != cid
        store.close()

    asyncio.run(run())


def test_conformance_verdict(tmp_path: Path) -> None:
    """The docker-py check fails on a baseline test that failed, unless it is an expected failure;
    an expected failure that passes is reported so that it can leave the list."""
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\n\na::t1\twhy\na::t2\n")
    assert read_ids(listing) == ["a::t1", "a::t2"]
    baseline = ["a::t1", "a::t2", "a::t3", "a::t4"]
    bad, waiting, now_passing = compare(baseline, {"a::t2", "a::t4"}, {"a::t1", "a::t4", "a::other"})
    assert (bad, waiting, now_passing) == (["a::t3"], ["a::t2"], ["a::t4"])
    assert compare(baseline, set(), set(baseline))[0] == []
