"""Reading query parameters and JSON bodies the way dockerd does (httputils)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.requests import HTTPConnection

from daemon.errors import InvalidParameter


def qbool(request: HTTPConnection, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("", "0", "no", "false", "none")


def qint(request: Request, name: str, default: int | None = None) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {value!r}: not an integer") from None


def qint_required(request: Request, name: str) -> int:
    """An integer query parameter dockerd parses with strconv.Atoi (resize's h and w): missing or
    not a number is a 400 in its words."""
    value = request.query_params.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f'strconv.Atoi: parsing "{value}": invalid syntax') from None


def qstr(request: Request, name: str, default: str = "") -> str:
    return request.query_params.get(name, default)


async def json_body(request: Request, allow_empty: bool = True) -> Any:
    raw = await request.body()
    if not raw.strip():
        if allow_empty:
            return None
        raise InvalidParameter("invalid JSON: empty request body")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidParameter(f"invalid JSON: {e}") from None
