"""Process-shared locks, semaphores, conditions, events and barriers.

Everything here is built on one primitive: the process-shared semaphore that
CPython and PyPy ship as ``_multiprocessing.SemLock`` (a POSIX named
semaphore; a Win32 semaphore on Windows).  The ``threading`` API and
semantics are kept; what differs is how an object reaches another process.

How a child gets hold of a semaphore::

    fork          the child is a copy: it inherits the mapping.  No name is
                  needed, so the name is unlinked at creation and nothing can
                  leak, whatever happens to the processes.
    spawn,        the child is a new program: it re-opens the semaphore by
    forkserver    name while unpickling its process object.  The name is kept,
                  registered with the resource tracker (which unlinks it if
                  every process of the program dies first), and unlinked by a
                  finalizer when the creating object dies or its process exits.

Pickling is only allowed while a child is being created (the standard
library's rule and ``RuntimeError``): a semaphore sent through a pipe to a
process that never saw it could be opened after its name is gone.  While a
child is being started, the semaphores pickled for it are kept alive (and so
linked) as long as that child's ``Popen`` object lives, so that a lock
passed only as an argument is not unlinked before the child opens it.

Composite objects hold nothing but semaphores, so they travel the same way:

* ``Condition`` — the lock plus three counting semaphores (sleepers, woken,
  wake-up tokens).  ``notify`` hands out tokens and waits for each sleeper it
  woke to confirm, so a token never reaches a later waiter.
* ``Event`` — a ``Condition`` plus a semaphore whose value (0 or 1) is the flag.
* ``Barrier`` — a ``Condition`` plus two small integers, the barrier's
  state and the number of parties inside ``wait``.  They are counting
  semaphores read and written only under the condition's lock: no shared
  memory segment is needed (that belongs to mp-managers), nothing new has to
  be named, tracked or cleaned up, and all three start methods work alike.
  Where ``sem_getvalue`` is missing (macOS) a value is read by draining and
  refilling the semaphore, which the lock makes safe.
"""

from __future__ import annotations

import _multiprocessing
import operator
import os
import sys
import threading
import time
import weakref
from threading import BrokenBarrierError
from typing import Any, Callable, Optional

import mp_core
from mp_core import process, util
from mp_core.context import BaseContext, assert_spawning, get_spawning_popen

__all__ = [
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Barrier",
    "BrokenBarrierError",
    "SemLock",
]

# The kinds of the C SemLock: a recursive mutex tracks its owner thread and
# recursion depth; a plain semaphore (also behind Lock) only counts.
RECURSIVE_MUTEX, SEMAPHORE = 0, 1
SEM_VALUE_MAX = _multiprocessing.SemLock.SEM_VALUE_MAX

sem_unlink = getattr(_multiprocessing, "sem_unlink", None)

# Random names collide rarely; a few retries make creation reliable.
_NAME_ATTEMPTS = 100

# popen of a child being created -> the semaphores pickled for it.
_held_for_children: weakref.WeakKeyDictionary[Any, list[SemLock]] = weakref.WeakKeyDictionary()


def _resolve(ctx: Optional[BaseContext]) -> BaseContext:
    """The context an object is created for: the given one, else the default."""
    # get_context is set on mp_core at import time (from the default context).
    return ctx if ctx is not None else mp_core.get_context()


def _new_name() -> str:
    # os.urandom, not the random module: a forked child shares the parent's
    # PRNG state and would draw the same names.
    prefix = process.current_process()._config.get("semprefix", "/mp")
    return f"{prefix}-{os.urandom(4).hex()}"


def _unlink_named(name: str) -> None:
    """Remove a semaphore's name and stop the resource tracker watching it."""
    from mp_core import resource_tracker

    try:
        sem_unlink(name)  # type: ignore[misc]
    except FileNotFoundError:
        pass
    resource_tracker.unregister(name, "semaphore")


# ---------------------------------------------------------------- SemLock


