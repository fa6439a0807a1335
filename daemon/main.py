"""`pydockerd`: the daemon's entry point (flags, start-up checks, listeners, signals)."""

from __future__ import annotations

from daemon.util import lazycrypto

# Before anything imports asyncio (below) or hashlib: see the module.
lazycrypto.install()

import asyncio
import fcntl
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from api import uvicornmain
from daemon.config import Config, ConfigError, Loaded, load_all
from daemon.sdnotify import Notifier
from daemon.util import deferred, memtrim

log = logging.getLogger("pydockerd")


class StartupError(Exception):
    """Reported as one line on stderr, exit status 1."""


def _lock_data_root(cfg: Config) -> int:
    cfg.data_root.mkdir(parents=True, exist_ok=True, mode=0o711)
    path = cfg.data_root / "pydockerd.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise StartupError(f"another pydockerd (pid {holder or '?'}) is using the data root {cfg.data_root}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _write_pidfile(path: Path) -> None:
    try:
        old = int(path.read_text().strip())
    except (OSError, ValueError):
        old = 0
    if old and old != os.getpid():
        try:
            os.kill(old, 0)
        except ProcessLookupError:
            pass
        else:
            raise StartupError(f"pid file found, ensure pydockerd is not running or delete {path} (pid {old})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_log_level(level)


def set_log_level(level: str) -> None:
    """The root level (at start and on SIGHUP); uvicorn's access log only in debug."""
    logging.getLogger().setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


async def _run(loaded: Loaded) -> None:
    from api.app import create_app
    from api.metrics import MetricsServer
    from api.server import ListenerError, TLSOptions, close_listeners, open_listeners, serve
    from daemon.engine import Daemon
    from daemon.loopprio import raise_loop_priority

    cfg = loaded.config
    notifier = Notifier.from_environment()

    tls = None
    if cfg.tls or cfg.tlsverify:
        tls = TLSOptions(verify=cfg.tlsverify, cacert=cfg.tlscacert, cert=cfg.tlscert, key=cfg.tlskey)
    try:
        listeners = open_listeners(cfg.hosts, tls)
    except ListenerError as e:
        raise StartupError(str(e)) from None
    # Bound before anything starts, so that an address in use stops the start cleanly.
    metrics_server = None
    if cfg.metrics_addr:
        try:
            metrics_server = MetricsServer.bind(cfg.metrics_addr)
        except OSError as e:
            close_listeners(listeners)
            raise StartupError(f"cannot serve metrics on {cfg.metrics_addr}: {e.strerror or e}") from None
    if (nice := raise_loop_priority()) is not None:
        log.info("event loop thread at nice %d", nice)
    daemon = Daemon(cfg, reload_flags=loaded.flags, on_log_level=set_log_level,
                    tcp_listeners=[b.url for b in listeners if b.listener.scheme == "tcp"])
    await daemon.start()
    app, routes, replay = create_app(daemon.backends())
    # What start-up made (modules, routes, the engine's services and records) lives as long as
    # the daemon: out of the collector's sight, a full collection under bench_load's 16 clients
    # took 9-17 ms instead of 55-70, which the event loop stalled for.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        notifier.stopping()
        daemon.stopping.set()
        stop.set()

    def on_hup() -> None:
        notifier.reloading()
        daemon.reload()
        notifier.ready()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    if metrics_server is not None:
        metrics_server.start(daemon.metrics_text)
    log.info("pydockerd ready, API listening on %s", ", ".join(cfg.hosts))
    try:
        await serve(app, listeners, routes, shutdown_event=stop, on_started=notifier.ready,
                    graceful_timeout=lambda: float(cfg.shutdown_timeout), replay=replay)
    finally:
        if metrics_server is not None:
            await metrics_server.stop()
        await daemon.stop()
        log.info("pydockerd stopped")


def main(argv: list[str] | None = None) -> int:
    try:
        loaded = load_all(argv)
    except ConfigError as e:
        print(f"pydockerd: {e}", file=sys.stderr)
        return 1
    cfg = loaded.config
    if loaded.validate_only:
        print("configuration OK")
        return 0
    if os.geteuid() != 0:
        print("pydockerd: pydockerd needs to be started with root privileges", file=sys.stderr)
        return 1
    _setup_logging(cfg.effective_log_level)
    try:
        cfg.exec_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_fd = _lock_data_root(cfg)
        _write_pidfile(cfg.pidfile_path)
    except (StartupError, OSError) as e:
        print(f"pydockerd: {e}", file=sys.stderr)
        return 1
    if cfg.tls or cfg.tlsverify:
        lazycrypto.load_tls()  # the real ssl before uvicorn and the listeners read it
    memtrim.limit_arenas()
    uvicornmain.install()
    deferred.install()
    # Monitors are children until their container exits: reap them with pidfds, not a thread each.
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
    try:
        asyncio.run(_run(loaded))
    except StartupError as e:
        print(f"pydockerd: {e}", file=sys.stderr)
        return 1
    finally:
        try:
            if cfg.pidfile_path.read_text().strip() == str(os.getpid()):
                cfg.pidfile_path.unlink()
        except OSError:
            pass
        os.close(lock_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
