"""What holds the daemon's memory, for GET /debug/vars when PYDOCKERD_MEMDEBUG=1 is set.

Debug only: walking every object and snapshotting tracemalloc costs tens of milliseconds on
the loop, so a normal daemon never does it. With PYTHONTRACEMALLOC=1 also set (Python starts
tracing at start-up), the document carries the top allocation sites and their growth since
the previous reading, which is how one finds what a suite's worth of work leaves behind.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import tempfile
import threading
import tracemalloc
from collections import Counter

_TOP = 40
_last: list[tracemalloc.Snapshot] = []


def _mallinfo() -> dict[str, int]:
    """glibc's heap figures (arena = bytes in the main and thread heaps, uordblks = in use)."""
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = MallInfo2
    m = fn()
    return {name: getattr(m, name) for name, _ in MallInfo2._fields_}


def _pymalloc() -> list[str]:
    """The summary lines of sys._debugmallocstats() (it writes to fd 2, borrowed meanwhile)."""
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        lines = f.read().decode(errors="replace").splitlines()
    return [line for line in lines if line.startswith(("# arenas", "# bytes in", "Total"))]


def _tracemalloc() -> dict:
    snap = tracemalloc.take_snapshot().filter_traces((
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ))
    top = snap.statistics("lineno")
    doc: dict = {
        "total": sum(s.size for s in top),
        "top": [f"{s.size} {s.count} {s.traceback}" for s in top[:_TOP]],
    }
    if _last:
        diff = snap.compare_to(_last[0], "lineno")
        doc["growth"] = [f"{d.size_diff:+} {d.count_diff:+} {d.traceback}" for d in diff[:_TOP]]
        by_file = snap.compare_to(_last[0], "filename")
        doc["growth_by_file"] = [f"{d.size_diff:+} {d.count_diff:+} {d.traceback}" for d in by_file[:_TOP]]
    _last[:] = [snap]
    return doc


def report() -> dict:
    """Modules, threads, live objects by type, heap figures and (if tracing) allocation sites."""
    # Cycles not yet collected would look like leaks in the growth list.
    gc.collect()
    counts = Counter(type(o).__name__ for o in gc.get_objects())
    doc: dict = {
        "modules": sorted(sys.modules),
        "threads": sorted(t.name for t in threading.enumerate()),
        "objects": len(gc.get_objects()),
        "types": counts.most_common(_TOP),
        "gc": {"counts": gc.get_count(), "frozen": gc.get_freeze_count()},
        "mallinfo": _mallinfo(),
        "pymalloc": _pymalloc(),
    }
    if tracemalloc.is_tracing():
        doc["tracemalloc"] = _tracemalloc()
    return doc
