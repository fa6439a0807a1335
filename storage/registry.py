"""A client for OCI distribution registries (the /v2/ API), blocking, on urllib3.

- Endpoints: HTTPS by default. For insecure registries (loopback addresses and localhost without
  any configuration, as dockerd; or listed by --insecure-registry as host[:port] or CIDR) HTTPS
  without certificate checks is tried first, then plain HTTP, as dockerd does.
- Authentication follows the registry's WWW-Authenticate challenge: Bearer (a token from the
  realm, per repository scope, cached) or Basic, with the credentials of the request.
- Every call has bounded timeouts: a registry that hangs or disconnects gives a RegistryError.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from .digest import DigestMismatch, sha256

if TYPE_CHECKING:
    # At run time imported by the functions that use it, on the first registry operation: urllib3
    # costs the daemon ~4 MiB, which a daemon that never pulls or pushes need not carry.
    import urllib3

DOCKER_HUB = "docker.io"
HUB_ENDPOINT = "registry-1.docker.io"
HUB_INDEX = "index.docker.io"
MEDIA_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v1+prettyjws")
MANIFEST_TYPES = (MEDIA_MANIFEST_V2, MEDIA_MANIFEST_LIST, MEDIA_OCI_MANIFEST, MEDIA_OCI_INDEX)
MAX_MANIFEST = 4 << 20
CHUNK = 1 << 20

# Seconds; a read that waits longer than READ_TIMEOUT for a byte fails (a hung registry).
CONNECT_TIMEOUT = float(os.environ.get("PYDOCKERD_REGISTRY_CONNECT_TIMEOUT", "15"))
READ_TIMEOUT = float(os.environ.get("PYDOCKERD_REGISTRY_READ_TIMEOUT", "60"))
_USER_AGENT = "pydockerd/0.1 (docker-compatible)"


class RegistryError(Exception):
    """A registry refused or failed a request; `message` is what the user should read."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class Unauthorized(RegistryError):
    pass


@dataclass
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth refresh token, as `docker login` may store
    registry_token: str = ""  # a bearer token to use as is

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)


def decode_auth_header(value: str | None) -> Credentials:
    """The X-Registry-Auth header: base64url JSON of an AuthConfig (`e30=` is `{}`)."""
    if not value:
        return Credentials()
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        doc = json.loads(raw or b"{}")
    except (ValueError, json.JSONDecodeError):
        try:  # some clients send plain base64 or even plain JSON
            doc = json.loads(value)
        except json.JSONDecodeError:
            return Credentials()
    return credentials_from(doc if isinstance(doc, dict) else {})


