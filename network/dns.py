"""The embedded DNS resolver (dockerd's 127.0.0.11), wire side.

Each container on a user network gets one UDP and one TCP socket bound to 127.0.0.11:53,
created inside its network namespace (netns.sockets_in) and served by the daemon's event
loop: no process per container, and the socket itself says who asks. Names come from a
Directory the daemon hands in (which containers the asker can see is its decision);
everything else is forwarded, from the host's namespace, to the upstream servers the
container's resolv.conf lists as ExtServers, and their answer goes back as it came
(NXDOMAIN and SERVFAIL included).

Answers of our own are kept, rendered, per container and query until the names change
(forget_answers): dnspython takes ~0.1 ms to parse and render one, a kept answer is reused by
putting the new query's id in front. Bounded on purpose: a query is one small synchronous
look-up unless it is forwarded, and
forwards (per container and in all), TCP connections per container and the time a TCP
client may take are capped, so one container flooding or sending garbage costs the others
nothing. Packets are parsed and built with dnspython, never by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from network import netns
from network.dnsnames import Addresses as Addresses  # re-exported: the answers are built from them
from network.dnsnames import Directory

if TYPE_CHECKING:
    import dns.message

LISTEN_ADDRESS = "127.0.0.11"
TTL = 600  # dockerd's respTTL
MAX_UPSTREAMS = 3  # dockerd tries at most three external servers
UPSTREAM_TIMEOUT = 4.0  # per server, as dockerd's extIOTimeout
MAX_FORWARDS_PER_CONTAINER = 100
MAX_FORWARDS = 1024  # dockerd's maxConcurrent
MAX_TCP_PER_CONTAINER = 16
TCP_IDLE = 10.0  # a TCP client that sends nothing this long is dropped
UDP_MIN_SIZE = 512
LOG_EVERY = 60.0  # seconds between two warnings of one kind for one container
MAX_CACHED_ANSWERS = 256  # per container; queries are at most 4 KiB: 1 MiB at worst
UDP_BATCH = 64  # datagrams read per wake-up: fewer trips through the loop, yet fair to the others

log = logging.getLogger("pydockerd.dns")


@dataclass
class _Listener:
    owner: str
    upstreams: list[str]
    udp: socket.socket | None = None  # read by _read_udp on the loop's reader callback
    tcp: asyncio.Server | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)
    tcp_clients: int = 0
    forwards: int = 0
    answers: dict[bytes, bytes] = field(default_factory=dict)  # query without its id -> reply without its id


def make_sockets(address: str = LISTEN_ADDRESS, port: int = 53) -> tuple[socket.socket, socket.socket]:
    """The UDP and the listening TCP socket; runs inside the container's namespace."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        udp.bind((address, port))
        # A daemon restart re-binds while connections of the old one may sit in TIME_WAIT.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((address, port))
        tcp.listen(64)
        udp.setblocking(False)
        tcp.setblocking(False)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


def _close_pair(pair: tuple[socket.socket, socket.socket]) -> None:
    for s in pair:
        s.close()


