"""network/netlink.py: pyroute2's rtnetlink classes without the package's all-protocols __init__."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    # A fresh interpreter: this test process may have imported pyroute2 the usual way already.
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_rtnetlink_only_is_imported() -> None:
    out = _run("import sys, network.netlink as n; "
               "print(n.IPRoute.__module__, 'pyroute2.ndb.main' in sys.modules, 'pyroute2.ipdb' in sys.modules)")
    assert out == "pyroute2.iproute.linux False False"


def test_the_rest_of_pyroute2_still_imports_as_usual() -> None:
    out = _run("import network.netlink as n; import pyroute2; from pyroute2 import NDB, IPRoute; "
               "print(IPRoute is n.IPRoute, NDB.__module__, pyroute2.config is not None)")
    assert out == "True pyroute2.ndb.main True"


def test_a_link_dump_works() -> None:
    out = _run("from network.netlink import IPRoute\n"
               "with IPRoute() as ipr: print(any(l.get_attr('IFLA_IFNAME') == 'lo' for l in ipr.link('dump')))")
    assert out == "True"
