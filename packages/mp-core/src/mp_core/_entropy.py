"""Random bytes for handshake challenges that need no file descriptor.

CPython's ``os.urandom`` calls ``getrandom(2)`` (Linux) or
``getentropy(3)`` (macOS, the BSDs): no descriptor.  PyPy 3.9's opens
``/dev/urandom`` on every call, so a process that has run out of
descriptors cannot make a challenge: a manager server out of descriptors
accepted a client, failed its handshake with ``EMFILE: '/dev/urandom'``
and dropped it, again and again, and never let a client in until
descriptors came back in bulk.  There, the bytes come from
``getrandom(2)`` itself: ``os.getrandom`` where the interpreter has it,
else libc's ``getrandom`` through ``ctypes`` (glibc 2.25+, musl 1.1.20+);
else ``os.urandom`` after all.

The ``ctypes`` route is set up on first use (importing ``ctypes`` costs
PyPy some 25 ms, which a program that never authenticates a peer should not
pay); setting it up opens files, so a server calls ``prepare()`` when it
starts listening, while it still has descriptors.
"""

from __future__ import annotations

import errno
import os
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Callable, Optional

__all__ = ["random_bytes", "prepare"]

_source: Optional[Callable[[int], bytes]] = None
_setup_lock = threading.Lock()


def random_bytes(size: int) -> bytes:
    """``size`` bytes from the operating system's CSPRNG, as ``os.urandom``, without opening a file if possible."""
    source = _source
    if source is None:
        source = prepare()
    return source(size)


def prepare() -> Callable[[int], bytes]:
    """Set up the source of ``random_bytes`` now (idempotent); return it.

    If it cannot be set up now (out of descriptors while importing
    ``ctypes``), ``os.urandom`` serves this time and the next call tries again.
    """
    global _source
    if _source is not None:
        return _source
    if sys.implementation.name == "cpython" or not sys.platform.startswith("linux"):
        _source = os.urandom  # CPython's needs no descriptor; elsewhere, getrandom(2) is Linux's
    elif hasattr(os, "getrandom"):
        _source = _from_os_getrandom
    else:
        with _setup_lock:
            if _source is None:
                try:
                    _source = _libc_getrandom() or os.urandom
                except (OSError, ImportError):  # no descriptor to import ctypes with: next time
                    return os.urandom
    return _source


def _after_fork_in_child() -> None:
    # Another thread may have held the lock, setting the source up, at fork.
    global _setup_lock
    _setup_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _from_os_getrandom(size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.getrandom(size)  # type: ignore[attr-defined, unused-ignore]  # Linux only in typeshed
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _libc_getrandom() -> Optional[Callable[[int], bytes]]:
    """``getrandom(2)`` through libc and ``ctypes``; ``None`` where libc has no such function."""
    import ctypes

    try:
        getrandom = ctypes.CDLL(None, use_errno=True).getrandom
    except (AttributeError, OSError):
        return None
    getrandom.restype = ctypes.c_ssize_t
    getrandom.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint)

    def read(size: int) -> bytes:
        buffer = ctypes.create_string_buffer(size)
        filled = 0
        while filled < size:  # a large request may be served in parts
            got = getrandom(ctypes.addressof(buffer) + filled, size - filled, 0)
            if got < 0:
                code = ctypes.get_errno()
                if code == errno.EINTR:
                    continue
                raise OSError(code, f"getrandom() failed: {os.strerror(code)}")
            filled += got
        return buffer.raw

    return read
