"""`docker top`: the host's `ps` output, cut down to the container's processes.

As dockerd: the container's processes are told by pid (its pid namespace, or its cgroup
when it shares the host's or another container's namespace), `ps` runs on the host with
the caller's arguments, and only the rows whose PID column is one of them are kept.
"""

from __future__ import annotations

import asyncio

from daemon.containers.container import Container
from daemon.errors import Conflict, DaemonError
from runtime import procfs
from runtime.cgroups import Cgroups


async def container_pids(c: Container, cgroups: Cgroups) -> set[int]:
    if (c.host_config.get("PidMode") or "").startswith(("host", "container:")):
        # No pid namespace of its own to tell its processes by: its cgroup has them.
        return await asyncio.to_thread(cgroups.pids, c.id)
    return set(await asyncio.to_thread(procfs.pid_namespace_members, c.state["Pid"]))


def parse_ps(output: str, pids: set[int]) -> dict:
    """`ps` output -> {"Titles", "Processes"}, keeping the rows of `pids`; the last column (the
    command) keeps its spaces."""
    lines = output.splitlines()
    if not lines:
        return {"Titles": [], "Processes": []}
    titles = lines[0].split()
    if "PID" not in titles:
        raise DaemonError("Couldn't find PID field in ps output")
    pid_idx = titles.index("PID")
    procs = []
    for line in lines[1:]:
        fields = line.split(None, len(titles) - 1)
        if len(fields) <= pid_idx:
            continue
        try:
            pid = int(fields[pid_idx])
        except ValueError:
            continue
        if pid in pids:
            procs.append(fields)
    return {"Titles": titles, "Processes": procs}


async def top(c: Container, cgroups: Cgroups, ps_args: str) -> dict:
    if not c.running:
        raise Conflict(f"Container {c.id} is not running")
    pids = await container_pids(c, cgroups)
    args = (ps_args or "-ef").split()
    proc = await asyncio.create_subprocess_exec("ps", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise DaemonError(f"Error running top: ps {' '.join(args)}: {err.decode().strip()}")
    return parse_ps(out.decode(errors="replace"), pids)
