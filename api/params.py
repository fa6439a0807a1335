"""Reading query parameters and JSON bodies the way dockerd does (httputils).

Every JSON request body goes through :func:`parse_json` (routers through :func:`json_body`,
hijacked routes through HijackRequest.json), which bounds what a client can make the daemon
hold: the body's size (413), its nesting (400; Go's decoder has its own limit too, and deep
nesting would only overflow Python's stack later, when the document is stored or answered) and
its integers (400 naming the field: every integer of the Engine API is at most 64 bits, and a
bigger one would be stored and then break every response that shows it).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.requests import HTTPConnection

from daemon.errors import DaemonError, InvalidParameter


def _arg(request: HTTPConnection, name: str) -> str | None:
    """The query parameter's value (the last one given, as Starlette's QueryParams[name]) or None.

    Without a query string nothing is parsed at all; with one, `in` then `[]`: QueryParams.get
    is Mapping.get, which raises and catches a KeyError for every absent parameter (most are:
    GET /containers/json asks for six).
    """
    if not request.scope["query_string"]:
        return None
    params = request.query_params
    return params[name] if name in params else None


def qbool(request: HTTPConnection, name: str, default: bool = False) -> bool:
    value = _arg(request, name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "no", "false", "none")


def qint(request: Request, name: str, default: int | None = None) -> int | None:
    value = _arg(request, name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {value!r}: not an integer") from None


def qint_required(request: Request, name: str) -> int:
    """An integer query parameter dockerd parses with strconv.Atoi (resize's h and w): missing or
    not a number is a 400 in its words."""
    value = _arg(request, name) or ""
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f'strconv.Atoi: parsing "{value}": invalid syntax') from None


def qstr(request: Request, name: str, default: str = "") -> str:
    value = _arg(request, name)
    return default if value is None else value


MAX_JSON_BODY = 16 << 20
MAX_JSON_DEPTH = 64  # the Engine API's documents nest about 6 deep
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


class BodyTooLarge(DaemonError):
    status = 413

    def __init__(self) -> None:
        super().__init__(f"request body larger than {MAX_JSON_BODY} bytes")


def _field(trail: tuple | None) -> str:
    keys: list[str | int] = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    out = ""
    for key in reversed(keys):
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "the document"


def check_document(doc: Any) -> None:
    """Depth and integer range of a decoded document (iteratively: no recursion to overflow)."""
    stack: list[tuple[Any, int, tuple | None]] = [(doc, 1, None)]
    while stack:
        value, depth, trail = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise InvalidParameter(f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((v, depth + 1, (trail, k)) for k, v in items)
        elif isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _INT_MAX:
            raise InvalidParameter(f"invalid JSON: {_field(trail)}: number {value} out of range for a 64-bit "
                                   "integer")


def parse_json(raw: bytes) -> Any:
    if len(raw) > MAX_JSON_BODY:
        raise BodyTooLarge()
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise InvalidParameter(f"invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as e:  # ValueError: also Python's limit on integer digits
        raise InvalidParameter(f"invalid JSON: {e}") from None
    check_document(doc)
    return doc


async def json_body(request: Request, allow_empty: bool = True) -> Any:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_JSON_BODY:
        raise BodyTooLarge()  # before reading any of it
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise BodyTooLarge()
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if allow_empty:
            return None
        raise InvalidParameter("invalid JSON: empty request body")
    return parse_json(raw)
