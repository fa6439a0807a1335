"""The embedded DNS resolver's side that needs no DNS library: the names it is given
(Directory, Addresses), and a stand-in that loads the resolver (network/dns.py) when the
first container needs one.

dnspython costs the daemon ~2-4 MiB (50-60 modules), which a daemon whose containers are all on
the default bridge, host or none networks (no embedded resolver there) need not carry; the
resolver imports it with the first query it has to parse (network/dnswire.py), so neither does
one whose containers never look a name up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from network.dns import Resolver


@dataclass(frozen=True)
class Addresses:
    v4: list[str]
    v6: list[str]


class Directory(Protocol):
    """The names the resolver owns, as one container sees them."""

    def addresses(self, owner: str, name: str) -> Addresses | None:
        """The addresses of `name` (lower case, no final dot) for the container `owner`; None
        when the name is not one of ours (the query is forwarded then)."""
        ...

    def hostname(self, owner: str, address: str) -> str | None:
        """The name of an address on owner's networks (PTR), None when not ours."""
        ...

    def may_forward(self, owner: str) -> bool:
        """False when every network of the container is internal: nothing goes out then."""
        ...


class LazyResolver:
    """network.dns.Resolver's per-container interface; the Resolver is made on the first attach
    (and dnspython imported with the first query it parses: network/dnswire.py)."""

    def __init__(self, directory: Directory, **options: Any) -> None:
        self._directory = directory
        self._options = options
        self._real: Resolver | None = None

    @property
    def real(self) -> Resolver:
        if self._real is None:
            from network.dns import Resolver

            self._real = Resolver(self._directory, **self._options)
        return self._real

    def forget_answers(self) -> None:
        if self._real is not None:
            self._real.forget_answers()

    def serving(self, owner: str) -> bool:
        return self._real is not None and self._real.serving(owner)

    async def attach(self, owner: str, path: Path, upstreams: list[str]) -> None:
        await self.real.attach(owner, path, upstreams)

    async def detach(self, owner: str) -> None:
        if self._real is not None:
            await self._real.detach(owner)

    async def close(self) -> None:
        if self._real is not None:
            await self._real.close()
