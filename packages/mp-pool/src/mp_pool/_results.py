"""What ``apply_async``, ``map_async`` and ``imap`` hand back: results that fill in later.

The seam with the pool's engine, and nothing else, is what the engine
calls (``PendingResult``: ``_opened``, ``_deliver``, ``_set_length``,
``_abort``) and what a result asks of its engine (``ResultOwner``).  The
engine mints the job id and files the result in the pool's cache when the
job is submitted (``_opened``); it delivers each finished chunk with
``_deliver`` (from one thread at a time), tells an ``imap`` iterator its
length once the input is read (``_set_length``), and ``_abort`` ends a
result early (terminate, broken pool).  A ready result leaves the cache
through ``ResultOwner.forget_result``.

Callbacks run in the delivering thread, before ``ready()`` turns true, as
in the standard library: once ``get()`` returns, the callback has run.  A
result holds a reference to its pool until it is ready, so a pool with
pending work is not collected (and terminated) under the caller; it never
looks into the pool.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable, Generic, Optional, Protocol, TypeVar

from mp_core.context import TimeoutError

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "MapResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "PendingResult",
    "ResultOwner",
]

#: The type of a result's value (``AsyncResult[int]``); unchecked at run time.
_T = TypeVar("_T")


def _report_callback_error(result: Any, which: str) -> None:
    # A failing callback must neither kill the thread that delivers results
    # nor leave get() waiting: report it the way threading reports an
    # uncaught exception, and carry on.
    sys.stderr.write(f"Exception in {which} of {result!r}:\n")
    traceback.print_exc()


class ResultOwner(Protocol):
    """What a pending result asks of the engine that fills it."""

    def delivers_in_current_thread(self) -> bool:
        """Whether the running thread is the one that delivers results (and so must not wait for one)."""
        ...

    def forget_result(self, job_id: int) -> None:
        """The result of job ``job_id`` is ready: drop it from the pool's cache."""
        ...


class PendingResult:
    """What every result shares: its job id and owner once submitted, and the engine's side of the seam."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool  # only to keep the pool alive while this is pending
        self._job: Optional[int] = None  # minted by the engine on submission
        self._owner: Optional[ResultOwner] = None

    def _opened(self, job_id: int, owner: ResultOwner) -> None:
        """The engine accepted the job: its id, and whom to tell when this is ready."""
        self._job = job_id
        self._owner = owner

    def _release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None and self._job is not None:
            owner.forget_result(self._job)
        self._pool = None

    def _check_waitable(self) -> None:
        # Waiting from the thread that delivers results would wait forever.
        owner = self._owner
        if owner is not None and owner.delivers_in_current_thread():
            raise RuntimeError(
                f"cannot wait for {self!r} in a callback of its own pool: "
                "the thread that runs callbacks is the one that delivers results"
            )

    # ------------------------------------------------------------ engine side

    def _deliver(self, index: int, start: int, span: int, ok: bool, value: Any) -> None:
        """Chunk ``index`` (``span`` positions from ``start``) finished: its values, or its exception."""
        raise NotImplementedError

    def _set_length(self, length: int) -> None:
        """The input had ``length`` positions (told once it is read); only iterators need it."""

    def _abort(self, error: BaseException, notify: bool) -> None:
        """End early with ``error`` (calling the error callback if ``notify``), unless already finished."""
        raise NotImplementedError


class ApplyResult(PendingResult, Generic[_T]):
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
        # Released before ``ready()`` turns true: once ``get()`` returns, the
        # result has left the pool's cache and no longer keeps the pool alive.
        self._release()
        self._event.set()


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


class IMapIterator(PendingResult, Generic[_T]):
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
