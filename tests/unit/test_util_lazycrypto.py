"""daemon/util/lazycrypto.py and storage.digest.sha256(): OpenSSL stays out of the daemon until
TLS or big content needs it, and then everything works as with it loaded at start."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter each: this one has ssl and hashlib (pytest, the other tests) loaded.
_PRELUDE = """
import sys
from daemon.util import lazycrypto
lazycrypto.install()
import asyncio, hashlib, socket

def openssl_mapped():
    with open("/proc/self/maps") as f:
        return any("libcrypto" in line or "libssl" in line for line in f)
"""

_WITHOUT = _PRELUDE + """
import daemon.main
from api.app import create_app
import api.server, uvicorn.config, anyio._core._sockets, network.netlink, storage.registry
from storage import digest

async def main():
    # every loop.sock_* call checks isinstance(sock, ssl.SSLSocket)
    a, b = socket.socketpair()
    a.setblocking(False); b.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(a, b"ping")
    assert await loop.sock_recv(b, 4) == b"ping"
    a.close(); b.close()
    reader, writer = await asyncio.open_unix_connection(sock=socket.socketpair()[0])
    writer.close()

asyncio.run(main())
small = b"x" * 100000
assert hashlib.sha256(small).hexdigest() == digest.sha256(small).hexdigest()
h = digest.sha256()
h.update(memoryview(small)); h.update(bytearray(small))
import _sha256
assert h.hexdigest() == _sha256.sha256(small * 2).hexdigest()
assert not openssl_mapped(), "OpenSSL loaded without TLS or big content"
print("ok")
"""

_BIG = _PRELUDE + """
from storage import digest
import _sha256
data = bytes(range(256)) * (40 << 12)  # 10 MiB: past the switch
h = digest.sha256()
for i in range(0, len(data), 1 << 20):
    h.update(data[i:i + (1 << 20)])
expect = _sha256.sha256(data).hexdigest()
assert h.hexdigest() == expect  # the one that went past it stays builtin, and right
assert openssl_mapped()
h2 = digest.sha256(data)
assert type(h2).__name__ == "HASH" and h2.hexdigest() == expect  # OpenSSL's from now on
print("ok")
"""

_ANNOUNCED = _PRELUDE + """
from storage import digest
digest.expect(1 << 20)
assert not openssl_mapped() and type(digest.sha256()).__name__ == "_Builtin"
digest.expect(64 << 20)  # a pull's manifest announces a 64 MiB layer: OpenSSL before its first byte
assert openssl_mapped() and type(digest.sha256()).__name__ == "HASH"
print("ok")
"""

_TLS_LATER = _PRELUDE + """
import ssl, asyncio.sslproto as sp
assert not openssl_mapped()
lazycrypto.load_tls()
assert openssl_mapped()
assert sp.SSLAgainErrors == (ssl.SSLWantReadError, ssl.SSLSyscallError)
assert ssl.SSLSocket.__module__ == "ssl" and ssl.SSLContext.__module__ == "ssl"
assert ssl.PROTOCOL_TLS_SERVER is ssl._SSLMethod.PROTOCOL_TLS_SERVER
CERT, KEY = sys.argv[1], sys.argv[2]

async def main():
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(CERT, KEY)
    client_ctx = ssl.create_default_context(cafile=CERT)

    async def echo(r, w):
        w.write(await r.readline()); await w.drain(); w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx, server_hostname="localhost")
    w.write(b"hello\\n"); await w.drain()
    assert await r.readline() == b"hello\\n"
    w.close(); server.close(); await server.wait_closed()

asyncio.run(main())
print("ok")
"""


def _probe(code: str, *args: str) -> None:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_no_openssl_without_tls_or_big_content() -> None:
    _probe(_WITHOUT)


def test_big_content_switches_to_openssl() -> None:
    _probe(_BIG)


def test_announced_big_content_is_hashed_by_openssl_from_its_first_byte() -> None:
    _probe(_ANNOUNCED)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_after_the_lazy_load(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True, timeout=60)
    _probe(_TLS_LATER, str(cert), str(key))


_REGISTRY_CLIENT = _PRELUDE + """
import storage.registry
assert not openssl_mapped()
import urllib3, ssl  # the registry client's first use: urllib3 reads ssl's names as it is imported
from urllib3.util import ssl_
assert ssl_.SSLContext is ssl.SSLContext and ssl.SSLContext.__module__ == "ssl"
assert ssl.create_default_context().verify_mode == ssl.CERT_REQUIRED
print("ok")
"""


def test_registry_client_gets_the_real_ssl() -> None:
    _probe(_REGISTRY_CLIENT)


def test_hasher_without_the_block_is_openssl() -> None:
    from storage import digest

    h = digest.sha256(b"abc")
    assert h.hexdigest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert digest.of_bytes(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
