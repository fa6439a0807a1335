"""Standard modules that libraries import at start but the daemon does not use, loaded on first use.

The libraries under the API import some modules for paths pydockerd never takes, and a module
imported is a module kept (its code, functions and tables stay for the process's life):

* ``unittest`` (its whole ``__init__``: case, loader, runner, main with argparse, difflib):
  pyroute2's iprsocket does ``from unittest import mock`` for its test double, so only
  ``unittest.mock`` (and ``unittest.util``) is needed;
* ``html`` (with html.entities, a 2000-entry table): starlette's error middleware escapes
  the traceback page it renders in debug mode only;
* ``logging.config`` (with logging.handlers, socketserver, pickle): uvicorn configures logging
  from a dict or file with it, and the daemon passes ``log_config=None``.
* ``http.client`` (with its email parser): starlette looks a status's reason phrase up in it
  when an HTTPException comes without one (the first 404 of an unknown path loads it), and
  the registry client (urllib3) and remote build contexts (urllib.request) import it when
  they are first used.

defer() registers a stand-in module under the name before anything imports it: the import
statements find it and bind it, and the first attribute the stand-in lacks runs the real
module into it, so a program that does use one of these modules gets it whole, unchanged
(a package's submodules are imported as usual). Only the daemon's process installs them
(daemon/main.py), before the API is imported.

Not importlib.util.LazyLoader: on 3.11 its module loads on any attribute access, and the
import system reads `__spec__`/`__path__` of a package as soon as a submodule of it is
imported (`from unittest import mock`), so the module was loaded at once (measured).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
from typing import Any

DEFERRED = ("unittest", "html", "logging.config", "http.client")
_pending: dict[str, Any] = {}  # name -> stand-in not loaded yet


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of `name` without importing its parent package (importlib.util.find_spec would
    run the parent's __init__, which may import the very module to defer: asyncio does)."""
    parent, _, _ = name.rpartition(".")
    if not parent or parent in sys.modules:
        return importlib.util.find_spec(name)
    pspec = _find_spec(parent)
    if pspec is None or pspec.submodule_search_locations is None:
        return None
    return importlib.machinery.PathFinder.find_spec(name, pspec.submodule_search_locations)


def defer(name: str, placeholders: dict[str, Any] | None = None, before_parent: bool = False) -> None:
    """A no-op when `name` is already imported. `placeholders` are attributes the stand-in has
    before the module is loaded, for modules that read them when they are imported; the real
    module's replace them when it loads (only values copied at import time stay placeholders).
    `before_parent`: the parent package is not imported here (its __init__ imports `name`); the
    caller binds the stand-in on it once it is."""
    if name in sys.modules:
        return
    spec = _find_spec(name) if before_parent else importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    mod = importlib.util.module_from_spec(spec)
    for attr, value in (placeholders or {}).items():
        setattr(mod, attr, value)
    loader = spec.loader
    # A first use in a worker thread and one on the loop may meet: the second waits for the
    # module to be whole. The module's own body looking itself up while it runs finds nothing
    # more (AttributeError, as for any module still being imported); a module that defines its
    # own __getattr__ (unittest does) keeps it.
    lock = threading.RLock()
    state = {"loading": False, "done": False}

    def _load(attr: str) -> Any:
        if attr == "__path__" and spec.submodule_search_locations is None:
            # `from ssl import X` first asks whether the module is a package: it is not, and
            # then X is looked up (a placeholder, or the load).
            raise AttributeError(attr)
        if spec.submodule_search_locations is not None and importlib.util.find_spec(f"{name}.{attr}") is not None:
            raise AttributeError(attr)  # a submodule (`from unittest import mock`): the import system loads it
        with lock:
            if not state["done"]:
                if state["loading"]:
                    raise AttributeError(f"module {name!r} has no attribute {attr!r} (yet)")
                state["loading"] = True
                try:
                    loader.exec_module(mod)
                finally:
                    state["done"] = True
                    _pending.pop(name, None)
                    if vars(mod).get("__getattr__") is _load:
                        del mod.__getattr__
        return getattr(mod, attr)

    mod.__getattr__ = _load  # type: ignore[method-assign]
    sys.modules[name] = mod
    _pending[name] = mod
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        # `import logging.config` binds `logging` and then looks `config` up on it.
        setattr(sys.modules[parent], child, mod)


def load(name: str) -> None:
    """Loads a deferred module now (a no-op when it is loaded or not deferred)."""
    mod = _pending.get(name)
    if mod is not None:
        mod.__getattr__("__file__")


def install() -> None:
    for name in DEFERRED:
        defer(name)

