"""What ``apply_async``, ``map_async`` and ``imap`` hand back: results that fill in later.

The pool's engine delivers each finished chunk with ``_deliver`` (from one
thread at a time), and ``_abort`` ends a result early (terminate, broken
pool).  Callbacks run in the delivering thread, before ``ready()`` turns
true, as in the standard library: once ``get()`` returns, the callback has
run.  A result holds a reference to its pool until it is ready, so a pool
with pending work is not collected (and terminated) under the caller.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable, Generic, Optional, TypeVar

from mp_core.context import TimeoutError

__all__ = ["ApplyResult", "AsyncResult", "MapResult", "IMapIterator", "IMapUnorderedIterator", "job_counter"]

#: Job ids, unique within the process (the keys of ``Pool._cache``).
job_counter = itertools.count()

#: The type of a result's value (``AsyncResult[int]``); unchecked at run time.
_T = TypeVar("_T")


def _report_callback_error(result: Any, which: str) -> None:
    # A failing callback must neither kill the thread that delivers results
    # nor leave get() waiting: report it the way threading reports an
    # uncaught exception, and carry on.
    sys.stderr.write(f"Exception in {which} of {result!r}:\n")
    traceback.print_exc()


class _PendingResult:
    """What every result shares: the job id, the cache entry, the pool reference."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._job = next(job_counter)
        self._cache = pool._cache
        self._cache[self._job] = self

    def _release(self) -> None:
        self._cache.pop(self._job, None)
        self._pool = None

    def _check_waitable(self) -> None:
        # Waiting from the thread that delivers results would wait forever.
        pool = self._pool
        if pool is not None and pool._engine.delivers_in_current_thread():
            raise RuntimeError(
                f"cannot wait for {self!r} in a callback of its own pool: "
                "the thread that runs callbacks is the one that delivers results"
            )


class ApplyResult(_PendingResult, Generic[_T]):
    """The result of ``apply_async`` (and the base of ``MapResult``).

    ``get(timeout)`` returns the value or raises the task's exception (with
    the worker's traceback as ``__cause__``), or ``TimeoutError`` if not
    ready in time; ``wait(timeout)`` only waits; ``ready()`` says whether it
    finished; ``successful()`` whether it finished without raising (and
    raises ``ValueError`` while not ready).
    """

    def __init__(
        self,
        pool: Any,
        callback: Optional[Callable[[_T], object]],
        error_callback: Optional[Callable[[BaseException], object]],
    ) -> None:
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success: Optional[bool] = None
        self._value: Any = None
        super().__init__(pool)

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return bool(self._success)

    def wait(self, timeout: Optional[float] = None) -> None:
        if not self._event.is_set():
            self._check_waitable()
            self._event.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> _T:
        self.wait(timeout)
        if not self._event.is_set():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    # ------------------------------------------------------------ engine side

    def _deliver(self, index: int, start: int, span: int, ok: bool, value: Any) -> None:
        self._finish(ok, value, notify=True)

    def _abort(self, error: BaseException, notify: bool) -> None:
        if not self._event.is_set():
            self._finish(False, error, notify)

    def _finish(self, ok: bool, value: Any, notify: bool) -> None:
        self._success = ok
        self._value = value
        callback = self._callback if ok else self._error_callback
        if notify and callback is not None:
            try:
                callback(value)
            except Exception:
                _report_callback_error(self, "callback" if ok else "error_callback")
        self._event.set()
        self._release()


AsyncResult = ApplyResult


class MapResult(ApplyResult[list[_T]]):
    """The result of ``map_async``/``starmap_async``: a list in input order.

    The first failing chunk fails the whole result (its exception is what
    ``get()`` raises); the remaining chunks still run, as in the standard
    library.
    """

    def __init__(
        self,
        pool: Any,
        chunksize: int,
        length: int,
        callback: Optional[Callable[[list[_T]], object]],
        error_callback: Optional[Callable[[BaseException], object]],
    ) -> None:
        super().__init__(pool, callback, error_callback)
        self._success = True
        self._value = [None] * length
        self._chunksize = chunksize
        self._number_left = length  # items still to come
        if chunksize <= 0 or length == 0:
            # Nothing will be sent (the standard library's map with
            # chunksize=0 yields [None] * length); the callback still runs.
            self._finish(True, self._value, notify=True)

    def _deliver(self, index: int, start: int, span: int, ok: bool, value: Any) -> None:
        if self._event.is_set():
            return
        if ok:
            self._value[start : start + span] = value
            self._number_left -= span
            if self._number_left <= 0:
                self._finish(True, self._value, notify=True)
        else:
            self._finish(False, value, notify=True)


class IMapIterator(_PendingResult, Generic[_T]):
    """The iterator ``imap`` returns: results in input order as they become ready.

    ``next(timeout)`` raises ``TimeoutError`` when the next result is not
    ready in time.  A failed chunk raises its exception once, at its
    position; iteration then goes on with the next chunk.  Safe to share
    between threads (each result is handed out once).
    """

    _ordered = True

    def __init__(self, pool: Any) -> None:
        self._cond = threading.Condition(threading.Lock())
        # Entries are (ok, values, span): a chunk's list of results, or an
        # exception standing for all of its ``span`` positions.
        self._items: deque[tuple[bool, Any, int]] = deque()
        # The results of the chunk being handed out: a list iterator, whose
        # next() is atomic, so most items need no lock.
        self._current: Any = iter(())
        self._early: dict[int, tuple[bool, Any, int]] = {}  # chunks that came before their turn
        self._next_chunk = 0
        self._received = 0  # positions that have arrived (in order)
        self._length: Optional[int] = None
        self._finished = False  # nothing more will be added to _items
        super().__init__(pool)

    def __iter__(self) -> IMapIterator[_T]:
        return self

    def next(self, timeout: Optional[float] = None) -> _T:
        for value in self._current:
            return value
        with self._cond:
            # Another thread may have moved on to the next chunk meanwhile.
            for value in self._current:
                return value
            items = self._items
            if not items:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not items:
                    if self._finished:
                        raise StopIteration
                    self._check_waitable()
                    if deadline is None:
                        self._cond.wait()
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or not self._cond.wait(remaining):
                            if items or self._finished:
                                continue
                            raise TimeoutError
            ok, values, _span = items.popleft()
            if ok:
                current = self._current = iter(values)
                return next(current)
        raise values

    __next__ = next

    # ------------------------------------------------------------ engine side

    def _deliver(self, index: int, start: int, span: int, ok: bool, value: Any) -> None:
        with self._cond:
            if self._finished:
                return
            if self._ordered:
                early = self._early
                early[index] = (ok, value, span)
                while self._next_chunk in early:
                    entry = early.pop(self._next_chunk)
                    self._next_chunk += 1
                    self._items.append(entry)
                    self._received += entry[2]
            else:
                self._items.append((ok, value, span))
                self._received += span
            self._check_complete()
            self._cond.notify()

    def _set_length(self, length: int) -> None:
        with self._cond:
            if self._finished:
                return
            self._length = length
            self._check_complete()
            self._cond.notify_all()

    def _abort(self, error: BaseException, notify: bool) -> None:
        with self._cond:
            if self._finished:
                return
            self._items.append((False, error, 0))
            self._finished = True
            self._release()
            self._cond.notify_all()

    def _check_complete(self) -> None:
        if self._length is not None and self._received >= self._length:
            self._finished = True
            self._release()
            self._cond.notify_all()


class IMapUnorderedIterator(IMapIterator[_T]):
    """The iterator ``imap_unordered`` returns: results in the order they finish."""

    _ordered = False
