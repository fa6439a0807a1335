"""The `filters` query parameter: {"key": {"value": true}} or {"key": ["value"]} (older clients)."""

from __future__ import annotations

import json
import re

from daemon.errors import InvalidParameter


class Filters:
    def __init__(self, values: dict[str, list[str]]) -> None:
        self.values = values

    @classmethod
    def parse(cls, raw: str | None, allowed: set[str]) -> Filters:
        if not raw:
            return cls({})
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise InvalidParameter(f"invalid filter: {e}") from e
        except RecursionError:  # a hostile query string: nesting deeper than Python's stack
            raise InvalidParameter("invalid filter: nested too deeply") from None
        if not isinstance(data, dict):
            raise InvalidParameter("invalid filter: expected a JSON object")
        values: dict[str, list[str]] = {}
        for key, val in data.items():
            if key not in allowed:
                raise InvalidParameter(f"Invalid filter '{key}'")
            if isinstance(val, dict):
                values[key] = [k for k, on in val.items() if on]
            elif isinstance(val, list) and all(isinstance(v, str) for v in val):
                values[key] = list(val)
            else:
                raise InvalidParameter(f"invalid filter '{key}': expected an object or a list of strings")
        return cls(values)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str) -> list[str]:
        return self.values.get(key, [])

    def bool(self, key: str) -> bool | None:
        vals = self.get(key)
        if not vals:
            return None
        v = vals[-1].lower()
        if v in ("1", "true"):
            return True
        if v in ("0", "false"):
            return False
        raise InvalidParameter(f"Invalid filter '{key}={vals[-1]}'")

    def match_labels(self, labels: dict[str, str] | None, key: str = "label") -> bool:
        """label=k (present), label=k=v (equal); every given label must match."""
        labels = labels or {}
        for cond in self.get(key):
            if "=" in cond:
                k, v = cond.split("=", 1)
                if labels.get(k) != v:
                    return False
            elif cond not in labels:
                return False
        return True

    def match_label_filters(self, labels: dict[str, str] | None) -> bool:
        """`label` and `label!` together, as dockerd's prune and list filters: every `label`
        condition holds, and not every `label!` condition does (moby's MatchKVList on
        "label!": `k` means the key is present, `k=v` and `k=` an exact value)."""
        if not self.match_labels(labels):
            return False
        return "label!" not in self or not self.match_labels(labels, "label!")

    def match_any(self, key: str, value: str) -> bool:
        vals = self.get(key)
        return not vals or value in vals

    def match_regex(self, key: str, value: str) -> bool:
        vals = self.get(key)
        if not vals:
            return True
        for pattern in vals:
            try:
                if re.search(pattern, value):
                    return True
            except re.error:
                if pattern in value:
                    return True
        return False
