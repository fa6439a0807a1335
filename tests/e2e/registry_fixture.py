"""A local Debian `docker-registry` (distribution) on 127.0.0.1 for the distribution tests,
and a tiny misbehaving registry (wrong bytes, hangs, odd manifests) for the bad-input ones."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import free_tcp_port


@contextmanager
def docker_registry(base: Path, htpasswd: tuple[str, str] | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """Runs `docker-registry serve` on a free port of `host` (loopback by default); yields "HOST:PORT"."""
    exe = shutil.which("docker-registry")
    if exe is None:
        pytest.fail("Debian's docker-registry is not installed (scripts/test.sh installs it)")
    base.mkdir(parents=True, exist_ok=True)
    port = free_tcp_port()
    auth = ""
    if htpasswd:
        hp = subprocess.run(["htpasswd", "-Bbn", *htpasswd], capture_output=True, text=True, check=True).stdout
        (base / "htpasswd").write_text(hp)
        auth = f"auth:\n  htpasswd:\n    realm: test-realm\n    path: {base / 'htpasswd'}\n"
    (base / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {base / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}:{port}\n" + auth)
    with open(base / "registry.log", "ab") as log:
        proc = subprocess.Popen([exe, "serve", str(base / "config.yml")], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"docker-registry did not start: {(base / 'registry.log').read_text()[-2000:]}")
                time.sleep(0.05)
        yield f"{host}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(base, ignore_errors=True)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Serves fixed manifests and blobs; a blob may be wrong, or hang after its headers."""

    def __init__(self, bearer: tuple[str, str] | None = None) -> None:
        self.bearer = bearer  # (user, password) the token endpoint wants; then every /v2/ call needs a token
        self.manifests: dict[str, tuple[str, bytes]] = {}  # "repo:ref" -> (media type, body)
        self.blobs: dict[str, bytes] = {}  # digest -> body served (may not match!)
        self.hang: set[str] = set()  # digests whose body never comes
        self.stop = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?")[0]
                if fake.bearer and path == "/token":
                    want = "Basic " + base64.b64encode(":".join(fake.bearer).encode()).decode()
                    if self.headers.get("Authorization") != want:
                        return self._send(401, "application/json", b'{"details":"incorrect username or password"}')
                    return self._send(200, "application/json", b'{"token":"good-token"}')
                if fake.bearer and self.headers.get("Authorization") != "Bearer good-token":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", f'Bearer realm="http://{fake.addr}/token",service="fake"')
                    self.send_header("Content-Type", "application/json")
                    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return None
                if path == "/v2/":
                    return self._send(200, "application/json", b"{}")
                parts = path[4:].split("/")
                if "manifests" in parts:
                    i = parts.index("manifests")
                    key = "/".join(parts[:i]) + ":" + parts[i + 1]
                    if key in fake.manifests:
                        media, body = fake.manifests[key]
                        return self._send(200, media, body)
                    return self._send(404, "application/json",
                                      b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')
                if "blobs" in parts:
                    digest = parts[-1]
                    if digest in fake.hang:
                        self.send_response(200)
                        self.send_header("Content-Length", "1000000")
                        self.end_headers()
                        self.wfile.write(b"\x1f\x8b")
                        self.wfile.flush()
                        fake.stop.wait(60)
                        return None
                    if digest in fake.blobs:
                        return self._send(200, "application/octet-stream", fake.blobs[digest])
                return self._send(404, "application/json",
                                  b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')

            def _send(self, code: int, media: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"

    def add_image(self, repo: str, tag: str, config: dict, layers: list[bytes],
                  layer_media: str = "application/vnd.docker.image.rootfs.diff.tar.gzip",
                  served: dict[str, bytes] | None = None) -> None:
        craw = json.dumps(config).encode()
        self.blobs[sha(craw)] = craw
        descs = []
        for data in layers:
            self.blobs[sha(data)] = (served or {}).get(sha(data), data)
            descs.append({"mediaType": layer_media, "size": len(data), "digest": sha(data)})
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                               "size": len(craw), "digest": sha(craw)},
                    "layers": descs}
        self.manifests[f"{repo}:{tag}"] = (manifest["mediaType"], json.dumps(manifest).encode())

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
