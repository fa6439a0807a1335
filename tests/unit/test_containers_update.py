"""`docker update` decisions (daemon/containers/update.py): the request's checks and the merge
into the stored HostConfig, with dockerd's wording."""

from __future__ import annotations

import re

import pytest

from daemon.containers import resource_checks, update
from daemon.containers.container_config import default_host_config
from daemon.errors import InvalidParameter

MiB = 1024 * 1024


def _parse(body: object, blkio: bool = True) -> update.Update:
    return update.parse(body, blkio_weight_supported=blkio, ncpu=2, online_cpus={0, 1}, online_mems={0})


def test_parse_keeps_only_what_is_set() -> None:
    upd = _parse({"Memory": 100 * MiB, "CpuShares": 0, "CpusetCpus": "", "BlkioWeight": 0, "KernelMemory": 0,
                  "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}, "Devices": None, "Ulimits": None})
    assert upd.resources == {"Memory": 100 * MiB} and upd.restart_policy is None and upd.warnings == []
    assert _parse({"PidsLimit": -1}).resources == {"PidsLimit": 0}
    assert _parse({"PidsLimit": 0}).resources == {"PidsLimit": 0}
    assert _parse({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 4}}).restart_policy == {
        "Name": "on-failure", "MaximumRetryCount": 4}
    assert _parse({"CpusetCpus": "0-1", "CpusetMems": "0"}).resources == {"CpusetCpus": "0-1", "CpusetMems": "0"}


def test_parse_warnings() -> None:
    upd = _parse({"BlkioWeight": 5}, blkio=False)
    assert upd.resources == {} and "Block I/O weight" in upd.warnings[0]
    upd = _parse({"KernelMemory": 64 * MiB})
    assert upd.resources == {} and "kernel memory" in upd.warnings[0]


@pytest.mark.parametrize(("body", "message"), [
    ([], "invalid JSON"),
    ({"Memory": 5 * MiB}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": -1}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 2**63}, "UpdateConfig.Memory of type int64"),
    ({"Memory": 1.5}, "UpdateConfig.Memory of type int64"),
    ({"Memory": True}, "UpdateConfig.Memory of type int64"),
    ({"Memory": 100 * MiB, "MemorySwap": 50 * MiB}, "Minimum memoryswap limit should be larger than memory limit"),
    ({"MemorySwap": -2}, "MemorySwap"),
    ({"MemoryReservation": MiB}, "Minimum memory reservation allowed is 6MB"),
    ({"Memory": 10 * MiB, "MemoryReservation": 20 * MiB}, "memory reservation limit"),
    ({"KernelMemory": 100}, "Minimum kernel memory limit allowed is 6MB"),
    ({"CpuShares": -1}, "CpuShares"),
    ({"NanoCpus": 10**9, "CpuPeriod": 100_000}, "Nano CPUs and CPU Period cannot both be set"),
    ({"NanoCpus": 10**9, "CpuQuota": 100_000}, "Nano CPUs and CPU Quota cannot both be set"),
    ({"NanoCpus": 3 * 10**9}, "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    ({"NanoCpus": -1}, "Range of CPUs"),
    ({"CpuPeriod": 999}, "CPU cfs period can not be less than 1ms"),
    ({"CpuPeriod": 2_000_000}, "CPU cfs period"),
    ({"CpuQuota": 999}, "CPU cfs quota can not be less than 1ms"),
    ({"CpuQuota": -2}, "CpuQuota"),
    ({"CpuRealtimeRuntime": 1000}, "real-time"),
    ({"CpusetCpus": "0-"}, "Invalid value 0- for cpuset cpus: invalid format: 0-"),
    ({"CpusetCpus": "3-1"}, "invalid format"),
    ({"CpusetCpus": "1-3"}, "Requested CPUs are not available - requested 1-3, available: 0-1"),
    ({"CpusetMems": "1"}, "Requested memory nodes are not available - requested 1, available: 0"),
    ({"CpusetCpus": 1}, "UpdateConfig.CpusetCpus of type string"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"BlkioWeight": 65536}, "UpdateConfig.BlkioWeight of type uint16"),
    ({"PidsLimit": 2**63}, "UpdateConfig.PidsLimit"),
    ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy: unknown policy 'sometimes'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}, "can only be used with 'on-failure'"),
    ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -2}}, "cannot be negative"),
    ({"RestartPolicy": ["always"]}, "UpdateConfig.RestartPolicy"),
])
def test_parse_refuses(body: object, message: str) -> None:
    with pytest.raises(InvalidParameter, match=re.escape(message)):
        _parse(body)


