"""What holds the daemon's memory, for GET /debug/vars when PYDOCKERD_MEMDEBUG=1 is set.

Debug only: walking every object and snapshotting tracemalloc costs tens of milliseconds on
the loop, so a normal daemon never does it. With PYTHONTRACEMALLOC=1 also set (Python starts
tracing at start-up), the document carries the top allocation sites and their growth since
the previous reading, which is how one finds what a suite's worth of work leaves behind.
"""

from __future__ import annotations

import array
import bisect
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
_first_ids: list[array.array] = []  # sorted, not a set: no int object per id in the arenas looked at


def _all_objects() -> list[object]:
    """The collector's objects and what they refer to directly: the strings, numbers and bytes
    they hold are not tracked by the collector themselves."""
    objs = gc.get_objects()
    seen = {id(o) for o in objs}
    more = []
    for o in objs:
        for r in gc.get_referents(o):
            if id(r) not in seen:
                seen.add(id(r))
                more.append(r)
    return objs + more


def _anon_regions() -> list[tuple[int, int]]:
    """The process's anonymous read-write mappings (pymalloc's 1 MiB arenas, merged when adjacent)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 5 and parts[1].startswith("rw"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


def _new_objects() -> dict:
    """Objects alive now that were not at the first reading, by type and by the anonymous mapping
    they live in: what pins the arenas that a peak of work left behind (an arena is given back
    only when every object in it is gone)."""
    objs = _all_objects()
    if not _first_ids:
        _first_ids.append(array.array("Q", sorted(id(o) for o in objs)))
        return {"first": len(objs)}
    first = _first_ids[0]

    def known(a: int) -> bool:
        i = bisect.bisect_left(first, a)
        return i < len(first) and first[i] == a

    new = [o for o in objs if not known(id(o))]
    regions = _anon_regions()
    by_region: dict[str, Counter] = {}
    samples: dict[str, list[str]] = {}
    for o in new:
        a = id(o)
        where = next((f"{lo:x}-{hi:x}" for lo, hi in regions if lo <= a < hi), "other")
        name = type(o).__name__
        by_region.setdefault(where, Counter())[name] += 1
        s = samples.setdefault(f"{where} {name}", [])
        if len(s) < 3:
            try:
                s.append(repr(o)[:160])
            except Exception as e:  # a repr that fails is still a sample
                s.append(f"<repr failed: {e}>")
    del new, objs
    return {"count": sum(sum(c.values()) for c in by_region.values()),
            "by_region": {k: c.most_common(15) for k, c in by_region.items()},
            "samples": samples}


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
    """The summary lines of sys._debugmallocstats() (it writes to fd 2, borrowed meanwhile), and
    per size class "size pools used avail" (where the arenas' free blocks are: fragmentation)."""
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
    classes = [" ".join(line.split()[1:]) for line in lines if line[:1] == " " and line.split()[0].isdigit()]
    return [line for line in lines if line.startswith(("# arenas", "# bytes in", "Total"))] + classes


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
    if os.environ.get("PYDOCKERD_MEMDEBUG") == "objects":
        doc["new_objects"] = _new_objects()
    if tracemalloc.is_tracing():
        doc["tracemalloc"] = _tracemalloc()
    return doc
