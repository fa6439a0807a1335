"""network/rtnl.py: pyroute2's messages carry what `ip` sends, and the kernel's errno comes back."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from network import rtnl


class FakeSocket:
    def __init__(self, code: int = 0) -> None:
        self.sent: list[bytes] = []
        self.code = code

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, _size: int) -> bytes:
        seq = struct.unpack_from("=I", self.sent[-1], 8)[0]
        # An unrelated message first: only the acknowledgement of our sequence number counts.
        other = struct.pack("=IHHII", 20, 2, 0, seq + 100, 0) + struct.pack("=i", -errno.EPERM)
        ack = struct.pack("=IHHII", 36, 2, 0, seq, 0) + struct.pack("=i", self.code) + b"\0" * 16
        return other + ack

    def close(self) -> None:
        pass


def _nl(code: int = 0) -> tuple[rtnl.Rtnl, FakeSocket]:
    nl = rtnl.Rtnl.__new__(rtnl.Rtnl)
    fake = FakeSocket(code)
    nl._sock = fake  # type: ignore[assignment]
    nl._seq = 0
    return nl, fake


def _attrs(data: bytes) -> dict[int, bytes]:
    out = {}
    while data:
        length, kind = struct.unpack_from("=HH", data)
        out[kind] = data[4:length]
        data = data[(length + 3) & ~3:]
    return out


def test_link_up_with_mac_and_alias() -> None:
    nl, fake = _nl()
    nl.set_link(7, up=True, address="02:42:0a:00:00:02", alias="pydockerd:abc")
    msg = fake.sent[0]
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert (length, kind, seq) == (len(msg), 16, 1)
    assert flags == 0x1 | 0x4
    assert struct.unpack_from("=BxHiII", msg, 16) == (socket.AF_UNSPEC, 0, 7, 1, 1)  # index 7, IFF_UP set
    attrs = _attrs(msg[32:])
    assert attrs[1] == bytes.fromhex("02420a000002")
    assert attrs[20] == b"pydockerd:abc\0"


def test_address_with_broadcast() -> None:
    nl, fake = _nl()
    nl.add_address(3, "10.1.2.3", 24)
    msg = fake.sent[0]
    assert struct.unpack_from("=H", msg, 4)[0] == 20
    assert struct.unpack_from("=BBBBI", msg, 16) == (socket.AF_INET, 24, 0, 0, 3)
    attrs = _attrs(msg[24:])
    assert attrs[2] == attrs[1] == socket.inet_aton("10.1.2.3")
    assert attrs[4] == socket.inet_aton("10.1.2.255")
    nl.add_address(3, "10.1.2.3", 31)
    assert 4 not in _attrs(fake.sent[1][24:])


def test_default_route_replaced() -> None:
    nl, fake = _nl()
    nl.replace_default_route("10.1.2.1", 3)
    msg = fake.sent[0]
    assert struct.unpack_from("=HH", msg, 4) == (24, 0x1 | 0x4 | 0x400 | 0x100)
    assert struct.unpack_from("=BBBBBBBBI", msg, 16) == (socket.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)
    attrs = _attrs(msg[28:])
    assert attrs[5] == socket.inet_aton("10.1.2.1")
    assert struct.unpack("=I", attrs[4]) == (3,)


def test_link_deleted() -> None:
    nl, fake = _nl()
    nl.delete_link(9)
    msg = fake.sent[0]
    assert struct.unpack_from("=HH", msg, 4) == (17, 0x1 | 0x4)
    assert struct.unpack_from("=BxHiII", msg, 16) == (socket.AF_UNSPEC, 0, 9, 0, 0)


def test_kernel_error_is_raised() -> None:
    nl, _ = _nl(-errno.EEXIST)
    with pytest.raises(OSError) as e:
        nl.add_address(3, "10.1.2.3", 24)
    assert e.value.errno == errno.EEXIST


def test_veth_with_its_peer_in_a_namespace() -> None:
    nl, fake = _nl()
    nl.add_veth("vethabc", "eth0", peer_netns_fd=5, peer_address="02:42:0a:00:00:02", mtu=1400)
    msg = fake.sent[0]
    assert struct.unpack_from("=HH", msg, 4) == (16, 0x1 | 0x4 | 0x400 | 0x200)
    attrs = _attrs(msg[32:])
    assert attrs[3] == b"vethabc\0"
    assert struct.unpack("=I", attrs[4]) == (1400,)
    info = _attrs(attrs[18])
    assert info[1].rstrip(b"\0") == b"veth"  # pyroute2 sends it NUL-terminated, `ip` without
    peer = _attrs(info[2])[1]
    peer_attrs = _attrs(peer[16:])
    assert peer_attrs[3] == b"eth0\0"
    assert struct.unpack("=I", peer_attrs[28]) == (5,)
    assert peer_attrs[1] == bytes.fromhex("02420a000002")
    assert struct.unpack("=I", peer_attrs[4]) == (1400,)
