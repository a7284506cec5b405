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

asyncio: results are awaitable and the ``imap`` iterators support ``async
for``, with no thread per wait.  An awaiting task parks on a future of its
own loop and leaves a waiter (``_LoopWaiter``) on the result; the thread
that delivers wakes the loop with ``call_soon_threadsafe`` once the value
is in place, and the task then takes it as ``get()``/``next()`` would.
Cancelling the awaiting task only takes its waiter away: the pool's task
runs on, and its result can still be awaited or fetched.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque

from mp_core.context import TimeoutError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Callable, Generator, Generic, Optional, Protocol, TypeVar

    #: The type of a result's value (``AsyncResult[int]``); unchecked at run time.
    _T = TypeVar("_T")
else:
    from ._generic import Generic, Protocol
    from ._generic import T as _T

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "MapResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "PendingResult",
    "ResultOwner",
]


def _report_callback_error(result: Any, which: str) -> None:
    # A failing callback must neither kill the thread that delivers results
    # nor leave get() waiting: report it the way threading reports an
    # uncaught exception, and carry on.
    import traceback  # (only now: a program that never fails does not pay for it)

    sys.stderr.write(f"Exception in {which} of {result!r}:\n")
    traceback.print_exc()


def _settle(woken: Any) -> None:
    # In the loop's thread: a cancelled task's future is done already.
    if not woken.done():
        woken.set_result(None)


class _LoopWaiter:
    """Wakes one asyncio task, parked on ``woken`` (a future of ``loop``), from any thread."""

    __slots__ = ("loop", "woken")

    def __init__(self) -> None:
        # Imported here: a program that never awaits a result never imports
        # asyncio (and one that awaits has imported it already).
        from asyncio import get_running_loop

        self.loop = get_running_loop()
        self.woken = self.loop.create_future()

    def __call__(self) -> None:
        try:
            self.loop.call_soon_threadsafe(_settle, self.woken)
        except RuntimeError:
            pass  # the loop is closed: nobody is left to wake


#: Guards the making of and changes to a result's list of waiters (awaits
#: only, and short): finishing a result reads the list without it.
_REGISTRATION = threading.Lock()


def _wake_all(result: Any, waiters: list[_LoopWaiter]) -> None:
    for waiter in waiters:
        try:
            waiter()
        except Exception:
            # Never let a waiter stop the thread that delivers results.
            _report_callback_error(result, "an awaiting task's wake-up")


# The results a blocking call (``Pool.map``, ``apply``...) creates in this
# thread while it submits its job: a Ctrl-C that comes before the call
# reaches its wait still cancels the job (``wait_interruptibly``).
_submitting = threading.local()


def wait_interruptibly(submit: Callable[[], Any]) -> Any:
    """``submit().get()``; on Ctrl-C, at any point after the result exists, its job is cancelled (running tasks too)."""
    created: list[PendingResult] = []
    _submitting.created = created
    try:
        try:
            result = submit()
        finally:
            _submitting.created = None
        return result.get()
    except KeyboardInterrupt:
        _submitting.created = None
        for pending in created:
            pending._interrupted()
        raise


class ResultOwner(Protocol):
    """What a pending result asks of the engine that fills it."""

    def delivers_in_current_thread(self) -> bool:
        """Whether the running thread is the one that delivers results (and so must not wait for one)."""
        ...

    def forget_result(self, job_id: int) -> None:
        """The result of job ``job_id`` is ready: drop it from the pool's cache."""
        ...

    def cancel_now(self, job_id: int, error: BaseException, kill_running: Optional[bool], force: bool) -> bool:
        """End job ``job_id``'s result with ``error`` now, if that can take effect (see ``ProcessEngine``)."""
        ...


