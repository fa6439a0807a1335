"""Detach keys (`--detach-keys`, default Ctrl-P Ctrl-Q): parsing and matching in a stdin stream."""

from __future__ import annotations

from daemon.errors import InvalidParameter

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


def parse_keys(spec: str) -> bytes:
    """`ctrl-p,ctrl-q` / `a,ctrl-@` -> bytes, as docker's term.ToBytes."""
    out = bytearray()
    for key in spec.split(","):
        k = key.strip().lower()
        if len(k) == 1:
            out.append(ord(key.strip()))
        elif k.startswith("ctrl-") and len(k) == 6:
            c = k[5]
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c == "@":
                out.append(0)
            elif c in "[\\]^_":
                out.append(ord(c) - ord("@"))
            else:
                raise InvalidParameter(f"Invalid detach keys ({spec}) provided")
        else:
            raise InvalidParameter(f"Invalid detach keys ({spec}) provided")
    if not out:
        raise InvalidParameter(f"Invalid detach keys ({spec}) provided")
    return bytes(out)


class DetachMatcher:
    """Feeds stdin through; holds back a partial match and reports when the whole sequence came."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Returns (bytes to pass on, detached)."""
        out = bytearray()
        for b in data:
            candidate = self._held + bytes([b])
            if self.keys.startswith(candidate):
                if candidate == self.keys:
                    self._held = b""
                    return bytes(out), True
                self._held = candidate
            else:
                out += candidate
                self._held = b""
        return bytes(out), False
