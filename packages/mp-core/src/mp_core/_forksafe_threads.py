"""``ForkSafeThread``: a background thread of this library that is gone whenever the process forks.

Forking a process that runs several threads copies one of them and every
lock the others held; CPython 3.12+ says so with a ``DeprecationWarning``
from ``os.fork``, counting the process's *OS* threads (``/proc/self/stat``
on Linux).  The threads this library runs on its own (a queue's feeder, a
pool's manager, the resource sharer, an ``imap`` input reader) must not be
the reason for it, whoever forks: ``Process.start()``, a new pool, or the
program's own ``os.fork()``.

So each of them steps aside around every fork, through ``os.register_at_fork``::

    forking thread                       each ForkSafeThread
    --------------                       -------------------
    before: set ``pausing``, ``wake()`` ─> at its next safe point, ``body()``
            wait (bounded) until the          returns True, its state kept by
            thread, and the OS thread          its owner; the thread exits
            under it, are gone
    fork()
    after, in the parent: start a new ─> ``body()`` is called again and
            thread for each one paused        carries on where it stopped
            (our own forks, through ``fork()``: once os.fork() has
            returned, as 3.13+ counts threads after the at-fork hooks)
    after, in the child: forget them (they do not exist there; their
            owners reset themselves with their after-fork hooks)

A thread that does not stop in time (stuck in user code, or in a blocking
write to a full pipe: it says so with ``blocked``) is left running and the
fork goes ahead: the fork must never wait on something only the child
would do.  A thread waiting in ``poll()`` can poll ``fork_requested_fd()``
as well, to step aside even there (a queue's feeder does, on Linux).
"""

from __future__ import annotations

import os
import threading
import time
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Callable, Optional

__all__ = ["ForkSafeThread", "fork", "fork_requested_fd", "PAUSE_WAIT", "BLOCKED_GRACE"]

#: Seconds a fork waits, at most, for the threads to step aside.
PAUSE_WAIT = 1.0
#: Seconds it waits for a thread that said it may be blocked for long (``blocked``).
BLOCKED_GRACE = 0.05

_NEW, _RUNNING, _PAUSED, _FINISHED = range(4)


