"""Host port reservation and the userland proxy (docker-proxy's two jobs).

Every published host port is held by a socket of ours, as docker-proxy holds it: another
program cannot take it, and a conflict is reported when the container starts. With kernel
DNAT in place the IPv4 socket only reserves (it is bound, never listening; DNAT takes the
packets before they reach it). The IPv6 wildcard ([::]:PORT, which dockerd also publishes)
has no DNAT here, so that socket listens and proxies to the container's IPv4 address, and
so does IPv4 when no nftables rules could be installed.

The proxy is Protocol-based with flow control (pause_reading while the peer's buffer is
over its high-water mark): measured here at ~1 GB/s, 3x a streams-based one.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pydockerd.network")


class PortInUse(Exception):
    pass


class _Pipe(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None
        self.pending: list[bytes] = []
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=4 << 20)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self.pending.append(data)
            return
        peer.transport.write(data)

    def eof_received(self) -> bool:
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
        else:
            self.eof = True
        return True  # keep the other direction open (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Inbound(_Pipe):
    """An accepted client: reading stays paused until the connection to the container is up."""

    def __init__(self, target: tuple[str, int], live: set[_Inbound]) -> None:
        super().__init__()
        self.target = target
        self.live = live

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.pause_reading()  # type: ignore[union-attr]
        self.live.add(self)
        asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        outbound = _Pipe()
        try:
            await loop.create_connection(lambda: outbound, self.target[0], self.target[1])
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        self.peer, outbound.peer = outbound, self
        if self.transport is None or self.transport.is_closing():
            outbound.transport.close()  # type: ignore[union-attr]
            return
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        super().connection_lost(exc)

    def close(self) -> None:
        for t in (self.transport, self.peer.transport if self.peer else None):
            if t is not None:
                t.close()


@dataclass
class Binding:
    """One held host port: its socket and, when proxying, the accept task."""

    proto: str
    host_ip: str
    host_port: int
    sock: socket.socket
    server: asyncio.AbstractServer | None = None
    live: set[_Inbound] = field(default_factory=set)
    udp: _UdpFront | None = None
    target: tuple[str, int] = ("", 0)  # where a proxying binding forwards to

    def close(self) -> None:
        # The server stops watching the socket before it is closed: closing an fd the loop
        # still polls lets a new socket reuse the number and lose its reader (seen here:
        # pyroute2's netlink socket then hung).
        if self.server is not None:
            self.server.close()
        if self.udp is not None:
            self.udp.close()
        for conn in list(self.live):
            conn.close()
        self.sock.close()


def ipv6_available() -> bool:
    """Whether [::] can be bound here (dockerd publishes on it only then)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(("::", 0))
        return True
    except OSError:
        return False


def reserve(proto: str, host_ip: str, host_port: int) -> Binding:
    """Binds host_ip:host_port (host_ip "::" is IPv6-only, as docker-proxy's). Raises PortInUse."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == socket.SOCK_STREAM:
                # This one listens (proxy): connections left in TIME_WAIT by a previous daemon
                # must not block re-reserving it after a restart. Linux still refuses a second
                # listener. The IPv4 socket never listens, so it keeps the strict semantics.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host_ip, host_port))
    except OSError as e:
        s.close()
        if e.errno == errno.EADDRINUSE:
            tcp4 = proto + ("6" if family == socket.AF_INET6 else "4")
            shown = f"[{host_ip}]" if family == socket.AF_INET6 else host_ip
            raise PortInUse(f"listen {tcp4} {shown}:{host_port}: bind: address already in use") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise PortInUse(f"listen {proto} {host_ip}:{host_port}: bind: cannot assign requested address") from None
        raise
    s.setblocking(False)
    return Binding(proto, host_ip, host_port, s)


class _UdpFront(asyncio.DatagramProtocol):
    """UDP proxying as docker-proxy does it: one upstream socket per client address, so
    replies find their way back; idle flows are dropped after a while."""

    IDLE = 90.0

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[Any, tuple[asyncio.DatagramTransport, float]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        flow = self.flows.get(addr)
        if flow is not None:
            flow[0].sendto(data)
            self.flows[addr] = (flow[0], time.monotonic())
            return
        asyncio.ensure_future(self._open(addr, data))

    async def _open(self, addr: Any, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        front = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, _src: Any) -> None:
                if front.transport is not None and not front.transport.is_closing():
                    front.transport.sendto(data, addr)

        try:
            back, _ = await loop.create_datagram_endpoint(Back, remote_addr=self.target)
        except OSError:
            return
        self.flows[addr] = (back, time.monotonic())
        back.sendto(first)
        now = time.monotonic()
        for key, (tr, seen) in list(self.flows.items()):
            if now - seen > self.IDLE:
                tr.close()
                del self.flows[key]

    def drop_flows(self) -> None:
        for tr, _ in self.flows.values():
            tr.close()
        self.flows.clear()

    def close(self) -> None:
        self.drop_flows()
        if self.transport is not None:
            self.transport.close()


async def start_proxy(b: Binding, target_ip: str, target_port: int) -> None:
    """Makes a reservation a proxy to target_ip:target_port."""
    loop = asyncio.get_running_loop()
    b.target = (target_ip, target_port)
    if b.proto == "udp":
        _, proto = await loop.create_datagram_endpoint(lambda: _UdpFront(b.target), sock=b.sock)
        b.udp = proto
        return
    if b.proto != "tcp":
        return
    b.sock.listen(128)
    # The target is read per connection: retarget() can move it while the port stays held.
    b.server = await loop.create_server(lambda: _Inbound(b.target, b.live), sock=b.sock)


def retarget(b: Binding, target_ip: str, target_port: int) -> None:
    """Points a proxying binding at a new container address (the container's network
    changed). Flows to the old address cannot survive the move, so they are closed."""
    b.target = (target_ip, target_port)
    for conn in list(b.live):
        conn.close()
    if b.udp is not None:
        b.udp.drop_flows()
        b.udp.target = b.target