def _hc(**kw: object) -> dict:
    hc = default_host_config()
    hc.update(kw)
    return hc


def test_merge_updates_only_what_is_given() -> None:
    hc = _hc(Memory=400 * MiB, CpuShares=2, RestartPolicy={"Name": "always", "MaximumRetryCount": 0})
    out = update.merge(hc, _parse({"Memory": 300 * MiB, "CpuShares": 3,
                                   "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 42}}), "cid")
    assert out["Memory"] == 300 * MiB and out["CpuShares"] == 3
    assert out["MemorySwap"] == 800 * MiB  # what dockerd stored at create: twice the memory
    assert out["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 42}
    assert hc["Memory"] == 400 * MiB and hc["CpuShares"] == 2  # the stored one untouched
    out = update.merge(_hc(PidsLimit=50), _parse({"PidsLimit": -1}), "cid")
    assert out["PidsLimit"] == 0


@pytest.mark.parametrize(("hc", "body", "message"), [
    ({}, {"Memory": 100 * MiB}, "Memory limit should be smaller than already set memoryswap limit"),
    ({"Memory": 64 * MiB, "MemorySwap": -1}, {"Memory": 100 * MiB}, "Memory limit should be smaller than already set"),
    ({"Memory": 64 * MiB}, {"Memory": 200 * MiB}, "Memory limit should be smaller than already set"),
    ({"Memory": 64 * MiB, "MemorySwap": 128 * MiB}, {"MemorySwap": 32 * MiB}, "Minimum memoryswap limit"),
    ({"CpuPeriod": 50_000}, {"NanoCpus": 10**9}, "Nano CPUs cannot be updated as CPU Period has already been set"),
    ({"CpuQuota": 50_000}, {"NanoCpus": 10**9}, "Nano CPUs cannot be updated as CPU Quota has already been set"),
    ({"NanoCpus": 10**9}, {"CpuPeriod": 50_000}, "CPU Period cannot be updated as NanoCPUs has already been set"),
    ({"NanoCpus": 10**9}, {"CpuQuota": 50_000}, "CPU Quota cannot be updated as NanoCPUs has already been set"),
    ({"AutoRemove": True}, {"RestartPolicy": {"Name": "always"}}, "Restart policy cannot be updated because "
                                                                  "AutoRemove is enabled for the container"),
])
def test_merge_refuses(hc: dict, body: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=f"^Cannot update container cid: (Conflicting options: )?"
                                               f"{re.escape(message)}"):
        update.merge(_hc(**hc), _parse(body), "cid")


def test_merge_allows() -> None:
    out = update.merge(_hc(Memory=64 * MiB), _parse({"Memory": 100 * MiB, "MemorySwap": -1}), "cid")
    assert out["Memory"] == 100 * MiB and out["MemorySwap"] == -1
    out = update.merge(_hc(AutoRemove=True), _parse({"RestartPolicy": {"Name": "no"}}), "cid")
    assert out["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    out = update.merge(_hc(NanoCpus=10**9), _parse({"NanoCpus": 5 * 10**8}), "cid")
    assert out["NanoCpus"] == 5 * 10**8


@pytest.mark.parametrize(("hc", "message"), [
    ({"CpusetCpus": "0-"}, "Invalid value 0- for cpuset cpus"),
    ({"CpusetCpus": "4096"}, "Requested CPUs are not available - requested 4096"),
    ({"CpusetMems": "64"}, "Requested memory nodes are not available - requested 64"),
    ({"CpusetCpus": 1}, "HostConfig.CpusetCpus"),
    ({"MemoryReservation": -1}, "MemoryReservation"),
    ({"MemoryReservation": MiB}, "Minimum memory reservation allowed is 6MB"),
    ({"Memory": 10 * MiB, "MemoryReservation": 20 * MiB}, "memory reservation limit"),
    ({"BlkioWeight": 1001}, "Range of blkio weight is from 10 to 1000"),
    ({"BlkioWeight": "x"}, "HostConfig.BlkioWeight"),
])
def test_create_checks(hc: dict, message: str) -> None:
    with pytest.raises(InvalidParameter, match=re.escape(message)):
        resource_checks.create(hc)


def test_create_checks_accept() -> None:
    resource_checks.create({})
    resource_checks.create({"CpusetCpus": "0", "CpusetMems": "0", "MemoryReservation": 10 * MiB, "BlkioWeight": 500})