class SemLock:
    """Base of every primitive here: one ``_multiprocessing.SemLock`` and its life cycle.

    ``kind`` is ``RECURSIVE_MUTEX`` or ``SEMAPHORE``.  Under the fork start
    method the semaphore is anonymous (unlinked at once); otherwise it keeps
    a name under the process's ``semprefix`` until this object dies.
    ``acquire``/``release`` are the C methods themselves, for speed.
    """

    def __init__(self, kind: int, value: int, maxvalue: int, *, ctx: Optional[BaseContext]) -> None:
        ctx = _resolve(ctx)
        # Only a forked child can use a semaphore without opening it by name.
        # On Windows, handles are duplicated into children instead of names.
        unlink_now = sys.platform == "win32" or ctx.get_start_method() == "fork"
        for _ in range(_NAME_ATTEMPTS):
            try:
                semlock = _multiprocessing.SemLock(kind, value, maxvalue, _new_name(), unlink_now)
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover - astronomically unlikely
            raise FileExistsError("cannot find a free name for a new semaphore")
        self._semlock = semlock
        self._is_fork_ctx = unlink_now and sys.platform != "win32"
        util.debug("created semlock with handle %s", semlock.handle)
        self._make_methods()
        util.register_after_fork(self, SemLock._after_fork)
        if semlock.name is not None:
            from mp_core import resource_tracker

            resource_tracker.register(semlock.name, "semaphore")
            util.Finalize(self, _unlink_named, (semlock.name,), exitpriority=0)

    def _make_methods(self) -> None:
        semlock = self._semlock
        self.acquire = semlock.acquire
        self.release = semlock.release
        self._enter = semlock.__enter__
        self._exit = semlock.__exit__

    # ``with`` looks __enter__/__exit__ up on the type.  A property over an
    # attrgetter hands back the C method bound above without running a line
    # of Python: ``with lock:`` costs half of what a delegating method would.
    __enter__ = property(operator.attrgetter("_enter"))
    __exit__ = property(operator.attrgetter("_exit"))

    def locked(self) -> bool:
        """Whether an ``acquire(False)`` would fail right now (Python 3.14's API, on every version).

        For a ``Lock`` or ``RLock``: whether some thread of some process
        holds it.  For a semaphore: whether its value is zero.  The answer
        may be stale by the time it is used; it is for diagnostics and
        tests, not for deciding whether to acquire.
        """
        return self._semlock._is_zero()

    @staticmethod
    def _after_fork(obj: SemLock) -> None:
        # A forked child shares the semaphore, not the parent's bookkeeping:
        # the recursion count it inherited describes a thread of the parent.
        obj._semlock._after_fork()

    def __getstate__(self) -> tuple:
        assert_spawning(self)
        semlock = self._semlock
        popen = get_spawning_popen()
        if sys.platform == "win32":  # pragma: no cover - Windows is designed in, not tested
            handle = popen.duplicate_for_child(semlock.handle)
        else:
            if self._is_fork_ctx:
                # The wording's start is the standard library's, which code
                # (its test suite among it) matches.
                name = type(self).__name__
                raise RuntimeError(
                    f"A SemLock created in a fork context is being shared with a process in a "
                    f"{getattr(popen, 'method', 'non-fork')} context, which is not supported: "
                    f"create the {name} from the same context as the Process (ctx.{name}())"
                )
            handle = semlock.handle
        _held_for_children.setdefault(popen, []).append(self)
        return handle, semlock.kind, semlock.maxvalue, semlock.name

    def __setstate__(self, state: tuple) -> None:
        self._semlock = _multiprocessing.SemLock._rebuild(*state)
        util.debug("recreated semlock with handle %r", state[0])
        self._is_fork_ctx = False
        self._make_methods()
        util.register_after_fork(self, SemLock._after_fork)


class Semaphore(SemLock):
    """A counting semaphore shared between processes (``threading.Semaphore``).

    ``acquire(block=True, timeout=None)`` returns ``False`` on time-out;
    ``release()`` adds one.  ``get_value()`` raises ``NotImplementedError``
    where the platform cannot read a semaphore (macOS).
    """

    def __init__(self, value: int = 1, *, ctx: Optional[BaseContext] = None) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        super().__init__(SEMAPHORE, value, SEM_VALUE_MAX, ctx=ctx)

    def get_value(self) -> int:
        """The current value (racy by nature; for diagnostics and tests)."""
        return self._semlock._get_value()

    def __repr__(self) -> str:
        try:
            value: Any = self._semlock._get_value()
        except Exception:
            value = "unknown"
        return f"<{type(self).__name__}(value={value})>"