def credentials_from(doc: dict) -> Credentials:
    user, password = doc.get("username") or "", doc.get("password") or ""
    if doc.get("auth") and not user:
        try:
            user, _, password = base64.b64decode(doc["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            pass
    return Credentials(user, password, doc.get("identitytoken") or "", doc.get("registrytoken") or "")


def is_insecure(domain: str, insecure: Iterable[str]) -> bool:
    host = _host_of(domain)
    listed = list(insecure)
    if domain in listed or host in listed:
        return True
    addrs: list[str] = []
    try:
        addrs = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host == "localhost":
            addrs = ["127.0.0.1"]
        else:
            try:
                addrs = [ai[4][0] for ai in socket.getaddrinfo(host, None)]
            except OSError:
                addrs = []
    nets = ["127.0.0.0/8", "::1/128", *[n for n in listed if "/" in n]]
    for a in addrs:
        ip = ipaddress.ip_address(a.split("%")[0])
        for n in nets:
            try:
                if ip in ipaddress.ip_network(n, strict=False):
                    return True
            except ValueError:
                continue
    return False


def _host_of(domain: str) -> str:
    if domain.startswith("["):
        return domain[1:domain.index("]")]
    return domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class RegistryClient:
    """One registry (by domain as in image names: docker.io, 127.0.0.1:5000, ...)."""

    def __init__(self, domain: str, creds: Credentials | None = None, insecure_registries: Iterable[str] = (),
                 *, connect_timeout: float | None = None, read_timeout: float | None = None) -> None:
        import urllib3

        self.domain = domain
        self.creds = creds or Credentials()
        host = HUB_ENDPOINT if domain in (DOCKER_HUB, "index.docker.io", "registry-1.docker.io") else domain
        self.insecure = domain != DOCKER_HUB and is_insecure(host, insecure_registries)
        self.candidates = [f"https://{host}"] + ([f"http://{host}"] if self.insecure else [])
        self.base = ""  # chosen by ping()
        self.timeout = urllib3.Timeout(connect=connect_timeout or CONNECT_TIMEOUT, read=read_timeout or READ_TIMEOUT)
        ctx = ssl.create_default_context()
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.http = urllib3.PoolManager(num_pools=4, maxsize=8, ssl_context=ctx, timeout=self.timeout,
                                        retries=urllib3.Retry(total=3, connect=0, read=0, redirect=5,
                                                              status=0, other=0, raise_on_redirect=True,
                                                              remove_headers_on_redirect=["Authorization"]))
        self.challenge: tuple[str, dict[str, str]] | None = None
        self.tokens: dict[str, str] = {}

    def close(self) -> None:
        self.http.clear()

    # -- transport -----------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: picks the endpoint and learns how to authenticate (not an error if 401)."""
        import urllib3

        last: RegistryError | None = None
        for base in self.candidates:
            try:
                r = self.http.request("GET", f"{base}/v2/", headers={"User-Agent": _USER_AGENT},
                                      preload_content=True, redirect=False)
            except urllib3.exceptions.HTTPError as e:
                last = RegistryError(f'Get "{base}/v2/": {describe_error(e)}')
                continue
            if r.status >= 500:
                last = RegistryError(f'Get "{base}/v2/": registry answered {r.status}', r.status)
                continue
            self.base = base
            header = r.headers.get("WWW-Authenticate")
            if r.status == 401 and header:
                self.challenge = _challenge(header)
            return
        assert last is not None
        raise last

    def request(self, method: str, path: str, scope: str, *, headers: dict[str, str] | None = None,
                body: Any = None, stream: bool = False, ok: tuple[int, ...] = (200,),
                url: str | None = None) -> urllib3.BaseHTTPResponse:
        """One request with authentication; `scope` e.g. "repository:cap/busybox:pull"."""
        import urllib3

        if not self.base:
            self.ping()
        target = url or f"{self.base}{path}"
        for attempt in range(2):
            h = {"User-Agent": _USER_AGENT, **(headers or {})}
            auth = self._authorization(scope)
            if auth:
                h["Authorization"] = auth
            try:
                r = self.http.request(method, target, headers=h, body=body, preload_content=not stream,
                                      decode_content=False)
            except urllib3.exceptions.HTTPError as e:
                raise RegistryError(f'{method.title()} "{target}": {describe_error(e)}') from None
            # a streamed body cannot be sent twice: scopes are authorized by an earlier request
            if r.status == 401 and attempt == 0 and r.headers.get("WWW-Authenticate") and not hasattr(body, "__next__"):
                challenge = _challenge(r.headers["WWW-Authenticate"])
                if challenge != self.challenge or scope not in self.tokens:
                    self.challenge = challenge
                    self.tokens.pop(scope, None)
                    _drain(r)
                    continue
            if r.status in ok:
                return r
            raise self._error(r, method, target)
        raise self._error(r, method, target)

    def _authorization(self, scope: str) -> str:
        if self.creds.registry_token:
            return f"Bearer {self.creds.registry_token}"
        if self.challenge is None:
            return ""
        scheme, params = self.challenge
        if scheme == "basic":
            if not self.creds.username:
                return ""
            raw = f"{self.creds.username}:{self.creds.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if scheme == "bearer":
            token = self.tokens.get(scope)
            if token is None:
                token = self.tokens[scope] = self._fetch_token(params, scope)
            return f"Bearer {token}"
        return ""

    def _fetch_token(self, params: dict[str, str], scope: str) -> str:
        import urllib3

        realm = params.get("realm")
        if not realm:
            raise RegistryError("registry asked for a bearer token without a realm")
        fields = {"service": params.get("service", "")}
        if scope:
            fields["scope"] = scope
        headers = {"User-Agent": _USER_AGENT}
        method = "GET"
        body = None
        if self.creds.identity_token:  # OAuth refresh token: POST form, as dockerd
            method = "POST"
            fields.update(grant_type="refresh_token", refresh_token=self.creds.identity_token, client_id="docker")
            body = "&".join(f"{k}={_q(v)}" for k, v in fields.items())
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            url = realm
        else:
            url = realm + ("&" if "?" in realm else "?") + "&".join(f"{k}={_q(v)}" for k, v in fields.items())
            if self.creds.username:
                raw = f"{self.creds.username}:{self.creds.password}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        try:
            r = self.http.request(method, url, headers=headers, body=body)
        except urllib3.exceptions.HTTPError as e:
            raise RegistryError(f'Get "{realm}": {describe_error(e)}') from None
        if r.status != 200:
            raise Unauthorized(_error_text(r.data) or f"failed to get a token from {realm}: {r.status}", r.status)
        try:
            doc = json.loads(r.data)
        except ValueError:
            raise RegistryError(f"token server {realm} answered invalid JSON") from None
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise RegistryError(f"token server {realm} answered no token")
        return str(token)

    def _error(self, r: urllib3.BaseHTTPResponse, method: str, url: str) -> RegistryError:
        data = r.data if r.status != 200 else b""
        text = _error_text(data)
        code = _error_code(data)
        if r.status == 401:
            return Unauthorized(text or "unauthorized: authentication required", 401, code or "UNAUTHORIZED")
        if not text:
            text = f"{method.title()} {url}: unexpected status {r.status}"
        return RegistryError(text, r.status, code)

    # -- API -----------------------------------------------------------------------------------

    def check_login(self) -> None:
        """For `docker login`: can these credentials authenticate at all?"""
        self.ping()
        if self.challenge is None:
            return
        scheme, params = self.challenge
        if scheme == "bearer":
            self._fetch_token(params, "")
            return
        r = self.http.request("GET", f"{self.base}/v2/", headers={"Authorization": self._authorization("")})
        if r.status == 401:
            raise Unauthorized(f"login attempt to {self.base}/v2/ failed with status: 401 Unauthorized", 401)

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, str]:
        """(raw manifest, media type, digest); a digest reference is verified against the content."""
        r = self.request("GET", f"/v2/{repo}/manifests/{ref}", f"repository:{repo}:pull",
                         headers={"Accept": ", ".join((*MANIFEST_TYPES, *MEDIA_SCHEMA1))}, stream=True)
        try:
            raw = _read_limited(r, MAX_MANIFEST, "manifest")
        finally:
            r.release_conn()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise DigestMismatch(f"manifest digest mismatch: asked for {ref}, got {digest}")
        media = (r.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            doc = json.loads(raw)
        except ValueError:
            raise RegistryError(f"invalid manifest for {repo}:{ref}: not JSON") from None
        media = doc.get("mediaType") or media
        if not media and doc.get("schemaVersion") == 2:
            media = MEDIA_OCI_INDEX if "manifests" in doc else MEDIA_OCI_MANIFEST
        return raw, media, digest

    def catalog(self, limit: int = 1000) -> list[str]:
        """The repositories the registry lists (GET /v2/_catalog), where it offers that."""
        r = self.request("GET", f"/v2/_catalog?n={limit}", "registry:catalog:*")
        return list(json.loads(r.data).get("repositories") or [])

    def search_index(self, term: str, limit: int) -> list[dict]:
        """Docker Hub's search (index.docker.io/v1/search), its results as it gives them."""
        r = self.request("GET", "", "", url=f"https://{HUB_INDEX}/v1/search?q={_q(term)}&n={limit}")
        return list(json.loads(r.data).get("results") or [])

    def tags(self, repo: str) -> list[str]:
        r = self.request("GET", f"/v2/{repo}/tags/list", f"repository:{repo}:pull")
        return list(json.loads(r.data).get("tags") or [])

    def get_blob(self, repo: str, digest: str, limit: int = 16 << 20) -> bytes:
        r = self.open_blob(repo, digest)
        try:
            data = _read_limited(r, limit, "blob")
        finally:
            r.release_conn()
        if "sha256:" + sha256(data).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} does not match its digest")
        return data

    def open_blob(self, repo: str, digest: str) -> urllib3.BaseHTTPResponse:
        return self.request("GET", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull", stream=True)

    def blob_exists(self, repo: str, digest: str) -> bool:
        try:
            self.request("HEAD", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull,push")
        except RegistryError as e:
            if e.status == 404:
                return False
            raise
        return True

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount: True if the registry linked the blob without an upload."""
        scope = f"repository:{repo}:pull,push repository:{from_repo}:pull"
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}", scope,
                         ok=(201, 202), headers={"Content-Length": "0"})
        if r.status == 202:  # not mounted: an upload session was opened instead; close it
            loc = r.headers.get("Location")
            if loc:
                try:
                    self.request("DELETE", "", scope, url=self._abs(loc), ok=(204, 200, 202, 404))
                except RegistryError:
                    pass
            return False
        return True

    def upload_blob(self, repo: str, digest: str, f: BinaryIO, size: int,
                    progress: Callable[[int], None] | None = None) -> None:
        """Monolithic upload (POST then PUT with the data) of a blob whose digest is known."""
        scope = f"repository:{repo}:pull,push"
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(202,), headers={"Content-Length": "0"})
        loc = r.headers.get("Location")
        if not loc:
            raise RegistryError("registry opened an upload without a Location")
        url = self._abs(loc)
        url += ("&" if "?" in url else "?") + f"digest={digest}"

        def body() -> Any:
            done = 0
            while chunk := f.read(CHUNK):
                done += len(chunk)
                if progress:
                    progress(done)
                yield chunk

        self.request("PUT", "", scope, url=url, body=body(), ok=(201, 204),
                     headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> None:
        self.request("PUT", f"/v2/{repo}/manifests/{ref}", f"repository:{repo}:pull,push", body=raw,
                     ok=(201, 200, 202), headers={"Content-Type": media_type})

    def _abs(self, loc: str) -> str:
        return loc if loc.startswith(("http://", "https://")) else f"{self.base}{loc}"


def _q(v: str) -> str:
    from urllib.parse import quote

    return quote(v, safe="")


def _drain(r: urllib3.BaseHTTPResponse) -> None:
    import urllib3

    try:
        r.drain_conn()
    except urllib3.exceptions.HTTPError:
        pass
    r.release_conn()


def _read_limited(r: urllib3.BaseHTTPResponse, limit: int, what: str) -> bytes:
    import urllib3

    out = bytearray()
    try:
        while chunk := r.read(CHUNK):
            out += chunk
            if len(out) > limit:
                raise RegistryError(f"{what} larger than {limit} bytes: refused")
    except urllib3.exceptions.HTTPError as e:
        raise RegistryError(f"reading {what}: {describe_error(e)}") from None
    return bytes(out)


def _error_text(data: bytes) -> str:
    try:
        doc = json.loads(data)
    except (ValueError, TypeError):
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or errors[0].get("code") or "").strip()
    if isinstance(doc, dict) and doc.get("details"):
        return str(doc["details"])
    return ""


def _error_code(data: bytes) -> str:
    try:
        return str(json.loads(data)["errors"][0]["code"])
    except (ValueError, TypeError, KeyError, IndexError):
        return ""


def describe_error(e: Exception) -> str:
    """Go-like wording of a transport error: `dial tcp 127.0.0.1:5998: connect: connection refused`."""
    import urllib3

    inner = getattr(e, "reason", None) or e
    text = str(inner)
    if "Connection refused" in text or isinstance(inner, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(e, urllib3.exceptions.ReadTimeoutError) or "Read timed out" in text:
        return "read timed out (the registry stopped answering)"
    if isinstance(e, urllib3.exceptions.ConnectTimeoutError) or "timed out" in text:
        return "connect: i/o timeout"
    if isinstance(e, urllib3.exceptions.ProtocolError):
        return f"connection closed by the registry ({text})"
    if isinstance(e, urllib3.exceptions.SSLError):
        return f"tls: {text}"
    return text
