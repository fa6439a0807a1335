"""Listeners handed over by systemd (socket activation, `-H fd://`).

systemd passes the sockets of a .socket unit as fds 3, 4, ... and says how many in
LISTEN_FDS, for the process in LISTEN_PID. The protocol is three environment variables
and a range of fds (sd_listen_fds(3)); libsystemd's Python bindings would add a C build
dependency for it.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import MutableMapping

SD_LISTEN_FDS_START = 3
_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """The handed-over fds are missing or are not sockets; the message is one line."""


def listen_fds(environ: MutableMapping[str, str] | None = None, pid: int | None = None) -> dict[int, socket.socket]:
    """The activated sockets by fd number; {} when this process was not socket-activated.

    The variables are removed (as sd_listen_fds(unset_environment=1)) so that container
    monitors and other children do not believe the sockets are theirs, and the fds are
    made close-on-exec for the same reason.
    """
    env = os.environ if environ is None else environ
    pid_text, count_text = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    for key in _ENV:
        env.pop(key, None)
    if not count_text:
        return {}
    if pid_text != str(os.getpid() if pid is None else pid):
        # Meant for another process (a parent that did not unset them).
        return {}
    try:
        count = int(count_text)
    except ValueError:
        raise ActivationError(f"invalid LISTEN_FDS={count_text!r}: not a number") from None
    if count < 0:
        raise ActivationError(f"invalid LISTEN_FDS={count_text!r}")
    found: dict[int, socket.socket] = {}
    try:
        for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
            found[fd] = _adopt(fd)
    except ActivationError:
        for s in found.values():
            s.detach()
        raise
    return found


def _adopt(fd: int) -> socket.socket:
    try:
        st = os.fstat(fd)
    except OSError:
        raise ActivationError(f"LISTEN_FDS names fd {fd}, which is not open") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ActivationError(f"LISTEN_FDS names fd {fd}, which is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
        sock.detach()
        raise ActivationError(f"fd {fd} handed over by systemd is not a stream socket (unix or tcp)")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ActivationError(f"fd {fd} handed over by systemd is not listening (Accept=yes is not supported)")
    sock.set_inheritable(False)
    sock.setblocking(False)
    return sock


def select(activated: dict[int, socket.socket], addr: str) -> list[socket.socket]:
    """The sockets `-H fd://addr` names: all of them for `fd://`, one for `fd://N`; dockerd's messages."""
    if not activated:
        raise ActivationError("no sockets found via socket activation: make sure the service was started by systemd")
    if addr == "":
        return list(activated.values())
    try:
        fd = int(addr)
    except ValueError:
        raise ActivationError(f"failed to parse systemd fd address: should be a number: {addr}") from None
    if fd not in activated:
        raise ActivationError(f"too few socket activated files passed in by systemd (no fd {fd})")
    return [activated[fd]]