class BoundedSemaphore(Semaphore):
    """A semaphore that may not be released above its initial value.

    Releasing past the initial value raises ``ValueError``.
    """

    def __init__(self, value: int = 1, *, ctx: Optional[BaseContext] = None) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        SemLock.__init__(self, SEMAPHORE, value, value, ctx=ctx)

    def __repr__(self) -> str:
        try:
            value: Any = self._semlock._get_value()
        except Exception:
            value = "unknown"
        return f"<{type(self).__name__}(value={value}, maxvalue={self._semlock.maxvalue})>"


def _holder_name() -> str:
    name = process.current_process().name
    thread = threading.current_thread().name
    return name if thread == "MainThread" else f"{name}|{thread}"


class Lock(SemLock):
    """A non-recursive lock shared between processes (``threading.Lock``).

    Any thread of any process may release it; releasing it while unlocked
    raises ``ValueError`` (as the standard library's process lock does).
    """

    def __init__(self, *, ctx: Optional[BaseContext] = None) -> None:
        super().__init__(SEMAPHORE, 1, 1, ctx=ctx)

    def __repr__(self) -> str:
        semlock = self._semlock
        try:
            if semlock._is_mine():
                owner = _holder_name()
            elif semlock._get_value() == 1:
                owner = "None"
            elif semlock._count() > 0:
                owner = "SomeOtherThread"
            else:
                owner = "SomeOtherProcess"
        except Exception:
            owner = "unknown"
        return f"<{type(self).__name__}(owner={owner})>"


class RLock(SemLock):
    """A recursive lock shared between processes (``threading.RLock``).

    The owning thread may acquire it again; it is free once released as
    many times.  Releasing it from a thread that does not own it raises
    ``AssertionError`` (as the standard library's process lock does).
    """

    def __init__(self, *, ctx: Optional[BaseContext] = None) -> None:
        super().__init__(RECURSIVE_MUTEX, 1, 1, ctx=ctx)

    def __repr__(self) -> str:
        semlock = self._semlock
        count: Any
        try:
            if semlock._is_mine():
                owner, count = _holder_name(), semlock._count()
            elif semlock._get_value() == 1:
                owner, count = "None", 0
            elif semlock._count() > 0:
                owner, count = "SomeOtherThread", "nonzero"
            else:
                owner, count = "SomeOtherProcess", "nonzero"
        except Exception:
            owner, count = "unknown", "unknown"
        return f"<{type(self).__name__}({owner}, {count})>"


# ---------------------------------------------------------------- Condition


class _NotOwnedError(AssertionError, RuntimeError):
    """Waiting or notifying without holding the condition's lock.

    The standard library's process condition raises ``AssertionError``, the
    thread condition ``RuntimeError``: this is both, so code written for
    either catches it (and it survives ``python -O``, unlike an assert).
    """


