"""pyroute2's rtnetlink classes, imported without pyroute2's package ``__init__``.

``import pyroute2`` runs an ``__init__`` that imports every protocol the library speaks (NDB,
IPDB, IPVS, wireguard, nl80211, nftables, plan9...): ~230 modules and ~12 MiB of the daemon's
memory, measured 2026-12-05. The daemon speaks rtnetlink only, whose modules cost about half of
that. So the package is registered as a bare namespace for its submodules; the first attribute
asked of the package itself (``from pyroute2 import NDB`` in some other code of the same process)
runs the real ``__init__`` into it, so nothing that imports pyroute2 the usual way breaks.
pyroute2 is pinned (0.9.*) in pyproject: the module paths below are that version's.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import types


def _bare_package(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an importable package")
    pkg = types.ModuleType(name)
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    pkg.__package__ = name

    def _whole(attr: str) -> object:
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            # A submodule (`from pyroute2 import config`): the import system loads it alone.
            raise AttributeError(attr)
        # Another user of the library wants more than rtnetlink: give it the whole package.
        del pkg.__getattr__
        spec.loader.exec_module(pkg)
        return getattr(pkg, attr)

    pkg.__getattr__ = _whole  # type: ignore[method-assign]
    sys.modules[name] = pkg


_bare_package("pyroute2")

from pyroute2.iproute.linux import AsyncIPRoute, IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

__all__ = ["AsyncIPRoute", "IPRoute", "NetlinkError", "ifaddrmsg", "ifinfmsg", "index_of", "rtmsg"]


def index_of(ifname: str) -> int | None:
    """A link's index in the caller's namespace by one ioctl (pyroute2's link_lookup(ifname=)
    can dump and parse every link of the namespace to find it)."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None