class ForkSafeThread:
    """A daemon thread running ``body()`` that is not alive while this process forks.

    ``body()`` runs in the thread.  It returns true to step aside: only
    when it has seen ``pausing`` set, at a point where its owner's state
    lets it carry on later; it is then called again, in a new thread,
    once the fork is done.  It returns false (or ``None``) when its work
    is over.  ``wake()`` is called from the forking thread after
    ``pausing`` is set; it must make a waiting ``body`` look at it soon.
    While ``blocked`` is true (``body`` is in a call that may not return
    soon), a fork waits for the thread only ``BLOCKED_GRACE`` seconds.

    ``join``, ``is_alive`` and ``name`` behave as ``threading.Thread``'s,
    across the pauses: the thread is alive until ``body`` has finished.
    """

    def __init__(
        self, body: Callable[[], Optional[bool]], *, name: str, wake: Optional[Callable[[], None]] = None
    ) -> None:
        self._body = body
        self._wake = wake
        self.name = name
        self.pausing = False
        self.blocked = False
        self._changed = threading.Condition(threading.Lock())
        self._state = _NEW
        self._thread: Optional[threading.Thread] = None
        self._asked_at = 0.0

    def __repr__(self) -> str:
        state = ("initial", "started", "paused", "stopped")[self._state]
        return f"<{type(self).__name__}({self.name!r}, {state})>"

    # ---------------------------------------------------------------- the threading.Thread face

    def start(self) -> None:
        """Start running ``body`` in a new daemon thread (once)."""
        with self._changed:
            if self._state != _NEW:
                raise RuntimeError("threads can only be started once")
            _live.add(self)
            try:
                self._spawn()
            except BaseException:
                _live.discard(self)
                raise
            self._state = _RUNNING

    def is_alive(self) -> bool:
        """Whether ``body`` has started and not finished (a thread paused for a fork counts)."""
        return self._state in (_RUNNING, _PAUSED)

    def is_current(self) -> bool:
        """Whether the calling thread is the one running ``body``."""
        return self._thread is threading.current_thread()

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait until ``body`` has finished (or ``timeout`` seconds pass)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run_here = False
            with self._changed:
                while self._state in (_RUNNING, _PAUSED):
                    if self._state == _PAUSED and not self.pausing:
                        # Paused for a fork, and no thread could be started
                        # after it (interpreter shutdown): the work goes on
                        # in the thread that waits for it.
                        self._state = _RUNNING
                        self._thread = threading.current_thread()
                        run_here = True
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    self._changed.wait(remaining)
                thread = self._thread
            if run_here:
                self._main()
                continue
            if thread is not None and thread is not threading.current_thread() and thread.ident is not None:
                # (The kernel may count it a moment longer: the next fork
                # waits for that, see _exiting.)
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            return

    # ---------------------------------------------------------------- the thread

    def _spawn(self) -> None:
        thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        # Known before it runs: ``body`` may ask ``is_current()`` at once (an
        # imap input that joins its own pool must be told it cannot).
        self._thread = thread
        try:
            thread.start()
        except BaseException:
            self._thread = None
            raise

    def _main(self) -> None:
        finished = True
        try:
            while True:
                paused = bool(self._body())
                with self._changed:
                    if paused and not self.pausing:
                        # It stepped aside, but the fork went ahead without
                        # waiting for it and is over: carry on in this thread.
                        continue
                    finished = not paused
                    self._state = _FINISHED if finished else _PAUSED
                    if finished:
                        # What the body holds (a queue's semaphores, say)
                        # goes with it, as a finished Thread drops its target.
                        self._body = self._wake = None  # type: ignore[assignment]
                    self._changed.notify_all()
                    return
        except BaseException:
            with self._changed:
                self._state = _FINISHED
                self._body = self._wake = None  # type: ignore[assignment]
                self._changed.notify_all()
            raise
        finally:
            if finished:
                _live.discard(self)
                _note_exiting(threading.current_thread())

    # ---------------------------------------------------------------- fork side

    def _ask_to_pause(self) -> bool:
        with self._changed:
            if self._state != _RUNNING or self._thread is threading.current_thread():
                return False
            self.pausing = True
            self._asked_at = time.monotonic()
        if self._wake is not None:
            try:
                self._wake()
            except Exception:  # noqa: BLE001 - a wake that fails only costs the wait
                pass
        return True

    def _wait_until_gone(self, deadline: float) -> None:
        with self._changed:
            while self._state == _RUNNING:
                limit = deadline
                if self.blocked:
                    limit = min(limit, self._asked_at + BLOCKED_GRACE)
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    return  # left running: the fork goes ahead without it
                self._changed.wait(min(remaining, BLOCKED_GRACE))
            thread = self._thread
        if thread is not None and thread.ident is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
            _wait_os_thread_gone(thread, deadline)

    def _resume(self) -> None:
        with self._changed:
            self.pausing = False
            if self._state != _PAUSED:
                return
            try:
                self._spawn()
            except RuntimeError:
                # No new threads (interpreter shutdown): ``join`` runs the
                # rest of the work in the thread that waits for it.
                self._changed.notify_all()
                return
            self._state = _RUNNING

    def _forget_in_child(self) -> None:
        # The thread does not exist in a forked child, as any other thread
        # of the parent; its owner starts a new one there if it needs one.
        self._changed = threading.Condition(threading.Lock())
        self._state = _FINISHED
        self.pausing = self.blocked = False


def _os_thread_exists(thread: threading.Thread) -> bool:
    """Whether the kernel still counts ``thread`` (false where it cannot be told: no /proc)."""
    native_id = getattr(thread, "native_id", None)
    if native_id is None:
        return False
    try:
        os.stat(f"/proc/self/task/{native_id}")
    except OSError:
        return False
    return True


def _wait_os_thread_gone(thread: threading.Thread, deadline: float) -> None:
    """Wait until the kernel has released ``thread`` (it still counts a moment after ``join``)."""
    delay = 1e-5
    while _os_thread_exists(thread):
        if time.monotonic() >= deadline:
            return
        time.sleep(delay)
        delay = min(delay * 2, 1e-3)


