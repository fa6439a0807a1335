"""Container processes: the per-container monitor (our containerd-shim/conmon) and the daemon's client for it.

Contract between `daemon` and `runtime` (see runtime/client.py):

* The daemon mounts the rootfs (storage), writes the files it wants bind-mounted (hosts,
  hostname, resolv.conf) and calls ``await Monitor.spawn(bundle_dir, spec)``.
  ``bundle_dir`` is ``<exec-root>/containers/<id>``; ``spec`` is the JSON document
  described in runtime/spec.py. The monitor prepares the namespaces and the container's
  init process, which then waits, not yet exec'd ("created").
* The daemon connects the attach streams that arrived before start
  (``monitor.attach(...)``), then calls ``await monitor.start()``; only then does the init
  exec the command, so no output is lost.
* The monitor owns stdio, writes the json-file log, records the exit status durably in the
  bundle, and keeps running without the daemon; ``Monitor.connect(bundle_dir)`` finds it
  again after a daemon restart.
"""