class Condition:
    """A condition variable shared between processes (``threading.Condition``).

    ``lock`` must be a ``Lock`` or ``RLock`` of this module (default: a new
    ``RLock``).  ``wait``/``notify``/``notify_all`` raise (``RuntimeError``,
    also an ``AssertionError``) unless the calling thread holds the lock.
    ``wait(timeout)`` returns ``False`` on time-out; a waiter is only woken
    by a ``notify`` that happens after it started waiting.
    """

    def __init__(self, lock: Optional[SemLock] = None, *, ctx: Optional[BaseContext] = None) -> None:
        ctx = _resolve(ctx)
        self._lock = lock if lock is not None else RLock(ctx=ctx)
        # Threads that announced they sleep; of those, how many have since
        # woken (notified or timed out); wake-up tokens handed out by notify.
        self._sleeping_count = Semaphore(0, ctx=ctx)
        self._woken_count = Semaphore(0, ctx=ctx)
        self._wait_semaphore = Semaphore(0, ctx=ctx)
        self._make_methods()

    def __getstate__(self) -> tuple:
        assert_spawning(self)
        return self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore

    def __setstate__(self, state: tuple) -> None:
        self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore = state
        self._make_methods()

    def _make_methods(self) -> None:
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._enter = self._lock.__enter__
        self._exit = self._lock.__exit__

    __enter__ = SemLock.__enter__
    __exit__ = SemLock.__exit__

    def __repr__(self) -> str:
        try:
            waiters: Any = self._sleeping_count._semlock._get_value() - self._woken_count._semlock._get_value()
        except Exception:
            waiters = "unknown"
        return f"<{type(self).__name__}({self._lock}, {waiters})>"

    def _check_owned(self, action: str) -> None:
        if not self._lock._semlock._is_mine():
            raise _NotOwnedError(f"must acquire() condition before using {action}()")

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Release the lock, sleep until notified or ``timeout``, then re-acquire.

        Returns ``False`` if the time-out expired, ``True`` otherwise.
        """
        self._check_owned("wait")
        self._sleeping_count.release()
        # An RLock may be held several times over: give it up completely and
        # take it back just as many times.
        depth = self._lock._semlock._count()
        for _ in range(depth):
            self._lock.release()
        try:
            return self._wait_semaphore.acquire(True, timeout)
        finally:
            # Tell a notifier that this sleeper is awake, whatever woke it.
            self._woken_count.release()
            for _ in range(depth):
                self._lock.acquire()

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` of the threads (of any process) waiting now."""
        self._check_owned("notify")
        # Sleepers that timed out since the last notify are no longer
        # asleep: each one left a mark in woken_count; settle those first.
        while self._woken_count.acquire(False):
            self._sleeping_count.acquire(False)
        tokens = 0
        while tokens < n and self._sleeping_count.acquire(False):
            self._wait_semaphore.release()
            tokens += 1
        if tokens:
            # Each sleeper handed a token confirms it woke (or timed out
            # just before taking it).  Tokens left behind by those that
            # timed out are taken back, so a later waiter cannot get them.
            for _ in range(tokens):
                self._woken_count.acquire()
            while self._wait_semaphore.acquire(False):
                pass

    def notify_all(self) -> None:
        """Wake up every thread (of any process) waiting now."""
        self.notify(SEM_VALUE_MAX)

    notifyAll = notify_all

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None) -> Any:
        """Wait until ``predicate()`` is true or ``timeout`` seconds pass.

        The predicate is called with the lock held; its last value is
        returned (false-ish on time-out).
        """
        result = predicate()
        if result:
            return result
        deadline = None if timeout is None else time.monotonic() + timeout
        while not result:
            if deadline is None:
                self.wait()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.wait(remaining)
            result = predicate()
        return result


# ---------------------------------------------------------------- Event


class Event:
    """A flag shared between processes (``threading.Event``)."""

    def __init__(self, *, ctx: Optional[BaseContext] = None) -> None:
        ctx = _resolve(ctx)
        self._cond = Condition(Lock(ctx=ctx), ctx=ctx)
        self._flag = Semaphore(0, ctx=ctx)

    def __getstate__(self) -> tuple:
        assert_spawning(self)
        return self._cond, self._flag

    def __setstate__(self, state: tuple) -> None:
        self._cond, self._flag = state

    def is_set(self) -> bool:
        """Whether the flag is set."""
        with self._cond:
            return not self._flag._semlock._is_zero()

    isSet = is_set

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        with self._cond:
            # Keep the value at exactly one, however often set() is called.
            self._flag.acquire(False)
            self._flag.release()
            self._cond.notify_all()

    def clear(self) -> None:
        """Reset the flag."""
        with self._cond:
            self._flag.acquire(False)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the flag is set or ``timeout`` passes; return the flag."""
        with self._cond:
            if self._flag._semlock._is_zero():
                self._cond.wait(timeout)
            return not self._flag._semlock._is_zero()

    def __repr__(self) -> str:
        state = "set" if self.is_set() else "unset"
        return f"<{type(self).__qualname__} at {id(self):#x} {state}>"


# ---------------------------------------------------------------- Barrier

# Barrier states, stored as the value of a semaphore (hence non-negative).
_FILLING, _DRAINING, _RESETTING, _BROKEN = 0, 1, 2, 3


def _read_counter(sem: Semaphore) -> int:
    """A semaphore's value; the caller holds the lock that guards it."""
    semlock = sem._semlock
    try:
        return semlock._get_value()
    except NotImplementedError:  # pragma: no cover - macOS has no sem_getvalue
        value = 0
        while semlock.acquire(False):
            value += 1
        for _ in range(value):
            semlock.release()
        return value


def _write_counter(sem: Semaphore, value: int) -> None:
    """Set a semaphore's value; the caller holds the lock that guards it."""
    current = _read_counter(sem)
    for _ in range(value - current):
        sem.release()
    for _ in range(current - value):
        sem.acquire(False)