# ---------------------------------------------------------------- the fork hooks

_live: weakref.WeakSet[ForkSafeThread] = weakref.WeakSet()
_local = threading.local()
# A pipe that holds a byte while a fork waits for the threads to step
# aside: a thread blocked in poll() on a descriptor (a write to a full
# pipe) polls this one too.  Made on first use; each process has its own.
_fork_signal: list[int] = []
_fork_signal_lock = threading.Lock()


def fork_requested_fd() -> int:
    """A descriptor that is readable while a fork waits for this process's fork-safe threads.

    For a body blocked in ``poll()`` (writing to a full pipe, say): it
    polls this descriptor too, and looks at ``pausing`` when it is ready.
    """
    with _fork_signal_lock:
        if not _fork_signal:
            read_end, write_end = os.pipe()
            os.set_blocking(read_end, False)
            os.set_blocking(write_end, False)
            _fork_signal[:] = [read_end, write_end]
        return _fork_signal[0]


def _signal_fork(requested: bool) -> None:
    if not _fork_signal:
        return
    read_end, write_end = _fork_signal
    try:
        if requested:
            os.write(write_end, b"\0")
        else:
            while os.read(read_end, 64):
                pass
    except OSError:
        pass  # full (already signalled) or empty (nothing to clear)


# Threads whose body has finished: the next fork waits until the kernel has
# released them too (they may still count for a moment after they end).
_exiting: list[threading.Thread] = []


def _note_exiting(thread: threading.Thread) -> None:
    if len(_exiting) >= 32:
        # No fork for a while: forget those the kernel has released.
        _exiting[:] = [old for old in _exiting if old.is_alive() or _os_thread_exists(old)]
    _exiting.append(thread)


def _before_fork() -> None:
    if not (_live or _exiting):
        return
    asked = [thread for thread in list(_live) if thread._ask_to_pause()]
    if asked:
        _signal_fork(True)
    deadline = time.monotonic() + PAUSE_WAIT
    ended = list(_exiting)
    del _exiting[: len(ended)]
    current = threading.current_thread()
    for thread in ended:
        if thread is not current:
            thread.join(max(0.0, deadline - time.monotonic()))
            _wait_os_thread_gone(thread, deadline)
    for paused in asked:
        paused._wait_until_gone(deadline)
    # Per forking thread: two threads forking at once each restart their own.
    _local.paused = getattr(_local, "paused", []) + asked


def _resume_paused() -> None:
    asked = getattr(_local, "paused", None)
    if asked:
        _local.paused = []
        _signal_fork(False)
        for thread in asked:
            thread._resume()


def _after_fork_in_parent() -> None:
    if not getattr(_local, "deferred", False):
        _resume_paused()


def _after_fork_in_child() -> None:
    _local.paused = []
    _local.deferred = False
    if _fork_signal:
        for fd in _fork_signal:
            try:
                os.close(fd)
            except OSError:
                pass
        del _fork_signal[:]
    global _fork_signal_lock
    _fork_signal_lock = threading.Lock()
    del _exiting[:]
    for thread in list(_live):
        thread._forget_in_child()
    _live.clear()


_HOOKED = hasattr(os, "register_at_fork")
if _HOOKED:
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def fork() -> int:
    """``os.fork()`` for this library's own forks: no ``ForkSafeThread`` is alive while it runs.

    The threads paused for it are restarted once ``os.fork()`` has
    returned, not in the parent's at-fork hook: CPython 3.13+ counts the
    threads for its warning after those hooks have run.  (A program's own
    ``os.fork()`` gets the hooks: our threads are stopped across it, but
    on 3.13+ they are running again when the count is taken.)
    """
    _local.deferred = True
    try:
        if not _HOOKED:
            _before_fork()
        pid = os.fork()
    except BaseException:
        _local.deferred = False
        _resume_paused()
        raise
    _local.deferred = False
    if pid == 0:
        if not _HOOKED:
            _after_fork_in_child()
        return 0
    _resume_paused()
    return pid
