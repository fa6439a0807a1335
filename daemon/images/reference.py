"""Image references, normalised as the docker CLI shows them (`busybox:latest`, never docker.io/library/...)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from daemon.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
_NAME_RE = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    name: str  # familiar repository name: "busybox", "myreg:5000/x/y"
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    @property
    def domain(self) -> str:
        first = self.name.split("/", 1)[0]
        if "/" in self.name and ("." in first or ":" in first or first == "localhost"):
            return first
        return DEFAULT_DOMAIN

    @property
    def full_name(self) -> str:
        """The fully qualified repository (docker.io/library/busybox), for registries."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.name[len("docker.io/"):] if self.name.startswith("docker.io/") else self.name
        return f"{DEFAULT_DOMAIN}/{path if '/' in path else 'library/' + path}"


def familiar_name(name: str) -> str:
    """docker.io/library/busybox -> busybox; docker.io/user/x -> user/x; others unchanged."""
    for prefix in ("docker.io/library/", "index.docker.io/library/"):
        if name.startswith(prefix) and "/" not in name[len(prefix):]:
            return name[len(prefix):]
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


# Pure; `docker ps` resolves every container's image name. Bounded small: every entry is a
# reference some request once named (removed images' too), kept until it is pushed out.
@functools.lru_cache(maxsize=256)
def parse(ref: str, default_tag: bool = True) -> Reference:
    """Parses NAME[:TAG][@DIGEST]; adds `latest` when neither a tag nor a digest is given."""
    if not ref or ref != ref.strip():
        raise InvalidParameter(f"invalid reference format: {ref!r}")
    name, digest = ref, None
    if "@" in ref:
        name, digest = ref.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidParameter(f"invalid reference format: {ref}")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidParameter(f"invalid reference format: {ref}")
    if any(c.isupper() for c in name.rsplit("/", 1)[-1]) or not _NAME_RE.match(name):
        if name and name.lower() == name or not name:
            raise InvalidParameter(f"invalid reference format: {ref}")
        raise InvalidParameter(f"invalid reference format: repository name ({name}) must be lowercase")
    if len(name) > 255:
        raise InvalidParameter("invalid reference format: repository name must not be more than 255 characters")
    if _HEX64.match(name):
        raise InvalidParameter(f"invalid repository name ({name}), cannot specify 64-byte hexadecimal strings")
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(familiar_name(name), tag, digest)


def parse_repo_tag(repo: str, tag: str | None) -> Reference:
    """The (repo, tag) query pair of /images/create, /images/{name}/tag and /commit."""
    if tag:
        if not _TAG_RE.match(tag):
            raise InvalidParameter(f"invalid tag format: {tag}")
        ref = parse(repo, default_tag=False)
        if ref.tag or ref.digest:
            raise InvalidParameter(f"invalid reference format: {repo}:{tag}")
        return Reference(ref.name, tag)
    return parse(repo)
