"""Tell systemd about readiness and reloads (sd_notify(3)) when started as a Type=notify unit.

A datagram of `KEY=value` lines to the socket in NOTIFY_SOCKET; without that variable
every call does nothing, so the daemon behaves the same outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: str | None) -> None:
        # "@name" is an abstract socket (what systemd uses).
        self.address = "\0" + address[1:] if address and address.startswith("@") else address

    @classmethod
    def from_environment(cls) -> Notifier:
        # Taken out of the environment: container monitors are our children and must not
        # report to systemd as if they were the daemon.
        return cls(os.environ.pop("NOTIFY_SOCKET", None))

    def notify(self, *fields: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:
            log.warning("cannot notify systemd on %s: %s", self.address.lstrip("\0"), e)

    def ready(self) -> None:
        self.notify("READY=1", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        # Type=notify-reload wants the monotonic time in microseconds with RELOADING=1.
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
