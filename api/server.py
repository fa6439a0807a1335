"""Listeners (`-H unix://...`, `-H tcp://...`) and serving the app on all of them in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import inspect
import ipaddress
import logging
import os
import socket
import ssl
import stat
import urllib.parse
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

import uvicorn

from . import activation
from .hijack import HijackRoutes, protocol_class
from .replay import ReplayCache

log = logging.getLogger(__name__)

DEFAULT_UNIX_SOCKET = "/run/pydockerd.sock"
DEFAULT_TCP_PORT = 2375
DEFAULT_TLS_PORT = 2376
# dockerd's default host for `tcp://` without an address.
DEFAULT_TCP_HOST = "localhost"
BACKLOG = 1024
GRACEFUL_SHUTDOWN_TIMEOUT = 2.0


class ListenerError(Exception):
    """A listener cannot be opened; the message is one line meant for the CLI."""


@dataclass
class Listener:
    """One `-H` address, parsed. `url` is normalised (default port, default path filled in)."""

    url: str
    scheme: str = ""  # "unix", "tcp" or "fd"
    path: str | None = None  # unix
    host: str | None = None  # tcp
    port: int | None = None  # tcp
    fd: str | None = None  # fd: "" (all handed-over sockets) or a number


@dataclass
class TLSOptions:
    verify: bool
    cacert: str | None
    cert: str | None
    key: str | None


@dataclass
class BoundListener:
    listener: Listener
    sock: socket.socket
    ssl_context: ssl.SSLContext | None = None
    # (st_dev, st_ino) of the socket file we created: on exit only that file is removed,
    # never one a later daemon put at the same path.
    unix_inode: tuple[int, int] | None = None

    @property
    def url(self) -> str:
        return self.listener.url


def parse_host(host: str, tls: bool = False) -> Listener:
    """Parse one `-H` value the way dockerd does (a bare `host:port` means tcp)."""
    text = host.strip()
    if not text:
        raise ListenerError("empty -H address")
    if "://" not in text:
        text = "tcp://" + text
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme == "unix":
        path = rest or DEFAULT_UNIX_SOCKET
        if not path.startswith("/"):
            raise ListenerError(f"invalid unix socket address unix://{rest}: the path must be absolute")
        return Listener(url=f"unix://{path}", scheme="unix", path=path)
    if scheme == "tcp":
        default_port = DEFAULT_TLS_PORT if tls else DEFAULT_TCP_PORT
        try:
            parts = urllib.parse.urlsplit("tcp://" + rest)
            hostname = parts.hostname or DEFAULT_TCP_HOST
            port = parts.port if parts.port is not None else default_port
        except ValueError as exc:
            raise ListenerError(f"invalid tcp address tcp://{rest}: {exc}") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ListenerError(f"invalid tcp address tcp://{rest}: unexpected path")
        shown = f"[{hostname}]" if ":" in hostname else hostname
        return Listener(url=f"tcp://{shown}:{port}", scheme="tcp", host=hostname, port=port)
    if scheme == "fd":
        return Listener(url=f"fd://{rest}", scheme="fd", fd=rest)
    raise ListenerError(f"unsupported listen address {host!r}: use unix:///path, tcp://host:port or fd://")


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _ssl_context(tls: TLSOptions) -> ssl.SSLContext:
    if not tls.cert or not tls.key:
        raise ListenerError("TLS needs a server certificate and key (--tlscert and --tlskey)")
    if tls.verify and not tls.cacert:
        raise ListenerError("--tlsverify needs the CA that signs client certificates (--tlscacert)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # dockerd's default minimum.
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
        if tls.cacert:
            ctx.load_verify_locations(cafile=tls.cacert)
    except (OSError, ssl.SSLError) as exc:
        raise ListenerError(f"invalid TLS configuration: {exc}") from None
    if tls.verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif tls.cacert:
        # dockerd --tls with a CA but without --tlsverify: VerifyClientCertIfGiven.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _socket_alive(path: str) -> bool:
    """True if something accepts connections on the unix socket at path."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except TimeoutError:
        # A full backlog blocks connect: a live daemon, just busy.
        return True
    except OSError as exc:
        raise ListenerError(f"cannot check unix://{path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    return True


def _socket_gid(group: str) -> int | None:
    if not group:
        return None
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group == "docker":
            # The default group is optional, as with dockerd: root-only access then.
            log.debug("group 'docker' does not exist; the API socket stays root-only")
            return None
        raise ListenerError(f"cannot set the socket group: group {group!r} does not exist") from None


def _open_unix(listener: Listener, socket_group: str) -> BoundListener:
    path = listener.path
    assert path is not None
    gid = _socket_gid(socket_group)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ListenerError(f"cannot listen on {listener.url}: the path exists and is not a socket")
        if _socket_alive(path):
            raise ListenerError(
                f"cannot listen on {listener.url}: socket in use, another daemon is listening on it "
                "(is pydockerd or dockerd already running? check its pid file)"
            )
        # Stale socket left by a daemon that died without cleaning up.
        log.info("removing stale socket %s", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise ListenerError(f"cannot listen on {listener.url}: {exc.strerror or exc}") from None

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The socket file must never exist with wider permissions than 0660, not even
        # between bind and chmod; umask is process-wide, but this runs at start-up
        # before any other thread creates files (dockerd does the same).
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        st = os.lstat(path)
        if gid is not None:
            try:
                # chown before chmod: the group gets access only once it is the right one.
                os.chown(path, -1, gid)
            except PermissionError:
                log.warning("cannot give %s to group %s (not running as root?)", path, socket_group)
        os.chmod(path, 0o660)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenerError(f"cannot listen on {listener.url}: {exc.strerror or exc}") from None
    return BoundListener(listener=listener, sock=sock, unix_inode=(st.st_dev, st.st_ino))


def _open_tcp(listener: Listener, tls: TLSOptions | None, ctx: ssl.SSLContext | None) -> BoundListener:
    assert listener.host is not None and listener.port is not None
    try:
        infos = socket.getaddrinfo(
            listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenerError(f"cannot listen on {listener.url}: {exc.strerror}") from None
    family, socktype, proto, _, sockaddr = infos[0]
    # The check is on the address actually bound, so a host name that resolves to a
    # public address is treated as public.
    _check_tcp_exposure(listener.url, str(sockaddr[0]), tls)
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ListenerError(f"cannot listen on {listener.url}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    if listener.port == 0:
        # Port 0 (tests): report the port the kernel picked.
        shown = f"[{listener.host}]" if ":" in (listener.host or "") else listener.host
        listener = Listener(url=f"tcp://{shown}:{port}", scheme="tcp", host=listener.host, port=port)
    _warn_plain(listener.url, ctx)
    return BoundListener(listener=listener, sock=sock, ssl_context=ctx)


def _check_tcp_exposure(url: str, address: str, tls: TLSOptions | None) -> None:
    if not _is_loopback(address) and (tls is None or not tls.verify):
        raise ListenerError(
            f"refusing to listen on {url} without --tlsverify: anyone who can reach "
            "it could control the daemon and this host (use --tlsverify with --tlscacert, "
            "--tlscert and --tlskey, or listen on 127.0.0.1)"
        )


def _warn_plain(url: str, ctx: ssl.SSLContext | None) -> None:
    if ctx is None:
        log.warning(
            "API listening on %s without TLS: every local user can drive the daemon "
            "(and so become root on this host)",
            url,
        )


def _adopt_activated(listener: Listener, activated: dict[int, socket.socket], tls: TLSOptions | None,
                     ctx: ssl.SSLContext | None, taken: set[int]) -> list[BoundListener]:
    """The sockets systemd handed over that `-H fd://[N]` names, checked as our own listeners are.

    Their unix socket files belong to the .socket unit: unix_inode stays None so that they
    are never removed on exit.
    """
    assert listener.fd is not None
    try:
        socks = activation.select(activated, listener.fd)
    except activation.ActivationError as e:
        raise ListenerError(str(e)) from None
    bound = []
    for sock in socks:
        if sock.fileno() in taken:
            continue
        taken.add(sock.fileno())
        addr = sock.getsockname()
        if sock.family == socket.AF_UNIX:
            path = addr.decode(errors="replace") if isinstance(addr, bytes) else str(addr)
            shown = Listener(url=f"unix://{path}", scheme="unix", path=path)
            bound.append(BoundListener(listener=shown, sock=sock))
            continue
        host, port = str(addr[0]), int(addr[1])
        url = f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
        _check_tcp_exposure(f"{url} (fd {sock.fileno()})", host, tls)
        _warn_plain(url, ctx)
        bound.append(BoundListener(listener=Listener(url=url, scheme="tcp", host=host, port=port),
                                   sock=sock, ssl_context=ctx))
    return bound


def open_listeners(
    hosts: list[str], tls: TLSOptions | None, socket_group: str = "docker"
) -> list[BoundListener]:
    """Bind every `-H` address; all or nothing (on error the ones already bound are closed).

    TLS applies to TCP listeners only. Plain TCP is allowed on loopback only; any other
    address needs TLS with client certificate verification.
    """
    ctx = _ssl_context(tls) if tls is not None else None
    parsed = [parse_host(host, tls=tls is not None) for host in hosts]
    activated: dict[int, socket.socket] = {}
    if any(p.scheme == "fd" for p in parsed):
        try:
            activated = activation.listen_fds()
        except activation.ActivationError as e:
            raise ListenerError(str(e)) from None
    bound: list[BoundListener] = []
    taken: set[int] = set()
    try:
        for listener in parsed:
            if listener.scheme == "unix":
                bound.append(_open_unix(listener, socket_group))
            elif listener.scheme == "fd":
                bound += _adopt_activated(listener, activated, tls, ctx, taken)
            else:
                bound.append(_open_tcp(listener, tls, ctx))
    except BaseException:
        close_listeners(bound)
        for fd, sock in activated.items():
            if fd not in taken:
                sock.close()
        raise
    # As dockerd: handed-over sockets that no -H names are closed, not served.
    for fd, sock in activated.items():
        if fd not in taken:
            sock.close()
    return bound


def close_listeners(listeners: list[BoundListener]) -> None:
    """Close the sockets and remove the unix socket files this process created."""
    for bound in listeners:
        with contextlib.suppress(OSError):
            bound.sock.close()
        path = bound.listener.path
        if path is None or bound.unix_inode is None:
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) == bound.unix_inode:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class _Server(uvicorn.Server):
    """uvicorn.Server that leaves signals to the daemon and says when it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn would replace SIGINT/SIGTERM handlers and re-raise them on exit; the
        # daemon owns shutdown (it has containers to take care of first).
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.started_event.set()


async def serve(
    app: Any,
    listeners: list[BoundListener],
    routes: HijackRoutes,
    *,
    on_started: Callable[[], Any] | None = None,
    shutdown_event: asyncio.Event | None = None,
    access_log: bool = False,
    graceful_timeout: float | Callable[[], float] = GRACEFUL_SHUTDOWN_TIMEOUT,
    replay: ReplayCache | None = None,
) -> None:
    """Serve `app` (and the hijack routes) on every listener until shutdown_event is set.

    uvicorn applies one `config.ssl` to every socket a Server is given, so there is one
    uvicorn.Server per TLS setting (at most two: plain for unix sockets and loopback
    TCP, TLS for the TLS TCP listeners), all in this event loop and sharing the app, the
    hijack routes and their task set. The TLS Server gets our own SSLContext through
    Config's public `ssl_context_factory`. Signal handling stays with the caller: set
    shutdown_event (or cancel this coroutine) to stop. Unix socket files are removed on
    exit.
    """
    http_class = protocol_class(routes, replay)
    groups: dict[int, tuple[ssl.SSLContext | None, list[socket.socket]]] = {}
    for bound in listeners:
        key = id(bound.ssl_context)
        groups.setdefault(key, (bound.ssl_context, []))[1].append(bound.sock)

    servers: list[tuple[_Server, list[socket.socket]]] = []
    for ctx, socks in groups.values():
        factory = None
        if ctx is not None:
            factory = _fixed_context(ctx)
        config = uvicorn.Config(
            app,
            http=http_class,
            # websockets only for GET /containers/{id}/attach/ws; attach and exec start are
            # taken over by the hijack protocol instead.
            ws=_wsproto,
            lifespan="off",
            # None: uvicorn installs no handlers of its own; its loggers propagate to the
            # daemon's logging setup, so nothing is logged twice.
            log_config=None,
            access_log=access_log,
            proxy_headers=False,
            server_header=False,  # the version middleware sends dockerd's Server header
            date_header=True,
            timeout_graceful_shutdown=_seconds(graceful_timeout),
            ssl_context_factory=factory,
            backlog=BACKLOG,
        )
        servers.append((_Server(config), socks))

    tasks = [asyncio.create_task(srv.serve(sockets=socks), name="uvicorn") for srv, socks in servers]
    stop_waiter = asyncio.create_task(
        shutdown_event.wait() if shutdown_event is not None else asyncio.Event().wait()
    )
    started = asyncio.gather(*(srv.started_event.wait() for srv, _ in servers))
    try:
        done, _ = await asyncio.wait([started, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if started in done:
            for bound in listeners:
                log.info("API listen on %s", bound.url)
            if on_started is not None:
                result = on_started()
                if inspect.isawaitable(result):
                    await result
            await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()
        stop_waiter.cancel()
        # Read now, not at start: a reload may have changed it (--shutdown-timeout).
        results = await _shielded(_stop(servers, tasks, routes, listeners, _seconds(graceful_timeout)))
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result


def _seconds(value: float | Callable[[], float]) -> float:
    return value() if callable(value) else value


async def _stop(
    servers: list[tuple[_Server, list[socket.socket]]],
    tasks: list[asyncio.Task[None]],
    routes: HijackRoutes,
    listeners: list[BoundListener],
    graceful_timeout: float,
) -> list[Any]:
    for srv, _ in servers:
        srv.config.timeout_graceful_shutdown = graceful_timeout
        srv.should_exit = True
    # Attach/exec sessions are not uvicorn's: end them alongside its graceful shutdown,
    # which only waits for ordinary requests.
    _, results = await asyncio.gather(
        routes.cancel_all(timeout=graceful_timeout),
        asyncio.gather(*tasks, return_exceptions=True),
    )
    close_listeners(listeners)
    return list(results)


def _wsproto(*args: Any, **kwargs: Any) -> asyncio.Protocol:
    """uvicorn's wsproto protocol, imported with the first websocket (attach/ws) rather than at
    start: wsproto costs the daemon ~1.2 MiB that almost no client ever uses."""
    from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

    return WSProtocol(*args, **kwargs)


def _fixed_context(ctx: ssl.SSLContext) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    def factory(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return ctx

    return factory


async def _shielded(aw: Awaitable[Any]) -> Any:
    """Run cleanup to the end even if serve() itself is being cancelled."""
    fut = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await fut
        raise


__all__ = [
    "BoundListener",
    "ListenerError",
    "Listener",
    "TLSOptions",
    "close_listeners",
    "open_listeners",
    "parse_host",
    "serve",
]