class PendingResult:
    """What every result shares: its job id and owner once submitted, and the engine's side of the seam."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool  # only to keep the pool alive while this is pending
        self._job: Optional[int] = None  # minted by the engine on submission
        self._owner: Optional[ResultOwner] = None
        created = getattr(_submitting, "created", None)
        if created is not None:
            created.append(self)

    def _opened(self, job_id: int, owner: ResultOwner) -> None:
        """The engine accepted the job: its id, and whom to tell when this is ready."""
        self._job = job_id
        self._owner = owner

    def _release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None and self._job is not None:
            owner.forget_result(self._job)
        self._pool = None

    def _cancel(self, kill_running: Optional[bool], force: bool, why: str) -> bool:
        """Ask the engine to cancel this result's job; whether it took effect."""
        owner, job = self._owner, self._job
        if owner is None or job is None:
            return False  # finished (or never submitted)
        from concurrent.futures import CancelledError  # (its import loads logging: only when cancelling)

        return owner.cancel_now(job, CancelledError(f"{why} (job {job})"), kill_running, force)

    def _interrupted(self) -> None:
        """The caller waiting for this result was interrupted (Ctrl-C): stop the job's tasks, running ones too."""
        try:
            self._cancel(True, True, "the call was interrupted")
        except NotImplementedError:
            self._cancel(False, True, "the call was interrupted")  # threads: drop what has not started

    def _check_waitable(self) -> None:
        # Waiting from the thread that delivers results would wait forever.
        owner = self._owner
        if owner is not None and owner.delivers_in_current_thread():
            raise RuntimeError(
                f"cannot wait for {self!r} in a callback of its own pool: "
                "the thread that runs callbacks is the one that delivers results"
            )

    # ------------------------------------------------------------ engine side

    def _start(self) -> bool:
        """The engine is about to send this ``apply`` call to a worker: false if it is not to run (cancelled)."""
        return True

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

    ``await result`` (from a coroutine on any thread's running asyncio
    loop) is ``get()`` without blocking the loop: it returns the value or
    raises the task's exception, at once if the result is ready.
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
        # Made by the first await: most results are never awaited.
        self._waiters: Optional[list[_LoopWaiter]] = None
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

    def cancel(self, cancel_running: Optional[bool] = None) -> bool:
        """Cancel the call; true if that took effect (``get()`` then raises ``CancelledError``).

        A call no worker has started is dropped.  A running one is stopped
        only with ``cancel_running`` (default: the pool's ``cancel_running``):
        its worker is killed (SIGTERM, SIGKILL after a grace) and replaced;
        otherwise the answer is false, as for a running ``Future``.  For a
        ``map``, the same holds for all of its chunks at once.  The
        ``error_callback`` runs with the ``CancelledError``.  A
        ``ThreadPool`` cannot stop a running call: ``cancel_running=True``
        raises ``NotImplementedError`` there.
        """
        if self._event.is_set():
            return self.cancelled()
        return self._cancel(cancel_running, False, "cancelled by the caller") or self.cancelled()

    def cancelled(self) -> bool:
        """Whether the call was cancelled (``cancel()`` took effect, or an interrupted wait stopped it)."""
        if not self._event.is_set() or self._success or "concurrent.futures" not in sys.modules:
            return False  # (no CancelledError can exist before concurrent.futures was imported)
        from concurrent.futures import CancelledError

        return isinstance(self._value, CancelledError)

    def __await__(self) -> Generator[Any, None, _T]:
        """Wait in the running asyncio loop; return the value or raise the task's exception, as ``get()``.

        No thread waits: the thread that delivers the result wakes the loop.
        A ready result returns without suspending.  Cancelling the awaiting
        task (or ``asyncio.wait_for`` timing out) does not cancel the pool's
        task: it runs on, and its result can be awaited or fetched again.
        """
        if not self._event.is_set():
            self._check_waitable()
            waiter = _LoopWaiter()
            with _REGISTRATION:
                waiters = self._waiters
                if waiters is None:
                    waiters = self._waiters = []
                waiters.append(waiter)
            try:
                # Registered, then checked: a result finished in between
                # is seen here; one finished later calls the waiter.
                if not self._event.is_set():
                    yield from waiter.woken.__await__()
            finally:
                with _REGISTRATION:
                    waiters.remove(waiter)
        return self.get()

    # ------------------------------------------------------------ engine side

    def _deliver(self, index: int, start: int, span: int, ok: bool, value: Any) -> None:
        if self._event.is_set():
            return  # cancelled: what arrives after is not wanted
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
        # Read after the event is set: a waiter registered too late to be
        # in this list sees the event set (see ``__await__``).
        waiters = self._waiters
        if waiters:
            _wake_all(self, list(waiters))


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


#: What ``IMapIterator._take_ready`` returns instead of an item.
_NOT_READY = object()  # nothing to hand out yet
_END = object()  # nothing more will come