class Barrier:
    """A barrier for ``parties`` threads of any processes (``threading.Barrier``).

    ``wait(timeout=None)`` blocks until ``parties`` callers are waiting, then
    releases them all and returns each a distinct index in
    ``range(parties)``; the last to arrive first runs ``action`` (if any).
    The barrier breaks (``BrokenBarrierError`` for every waiter, now and
    later) when a ``wait`` times out (default time-out: ``timeout``), when
    ``action`` raises, or on ``abort()``; ``reset()`` repairs it, breaking
    the current waiters.  ``action`` must be picklable for spawn and
    forkserver children (lambdas are, through dill).
    """

    def __init__(
        self,
        parties: int,
        action: Optional[Callable[[], Any]] = None,
        timeout: Optional[float] = None,
        *,
        ctx: Optional[BaseContext] = None,
    ) -> None:
        if parties < 1:
            raise ValueError("parties must be >= 1")
        ctx = _resolve(ctx)
        self._parties = parties
        self._action = action
        self._timeout = timeout
        self._cond = Condition(Lock(ctx=ctx), ctx=ctx)
        self._state_sem = Semaphore(_FILLING, ctx=ctx)
        self._count_sem = Semaphore(0, ctx=ctx)

    def __getstate__(self) -> tuple:
        assert_spawning(self)
        return self._parties, self._action, self._timeout, self._cond, self._state_sem, self._count_sem

    def __setstate__(self, state: tuple) -> None:
        (self._parties, self._action, self._timeout, self._cond, self._state_sem, self._count_sem) = state

    # The shared integers; only touched with self._cond held.
    @property
    def _state(self) -> int:
        return _read_counter(self._state_sem)

    @_state.setter
    def _state(self, value: int) -> None:
        _write_counter(self._state_sem, value)

    @property
    def _count(self) -> int:
        return _read_counter(self._count_sem)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the barrier to trip; return this caller's index.

        Raises ``BrokenBarrierError`` if the barrier is or becomes broken,
        or is reset, while waiting.
        """
        if timeout is None:
            timeout = self._timeout
        with self._cond:
            self._join_cycle()
            index = self._count
            self._count_sem.release()
            try:
                if index + 1 == self._parties:
                    self._trip()
                else:
                    self._await_trip(timeout)
                return index
            finally:
                self._count_sem.acquire(False)
                self._leave()

    def _join_cycle(self) -> None:
        # The previous cycle must be fully drained (or reset) before anyone
        # may start filling the next one.
        while self._state in (_DRAINING, _RESETTING):
            self._cond.wait()
        if self._state == _BROKEN:
            raise BrokenBarrierError

    def _trip(self) -> None:
        try:
            if self._action is not None:
                self._action()
            self._state = _DRAINING
            self._cond.notify_all()
        except BaseException:
            self._break()
            raise

    def _await_trip(self, timeout: Optional[float]) -> None:
        if not self._cond.wait_for(lambda: self._state != _FILLING, timeout):
            self._break()
            raise BrokenBarrierError
        if self._state in (_BROKEN, _RESETTING):
            raise BrokenBarrierError

    def _leave(self) -> None:
        # The last one out of a drained or reset cycle opens the next.
        if self._count == 0 and self._state in (_DRAINING, _RESETTING):
            self._state = _FILLING
            self._cond.notify_all()

    def _break(self) -> None:
        self._state = _BROKEN
        self._cond.notify_all()

    def reset(self) -> None:
        """Return the barrier to its initial state.

        Threads waiting in it now get ``BrokenBarrierError``.
        """
        with self._cond:
            if self._count > 0:
                if self._state in (_FILLING, _BROKEN):
                    self._state = _RESETTING
            else:
                self._state = _FILLING
            self._cond.notify_all()

    def abort(self) -> None:
        """Break the barrier: current and future ``wait`` calls raise ``BrokenBarrierError``."""
        with self._cond:
            self._break()

    @property
    def parties(self) -> int:
        """The number of callers needed to trip the barrier."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """The number of callers currently waiting to trip it."""
        with self._cond:
            return self._count if self._state == _FILLING else 0

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        with self._cond:
            return self._state == _BROKEN

    def __repr__(self) -> str:
        if self.broken:
            return f"<{type(self).__name__}(broken)>"
        return f"<{type(self).__name__}(waiters={self.n_waiting}/{self.parties})>"
