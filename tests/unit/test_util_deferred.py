"""daemon/util/deferred.py: modules the libraries import but the daemon does not use, loaded on
first use, whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: this one has imported unittest (pytest) already.
_PROBE = """
import sys
from daemon.util import deferred
deferred.install()
from unittest import mock
import html
import logging.config
from api.app import create_app  # starlette, uvicorn and pyroute2 import them
import network.netlink
loaded = {"unittest.case", "html.entities", "logging.handlers"} & set(sys.modules)
assert not loaded, loaded
assert "HTTPConnection" not in vars(sys.modules["http.client"])
assert mock.Mock()() is not None and sys.modules["unittest.mock"] is mock
# First use: the real module, whole.
assert html.escape("<a>") == "&lt;a&gt;" and "html.entities" in sys.modules
assert callable(logging.config.dictConfig) and sys.modules["logging.config"] is logging.config
import unittest
assert unittest.TestCase.__module__ == "unittest.case" and unittest.IsolatedAsyncioTestCase is not None
import http.client
assert http.client.responses[404] == "Not Found" and "HTTPConnection" in vars(http.client)
print("ok")
"""


def test_deferred_modules_load_on_first_use() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_package_submodules_import_without_the_package_body(tmp_path: Path, monkeypatch) -> None:
    from daemon.util import deferred

    pkg = tmp_path / "deferredprobe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import sys\nsys.deferredprobe_ran = True\nVALUE = 42\n")
    (pkg / "sub.py").write_text("NAME = 'sub'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        deferred.defer("deferredprobe")
        from deferredprobe import sub

        assert sub.NAME == "sub"
        assert not hasattr(sys, "deferredprobe_ran")
        import deferredprobe

        assert deferredprobe.VALUE == 42 and sys.deferredprobe_ran  # type: ignore[attr-defined]
    finally:
        for name in ("deferredprobe", "deferredprobe.sub"):
            sys.modules.pop(name, None)
        if hasattr(sys, "deferredprobe_ran"):
            del sys.deferredprobe_ran  # type: ignore[attr-defined]


def test_defer_is_a_no_op_once_imported() -> None:
    import json

    from daemon.util import deferred

    deferred.defer("json")
    assert sys.modules["json"] is json