class IMapIterator(PendingResult, Generic[_T]):
    """The iterator ``imap`` returns: results in input order as they become ready.

    ``next(timeout)`` raises ``TimeoutError`` when the next result is not
    ready in time.  A failed chunk raises its exception once, at its
    position; iteration then goes on with the next chunk.  Safe to share
    between threads (each result is handed out once).

    ``async for`` works too, from a coroutine on any thread's running
    asyncio loop: each step hands out a ready result without suspending,
    else waits for the next delivery without blocking the loop (no thread
    waits), and raises a failed chunk's exception at its position, as
    ``next()`` does.  Cancelling the waiting task loses no result.
    """

    _ordered = True

    def __init__(self, pool: Any) -> None:
        self._cond = threading.Condition(threading.Lock())
        # Entries are (ok, values, span): a chunk's list of results, or an
        # exception standing for all of its ``span`` positions.
        self._items: deque[tuple[bool, Any, int]] = deque()
        # The results of the chunk being handed out, last first: list.pop()
        # is atomic, so most items need no lock, and a value handed out is
        # no longer referenced from here (the caller may free it at once).
        self._current: list[Any] = []
        # Pieces that came before their turn, by the position of their first
        # item (a chunk arrives whole, or in pieces when an item overran its
        # time limit: the items before it, the item, the items after it).
        self._early: dict[int, tuple[bool, Any, int]] = {}
        self._next_start = 0
        self._received = 0  # positions that have arrived (in order)
        self._length: Optional[int] = None
        self._finished = False  # nothing more will be added to _items
        self._cancelled = False
        # Tasks of ``async for`` waiting for the next delivery (under _cond).
        self._waiters: list[_LoopWaiter] = []
        super().__init__(pool)

    def __iter__(self) -> IMapIterator[_T]:
        return self

    def next(self, timeout: Optional[float] = None) -> _T:
        if self._current:
            try:
                return self._current.pop()
            except IndexError:
                pass  # another thread took the last one
        try:
            return self._next_chunk(timeout)
        except KeyboardInterrupt:
            self._interrupted()  # (outside the lock: the engine delivers under it)
            raise

    __next__ = next

    def cancel(self, cancel_running: Optional[bool] = None) -> bool:
        """Cancel the call's remaining items; true if that took effect, as ``ApplyResult.cancel``.

        The results already delivered are still handed out; the iterator
        then raises ``CancelledError``.
        """
        if self._finished:
            return self.cancelled()
        if self._cancel(cancel_running, False, "cancelled by the caller"):
            self._cancelled = True
            return True
        return False

    def cancelled(self) -> bool:
        """Whether ``cancel()`` or ``close()`` took effect."""
        return self._cancelled

    def close(self) -> None:
        """Stop: the items no worker has started are dropped and the pool stays usable.

        The running ones are stopped (their workers killed and replaced)
        with the pool's ``cancel_running``, otherwise they finish and their
        results are dropped.  The iterator then ends (``StopIteration``).
        """
        if not self._finished:
            self._cancelled = self._cancel(None, True, "the iterator was closed") or self._cancelled
        with self._cond:
            self._items.clear()
            self._early.clear()
            self._current = []
            if not self._finished:
                self._finished = True
                self._release()
            self._cond.notify_all()
            waiters = self._take_waiters()
        if waiters:
            _wake_all(self, waiters)

    def _next_chunk(self, timeout: Optional[float]) -> _T:
        with self._cond:
            item = self._take_ready()
            if item is _NOT_READY:
                self._check_waitable()
                deadline = None if timeout is None else time.monotonic() + timeout
                while item is _NOT_READY:
                    if deadline is None:
                        self._cond.wait()
                    else:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or not self._cond.wait(remaining):
                            item = self._take_ready()
                            if item is _NOT_READY:
                                raise TimeoutError
                            break
                    item = self._take_ready()
        if item is _END:
            raise StopIteration
        return item

    def __aiter__(self) -> IMapIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        if self._current:
            try:
                return self._current.pop()
            except IndexError:
                pass
        while True:
            with self._cond:
                item = self._take_ready()
                if item is _NOT_READY:
                    self._check_waitable()
                    waiter = _LoopWaiter()
                    self._waiters.append(waiter)
            if item is _END:
                raise StopAsyncIteration
            if item is not _NOT_READY:
                return item
            try:
                await waiter.woken
            finally:
                with self._cond:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)

    def _take_ready(self) -> Any:
        """The next item if one is ready, else ``_NOT_READY`` or ``_END``; raises a failed chunk's exception.

        Called with ``_cond`` held: ``next()`` and ``__anext__`` share it.
        """
        # Another thread may have moved on to the next chunk meanwhile
        # (and one on the lock-free path may take the last value first).
        if self._current:
            try:
                return self._current.pop()
            except IndexError:
                pass
        items = self._items
        if not items:
            return _END if self._finished else _NOT_READY
        ok, values, _span = items.popleft()
        if ok:
            values.reverse()
            self._current = values
            return values.pop()
        raise values

    # ------------------------------------------------------------ engine side

    def _deliver(self, index: int, start: int, span: int, ok: bool, value: Any) -> None:
        with self._cond:
            if self._finished:
                return
            if self._ordered:
                early = self._early
                early[start] = (ok, value, span)
                while self._next_start in early:
                    entry = early.pop(self._next_start)
                    self._next_start += entry[2]
                    self._items.append(entry)
                    self._received += entry[2]
            else:
                self._items.append((ok, value, span))
                self._received += span
            self._check_complete()
            self._cond.notify()
            waiters = self._take_waiters()
        if waiters:
            _wake_all(self, waiters)

    def _set_length(self, length: int) -> None:
        with self._cond:
            if self._finished:
                return
            self._length = length
            self._check_complete()
            self._cond.notify_all()
            waiters = self._take_waiters()
        if waiters:
            _wake_all(self, waiters)

    def _abort(self, error: BaseException, notify: bool) -> None:
        with self._cond:
            if self._finished:
                return
            self._items.append((False, error, 0))
            self._finished = True
            self._release()
            self._cond.notify_all()
            waiters = self._take_waiters()
        if waiters:
            _wake_all(self, waiters)

    def _take_waiters(self) -> list[_LoopWaiter]:
        # (Under _cond.)  The waiters to wake when there may be something
        # new to hand out; each one takes an item or waits again.
        waiters = self._waiters
        if not waiters or not (self._items or self._finished):
            return []
        self._waiters = []
        return waiters

    def _check_complete(self) -> None:
        if self._length is not None and self._received >= self._length:
            self._finished = True
            self._release()
            self._cond.notify_all()


class IMapUnorderedIterator(IMapIterator[_T]):
    """The iterator ``imap_unordered`` returns: results in the order they finish."""

    _ordered = False
