"""Cheap stand-ins for json, socket and signal, for the monitor's start-up time.

The monitor is a fresh interpreter per container and its imports were most of the time
to "ready": the public json, socket, signal, selectors and typing modules pull in enum,
re and collections (measured: 33 ms for those imports vs 17 ms for the C modules they
wrap). This module exposes just what the monitor needs on top of ``_json``, ``_socket``
and ``_signal``; the daemon keeps using the public modules.
"""

from __future__ import annotations

import _json
import _signal as signal  # noqa: F401 - re-exported: signal() and the SIG* constants
import _socket
import struct

AF_INET = _socket.AF_INET
AF_UNIX = _socket.AF_UNIX
SOCK_STREAM = _socket.SOCK_STREAM
SOCK_DGRAM = _socket.SOCK_DGRAM
SOCK_SEQPACKET = _socket.SOCK_SEQPACKET
SHUT_WR = _socket.SHUT_WR
Socket = _socket.socket


class _DecoderContext:
    # The attributes _json's scanner reads (json.JSONDecoder's defaults).
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float
    memo: dict = {}


_scan = _json.make_scanner(_DecoderContext)


def _not_serializable(obj: object) -> object:
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


_encode = _json.make_encoder(None, _not_serializable, _json.encode_basestring_ascii, None,
                             ": ", ", ", False, False, True)

encode_string = _json.encode_basestring_ascii


def loads(data: bytes | bytearray | str) -> object:
    """json.loads for one JSON document; raises ValueError."""
    text = data.decode() if isinstance(data, (bytes, bytearray)) else data
    text = text.strip(" \t\r\n")
    try:
        value, end = _scan(text, 0)
    except (StopIteration, SystemError):
        # On malformed input the C scanner raises json.decoder.JSONDecodeError only when
        # json.decoder is already imported; otherwise it fails with SystemError.
        raise ValueError("invalid JSON") from None
    if end != len(text):
        raise ValueError("extra data after JSON document")
    return value


def dumps(obj: object) -> bytes:
    """json.dumps(obj).encode(), ASCII only."""
    return "".join(_encode(obj, 0)).encode()


def unix_listener(path: str, backlog: int = 128) -> Socket:
    sock = Socket(AF_UNIX, SOCK_STREAM)
    sock.bind(path)
    sock.listen(backlog)
    return sock


def accept(listener: Socket) -> Socket:
    """Accept one connection (close-on-exec); raises BlockingIOError when there is none."""
    fd, _ = listener._accept()
    return Socket(listener.family, listener.type, 0, fd)


def socketpair(sock_type: int) -> tuple[Socket, Socket]:
    return _socket.socketpair(AF_UNIX, sock_type)


def send_fds(sock: Socket, data: bytes, fds: list[int]) -> None:
    # struct rather than array: array imports collections.abc.
    sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])


# One struct per fd count: no format string (and its parse) per message, which the template
# (runtime/zygote.py) would pay for at every request.
MAX_FDS = 16
_FD_STRUCTS = [struct.Struct(f"{n}i") for n in range(MAX_FDS + 1)]


def recv_fds(sock: Socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """One message and the fds that came with it (at most `maxfds` <= MAX_FDS: the kernel
    closes any more)."""
    data, ancdata, _, _ = sock.recvmsg(bufsize, _socket.CMSG_LEN(maxfds * 4))
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += _FD_STRUCTS[len(payload) // 4].unpack_from(payload)
    return data, fds
