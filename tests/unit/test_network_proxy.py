"""Port reservation and the userland proxy, on loopback (no root needed)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from network import proxy


async def _tcp_echo() -> tuple[asyncio.AbstractServer, int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_tcp_proxy_from_ipv6_to_ipv4_with_half_close() -> None:
    async def main() -> None:
        server, port = await _tcp_echo()
        b = proxy.reserve("tcp", "::", 0)
        await proxy.start_proxy(b, "127.0.0.1", port)
        r, w = await asyncio.open_connection("::1", b.sock.getsockname()[1])
        payload = b"x" * (3 << 20)
        w.write(payload)
        w.write_eof()
        got = await asyncio.wait_for(r.read(), 10)
        assert got == payload
        w.close()
        b.close()
        server.close()

    asyncio.run(main())


def test_udp_proxy_replies_reach_the_client() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, t: asyncio.BaseTransport) -> None:
                self.t = t

            def datagram_received(self, data: bytes, addr: object) -> None:
                self.t.sendto(data, addr)  # type: ignore[attr-defined]

        echo_t, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        b = proxy.reserve("udp", "::", 0)
        await proxy.start_proxy(b, "127.0.0.1", echo_t.get_extra_info("sockname")[1])
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as c:
            c.setblocking(False)
            c.sendto(b"ping", ("::1", b.sock.getsockname()[1]))
            data = await asyncio.wait_for(loop.sock_recv(c, 100), 5)
        assert data == b"ping"
        b.close()
        echo_t.close()

    asyncio.run(main())


def test_reserve_conflict_message_like_docker_proxy() -> None:
    b = proxy.reserve("tcp", "127.0.0.1", 0)
    port = b.sock.getsockname()[1]
    try:
        with pytest.raises(proxy.PortInUse, match=f"listen tcp4 127.0.0.1:{port}: bind: address already in use"):
            proxy.reserve("tcp", "127.0.0.1", port)
    finally:
        b.close()


def test_retarget_moves_new_connections_to_the_new_address() -> None:
    async def main() -> None:
        async def serve(tag: bytes) -> tuple[asyncio.AbstractServer, int]:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                w.write(tag)
                await w.drain()
                w.close()

            srv = await asyncio.start_server(handle, "127.0.0.1", 0)
            return srv, srv.sockets[0].getsockname()[1]

        (old, old_port), (new, new_port) = await serve(b"old"), await serve(b"new")
        b = proxy.reserve("tcp", "::", 0)
        await proxy.start_proxy(b, "127.0.0.1", old_port)
        port = b.sock.getsockname()[1]

        async def fetch() -> bytes:
            r, w = await asyncio.open_connection("::1", port)
            data = await asyncio.wait_for(r.read(), 5)
            w.close()
            return data

        assert await fetch() == b"old"
        proxy.retarget(b, "127.0.0.1", new_port)
        assert await fetch() == b"new"
        b.close()
        old.close()
        new.close()

    asyncio.run(main())
