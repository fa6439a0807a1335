"""Network namespaces made ahead of container starts on the default bridge.

A container's network on a bridge is a namespace and a veth whose host end is on the bridge;
making them is most of what its network setup costs (an `unshare`, a veth created under the
kernel's rtnl lock that every other program changing links on the host contends for: 10-50 ms
of a start on a busy host). They depend on nothing of the container: this pool keeps a few
ready (namespace file `pool-<id>`, `lo` up, IPv6 off, the veth's host end enslaved to the
bridge and up, its inner end `eth0` down), and a start takes one (the endpoint id is the pool entry's: the
host end is named after it). What is left at the start is the container's own: its address,
MAC, route and the veth's owner tag (daemon/networks/endpoints.py). The pool is refilled
right after each take, off the start's path.

Nothing outlives the daemon: close() (daemon stop) removes what is ready and waits for an
entry in the making. After a kill -9 the next start's reconcile removes them as leftovers,
before the pool is filled again: namespace files of no running container, veths whose owner
tag ("pool") is no running container.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from daemon.util.quiet import Starts
from network import inside, links, netns

log = logging.getLogger("pydockerd.networks")

OWNER = "pool"  # the ifalias owner of a veth nobody has taken
PREFIX = "pool-"  # of the namespace files
SIZE = 2
ISOLATED = 1
REFILL_DELAY = 0.05  # seconds


def host_if(endpoint_id: str) -> str:
    return "veth" + endpoint_id[:7]


def _local_mac() -> str:
    """Until a container takes it and sets its own (ipam.mac_for its address)."""
    b = bytearray(secrets.token_bytes(6))
    b[0] = (b[0] & 0xFE) | 0x02  # unicast, locally administered
    return ":".join(f"{x:02x}" for x in b)


@dataclass(frozen=True)
class Ready:
    endpoint_id: str
    path: Path  # the namespace file, moved to the container's at take
    bridge: str  # "" for an isolated one (no veth)
    mtu: int


class SandboxPool:
    """Two kinds: on the default bridge (`size` of them), and isolated ones for `--net=none`
    (`isolated`: a namespace with `lo` up and IPv6 off, no veth)."""

    def __init__(self, netns_dir: Path, size: int = SIZE, isolated: int = ISOLATED,
                 starts: Starts | None = None) -> None:
        self.netns_dir = netns_dir
        # Made between starts: a namespace and a veth are kernel work under the rtnl lock, which
        # a start's own network setup (and its monitor's mounts) then waited behind.
        self._starts = starts or Starts()
        self.sizes = {"": isolated}
        self._bridge = ""
        self._mtu = 0
        self._ready: dict[str, list[Ready]] = {"": []}  # by bridge; "" the isolated ones
        self._filling: asyncio.Task | None = None
        self._closed = False
        self._started = False
        self._size = size

    def start(self, bridge: str, mtu: int) -> None:
        """Fill the pool, for `bridge` too unless it is "" (after the start-up reconcile removed
        what a crash left)."""
        self._bridge, self._mtu, self._started = bridge, mtu, True
        if bridge:
            self.sizes[bridge] = self._size
            self._ready[bridge] = []
        self._refill()

    def take(self, bridge: str, mtu: int) -> Ready | None:
        """A ready namespace for a container on `bridge`, or None (then it is made as before)."""
        if not bridge or bridge != self._bridge or mtu != self._mtu:
            return None
        return self._take(bridge)

    def take_isolated(self) -> Ready | None:
        """A ready namespace for a container with `--net=none`, or None."""
        return self._take("")

    def _take(self, kind: str) -> Ready | None:
        ready = self._ready.get(kind)
        if self._closed or not ready:
            self._refill()
            return None
        entry = ready.pop(0)
        # Not at once: the start that took it is setting up its own network now, and making
        # the next one (a veth, under the kernel's rtnl lock) would slow it down.
        asyncio.get_running_loop().call_later(REFILL_DELAY, self._refill)
        return entry

    def _missing(self) -> str | None:
        return next((kind for kind, n in self.sizes.items() if len(self._ready[kind]) < n), None)

    def _refill(self) -> None:
        if self._closed or not self._started or (self._filling is not None and not self._filling.done()):
            return
        if self._missing() is not None:
            self._filling = asyncio.create_task(self._fill(), name="netns-pool")

    async def _fill(self) -> None:
        while not self._closed and (kind := self._missing()) is not None:
            await self._starts.after_starts()
            if self._closed:
                return
            try:
                entry = await self._make(kind)
            except Exception as e:  # noqa: BLE001 - starts then make their own; tried again at the next take
                log.warning("cannot prepare a network namespace ahead: %s", e)
                return
            if self._closed:
                await discard(entry)
                return
            self._ready[kind].append(entry)

    async def _make(self, bridge: str) -> Ready:
        endpoint_id = secrets.token_hex(32)
        path = self.netns_dir / f"{PREFIX}{endpoint_id[:12]}"
        mtu = self._mtu if bridge else 0
        # IPv6 off before the veth comes in ("default" reaches it): a start then has no sysctl
        # to write. The default bridge has no IPv6 when the pool is used (endpoints.py).
        await netns.create(path, functools.partial(inside.loopback, disable_ipv6=True))
        if bridge:
            try:
                await links.add_veth(host_if(endpoint_id), bridge, path, "eth0", _local_mac(), mtu, OWNER)
            except BaseException:
                with contextlib.suppress(OSError, netns.NetnsError):
                    await asyncio.to_thread(netns.remove, path)
                raise
        return Ready(endpoint_id, path, bridge, mtu)

    async def close(self) -> None:
        """Daemon stop: what is ready goes; an entry in the making is waited for (a thread
        creating a veth cannot be stopped halfway) and goes too."""
        self._closed = True
        if self._filling is not None:
            with contextlib.suppress(Exception):
                await self._filling
        ready = [entry for entries in self._ready.values() for entry in entries]
        self._ready = {kind: [] for kind in self._ready}
        for entry in ready:
            await discard(entry)


async def discard(entry: Ready) -> None:
    """An entry taken but not used: removed."""
    if entry.bridge:
        with contextlib.suppress(Exception):
            await links.delete(host_if(entry.endpoint_id))
    with contextlib.suppress(OSError, netns.NetnsError):
        await asyncio.to_thread(netns.remove, entry.path)


def adopt(entry: Ready, path: Path, owner: str) -> None:
    """Blocking: the entry's namespace becomes the container's file `path`, its veth is tagged
    as the container's. On failure the entry is gone (nothing of it is left)."""
    move(entry, path)
    tag(entry, owner)


def move(entry: Ready, path: Path) -> None:
    """Blocking: the entry's namespace becomes the container's file `path` (all the container's
    init needs of it). On failure the entry is gone (nothing of it is left)."""
    try:
        netns.rebind(entry.path, path)
    except BaseException:
        with contextlib.suppress(OSError, netns.NetnsError):
            netns.remove(entry.path)
        if entry.bridge:
            with contextlib.suppress(Exception):
                links.delete_sync(host_if(entry.endpoint_id))
        raise


def tag(entry: Ready, owner: str) -> None:
    """Blocking: the entry's veth is tagged as `owner`'s (after move)."""
    if not entry.bridge:
        return
    # A failure here leaves the veth tagged "pool": the failed setup's teardown deletes it by
    # name, as any endpoint's.
    links.set_owner_sync(host_if(entry.endpoint_id), owner)
