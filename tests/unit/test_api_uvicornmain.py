"""api/uvicornmain.py: uvicorn imported without its command line (click), Server still there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
from api import uvicornmain
uvicornmain.install()
import uvicorn
from uvicorn.server import Server
assert uvicorn.Server is Server and uvicorn.Config is not None
assert "click" not in sys.modules and "multiprocessing" not in sys.modules
try:
    uvicorn.run(None)
except RuntimeError:
    pass
else:
    raise AssertionError("run must refuse")
print("ok")
"""


def test_uvicorn_without_its_command_line() -> None:
    # A fresh interpreter: this one has imported uvicorn (and click) already.
    out = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_install_is_a_no_op_once_uvicorn_is_loaded() -> None:
    import uvicorn

    from api import uvicornmain

    uvicornmain.install()
    assert hasattr(sys.modules["uvicorn.main"], "click")  # the real module stayed
    assert uvicorn.Server is not None
