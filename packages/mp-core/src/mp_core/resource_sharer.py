"""The resource sharer: hands a descriptor to another process on request.

A socket or connection pickled outside of process creation cannot travel
inside the pickle: the receiver needs its own copy of the descriptor.  The
owner keeps a duplicate and serves it on request::

    owner                                          receiver
    DupFd(fd): dup(fd), file it under a key;
    pickles as (listener address, key) ── pickle ──> DupFd.detach():
    background thread: Listener.accept() <──────────  Client(address)  (both
                                                      sides authenticate with
                                                      the process authkey)
                       conn.recv() <───────────────  (key, receiver's pid)
                       send_handle(conn, dup) ─────>  recv_handle(conn) -> fd
                       close(dup)

Each descriptor is served once, to one client at a time; every step of a
client's turn (each handshake message, then its request) has a deadline,
so a peer that stalls holds the sharer for seconds, not for ever.  The
serving thread starts with the first ``DupFd`` and stops with ``stop()``;
it steps aside while the process forks (``mp_core._forksafe_threads``).
A forked child starts with an empty
sharer: the parent's duplicates and listener are not its to serve.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time

from . import process, reduction, util
from ._exceptions import AuthenticationError
from ._forksafe_threads import ForkSafeThread
from ._framing import BadMessageLength
from ._handshake import recv_bytes_by
from ._listener import CONNECTION_TIMEOUT, Client, Listener

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Callable, Optional

# Far more than the pickle of a request (a key and a pid) takes.
_MAX_REQUEST = 256

__all__ = ["DupFd", "stop"]


class DupFd:
    """A descriptor made available to one other process of the same tree.

    Pickles as the owner's sharer address and a key.  ``detach()`` in the
    receiving process (which must share the owner's authkey) fetches a new
    descriptor, owned by the caller, from the owner, which must still be
    running.  A descriptor is served once.
    """

    def __init__(self, fd: int) -> None:
        new_fd = os.dup(fd)

        def send(conn: Any, pid: int) -> None:
            reduction.send_handle(conn, new_fd, pid)

        def close() -> None:
            os.close(new_fd)

        self._id = _resource_sharer.register(send, close)

    def detach(self) -> int:
        """Fetch the descriptor from its owner; the caller must close it."""
        with _resource_sharer.get_connection(self._id) as conn:
            return reduction.recv_handle(conn)


class _ResourceSharer:
    """The per-process registry of shared descriptors and the thread serving them."""

    def __init__(self) -> None:
        self._key = itertools.count()
        self._cache: dict[int, tuple[Callable[[Any, int], None], Callable[[], None]]] = {}
        self._lock = threading.Lock()
        self._listener: Any = None
        self._address: Any = None
        self._thread: Optional[ForkSafeThread] = None
        self._wake_fds: tuple[int, int] = (-1, -1)
        util.register_after_fork(self, _ResourceSharer._afterfork)

    def register(self, send: Callable[[Any, int], None], close: Callable[[], None]) -> tuple[Any, int]:
        """File a resource; return the identifier a receiver asks for it by."""
        with self._lock:
            if self._address is None:
                self._start()
            key = next(self._key)
            self._cache[key] = (send, close)
            return (self._address, key)

    @staticmethod
    def get_connection(ident: tuple[Any, int]) -> Any:
        """Connect to the owner of ``ident`` and ask for it."""
        address, key = ident
        conn = Client(address, authkey=process.current_process().authkey)
        conn.send((key, os.getpid()))
        return conn

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the serving thread (waiting up to ``timeout`` seconds) and close
        the descriptors that were never asked for."""
        with self._lock:
            address, thread, listener, wake_fds = self._address, self._thread, self._listener, self._wake_fds
        if address is not None:
            # Not under the lock: the serving thread takes it for each request.
            try:
                with Client(address, authkey=process.current_process().authkey) as conn:
                    conn.send(None)
            except OSError:
                pass  # the thread is gone already
            thread.join(timeout)  # type: ignore[union-attr]
            if thread.is_alive():  # type: ignore[union-attr]
                util.sub_warning("_ResourceSharer thread did not stop when asked")
            else:
                util.close_fds(*wake_fds)
            listener.close()
        with self._lock:
            if self._address == address:
                self._address = self._thread = self._listener = None
                self._wake_fds = (-1, -1)
            pending, self._cache = list(self._cache.values()), {}
        for _send, close in pending:
            close()

    def _afterfork(self) -> None:
        for _send, close in self._cache.values():
            close()
        self._cache.clear()
        self._lock = threading.Lock()
        if self._listener is not None:
            # Closes our copy of the socket only: the socket file belongs to
            # the parent (its unlink finalizer does not run in another process).
            self._listener.close()
        util.close_fds(*self._wake_fds)
        self._wake_fds = (-1, -1)
        self._listener = self._address = self._thread = None

    def _start(self) -> None:
        util.debug("starting listener and thread for sending handles")
        self._listener = Listener(authkey=process.current_process().authkey, backlog=128)
        self._address = self._listener.address
        wake_r, wake_w = self._wake_fds = os.pipe()
        os.set_blocking(wake_w, False)
        thread = ForkSafeThread(
            lambda: self._serve(thread, wake_r), name="mp_core.resource_sharer", wake=lambda: _poke(wake_w)
        )
        thread.start()
        self._thread = thread

    def _serve(self, thread: ForkSafeThread, wake_r: int) -> bool:
        """The serving thread: true when it steps aside for a fork (it is then run again)."""
        from ._wait import wait

        if hasattr(signal, "pthread_sigmask"):
            # Signals belong to the main thread.
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        listener = self._listener
        listening = listener._listener._socket
        while True:
            if thread.pausing:
                return True
            if wake_r in wait([listening, wake_r]):
                os.read(wake_r, 64)
                continue
            # A client that stalls its handshake could hold us here: a fork
            # does not wait for that.
            thread.blocked = True
            try:
                with listener.accept() as conn:
                    timeout = listener.handshake_timeout
                    deadline = time.monotonic() + (CONNECTION_TIMEOUT if timeout is None else timeout)
                    request = reduction.loads(recv_bytes_by(conn, deadline, _MAX_REQUEST))
                    if request is None:
                        break
                    key, destination_pid = request
                    with self._lock:
                        send, close = self._cache.pop(key)
                    try:
                        send(conn, destination_pid)
                    finally:
                        close()
            except AuthenticationError as exc:
                # Some local process that does not hold our key; not a reason
                # to stop serving the others.
                util.info("resource sharer refused a client: %s", exc)
            except EOFError:
                # A client that hung up before asking (it died, or gave up):
                # nothing was taken from the cache, nothing to report.
                util.debug("resource sharer: a client hung up without a request")
            except (TimeoutError, BadMessageLength) as exc:
                util.info("resource sharer: a client sent no valid request in time: %s", exc)
            except Exception:
                if listener._listener is None or util.is_exiting():
                    break
                sys.excepthook(*sys.exc_info())
            finally:
                thread.blocked = False
        return False


def _poke(fd: int) -> None:
    try:
        os.write(fd, b"\0")
    except OSError:
        pass  # full: the thread will wake up anyway; closed: it is gone


_resource_sharer = _ResourceSharer()
stop = _resource_sharer.stop
# util._cleanup_tests stops the sharer (looked up at the call: a test may put in another).
util._register_helper_stop(__name__, 0, lambda: stop())
