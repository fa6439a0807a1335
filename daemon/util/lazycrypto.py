"""libssl and libcrypto left unloaded until TLS or a big hash needs them.

Two extension modules map OpenSSL into the process: _ssl (the ssl module, which asyncio imports
at start for its TLS transports and uvicorn for its config) and _hashlib (hashlib's OpenSSL
constructors; hmac imports it at start, through secrets and pydantic). Loaded and initialised,
they are ~4 MiB of the daemon's PSS on a quiet host (libcrypto alone 3.4 MiB of touched pages,
and OpenSSL's own tables on the heap), the largest library after libpython, for a daemon that
serves no TLS unless started with --tls* and hashes mostly small documents.

install(), before asyncio is first imported (daemon/main.py's first lines):
* ``ssl`` and ``asyncio.sslproto`` become stand-ins (daemon/util/deferred.py) loaded on first
  use: a TLS listener (load_tls(), called at start when TLS is configured), an https registry,
  asyncio's TLS transports. Until then the stand-in answers the few attributes that modules read
  when they are imported (``PLACEHOLDERS``): uvicorn's default protocol and cert-reqs numbers
  (plain ints, equal to the enum members they stand for) and asyncio's ``isinstance(sock,
  ssl.SSLSocket)`` check on every loop.sock_* call (a class nothing is an instance of: no TLS
  socket exists before ssl loads). asyncio looks ``ssl``'s attributes up when it runs, so after the
  load it finds the real ones.
* ``_hashlib`` is blocked: hashlib uses its builtin sha256/md5/..., the same digests, ~5x slower
  than OpenSSL's and holding the GIL. Content that may be big goes through
  storage.digest.sha256(), which switches to OpenSSL for good once one stream went past
  a few MiB (an image pull, a big layer or build context).

Nothing changes for a program that does not call install() (the tests, the helpers).
"""

from __future__ import annotations

import sys
from typing import Any

from daemon.util import deferred


class _NoSSLSocket:
    """ssl.SSLSocket until ssl is loaded: nothing is an instance of it."""


class _NoSSLContext:
    """ssl.SSLContext until ssl is loaded: anyio.streams.tls (imported with anyio's sockets) does
    `from ssl import SSLContext` for an annotation only, and looks ssl.SSLContext up when it runs."""


PLACEHOLDERS: dict[str, Any] = {
    "SSLSocket": _NoSSLSocket,
    "SSLContext": _NoSSLContext,
    "PROTOCOL_TLS_SERVER": 17,  # uvicorn.config's default ssl_version (ssl._SSLMethod.PROTOCOL_TLS_SERVER)
    "CERT_NONE": 0,  # uvicorn.config's default ssl_cert_reqs (ssl.VerifyMode.CERT_NONE)
}


def install() -> None:
    """A no-op when ssl or hashlib is already imported (OpenSSL is loaded then anyway)."""
    if any(m in sys.modules for m in ("ssl", "_ssl", "hashlib", "_hashlib", "asyncio")):
        return
    sys.modules["_hashlib"] = None  # type: ignore[assignment]  # hashlib falls back to its builtins
    deferred.defer("ssl", PLACEHOLDERS)
    # asyncio's __init__ imports sslproto (`from . import sslproto` finds the stand-in in
    # sys.modules), so the stand-in comes first and is bound on the package after.
    deferred.defer("asyncio.sslproto", before_parent=True)
    import asyncio

    if not hasattr(asyncio, "sslproto"):
        asyncio.sslproto = sys.modules["asyncio.sslproto"]  # type: ignore[attr-defined]


def load_tls() -> None:
    """TLS is configured: the real modules now, before anything keeps a placeholder."""
    deferred.load("ssl")
    deferred.load("asyncio.sslproto")

