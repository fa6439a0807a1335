"""The few rtnetlink requests a container start makes, packed by hand on a plain socket.

pyroute2 builds and parses each message in Python (its marshal, its message classes, and
an event loop per IPRoute in 0.9): 1-3 ms of CPU per start for five small requests, held
under the GIL while the daemon's event loop waited for it (a thread that holds the GIL keeps
it up to the 5 ms switch interval). These requests are fixed shapes: a header, one fixed
struct and two or three attributes each; the kernel's acknowledgement carries the errno.
What they set is what `ip` sets: `link set IF alias A | address M | up`, `addr add A/N brd +
dev IF`, `route replace default via G dev IF proto boot`.

Blocking; a netlink socket talks to the network namespace of the thread that opened it, so
callers open it on the thread that is inside the namespace they mean (network/netns.py).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

_NETLINK_ROUTE = 0
_RTM_NEWLINK = 16
_RTM_DELLINK = 17
_RTM_NEWADDR = 20
_RTM_NEWROUTE = 24
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_REPLACE = 0x100
_NLM_F_EXCL = 0x200
_NLM_F_CREATE = 0x400
_IFF_UP = 0x1
_IFLA_ADDRESS = 1
_IFLA_IFNAME = 3
_IFLA_MTU = 4
_IFLA_MASTER = 10
_IFLA_LINKINFO = 18
_IFLA_IFALIAS = 20
_IFLA_NET_NS_FD = 28
_IFLA_INFO_KIND = 1
_IFLA_INFO_DATA = 2
_VETH_INFO_PEER = 1
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_BROADCAST = 4
_RTA_OIF = 4
_RTA_GATEWAY = 5
_RT_TABLE_MAIN = 254
_RTN_UNICAST = 1
_RT_SCOPE_UNIVERSE = 0
RTPROT_BOOT = 3

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags


def _attr(kind: int, data: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


class Rtnl:
    """An rtnetlink socket in the calling thread's network namespace; a context manager."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> None:
        """Sends one request and waits for its acknowledgement; OSError with the kernel's errno."""
        self._seq += 1
        seq = self._seq
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags | _NLM_F_REQUEST | _NLM_F_ACK,
                                       seq, 0) + body)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, mtype, _, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise OSError(errno.EPROTO, "malformed netlink reply")
                if mtype == _NLMSG_ERROR and mseq == seq:
                    (code,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return
                offset += (length + 3) & ~3

    def set_link(self, index: int, *, up: bool = False, address: str | None = None,
                 alias: str | None = None, master: int | None = None) -> None:
        """`ip link set`: the MAC `address`, the `alias` (ifalias), the `master` (a bridge's
        index) and/or up."""
        attrs = b""
        if address is not None:
            attrs += _attr(_IFLA_ADDRESS, bytes.fromhex(address.replace(":", "")))
        if alias is not None:
            attrs += _attr(_IFLA_IFALIAS, alias.encode() + b"\0")
        if master is not None:
            attrs += _attr(_IFLA_MASTER, struct.pack("=I", master))
        flags = _IFF_UP if up else 0
        self._request(_RTM_NEWLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, flags) + attrs)

    def add_veth(self, name: str, peer: str, *, peer_netns_fd: int, peer_address: str, mtu: int = 0) -> None:
        """`ip link add NAME type veth peer name PEER netns NS address MAC` (both ends `mtu`
        when not 0): NAME here, PEER made directly inside the namespace open as `peer_netns_fd`."""
        mtu_attr = _attr(_IFLA_MTU, struct.pack("=I", mtu)) if mtu else b""
        peer_msg = (_IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, peer.encode() + b"\0")
                    + _attr(_IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
                    + _attr(_IFLA_ADDRESS, bytes.fromhex(peer_address.replace(":", ""))) + mtu_attr)
        linkinfo = _attr(_IFLA_INFO_KIND, b"veth") + _attr(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer_msg))
        body = (_IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, name.encode() + b"\0")
                + mtu_attr + _attr(_IFLA_LINKINFO, linkinfo))
        self._request(_RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL, body)

    def delete_link(self, index: int) -> None:
        """`ip link del`: OSError ENODEV when it is gone already."""
        self._request(_RTM_DELLINK, 0, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """`ip addr add A/N brd + dev IF` (IPv4): no broadcast on /31 and /32."""
        net = ipaddress.IPv4Network(f"{address}/{prefixlen}", strict=False)
        packed = ipaddress.IPv4Address(address).packed
        attrs = _attr(_IFA_LOCAL, packed) + _attr(_IFA_ADDRESS, packed)
        if prefixlen < 31:
            attrs += _attr(_IFA_BROADCAST, net.broadcast_address.packed)
        self._request(_RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL,
                      _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, _RT_SCOPE_UNIVERSE, index) + attrs)

    def replace_default_route(self, gateway: str, index: int, protocol: int = RTPROT_BOOT) -> None:
        """`ip route replace default via G dev IF` (IPv4, main table; `ip` says proto boot)."""
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN, protocol, _RT_SCOPE_UNIVERSE, _RTN_UNICAST, 0)
        body += _attr(_RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed) + _attr(_RTA_OIF, struct.pack("=I", index))
        self._request(_RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_REPLACE, body)
