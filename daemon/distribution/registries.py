"""The registries the engine talks to: the client settings (insecure registries), a client per
request's credentials, `docker login`, and registry failures in the API's words."""

from __future__ import annotations

import asyncio
from typing import Any

from daemon.errors import DaemonError, InvalidParameter, NotFound
from daemon.images.reference import Reference
from storage.digest import DigestMismatch
from storage.registry import (
    DOCKER_HUB,
    RegistryClient,
    RegistryError,
    Unauthorized,
    credentials_from,
    decode_auth_header,
)


class AuthError(DaemonError):
    status = 401


def remote_path(ref: Reference) -> str:
    """The repository path on its registry: library/busybox, cap/busybox."""
    full = ref.full_name
    return full.split("/", 1)[1] if "/" in full else full


def registry_domain(server: str) -> str:
    """The registry of a `docker login` server address (docker.io for Docker Hub's names)."""
    s = (server or "").strip()
    for prefix in ("https://", "http://"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    s = s.split("/", 1)[0]
    if s in ("", "index.docker.io", "registry-1.docker.io", "docker.io"):
        return "docker.io"
    return s


def to_daemon_error(e: Exception, ref: Reference | None = None) -> DaemonError:
    """A failure talking to a registry as the API reports it (dockerd's messages and statuses)."""
    if isinstance(e, DaemonError):
        return e
    if isinstance(e, DigestMismatch):
        return DaemonError(str(e))
    if isinstance(e, Unauthorized) or isinstance(e, RegistryError) and e.status == 403:
        if ref is not None and ref.domain == "docker.io":
            return NotFound(f"pull access denied for {ref.name}, repository does not exist or may require "
                            f"'docker login': denied: {e.message}")
        # Not a 401: the CLI answers a 401 to a pull or push by prompting for a login.
        return DaemonError(e.message)
    if isinstance(e, RegistryError):
        if e.code == "MANIFEST_UNKNOWN" and ref is not None:
            return NotFound(f"manifest for {ref} not found: manifest unknown: {e.message}")
        if e.status == 404 or e.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"):
            return NotFound(e.message)
        return DaemonError(e.message)
    return DaemonError(str(e) or type(e).__name__)


class RegistryClients:
    """Makes the registry clients of pulls, pushes and logins, with the daemon's registry settings."""

    def __init__(self, insecure_registries: list[str], mirrors: list[str] | None = None) -> None:
        self.insecure = list(insecure_registries)
        # --registry-mirror: Docker Hub's mirrors, tried in order before it (SIGHUP replaces the list).
        self.mirrors = list(mirrors or [])

    def mirror_clients(self, domain: str) -> list[RegistryClient]:
        """Clients for the mirrors of `domain` (only Docker Hub has them); anonymous, as dockerd
        sends Hub credentials to Hub only."""
        if domain != DOCKER_HUB:
            return []
        out = []
        for url in self.mirrors:
            scheme, _, host = url.rstrip("/").rpartition("://")
            # An http:// mirror is one the administrator allowed plain HTTP for.
            insecure = [*self.insecure, host] if scheme == "http" else self.insecure
            out.append(RegistryClient(host, None, insecure))
        return out

    def client(self, domain: str, auth_header: str | None) -> RegistryClient:
        """A client for `domain` with the credentials of a request's X-Registry-Auth header."""
        return RegistryClient(domain, decode_auth_header(auth_header), self.insecure)

    async def login(self, body: Any) -> dict:
        """POST /auth: the credentials checked against the registry (the CLI stores them itself)."""
        if not isinstance(body, dict):
            raise InvalidParameter("invalid JSON: expected an auth config object")
        client = RegistryClient(registry_domain(body.get("serveraddress") or ""), credentials_from(body),
                                self.insecure)
        try:
            await asyncio.to_thread(client.check_login)
        except Unauthorized as e:
            raise AuthError(e.message) from e
        except RegistryError as e:
            raise DaemonError(e.message) from e
        finally:
            client.close()
        return {"Status": "Login Succeeded", "IdentityToken": ""}
