"""The few rtnetlink requests a container start makes, on a plain netlink socket.

The messages are pyroute2's (its ifinfmsg, ifaddrmsg and rtmsg classes encode them), but they
are sent without pyroute2's IPRoute: opening one and sending a request through it cost
0.5 ms + 0.2 ms per request of CPU (its asyncio core, measured 2026-12-05), held under the
GIL while the daemon's event loop waited; the same messages sent here cost ~0.05 ms each.
What they set is what `ip` sets: `link set IF alias A | address M | up`, `addr add A/N brd +
dev IF`, `route replace default via G dev IF proto boot`, and veths made with their peer
directly in a namespace.

Blocking; a netlink socket talks to the network namespace of the thread that opened it, so
callers open it on the thread that is inside the namespace they mean (network/netns.py).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

from network.netlink import ifaddrmsg, ifinfmsg, rtmsg

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
_RT_TABLE_MAIN = 254
_RTN_UNICAST = 1
_RT_SCOPE_UNIVERSE = 0
RTPROT_BOOT = 3

# The acknowledgement's header (len, type, flags, seq, pid) and then the errno.
_NLMSGHDR = struct.Struct("=IHHII")


class Rtnl:
    """An rtnetlink socket in the calling thread's network namespace; a context manager."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def _request(self, msg: ifinfmsg | ifaddrmsg | rtmsg, kind: int, flags: int = 0) -> None:
        """Sends one request and waits for its acknowledgement; OSError with the kernel's errno."""
        self._seq += 1
        seq = self._seq
        msg["header"]["type"] = kind
        msg["header"]["flags"] = flags | _NLM_F_REQUEST | _NLM_F_ACK
        msg["header"]["sequence_number"] = seq
        msg.encode()
        self._sock.send(msg.data)
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
        attrs: list[tuple[str, object]] = []
        if address is not None:
            attrs.append(("IFLA_ADDRESS", address))
        if alias is not None:
            attrs.append(("IFLA_IFALIAS", alias))
        if master is not None:
            attrs.append(("IFLA_MASTER", master))
        flags = _IFF_UP if up else 0
        self._request(_link(index, attrs, flags=flags, change=flags), _RTM_NEWLINK)

    def add_veth(self, name: str, peer: str, *, peer_netns_fd: int, peer_address: str, mtu: int = 0) -> None:
        """`ip link add NAME type veth peer name PEER netns NS address MAC` (both ends `mtu`
        when not 0): NAME here, PEER made directly inside the namespace open as `peer_netns_fd`."""
        mtu_attrs: list[tuple[str, object]] = [("IFLA_MTU", mtu)] if mtu else []
        peer_attrs = [("IFLA_IFNAME", peer), ("IFLA_NET_NS_FD", peer_netns_fd), ("IFLA_ADDRESS", peer_address),
                      *mtu_attrs]
        linkinfo = {"attrs": [("IFLA_INFO_KIND", "veth"),
                              ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]})]}
        msg = _link(0, [("IFLA_IFNAME", name), *mtu_attrs, ("IFLA_LINKINFO", linkinfo)])
        self._request(msg, _RTM_NEWLINK, _NLM_F_CREATE | _NLM_F_EXCL)

    def delete_link(self, index: int) -> None:
        """`ip link del`: OSError ENODEV when it is gone already."""
        self._request(_link(index, []), _RTM_DELLINK)

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """`ip addr add A/N brd + dev IF` (IPv4): no broadcast on /31 and /32."""
        msg = ifaddrmsg()
        msg["family"], msg["prefixlen"], msg["index"] = socket.AF_INET, prefixlen, index
        msg["scope"] = _RT_SCOPE_UNIVERSE
        attrs: list[tuple[str, object]] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        if prefixlen < 31:
            net = ipaddress.IPv4Network(f"{address}/{prefixlen}", strict=False)
            attrs.append(("IFA_BROADCAST", str(net.broadcast_address)))
        msg["attrs"] = attrs
        self._request(msg, _RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_EXCL)

    def replace_default_route(self, gateway: str, index: int, protocol: int = RTPROT_BOOT) -> None:
        """`ip route replace default via G dev IF` (IPv4, main table; `ip` says proto boot)."""
        msg = rtmsg()
        msg["family"], msg["table"], msg["proto"] = socket.AF_INET, _RT_TABLE_MAIN, protocol
        msg["scope"], msg["type"] = _RT_SCOPE_UNIVERSE, _RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", gateway), ("RTA_OIF", index)]
        self._request(msg, _RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_REPLACE)


def _link(index: int, attrs: list[tuple[str, object]], flags: int = 0, change: int = 0) -> ifinfmsg:
    msg = ifinfmsg()
    msg["family"], msg["index"], msg["flags"], msg["change"] = socket.AF_UNSPEC, index, flags, change
    msg["attrs"] = attrs
    return msg
