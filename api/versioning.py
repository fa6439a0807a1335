"""API version prefix handling and the headers dockerd puts on every response.

Clients call `/v1.NN/...` after negotiating with `/_ping`; unprefixed paths mean the
newest version. The prefix is stripped here so that routers see one path per route,
and the requested version is kept in the scope for the few handlers whose behaviour
depends on it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from daemon.version import VERSION

MIN_API_VERSION = "1.24"
API_VERSION = "1.50"

SCOPE_KEY = "docker_api_version"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# dockerd's router matches `/v{version:[0-9.]+}`; the lookahead keeps `/v1.41x/...` from
# being taken for a prefix (it then 404s like any unknown path).
_PREFIX_RE = re.compile(r"^/v([0-9][0-9.]*)(?=/|$)")


def _standard_headers() -> list[tuple[str, str]]:
    # Names in Go's canonical form, as dockerd writes them (Go's header map canonicalises
    # "API-Version" to "Api-Version" and "OSType" to "Ostype").
    return [
        ("Api-Version", API_VERSION),
        ("Docker-Experimental", "false"),
        ("Ostype", "linux"),
        ("Server", f"pydockerd/{VERSION} (linux)"),
    ]


STANDARD_HEADERS: list[tuple[str, str]] = _standard_headers()
_STANDARD_HEADERS_RAW = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in STANDARD_HEADERS]


def strip_version(path: str) -> tuple[str | None, str]:
    """Split `/v1.41/containers/json` into ("1.41", "/containers/json").

    Returns (None, path) when there is no version prefix.
    """
    if not path.startswith("/v"):
        return None, path
    m = _PREFIX_RE.match(path)
    if m is None:
        return None, path
    rest = path[m.end() :]
    return m.group(1), rest or "/"


def _version_tuple(version: str) -> tuple[int, ...]:
    # Like moby's versions.compare: missing or non-numeric parts count as 0.
    parts = []
    for part in version.split("."):
        parts.append(int(part) if part.isdigit() else 0)
    return tuple(parts)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as API version a is lower than, equal to or higher than b."""
    ta, tb = _version_tuple(a), _version_tuple(b)
    width = max(len(ta), len(tb))
    ta += (0,) * (width - len(ta))
    tb += (0,) * (width - len(tb))
    return (ta > tb) - (ta < tb)


def version_at_least(version: str, minimum: str) -> bool:
    return compare_versions(version, minimum) >= 0


@functools.lru_cache(maxsize=64)
def check_version(version: str) -> str | None:
    """The error message dockerd gives for an unsupported version, or None if supported."""
    if compare_versions(version, MIN_API_VERSION) < 0:
        return (
            f"client version {version} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    if compare_versions(version, API_VERSION) > 0:
        return f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
    return None


def request_version(scope_or_request: Any) -> str:
    """The API version of a request (an ASGI scope or anything with a `.scope`, e.g. Request)."""
    scope = getattr(scope_or_request, "scope", scope_or_request)
    return str(scope.get(SCOPE_KEY, API_VERSION))


class VersionPrefixMiddleware:
    """Strips `/v1.NN`, rejects unsupported versions and adds dockerd's standard headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # A websocket (attach/ws) refused before its handshake gets an HTTP answer all the same.
        kind = "http" if scope["type"] == "http" else "websocket.http"

        version, path = strip_version(scope["path"])
        # A fresh scope: uvicorn logs from its own scope object, so the access log keeps
        # the path the client really sent.
        scope = dict(scope)
        if version is not None:
            scope["path"] = path
            raw = scope.get("raw_path")
            if raw is not None:
                prefix = b"/v" + version.encode("latin-1")
                if raw.startswith(prefix) and raw[len(prefix):len(prefix) + 1] in (b"/", b""):
                    scope["raw_path"] = raw[len(prefix):] or b"/"
                else:  # the prefix percent-encoded in the raw path
                    _, raw_str = strip_version(raw.decode("latin-1"))
                    scope["raw_path"] = raw_str.encode("latin-1")
        effective = version or API_VERSION
        scope[SCOPE_KEY] = effective
        # Starlette exposes scope["state"] as request.state.
        scope["state"] = {**scope.get("state", {}), SCOPE_KEY: effective}

        send = _with_standard_headers(send)

        if version is not None:
            error = check_version(version)
            if error is not None:
                await _json_error(send, 400, error, kind)
                return

        await self.app(scope, receive, send)


_STANDARD_NAMES = frozenset(name for name, _ in _STANDARD_HEADERS_RAW)


def _add_standard_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    """The response's headers, then each standard header it does not set itself."""
    headers = list(headers)
    for name, _ in headers:
        if name.lower() in _STANDARD_NAMES:
            break
    else:
        # The usual case (checked with a loop over the response's few names, not a set of them).
        headers += _STANDARD_HEADERS_RAW
        return headers
    present = {name.lower() for name, _ in headers}
    headers += [(name, value) for name, value in _STANDARD_HEADERS_RAW if name not in present]
    return headers


def _with_standard_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": _add_standard_headers(message.get("headers", ()))}
        await send(message)

    return wrapped


async def _json_error(send: Send, status: int, message: str, kind: str = "http") -> None:
    body = json.dumps({"message": message}).encode() + b"\n"
    await send(
        {
            "type": f"{kind}.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": f"{kind}.response.body", "body": body})
