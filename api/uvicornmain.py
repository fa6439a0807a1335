"""uvicorn without its command line: `import uvicorn` runs `from uvicorn.main import Server,
main, run`, and uvicorn.main is the click CLI (click, multiprocessing, the reloaders): ~2 MiB
of the daemon's memory for a command line it never runs. install() puts a stand-in for
uvicorn.main in its place before uvicorn is first imported; Server comes from uvicorn.server,
where it is defined, and main/run refuse.

Only the daemon's process installs it (daemon/main.py); a program that imports the api
package itself (the tests) gets uvicorn as it is.
"""

from __future__ import annotations

import sys
import types
from typing import Any

NAME = "uvicorn.main"


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("uvicorn's command line is not loaded in pydockerd")


def _attribute(name: str) -> Any:
    if name == "Server":
        from uvicorn.server import Server

        return Server
    if name in ("main", "run"):
        return _refuse
    raise AttributeError(f"module {NAME!r} has no attribute {name!r} (pydockerd's stand-in: api/uvicornmain.py)")


def install() -> None:
    """Before the first `import uvicorn`; a no-op once uvicorn is loaded."""
    if "uvicorn" in sys.modules or NAME in sys.modules:
        return
    stub = types.ModuleType(NAME, __doc__)
    stub.__getattr__ = _attribute  # type: ignore[method-assign]
    sys.modules[NAME] = stub
