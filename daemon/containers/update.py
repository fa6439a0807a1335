"""`docker update`: a container's cgroup limits and restart policy changed after create.

As dockerd (daemon/update.go, container.UpdateContainer): the request is checked on its own
(``parse``: types, int64 range, dockerd's limits and wording), then merged into the stored
HostConfig (``merge``: a zero field leaves the stored value alone), persisted, and for a running
or paused container written to its cgroup at once; a stopped one gets the limits at its next
start. A refused update changes nothing.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from daemon.containers import container_config, resource_checks
from daemon.containers import spec as spec_mod
from daemon.containers.container import Container
from daemon.containers.registry import ContainerRegistry
from daemon.errors import Conflict, InvalidParameter, NotFound
from daemon.events import EventBus
from runtime.cgroups import Cgroups

log = logging.getLogger("pydockerd.update")

MIN_MEMORY = resource_checks.MIN_MEMORY
_INT64 = (-(2**63), 2**63 - 1)
_UINT16 = (0, 65535)
# Resources fields an update may carry, and their Go types.
_INT_FIELDS = {"Memory": _INT64, "MemorySwap": _INT64, "MemoryReservation": _INT64, "KernelMemory": _INT64,
               "NanoCpus": _INT64, "CpuShares": _INT64, "CpuPeriod": _INT64, "CpuQuota": _INT64,
               "CpuRealtimePeriod": _INT64, "CpuRealtimeRuntime": _INT64, "PidsLimit": _INT64,
               "BlkioWeight": _UINT16}
_STR_FIELDS = ("CpusetCpus", "CpusetMems")


@dataclass
class Update:
    """A checked request: the Resources fields it sets (zero ones dropped, as dockerd ignores
    them), the restart policy if it names one, and the warnings to answer with."""

    resources: dict[str, Any] = field(default_factory=dict)
    restart_policy: dict | None = None
    warnings: list[str] = field(default_factory=list)


def parse(body: Any, *, blkio_weight_supported: bool, ncpu: int | None = None,
          online_cpus: set[int] | None = None, online_mems: set[int] | None = None) -> Update:
    """The request body of POST /containers/{id}/update, checked as dockerd's
    verifyContainerSettings(update=true) does (the API version's adjustments already made)."""
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: expected an object")
    upd = Update()
    res = upd.resources
    for key, (lo, hi) in _INT_FIELDS.items():
        value = body.get(key)
        if value is None:
            continue
        kind = "uint16" if key == "BlkioWeight" else "int64"
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidParameter(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                                   f"UpdateConfig.{key} of type {kind}")
        if not lo <= value <= hi:
            raise InvalidParameter(f"json: cannot unmarshal number {value} into Go struct field "
                                   f"UpdateConfig.{key} of type {kind}")
        if value or (key == "PidsLimit"):
            res[key] = value
    for key in _STR_FIELDS:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidParameter(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                                   f"UpdateConfig.{key} of type string")
        if value:
            res[key] = value
    _check_memory(res, upd.warnings)
    _check_cpu(res, ncpu or os.cpu_count() or 1)
    resource_checks.cpuset(res, online_cpus, online_mems)
    weight = res.get("BlkioWeight", 0)
    if weight and not blkio_weight_supported:
        upd.warnings.append("Your kernel does not support Block I/O weight or the cgroup is not mounted. "
                            "Weight discarded.")
        del res["BlkioWeight"]
    elif weight and not 10 <= weight <= 1000:
        raise InvalidParameter("Range of blkio weight is from 10 to 1000")
    if "PidsLimit" in res and res["PidsLimit"] <= 0:
        res["PidsLimit"] = 0  # dockerd: 0 and any negative value both mean unlimited on update
    policy = body.get("RestartPolicy")
    if policy is not None:
        if not isinstance(policy, dict):
            raise InvalidParameter("json: cannot unmarshal into Go struct field UpdateConfig.RestartPolicy of "
                                   "type container.RestartPolicy")
        if policy.get("Name"):
            upd.restart_policy = container_config.validate_restart_policy({"RestartPolicy": policy})
    return upd


def _check_memory(res: dict, warnings: list[str]) -> None:
    memory = res.get("Memory", 0)
    if memory and memory < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    swap = res.get("MemorySwap", 0)
    if swap < -1:
        raise InvalidParameter(f"invalid MemorySwap {swap}: must be -1 (unlimited) or a size")
    if memory > 0 and swap > 0 and swap < memory:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    reservation = res.get("MemoryReservation", 0)
    if reservation and reservation < MIN_MEMORY:
        raise InvalidParameter("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise InvalidParameter("Minimum memory limit can not be less than memory reservation limit, see usage")
    kernel = res.pop("KernelMemory", 0)
    if kernel and kernel < MIN_MEMORY:
        raise InvalidParameter("Minimum kernel memory limit allowed is 6MB")
    if kernel:
        warnings.append("Your kernel does not support kernel memory limit capabilities or the cgroup is not "
                        "mounted. Limitation discarded.")


def _check_cpu(res: dict, ncpu: int) -> None:
    shares = res.get("CpuShares", 0)
    if shares < 0:
        raise InvalidParameter(f"invalid CpuShares {shares}: must not be negative")
    nano, period, quota = res.get("NanoCpus", 0), res.get("CpuPeriod", 0), res.get("CpuQuota", 0)
    if nano > 0 and period > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    if nano and not 0 < nano <= ncpu * 1_000_000_000:
        raise InvalidParameter(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if 0 < quota < 1000:
        raise InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if quota < -1:
        raise InvalidParameter(f"invalid CpuQuota {quota}: must be -1 (unlimited) or at least 1000")
    if res.get("CpuRealtimePeriod") or res.get("CpuRealtimeRuntime"):
        # Real-time CPU budgets need CONFIG_RT_GROUP_SCHED and a share of the parent's: not offered.
        raise InvalidParameter("Your kernel does not support cgroup cpu real-time period")


def merge(hc: dict, upd: Update, cid: str) -> dict:
    """The HostConfig after the update (container.UpdateContainer): a copy, `hc` untouched."""
    res = upd.resources
    out = copy.deepcopy(hc)

    def refuse(message: str) -> InvalidParameter:
        return InvalidParameter(f"Cannot update container {cid}: {message}")

    # NanoCpus sets the CFS period and quota itself: the two ways exclude each other.
    if res.get("NanoCpus", 0) > 0 and (hc.get("CpuPeriod") or 0) > 0:
        raise refuse("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set")
    if res.get("NanoCpus", 0) > 0 and (hc.get("CpuQuota") or 0) > 0:
        raise refuse("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set")
    if res.get("CpuPeriod", 0) > 0 and (hc.get("NanoCpus") or 0) > 0:
        raise refuse("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set")
    if res.get("CpuQuota", 0) > 0 and (hc.get("NanoCpus") or 0) > 0:
        raise refuse("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")
    if res.get("Memory") and "MemorySwap" not in res:
        # What dockerd has stored: twice the memory when only memory was given at create.
        stored_swap = hc.get("MemorySwap") or (2 * hc["Memory"] if hc.get("Memory") else 0)
        if res["Memory"] > stored_swap:
            raise refuse("Memory limit should be smaller than already set memoryswap limit, update the "
                         "memoryswap at the same time")
        if not hc.get("MemorySwap"):
            out["MemorySwap"] = stored_swap
    out.update(res)
    swap = out.get("MemorySwap") or 0
    if out.get("Memory") and swap > 0 and swap < out["Memory"]:
        raise refuse("Minimum memoryswap limit should be larger than memory limit, see usage")
    if upd.restart_policy is not None:
        if hc.get("AutoRemove") and upd.restart_policy["Name"] != "no":
            raise refuse("Restart policy cannot be updated because AutoRemove is enabled for the container")
        out["RestartPolicy"] = upd.restart_policy
    return out


class UpdateService:
    """POST /containers/{id}/update: checked, merged, applied to a running container's cgroup,
    persisted; an `update` event."""

    def __init__(self, *, registry: ContainerRegistry, cgroups: Cgroups, events: EventBus,
                 persist: Callable[[Container], Awaitable[None]]) -> None:
        self.registry = registry
        self.cgroups = cgroups
        self.events = events
        self.persist = persist

    async def update(self, ref: str, body: Any) -> dict:
        upd = parse(body, blkio_weight_supported=self.cgroups.supports_blkio_weight())
        c = self.registry.get(ref)
        async with c.lock:  # after a start in progress: its cgroup exists, and gets the new limits
            if c.removing or c.id not in self.registry:
                raise Conflict(f'Cannot update container {c.id}: container is marked for removal and cannot be '
                               '"update"')
            new = merge(c.host_config, upd, c.id)
            if c.running and not c.state["Restarting"]:
                try:
                    await asyncio.to_thread(self.cgroups.update, c.id, spec_mod.resources(new))
                except OSError as e:
                    if c.id not in self.registry:
                        raise NotFound(f"No such container: {ref}") from None
                    if c.running:
                        # The kernel's refusal (a limit below what the container uses now): what
                        # was written is put back.
                        await asyncio.to_thread(self._restore, c)
                        raise InvalidParameter(f"Cannot update container {c.id}: {_os_message(e)}") from None
            c.host_config = new
            await self.persist(c)
        self.events.publish("container", "update", c.id, c.event_attrs())
        return {"Warnings": upd.warnings}

    def _restore(self, c: Container) -> None:
        try:
            self.cgroups.update(c.id, spec_mod.resources(c.host_config))
        except OSError as e:
            log.warning("restoring the limits of %s after a refused update: %s", c.id, e)


def _os_message(e: OSError) -> str:
    where = f" writing {os.path.basename(e.filename)}" if e.filename else ""
    return f"failed to update the cgroup{where}: {e.strerror or e}"
