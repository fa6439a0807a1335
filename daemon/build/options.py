"""POST /build's query parameters as a typed value, checked before the context is read."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.errors import InvalidParameter
from daemon.images import reference

_TRUE = {"1", "true", "True", "TRUE", "yes"}


@dataclass(frozen=True)
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[reference.Reference] = field(default_factory=list)
    quiet: bool = False
    no_cache: bool = False
    pull: bool = False
    rm: bool = True
    force_rm: bool = False
    target: str = ""
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    cache_from: list[str] = field(default_factory=list)
    platform: str = ""
    remote: str = ""
    # The RUN containers' HostConfig, in the API's own field names (the container service checks them).
    host_config: dict[str, Any] = field(default_factory=dict)
    # X-Registry-Config: the client's credentials by registry, for the pulls of FROM.
    registry_auths: dict[str, Any] = field(default_factory=dict)

    def auth_header(self, domain: str) -> str | None:
        """The X-Registry-Auth value a pull from `domain` would carry, from X-Registry-Config."""
        want = {domain, "index.docker.io"} if domain == "docker.io" else {domain}
        for key, cfg in self.registry_auths.items():
            host = key.split("://", 1)[-1].rstrip("/").removesuffix("/v1").removesuffix("/v2")
            if host in want:
                return base64.urlsafe_b64encode(json.dumps(cfg).encode()).decode()
        return None


def registry_auths(header: str | None) -> dict[str, Any]:
    """X-Registry-Config: base64url JSON {registry: AuthConfig}; unreadable means none."""
    if not header:
        return {}
    try:
        doc = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)) or b"{}")
    except ValueError:
        return {}
    return {k: v for k, v in doc.items() if isinstance(v, dict)} if isinstance(doc, dict) else {}


def _json(raw: str, what: str, kind: type) -> Any:
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidParameter(f"invalid {what}: {raw!r} is not JSON") from None
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise InvalidParameter(f"invalid {what}: expected a JSON {kind.__name__}")
    return value


def _int(q: Mapping[str, str], name: str) -> int:
    raw = q.get(name, "")
    if raw == "":
        return 0
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameter(f"invalid {name}: {raw!r} is not an integer") from None


def parse(q: Mapping[str, str], tags: Sequence[str], extra_hosts: Sequence[str],
          registry_config: str | None = None) -> BuildOptions:
    """q: the single-valued parameters; tags and extra_hosts: the repeated `t` and `extrahosts`."""
    if q.get("squash", "") in _TRUE:
        raise InvalidParameter("squash is only supported with experimental mode")
    if q.get("version", "1") not in ("", "1"):
        raise InvalidParameter("BuildKit (builder version 2) is not supported by this daemon: "
                               "use the legacy builder (DOCKER_BUILDKIT=0)")
    refs = []
    for t in tags:
        if not t:
            continue
        ref = reference.parse(t)
        if ref.digest:
            raise InvalidParameter(f"invalid reference format: {t}: a tag cannot contain a digest")
        refs.append(ref)
    args = _json(q.get("buildargs", ""), "buildargs", dict)
    for k, v in args.items():
        if v is not None and not isinstance(v, str):
            raise InvalidParameter(f"invalid buildargs: the value of {k} must be a string")
    labels = _json(q.get("labels", ""), "labels", dict)
    if any(not isinstance(v, str) for v in labels.values()):
        raise InvalidParameter("invalid labels: values must be strings")
    cache_from = _json(q.get("cachefrom", ""), "cachefrom", list)
    ulimits = _json(q.get("ulimits", ""), "ulimits", list)
    hosts: list[str] = []
    for h in extra_hosts:
        hosts += [x for x in h.split(",") if x]
    network = q.get("networkmode", "") or "default"
    hc: dict[str, Any] = {"NetworkMode": network, "ExtraHosts": hosts or None, "ShmSize": _int(q, "shmsize"),
                          "Memory": _int(q, "memory"), "MemorySwap": _int(q, "memswap"),
                          "CpuShares": _int(q, "cpushares"), "CpusetCpus": q.get("cpusetcpus", ""),
                          "CpuPeriod": _int(q, "cpuperiod"), "CpuQuota": _int(q, "cpuquota"),
                          "Ulimits": ulimits or None, "LogConfig": {"Type": "json-file", "Config": {}}}
    if hc["ShmSize"] < 0:
        raise InvalidParameter("SHM size can not be less than 0")
    return BuildOptions(
        dockerfile=q.get("dockerfile", "") or "Dockerfile",
        tags=refs,
        quiet=q.get("q", "") in _TRUE,
        no_cache=q.get("nocache", "") in _TRUE,
        pull=q.get("pull", "") in _TRUE,
        rm=q.get("rm", "1") not in ("0", "false", "False"),
        force_rm=q.get("forcerm", "") in _TRUE,
        target=q.get("target", ""),
        build_args=args,
        labels=labels,
        cache_from=[str(c) for c in cache_from],
        platform=q.get("platform", ""),
        remote=q.get("remote", ""),
        host_config=hc,
        registry_auths=registry_auths(registry_config),
    )
