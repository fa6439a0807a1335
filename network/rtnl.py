"""The few rtnetlink requests the daemon makes, spoken directly on a NETLINK_ROUTE socket.

pyroute2 did this before; importing it cost the daemon ~13 MiB (224 modules: every netlink
family, NDB, IPDB, unittest.mock...) for the dozen messages below. Each call opens its own
socket and blocks until the kernel answers (the kernel does the work inside send(), under
the rtnl lock every program changing links contends for): call from a worker thread.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

# linux/rtnetlink.h, linux/netlink.h, linux/if_link.h, linux/if_addr.h, linux/veth.h
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE = 24
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
NLA_F_NESTED = 0x8000
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 18, 20, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RT_TABLE_MAIN, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 0, 1
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NLA = struct.Struct("=HH")


class NetlinkError(OSError):
    """The kernel refused a request; `errno` as it said (ENODEV, EEXIST...)."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute (TLV), padded to 4 bytes."""
    n = _NLA.size + len(payload)
    return _NLA.pack(n, kind) + payload + b"\0" * (_align(n) - n)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attributes by type (the nested flag dropped); the last one of a type wins."""
    out: dict[int, bytes] = {}
    while offset + _NLA.size <= len(data):
        n, kind = _NLA.unpack_from(data, offset)
        if n < _NLA.size:
            break
        out[kind & ~NLA_F_NESTED] = data[offset + _NLA.size:offset + n]
        offset += _align(n)
    return out


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.split(b"\0", 1)[0].decode(errors="replace")


class Link:
    """A link as RTM_NEWLINK described it."""

    __slots__ = ("index", "flags", "attrs")

    def __init__(self, index: int, flags: int, attrs: dict[int, bytes]) -> None:
        self.index = index
        self.flags = flags
        self.attrs = attrs

    @property
    def name(self) -> str | None:
        return _text(self.attrs.get(IFLA_IFNAME))

    @property
    def alias(self) -> str | None:
        return _text(self.attrs.get(IFLA_IFALIAS))

    @property
    def master(self) -> int | None:
        raw = self.attrs.get(IFLA_MASTER)
        return struct.unpack("=I", raw[:4])[0] if raw and len(raw) >= 4 else None


class Socket:
    """One NETLINK_ROUTE socket; a request at a time."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes) -> Iterator[tuple[int, bytes]]:
        """Sends one message; yields the answers (type, payload) until the ack, the end of a
        dump, or an error, which is raised."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                n, mtype, mflags, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                if n < _NLMSGHDR.size:
                    raise NetlinkError(errno.EBADMSG, "truncated netlink message")
                payload = data[offset + _NLMSGHDR.size:offset + n]
                offset += _align(n)
                if mseq != seq:
                    continue  # a late answer to an earlier request
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return
                if mtype == NLMSG_DONE:
                    return
                yield mtype, payload
                if not mflags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return

    def call(self, kind: int, flags: int, body: bytes) -> None:
        """A request that is answered by an ack only."""
        for _ in self.request(kind, flags | NLM_F_ACK, body):
            pass

    # -- links -------------------------------------------------------------------------------

    def link_index(self, name: str) -> int | None:
        try:
            for _, payload in self.request(RTM_GETLINK, 0, ifinfomsg() + string(IFLA_IFNAME, name)):
                return _IFINFOMSG.unpack_from(payload)[2]
        except NetlinkError as e:
            if e.errno != errno.ENODEV:
                raise
        return None

    def links(self) -> Iterator[Link]:
        for _, payload in self.request(RTM_GETLINK, NLM_F_DUMP, ifinfomsg()):
            _, _, index, flags, _ = _IFINFOMSG.unpack_from(payload)
            yield Link(index, flags, parse_attrs(payload, _IFINFOMSG.size))

    def add_bridge(self, name: str, mtu: int) -> None:
        self.call(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                  ifinfomsg() + string(IFLA_IFNAME, name) + u32(IFLA_MTU, mtu)
                  + nested(IFLA_LINKINFO, string(IFLA_INFO_KIND, "bridge")))

    def add_veth(self, name: str, mtu: int, peer: str, peer_netns_fd: int, peer_mac: bytes) -> None:
        """A veth pair, the peer created directly inside the namespace open as `peer_netns_fd`."""
        peer_msg = (ifinfomsg() + string(IFLA_IFNAME, peer) + u32(IFLA_NET_NS_FD, peer_netns_fd)
                    + attr(IFLA_ADDRESS, peer_mac) + u32(IFLA_MTU, mtu))
        self.call(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                  ifinfomsg() + string(IFLA_IFNAME, name) + u32(IFLA_MTU, mtu)
                  + nested(IFLA_LINKINFO, string(IFLA_INFO_KIND, "veth"),
                           nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_msg))))

    def set_link(self, index: int, *, up: bool = False, master: int | None = None, alias: str | None = None,
                 mac: bytes | None = None) -> None:
        body = ifinfomsg(index, IFF_UP if up else 0, IFF_UP if up else 0)
        if mac is not None:
            body += attr(IFLA_ADDRESS, mac)
        if master is not None:
            body += u32(IFLA_MASTER, master)
        if alias is not None:
            body += string(IFLA_IFALIAS, alias)
        self.call(RTM_NEWLINK, 0, body)

    def delete_link(self, index: int) -> None:
        self.call(RTM_DELLINK, 0, ifinfomsg(index))

    # -- addresses ---------------------------------------------------------------------------

    def addresses(self, index: int) -> list[str]:
        """The addresses (IPv4 and IPv6, as text) on one link."""
        out = []
        for _, payload in self.request(RTM_GETADDR, NLM_F_DUMP, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            family, _, _, _, idx = _IFADDRMSG.unpack_from(payload)
            if idx != index:
                continue
            raw = parse_attrs(payload, _IFADDRMSG.size).get(IFA_ADDRESS)
            if raw:
                out.append(socket.inet_ntop(family, raw))
        return out

    def add_address(self, index: int, address: str, prefixlen: int, broadcast: str | None = None) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        raw = socket.inet_pton(family, address)
        body = _IFADDRMSG.pack(family, prefixlen, 0, 0, index) + attr(IFA_ADDRESS, raw)
        if family == socket.AF_INET:
            body += attr(IFA_LOCAL, raw)  # as `ip addr add`: the local address is the address
        if broadcast is not None:
            body += attr(IFA_BROADCAST, socket.inet_pton(socket.AF_INET, broadcast))
        self.call(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    # -- routes ------------------------------------------------------------------------------

    def replace_default_route(self, gateway: str, oif: int, protocol: int) -> None:
        """`ip route replace default via GATEWAY dev OIF` (IPv4, main table)."""
        body = (_RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, protocol, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
                + attr(RTA_GATEWAY, socket.inet_pton(socket.AF_INET, gateway)) + u32(RTA_OIF, oif))
        self.call(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, body)
