"""Container processes: the per-container monitor (our containerd-shim/conmon) and the daemon's client for it.

Contract between `daemon` and `runtime` (see runtime/client.py):

* The daemon mounts the rootfs (storage), writes the files it wants bind-mounted (hosts,
  hostname, resolv.conf), creates the container's cgroup (``cgroups``, with the ``Resources``
  it computed) and calls ``await Monitor.spawn(bundle_dir, spec)``.
  ``bundle_dir`` is a directory the daemon chooses (pydockerd: ``<exec-root>/ctr/<short id>``,
  short because the sockets in it must fit sun_path); ``spec`` is the document described in
  runtime/spec.py (its ``ContainerSpec``), built by the daemon (daemon/containers/spec.py).
  The monitor prepares the namespaces and the container's init process, which then waits,
  not yet exec'd ("created"). ``Monitor.pid`` (the init's host pid) is known at this point:
  the daemon puts it into the container's cgroups now, before start, so everything the
  command forks inherits them.
* The daemon connects the attach streams that arrived before start
  (``monitor.attach(...)``, which returns once the monitor has registered the client),
  then calls ``await monitor.start()``; only then does the init exec the command, so no
  output is lost.
* The monitor owns stdio, writes the json-file log, records the exit status durably in the
  bundle, and keeps running without the daemon; ``Monitor.connect(bundle_dir)`` finds it
  again after a daemon restart (None: it has finished, see ``read_exit_status``).
* Monitors and exec processes are forked from a template process (``zygote``, one per
  daemon, started and ended by ``launcher.ZygoteLauncher``) that has imported their code
  and frozen its garbage collector, so that they share its memory (~1.3 MiB of PSS per
  monitor instead of ~4.3) and start without an interpreter's start-up; without it they
  start as fresh interpreters (``monitor.py``, ``execproc.py``). Why this keeps the
  monitor's guarantees is written at the top of runtime/zygote.py.

Files in the bundle directory: ``config.json`` (written by ``spawn``, read by the container's
init), ``monitor.json`` (its few fields the monitor reads), ``monitor.log`` (the
monitor's stderr), ``monitor.pid``, ``control.sock`` and ``attach.sock`` (while the monitor
runs), ``exit.json`` (once the container has exited; removed by the next ``spawn``).

Modules: ``client`` (daemon side, asyncio); ``spec`` (the spec document); ``monitor`` (the
entry point run as ``python3 -S -I monitor.py <bundle>``) and ``shim`` (its main loop),
``initproc`` (the container's init before exec), ``rootfs`` (mounts, pivot_root),
``users``, ``lookpath``, ``jsonlog``, ``attach``, ``control``, ``stdio``, ``reactor``,
``procfs`` (a container's processes in /proc), ``libc`` and ``lean``, which the monitor
imports with the standard library only; ``zygote`` (the template process) and ``launcher``
(the daemon's side of it); ``cgroups`` (the daemon's side of resource limits);
``execclient``, ``nsexec`` and ``execproc`` (docker exec).
"""
