"""Packet filtering and NAT: one nftables table per daemon, plus iptables FORWARD accepts.

The whole table is rendered from the daemon's current model and swapped in one `nft -f -`
transaction, so the kernel never sees a half-updated rule set and a crash can be repaired
by simply rendering again. The table is named after the daemon's default bridge so that
several daemons (tests) on one host never touch each other's rules.

Why iptables as well: on hosts with br_netfilter and a FORWARD policy of DROP (set by a
dockerd), an accept in our own table does not override a drop in another table's base
chain, so forwarding for our bridges must be accepted in iptables' own FORWARD chain. Our
own drops (isolation, --internal) still win, because a drop in any base chain is final.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("pydockerd.network")


class FirewallError(Exception):
    pass


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    subnet: str
    internal: bool = False
    masquerade: bool = False
    icc: bool = True  # com.docker.network.bridge.enable_icc


@dataclass(frozen=True)
class PortRule:
    proto: str  # "tcp" | "udp"
    host_ip: str  # "" for any local address
    host_port: int
    container_ip: str
    container_port: int


def table_name(default_bridge: str) -> str:
    return "pydockerd_" + default_bridge.replace("-", "_").replace(".", "_")


def _q(name: str) -> str:
    return '"' + name + '"'


def render(table: str, bridges: list[BridgeSpec], ports: list[PortRule]) -> str:
    """The complete table (delete + re-create, applied atomically)."""
    lines = [f"table ip {table} {{}}", f"delete table ip {table}", f"table ip {table} {{"]
    lines += ["  chain publish {"]
    for p in ports:
        daddr = f"ip daddr {p.host_ip} " if p.host_ip and p.host_ip != "0.0.0.0" else ""
        lines.append(f"    {daddr}{p.proto} dport {p.host_port} dnat to {p.container_ip}:{p.container_port}")
    lines += ["  }",
              "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
              "    fib daddr type local jump publish", "  }",
              "  chain output {", "    type nat hook output priority -100; policy accept;",
              "    fib daddr type local jump publish", "  }",
              "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;"]
    for b in bridges:
        # 127.0.0.1:PORT -> container: the reply must come back to a routable source.
        lines.append(f"    ip saddr 127.0.0.0/8 oifname {_q(b.name)} masquerade")
        # Hairpin: a container reaching a published port of its own network through the host.
        lines.append(f"    ip saddr {b.subnet} ip daddr {b.subnet} ct status dnat masquerade")
        if b.masquerade and not b.internal:
            lines.append(f"    ip saddr {b.subnet} oifname != {_q(b.name)} masquerade")
    lines += ["  }",
              "  chain forward {", "    type filter hook forward priority filter; policy accept;",
              # Published ports stay reachable from other networks, as with dockerd.
              "    ct status dnat accept"]
    names = [b.name for b in bridges]
    for b in bridges:
        if not b.icc:
            # Bridged traffic between two ports of one bridge reaches this hook through
            # br_netfilter with the bridge as both devices (dockerd's `-i br -o br -j DROP`);
            # published ports still work, their DNAT was accepted above.
            lines.append(f"    iifname {_q(b.name)} oifname {_q(b.name)} drop")
        if b.internal:
            lines.append(f"    iifname {_q(b.name)} oifname != {_q(b.name)} drop")
            lines.append(f"    oifname {_q(b.name)} iifname != {_q(b.name)} drop")
        others = [n for n in names if n != b.name]
        if others:
            # Isolation: no traffic between two of our networks.
            lines.append(f"    iifname {_q(b.name)} oifname {{ {', '.join(map(_q, others))} }} drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


async def _run(argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
    # In a worker thread, so that the event loop does not wait for the fork and exec.
    try:
        proc = await asyncio.to_thread(subprocess.run, argv, input=stdin, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT,
                                       stdin=None if stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    return proc.returncode or 0, proc.stdout.decode(errors="replace")


class Firewall:
    """Serialises rule updates: each apply renders from the latest model."""

    def __init__(self, default_bridge: str) -> None:
        self.table = table_name(default_bridge)
        self._lock = asyncio.Lock()

    async def apply(self, model: Callable[[], tuple[list[BridgeSpec], list[PortRule]]]) -> None:
        """Renders `model()` under the lock, so concurrent updates never apply a stale view."""
        async with self._lock:
            text = render(self.table, *model())
            rc, out = await _run(["nft", "-f", "-"], text.encode())
        if rc != 0:
            raise FirewallError(f"nft: {out.strip()}")

    async def remove(self) -> None:
        async with self._lock:
            await _run(["nft", "-f", "-"], f"table ip {self.table} {{}}\ndelete table ip {self.table}\n".encode())

    @staticmethod
    def _forward_rules(bridge: str) -> list[list[str]]:
        tag = ["-m", "comment", "--comment", f"pydockerd:{bridge}", "-j", "ACCEPT"]
        return [["-i", bridge, *tag], ["-o", bridge, *tag]]

    async def allow_forward(self, bridge: str) -> None:
        """iptables FORWARD accepts for one bridge, added once (idempotent)."""
        async with self._lock:
            for rule in self._forward_rules(bridge):
                rc, _ = await _run(["iptables", "-w", "-C", "FORWARD", *rule])
                if rc != 0:
                    rc, out = await _run(["iptables", "-w", "-I", "FORWARD", *rule])
                    if rc != 0:
                        log.warning("iptables: cannot accept forwarding for %s: %s", bridge, out.strip())

    async def disallow_forward(self, bridge: str) -> None:
        async with self._lock:
            for rule in self._forward_rules(bridge):
                for _ in range(8):  # duplicates from a crash between -C and -I
                    rc, _ = await _run(["iptables", "-w", "-D", "FORWARD", *rule])
                    if rc != 0:
                        break


async def available() -> bool:
    """Whether nft works here (else published ports fall back to the userland proxy)."""
    rc, _ = await _run(["nft", "list", "tables"])
    return rc == 0
