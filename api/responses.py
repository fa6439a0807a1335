"""JSON responses encoded with orjson: `GET /containers/json` spends most of its time encoding
(measured: a third of the request with the standard library's encoder)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse as _JSONResponse


class JSONResponse(_JSONResponse):
    def render(self, content: Any) -> bytes:
        # OPT_NON_STR_KEYS: a few documents (filters echoed back) may carry int keys.
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
