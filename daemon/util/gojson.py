"""Request JSON read the way dockerd's Go decoder reads it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def fold_keys(body: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """`body` with its keys renamed to the struct's field names where they match ignoring case.

    encoding/json matches object keys to struct fields case-insensitively (an exact match
    first), so dockerd takes docker-py's `{"detachKeys": ...}` for ExecConfig.DetachKeys.
    Keys that match no field are kept as they are.
    """
    by_fold = {f.casefold(): f for f in fields}
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = by_fold.get(key.casefold(), key)
        if name in out and key != name:
            continue  # the exact spelling wins over a case-folded one
        out[name] = value
    return out
