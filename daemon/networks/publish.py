"""Published ports of running containers: which host port each wanted mapping gets, the
sockets holding them (and the userland proxy where kernel rules do not carry them), and the
record of what is published that survives a daemon restart.

Works on typed values only (network/ports.py): what a container wants is translated from
its request by daemon/networks/ports.py before it gets here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Protocol

from daemon.errors import DaemonError, InvalidParameter
from daemon.networks.sandbox import Sandbox
from network import proxy
from network.ports import Published, Wanted, ephemeral_range

log = logging.getLogger("pydockerd.networks")


class Firewalling(Protocol):
    """What publishing needs from the network service."""

    nft_ok: bool  # kernel rules carry IPv4 ports; else the proxy does
    ipv6: bool  # [::] can be bound, so default publications include it
    userland_proxy: bool  # the proxy may carry what kernel rules cannot (IPv6, no nftables)

    async def sync_firewall(self) -> None: ...


class PortPublisher:
    def __init__(self, firewall: Firewalling) -> None:
        self.firewall = firewall
        self._taken: dict[tuple[str, str, int], str] = {}  # (proto, host ip, port) -> container id

    async def publish(self, cid: str, name: str, sb: Sandbox, want: list[Wanted], host_binding_ip: str,
                      endpoint_id: str) -> None:
        """Publishes `want` towards sb.port_ip, all or nothing. host_binding_ip is the
        network's default host address ("" or "0.0.0.0": every address)."""
        if not want:
            return
        # [::] is only ever carried by the proxy.
        default_ips = ["0.0.0.0", "::"] if self.firewall.ipv6 and self.firewall.userland_proxy else ["0.0.0.0"]
        if host_binding_ip and host_binding_ip != "0.0.0.0":
            # A network's own default host address (dockerd: no [::] then, unless it is IPv6).
            default_ips = [host_binding_ip]
        try:
            for w in want:
                host_ips = [w.host_ip] if w.host_ip else default_ips
                port = self._pick_port(cid, name, sb, w, host_ips, endpoint_id)
                for hip in host_ips:
                    sb.published.append(Published(w.proto, w.container_port, hip, port))
            for b, p in zip(sb.bindings, sb.published, strict=True):
                if ":" in p.host_ip or not self.firewall.nft_ok:
                    if not self.firewall.userland_proxy:
                        raise InvalidParameter(
                            f"cannot publish {p.host_ip}:{p.host_port}: only the userland proxy can carry it "
                            "here (IPv6, or no kernel rules) and the daemon runs with --userland-proxy=false")
                    await proxy.start_proxy(b, sb.port_ip, p.container_port)
            await self.firewall.sync_firewall()
            await self._save(sb)
        except BaseException:
            await self.unpublish(cid, sb)
            raise

    async def retarget(self, sb: Sandbox) -> None:
        """What is published now leads to sb.port_ip (the gateway endpoint moved)."""
        for b, p in zip(sb.bindings, sb.published, strict=True):
            if b.target[0]:
                proxy.retarget(b, sb.port_ip, p.container_port)
        await self.firewall.sync_firewall()
        await self._save(sb)

    async def unpublish(self, cid: str, sb: Sandbox) -> None:
        for b in sb.bindings:
            b.close()
        had = bool(sb.published)
        sb.bindings.clear()
        sb.published.clear()
        for key, owner in list(self._taken.items()):
            if owner == cid:
                del self._taken[key]
        if had:
            with contextlib.suppress(DaemonError):
                await self.firewall.sync_firewall()
            await self._save(sb)

    async def restore(self, cid: str, sb: Sandbox) -> None:
        """Holds again what a container that kept running while we were down had published."""
        try:
            saved = json.loads(_record(sb).read_text())
            sb.published = [Published(**p) for p in saved]
        except (OSError, ValueError, TypeError):
            sb.published = []
        for p in sb.published:
            self._taken[(p.proto, p.host_ip, p.host_port)] = cid
            try:
                b = proxy.reserve(p.proto, p.host_ip, p.host_port)
            except (proxy.PortInUse, OSError) as e:
                log.warning("cannot re-reserve %s:%s for %s: %s", p.host_ip, p.host_port, cid, e)
                continue
            sb.bindings.append(b)
            if (":" in p.host_ip or not self.firewall.nft_ok) and self.firewall.userland_proxy:
                await proxy.start_proxy(b, sb.port_ip, p.container_port)

    @staticmethod
    def forget(sb: Sandbox) -> None:
        """The record goes with the sandbox."""
        with contextlib.suppress(OSError):
            _record(sb).unlink()

    async def _save(self, sb: Sandbox) -> None:
        path = _record(sb)
        if sb.published:
            await asyncio.to_thread(path.write_text, json.dumps([p.__dict__ for p in sb.published]))
        else:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(path.unlink)

    def _pick_port(self, cid: str, name: str, sb: Sandbox, w: Wanted, host_ips: list[str], ep_id: str) -> int:
        def fail(msg: str) -> DaemonError:
            return DaemonError(f"driver failed programming external connectivity on endpoint {name} ({ep_id}): {msg}")

        if w.host_lo:
            candidates = range(w.host_lo, w.host_hi + 1)
        else:
            lo, hi = ephemeral_range()
            candidates = range(lo, hi + 1)
        last_err = ""
        for port in candidates:
            taken = next((hip for hip in host_ips if self._port_taken(w.proto, hip, port)), None)
            if taken is not None:
                last_err = f"Bind for {taken}:{port} failed: port is already allocated"
                continue
            held = []
            try:
                for hip in host_ips:
                    held.append(proxy.reserve(w.proto, hip, port))
            except proxy.PortInUse as e:
                for b in held:
                    b.close()
                last_err = f"Error starting userland proxy: {e}"
                continue
            except OSError as e:
                for b in held:
                    b.close()
                raise fail(f"Error starting userland proxy: {e}") from None
            sb.bindings.extend(held)
            for hip in host_ips:
                self._taken[(w.proto, hip, port)] = cid
            return port
        if not w.host_lo:
            raise fail("no free host port in the ephemeral range")
        raise fail(last_err)

    def _port_taken(self, proto: str, host_ip: str, port: int) -> bool:
        """Whether one of our containers holds the port on an overlapping address: the same
        port on two different host addresses is fine, as with dockerd."""
        return any(p == proto and hp == port and _addresses_overlap(ip, host_ip)
                   for p, ip, hp in self._taken)


def _record(sb: Sandbox) -> Path:
    """What is published, in a file beside the netns (it survives a daemon restart)."""
    return sb.path.with_suffix(".ports")


def _addresses_overlap(a: str, b: str) -> bool:
    """Two host addresses one port cannot be held on at once: equal, or one is the wildcard
    of the other's family ([::] is IPv6-only here, as docker-proxy binds it)."""
    if a == b:
        return True
    v6a, v6b = ":" in a, ":" in b
    return v6a == v6b and ((a in ("0.0.0.0", "::")) or (b in ("0.0.0.0", "::")))
