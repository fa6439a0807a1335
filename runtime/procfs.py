"""Finding a container's processes in /proc: by pid namespace, or by descent from the monitor.

Standard library only (``os``): the monitor imports it, and so does the daemon for ``top``.
"""

from __future__ import annotations

import os


def pid_namespace_members(pid: int) -> list[int]:
    """Every process in `pid`'s pid namespace, `pid` first; [] once `pid` is gone."""
    try:
        target = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return []
    members = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pid:
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == target:
                members.append(int(entry))
        except OSError:
            continue  # exited meanwhile, or not ours to look at
    return members


def children(pid: int) -> list[int]:
    """The direct children of `pid` (its main thread's), [] once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def descendants(root: int) -> list[int]:
    """Every process below `root` in the process tree (not `root` itself)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # The command name may hold spaces and parentheses: the fields start after the last ")".
            parent[int(entry)] = int(stat[stat.rindex(b")") + 2:].split()[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parent.items() if pp == pid]
        found.extend(kids)
        frontier.extend(kids)
    return found
