"""The certificates the RunAPI client trusts, loaded once per process, perhaps ahead of time.

Imports the stdlib (and certifi, as httpx does) only, so a command can start loading them
before its own imports: OpenSSL parses the bundle without holding the GIL, so a second core
does it while the first imports (it was a tenth of a CLI edit's CPU, on its critical path).
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading

_lock = threading.Lock()
_context: ssl.SSLContext | None = None


def context() -> ssl.SSLContext:
    """The client's TLS context: httpx's own default (`httpx.create_ssl_context()`: the file in
    SSL_CERT_FILE, else the folder in SSL_CERT_DIR, else certifi's bundle), made once; waits for
    a `preload` under way."""
    global _context
    with _lock:
        if _context is None:
            _context = _load()
        return _context


def preload() -> None:
    """Start making `context()` on a thread of its own; whoever asks first waits for it. Not
    a daemon: a process that ends meanwhile (`--help`) waits the few milliseconds left, since
    a daemon thread still inside OpenSSL as the interpreter shut down crashed it (SIGSEGV)."""
    threading.Thread(target=_quietly, name="tls-preload", daemon=False).start()


def _quietly() -> None:
    with contextlib.suppress(Exception):  # the caller's own context() raises it again
        context()


def _load() -> ssl.SSLContext:
    if cafile := os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=cafile)
    if capath := os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=capath)
    import certifi  # only where no certificates are configured

    return ssl.create_default_context(cafile=certifi.where())