class Resolver:
    def __init__(self, directory: Directory, *, upstream_port: int = 53,
                 timeout: float = UPSTREAM_TIMEOUT) -> None:
        self.directory = directory
        self.upstream_port = upstream_port
        self.timeout = timeout
        self._listeners: dict[str, _Listener] = {}
        self._forwards = 0
        self._warned: dict[tuple[str, str], float] = {}

    # -- per container -------------------------------------------------------------------------
    def forget_answers(self) -> None:
        """Names changed: no kept answer may be reused."""
        for lst in self._listeners.values():
            lst.answers.clear()

    def serving(self, owner: str) -> bool:
        return owner in self._listeners

    async def attach(self, owner: str, path: Path, upstreams: list[str]) -> None:
        """Starts answering inside the namespace file `path` for the container `owner`.
        Raises OSError when the address is taken there (the container bound it itself)."""
        await self.detach(owner)
        pair = await netns.sockets_in(path, make_sockets, _close_pair)
        await self.serve(owner, pair, upstreams)

    async def serve(self, owner: str, pair: tuple[socket.socket, socket.socket], upstreams: list[str]) -> None:
        """Serves an already made socket pair (attach, and tests without a namespace)."""
        loop = asyncio.get_running_loop()
        lst = _Listener(owner, upstreams[:MAX_UPSTREAMS])
        try:
            lst.tcp = await asyncio.start_server(lambda r, w: self._tcp_client(lst, r, w), sock=pair[1],
                                                 limit=70_000)
        except BaseException:
            _close_pair(pair)
            raise
        # A reader callback of our own rather than a datagram transport: asyncio's reads one
        # datagram per wake-up, this drains up to UDP_BATCH.
        lst.udp = pair[0]
        loop.add_reader(lst.udp.fileno(), self._read_udp, lst)
        self._listeners[owner] = lst

    async def detach(self, owner: str) -> None:
        lst = self._listeners.pop(owner, None)
        if lst is None:
            return
        if lst.udp is not None:
            asyncio.get_running_loop().remove_reader(lst.udp.fileno())
            lst.udp.close()
            lst.udp = None
        if lst.tcp is not None:
            lst.tcp.close()
        for t in list(lst.tasks):
            t.cancel()
        if lst.tasks:
            await asyncio.gather(*lst.tasks, return_exceptions=True)
        self._warned = {k: v for k, v in self._warned.items() if k[0] != owner}

    async def close(self) -> None:
        for owner in list(self._listeners):
            await self.detach(owner)

    # -- queries ---------------------------------------------------------------------------------
    @property
    def wire(self) -> types.ModuleType:
        """network/dnswire.py: dnspython is imported with the first query that is not a kept
        answer, not with the first container: ~2 MiB a daemon whose containers never look a
        name up does not need."""
        from network import dnswire

        return dnswire

    def parse(self, owner: str, data: bytes) -> tuple[dns.message.Message | None, bytes | None]:
        """(query, None) for a query to answer, or (None, reply) for one refused at once
        (reply None: not even a header to answer to)."""
        q, early, error = self.wire.parse(data)
        if error is not None:
            self._warn(owner, "malformed", f"malformed DNS query from container {owner[:12]}: {error}")
        return q, early

    def answer_local(self, owner: str, q: dns.message.Message) -> dns.message.Message | None:
        """The answer when the name is ours; None to forward it."""
        return self.wire.answer_local(self.directory, owner, q)

    async def forward(self, owner: str, q: dns.message.Message, upstreams: list[str], tcp: bool) -> dns.message.Message:
        """Asks the upstream servers in order from the host's namespace: the first answer that
        is not SERVFAIL or REFUSED is the answer; failing all, the last one (or SERVFAIL)."""
        if not self.directory.may_forward(owner) or not upstreams:
            return self.wire.servfail(q)

        def failed(server: str, e: Exception) -> None:
            self._warn(owner, f"upstream {server}", f"DNS server {server} did not answer container "
                                                    f"{owner[:12]}: {type(e).__name__} {e}")

        return await self.wire.forward(q, upstreams[:MAX_UPSTREAMS], tcp=tcp, timeout=self.timeout,
                                       port=self.upstream_port, failed=failed)

    def _may_start_forward(self, lst: _Listener) -> bool:
        if lst.forwards >= MAX_FORWARDS_PER_CONTAINER or self._forwards >= MAX_FORWARDS:
            self._warn(lst.owner, "flood", f"container {lst.owner[:12]} has more than "
                                           f"{MAX_FORWARDS_PER_CONTAINER} DNS queries in flight: answering SERVFAIL")
            return False
        lst.forwards += 1
        self._forwards += 1
        return True

    def _end_forward(self, lst: _Listener) -> None:
        lst.forwards -= 1
        self._forwards -= 1

    def _read_udp(self, lst: _Listener) -> None:
        sock, answers = lst.udp, lst.answers
        for _ in range(UDP_BATCH):
            if sock is None or lst.udp is None:
                return
            try:
                data, addr = sock.recvfrom(4096)  # a longer datagram is cut, then refused as malformed
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error of an earlier reply: nothing to do
                continue
            kept = answers.get(data[2:])  # the common case, inline: a name asked again
            if kept is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(data[:2] + kept, addr)
                continue
            try:
                self.on_datagram(lst, data, addr)
            except Exception:  # one bad query must not end the listener
                log.exception("answering a DNS query of container %s", lst.owner[:12])

    def _send(self, lst: _Listener, wire: bytes, addr: tuple) -> None:
        if lst.udp is None:
            return
        try:
            lst.udp.sendto(wire, addr)
        except OSError:  # full buffer or the client gone: UDP may drop, the client asks again
            pass

    def on_datagram(self, lst: _Listener, data: bytes, addr: tuple) -> None:
        kept = lst.answers.get(data[2:])
        if kept is not None:
            self._send(lst, data[:2] + kept, addr)
            return
        q, early = self.parse(lst.owner, data)
        if q is None:
            if early is not None:
                self._send(lst, early, addr)
            return
        resp = self.answer_local(lst.owner, q)
        if resp is not None:
            wire = self.wire.reply_wire(resp, self.wire.udp_limit(q))
            if not resp.answer or len(resp.answer[0]) == 1:  # several records are rotated: built each time
                if len(lst.answers) >= MAX_CACHED_ANSWERS:
                    lst.answers.clear()
                lst.answers[data[2:]] = wire[2:]
            self._send(lst, wire, addr)
            return
        if not self._may_start_forward(lst):
            self._send(lst, self.wire.reply_wire(self.wire.servfail(q)), addr)
            return
        task = asyncio.create_task(self._forward_udp(lst, q, addr))
        lst.tasks.add(task)
        task.add_done_callback(lst.tasks.discard)

    async def _forward_udp(self, lst: _Listener, q: dns.message.Message, addr: tuple) -> None:
        try:
            r = await self.forward(lst.owner, q, lst.upstreams, tcp=False)
        finally:
            self._end_forward(lst)
        self._send(lst, self.wire.reply_wire(r, self.wire.udp_limit(q)), addr)

    async def _tcp_client(self, lst: _Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            lst.tasks.add(task)
            task.add_done_callback(lst.tasks.discard)
        if lst.tcp_clients >= MAX_TCP_PER_CONTAINER:
            self._warn(lst.owner, "tcp", f"container {lst.owner[:12]} holds more than {MAX_TCP_PER_CONTAINER} "
                                         "DNS connections: closing new ones")
            writer.close()
            return
        lst.tcp_clients += 1
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE), "big")
                data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                q, early = self.parse(lst.owner, data)
                if q is None:
                    if early is None:
                        break
                    reply = early
                else:
                    resp = self.answer_local(lst.owner, q)
                    if resp is None:
                        if self._may_start_forward(lst):
                            try:
                                resp = await self.forward(lst.owner, q, lst.upstreams, tcp=True)
                            finally:
                                self._end_forward(lst)
                        else:
                            resp = self.wire.servfail(q)
                    reply = self.wire.reply_wire(resp, 65535)
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            lst.tcp_clients -= 1
            writer.close()

    def _warn(self, owner: str, kind: str, message: str) -> None:
        """Logs a problem once a minute per container and kind: a container sending garbage in a
        loop must not flood the daemon's log."""
        now = time.monotonic()
        if now - self._warned.get((owner, kind), -LOG_EVERY) >= LOG_EVERY:
            self._warned[(owner, kind)] = now
            log.warning("%s", message)
