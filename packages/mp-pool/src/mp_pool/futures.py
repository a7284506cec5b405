"""``ProcessPoolExecutor`` with dill, on the pool's engine (this module is ``multiprocess.futures``).

The ``concurrent.futures`` API of the running Python's standard library,
with the 3.14 additions on every supported Python (``map(...,
buffersize=)``, ``terminate_workers()``, ``kill_workers()``), running on
the same engine as ``multiprocess.Pool`` (``mp_pool._engine``): functions,
arguments and results travel through ``mp_core.reduction``, so lambdas,
closures and ``__main__`` definitions work under fork, spawn and
forkserver, from scripts, ``python -c`` and stdin alike.

What differs from the standard library's ``ProcessPoolExecutor``:

* a worker that dies (signal, ``os._exit``, a crash) fails only the futures
  it was running, with ``WorkerLostError`` (a ``BrokenProcessPool`` naming
  the pid and the exit code or signal); a replacement worker starts and
  the executor keeps working.  A failing ``initializer`` still breaks the
  executor for good (``BrokenProcessPool``), without respawning;
* ``max_tasks_per_child`` works under the fork start method too (the
  replacements are forked by the pool's single-threaded zygote), so the
  default context is not switched to spawn for it;
* ``map`` sends the function to each worker once, not once per chunk;
* ``max_memory_per_child`` (MiB) replaces a worker whose resident memory
  grew past it, after the call that put it there (see ``Pool``);
* ``mp_context`` must be a ``multiprocess`` context: a standard-library
  context raises ``TypeError``;
* a call whose arguments cannot be serialized fails at ``submit`` (its
  future, naming the argument), and starts no worker; one whose result
  cannot be unpickled fails alone instead of breaking the executor;
* ``task_timeout`` stops a call (an item of a ``map``) that runs too long
  with ``TaskTimeoutError``, and ``cancel_running=True`` lets
  ``Future.cancel()`` stop a running call (its worker is replaced);
  ``map`` takes ``progress=`` (see ``multiprocess.Pool``).

Futures are ``concurrent.futures.Future`` objects: ``wait``,
``as_completed``, ``add_done_callback`` and ``asyncio.wrap_future`` work
unchanged; done callbacks run in the executor's manager thread.  A future
counts as running (``cancel()`` returns false) from the moment its call is
sent to a worker, as the standard library's does once its call is queued
for the workers.  ``ThreadPoolExecutor`` and the module-level names of
``concurrent.futures`` are re-exported, so this module can stand in for it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from concurrent.futures import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    BrokenExecutor,
    CancelledError,
    Executor,
    Future,
    InvalidStateError,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from concurrent.futures import TimeoutError as TimeoutError
from concurrent.futures import _base as _future_states  # the state names of Future (see _mark_running_cancelled)

# The class alone (DESIGN.md): nothing of the standard library's process machinery is used.
from concurrent.futures.process import BrokenProcessPool as _StdlibBrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar

import mp_core
from mp_core import reduction, util
from mp_core.context import BaseContext
from mp_core.context import TimeoutError as _PoolTimeoutError

from . import _errors, _memory, _progress
from ._engine import ProcessEngine
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._executor_init import LoggedInitializer as _LoggedInitializer
from ._results import IMapIterator, PendingResult
from ._sources import ReadAheadWindow
from ._time_limits import check_task_timeout

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BrokenExecutor",
    "BrokenProcessPool",
    "CancelledError",
    "Executor",
    "Future",
    "InvalidStateError",
    "ProcessPoolExecutor",
    "TaskTimeoutError",
    "ThreadPoolExecutor",
    "TimeoutError",
    "WorkerLostError",
    "as_completed",
    "wait",
]

_T = TypeVar("_T")

#: The standard library's limit on Windows (``WaitForMultipleObjects`` waits on at most 63 handles).
_MAX_WINDOWS_WORKERS = 61

_SHUTDOWN_MESSAGE = "cannot schedule new futures after shutdown"

#: ``map``'s default ``task_timeout``: the executor's.
_POOL_DEFAULT: Any = type("ExecutorDefault", (), {"__repr__": lambda self: "<the executor's setting>"})()


class BrokenProcessPool(_errors.BrokenPoolError, _StdlibBrokenProcessPool):
    """The executor cannot run calls any more: its initializer failed, or workers cannot start.

    A ``concurrent.futures.process.BrokenProcessPool`` (and the pool's
    ``BrokenPoolError``); ``__cause__`` carries the original error when
    there is one.  Every pending future fails with it, and so does every
    later ``submit``/``map``.  Also what a future still running gets when
    ``terminate_workers()``/``kill_workers()`` stop its worker.
    """


class WorkerLostError(_errors.WorkerLostError, _StdlibBrokenProcessPool):
    """The worker running this future died (signal, ``os._exit``, crash) before it reported.

    A ``concurrent.futures.process.BrokenProcessPool`` (and the pool's
    ``WorkerLostError``): ``pid``, ``exitcode`` (negative for a signal) and
    ``task`` say which worker and which call.  Unlike the standard
    library's executor, only the futures that worker was running fail; a
    replacement starts and the executor goes on with the others.
    """


def _executor_error(error: BaseException) -> BaseException:
    """The engine's error as the executor reports it (a ``BrokenProcessPool`` where the pool has its own)."""
    new: BaseException
    if isinstance(error, _errors.WorkerLostError):
        if isinstance(error, WorkerLostError):
            return error
        new = WorkerLostError(str(error), error.pid, error.exitcode, error.task)
    elif isinstance(error, _errors.BrokenPoolError):
        if isinstance(error, BrokenProcessPool):
            return error
        new = BrokenProcessPool(*error.args)
    elif isinstance(error, _errors.MaybeEncodingError) and error.error is not None:
        return error.error  # the serialization error itself, as concurrent.futures raises it
    elif isinstance(error, _errors.PoolTerminatedError):
        new = BrokenProcessPool("the executor's workers were terminated before this call finished")
    else:
        return error
    new.__cause__ = error.__cause__
    return new


class _StoppableFuture(Future):
    """The ``Future`` of an executor made with ``cancel_running=True``: ``cancel()`` also stops a running call.

    A running call's worker is killed (SIGTERM, SIGKILL after a grace) and
    replaced; the future then reports ``cancelled()``, and ``wait``,
    ``as_completed`` and done callbacks see it as cancelled.
    """

    _engine_side: Optional[_FutureResult] = None

    def cancel(self) -> bool:
        if super().cancel():
            return True
        side = self._engine_side
        if side is None or not self.running():
            return False
        return side.stop_running()


def _mark_running_cancelled(future: Future) -> bool:
    """Move a running ``future`` to the cancelled state, notifying its waiters and callbacks as ``cancel()`` does.

    ``concurrent.futures`` has no public way to cancel a running future;
    its state names and waiter protocol (unchanged since Python 3.2) are
    used here, for our own futures only.
    """
    with future._condition:
        if future._state != _future_states.RUNNING:
            return False
        future._state = _future_states.CANCELLED_AND_NOTIFIED
        for waiter in future._waiters:
            waiter.add_cancelled(future)
        future._condition.notify_all()
    future._invoke_callbacks()  # type: ignore[attr-defined]
    return True


class _FutureResult(PendingResult):
    """The engine's side of one ``submit``: settles its ``Future``."""

    def __init__(self, future: Future) -> None:
        # (No reference to the executor: as the standard library's, an
        # executor dropped with calls pending is shut down and the calls
        # complete; the engine lives on in its manager thread until then.)
        super().__init__(None)
        self.future = future
        self._stopping = False

    def stop_running(self) -> bool:
        """Stop the running call (its worker is killed and replaced); whether the future is now cancelled."""
        self._stopping = True
        self._cancel(True, True, "cancelled while running")
        return self.future.cancelled()

    def _start(self) -> bool:
        # Running from the moment it is sent: a cancelled future is dropped here.
        if self.future.set_running_or_notify_cancel():
            return True
        self._release()
        return False

    def _deliver(self, index: int, start: int, span: int, ok: bool, value: Any) -> None:
        self._settle(ok, value)

    def _abort(self, error: BaseException, notify: bool) -> None:
        if self._stopping and isinstance(error, CancelledError):
            self._release()
            _mark_running_cancelled(self.future)
            return
        self._settle(False, error)

    def _settle(self, ok: bool, value: Any) -> None:
        self._release()
        future = self.future
        try:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(_executor_error(value))
        except InvalidStateError:
            pass  # cancelled before it was sent, and now aborted: it stays cancelled


class _MapResults(Iterator[_T]):
    """The iterator ``ProcessPoolExecutor.map`` returns: results in input order.

    Raises ``TimeoutError`` when the next result is not ready by the
    map's deadline, and a call's exception at its position; either ends
    the iteration and cancels the calls not yet started, as ``close()``
    (or dropping the iterator) does.
    """

    def __init__(
        self,
        results: IMapIterator[_T],
        engine: ProcessEngine,
        end_time: Optional[float],
        chunksize: int,
        window: Optional[ReadAheadWindow],
    ) -> None:
        self._results: Optional[IMapIterator[_T]] = results
        self._engine = engine
        self._end_time = end_time
        self._chunksize = chunksize
        self._window = window
        self._taken = 0

    def __iter__(self) -> _MapResults[_T]:
        return self

    def __next__(self) -> _T:
        results = self._results
        if results is None:
            raise StopIteration
        timeout = None if self._end_time is None else self._end_time - time.monotonic()
        try:
            value = results.next(timeout)
        except StopIteration:
            self._results = None
            raise
        except TaskTimeoutError:
            self.close()  # an item's own time limit (a TimeoutError of ours too): raised as it is
            raise
        except _PoolTimeoutError:
            self.close()
            raise TimeoutError from None
        except BaseException as exc:
            self.close()
            error = _executor_error(exc)  # a worker's death: the executor's WorkerLostError
            if error is exc:
                raise
            raise error from exc.__cause__
        self._taken += 1
        if self._window is not None and self._taken % self._chunksize == 0:
            self._window.release()  # a chunk's results taken: the input may be read one chunk further
        return value

    def close(self) -> None:
        """Stop: the calls not yet sent to a worker are cancelled; the rest of the input is not read."""
        results, self._results = self._results, None
        if results is None:
            return
        if self._window is not None:
            self._window.close()
        if results._job is not None and not results._finished:
            self._engine.cancel(results._job, CancelledError())

    def __del__(self) -> None:
        if getattr(self, "_results", None) is not None:
            self.close()


def _calls_if_known(calls: Iterable[Any], iterables: Sequence[Iterable[Any]]) -> Optional[int]:
    """How many calls a ``map`` makes: its listed calls, or the shortest input's length if every input has one."""
    if isinstance(calls, list):
        return len(calls)
    try:
        return min(len(iterable) for iterable in iterables)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # an input without a length; no input at all
        return None


def _after_dispatch(engine: ProcessEngine, action: Callable[[], None]) -> None:
    """Run ``action`` in the engine's manager thread once it has handed out the work submitted so far; wait for it."""
    done = threading.Event()

    def run() -> None:
        try:
            action()
        finally:
            done.set()

    if engine.owns_current_thread() or not engine.after_dispatch(run):
        run()
    else:
        done.wait()


def _finalize_engine(engine: ProcessEngine, windows: weakref.WeakSet[ReadAheadWindow]) -> None:
    """The executor was collected or the interpreter exits: finish the submitted work, then stop.

    At exit the calls already submitted complete first, as with the
    standard library's executor.
    """
    for window in list(windows):
        window.close(RuntimeError(_SHUTDOWN_MESSAGE))
    engine.close()
    if util.is_exiting() and not engine.owns_current_thread():
        engine.join()


class ProcessPoolExecutor(Executor):
    """An ``Executor`` that runs calls in a pool of worker processes, serializing with dill.

    ``max_workers`` processes (default: the number of CPUs available) are
    started with ``mp_context``'s start method (a ``multiprocess`` context;
    default: the default context) when the first call is submitted.  Each
    runs ``initializer(*initargs)`` first; if that raises, the executor is
    broken (``BrokenProcessPool``).  With ``max_tasks_per_child``, a worker
    exits after that many calls and a fresh one takes its place.  With
    ``max_memory_per_child`` (MiB of resident memory), a worker over it
    after a call delivers that call's result, finishes the calls it
    already holds, exits and is replaced (the details, and how it differs
    from billiard's, are ``multiprocess.Pool``'s).
    ``serializer`` (a ``mp_core.reduction.Serializer``) sets how this
    executor's calls and results are serialized.  ``task_timeout``
    (seconds) limits every call (each item of a ``map``; ``map`` takes its
    own ``task_timeout=`` too): a call over it fails its future with
    ``TaskTimeoutError`` and its worker is stopped and replaced, as in
    ``multiprocess.Pool``.  With ``cancel_running``, ``Future.cancel()``
    also stops a call that is running (its worker is killed and replaced;
    the future reports ``cancelled()``) instead of returning false as the
    standard library's does.

    Raises ``ValueError`` for ``max_workers`` or ``max_tasks_per_child``
    below 1, ``TypeError`` for an ``initializer`` that is not callable or a
    context that is not ours, ``TypeError``/``ValueError`` for a
    ``max_memory_per_child`` that is not a positive number, and
    ``ImportError`` for one on a platform without ``/proc/self/statm``
    where psutil is not installed.
    """

    def __init__(
        self,
        max_workers: Optional[int] = None,
        mp_context: Optional[BaseContext] = None,
        initializer: Optional[Callable[..., object]] = None,
        initargs: Sequence[Any] = (),
        *,
        max_tasks_per_child: Optional[int] = None,
        serializer: Optional[reduction.Serializer] = None,
        task_timeout: Optional[float] = None,
        cancel_running: bool = False,
        max_memory_per_child: Optional[float] = None,
    ) -> None:
        if max_workers is None:
            max_workers = getattr(os, "process_cpu_count", os.cpu_count)() or 1
            if sys.platform == "win32":
                max_workers = min(_MAX_WINDOWS_WORKERS, max_workers)
        elif max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        elif sys.platform == "win32" and max_workers > _MAX_WINDOWS_WORKERS:
            raise ValueError(f"max_workers must be <= {_MAX_WINDOWS_WORKERS}")
        if mp_context is None:
            mp_context = mp_core.get_context()
        elif not isinstance(mp_context, BaseContext):
            origin = type(mp_context).__module__
            hint = (
                "the standard library's contexts start processes ours cannot manage; "
                if origin.startswith("multiprocessing")
                else ""
            )
            raise TypeError(
                f"mp_context must be a multiprocess context, not {origin}.{type(mp_context).__qualname__} "
                f"({hint}use multiprocess.get_context('fork'/'spawn'/'forkserver'))"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError("max_tasks_per_child must be an integer")
            if max_tasks_per_child <= 0:
                raise ValueError("max_tasks_per_child must be >= 1")
        self._memory_limit = _memory.MemoryLimit.from_argument(max_memory_per_child)
        self._max_workers = max_workers
        self._mp_context = mp_context
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._max_tasks_per_child = max_tasks_per_child
        self._serializer = serializer
        self._task_timeout = check_task_timeout(task_timeout)
        self._cancel_running = bool(cancel_running)
        self._creator_pid = os.getpid()
        self._cache: dict[int, Any] = {}  # pending results by job id (the engine files them)
        self._windows: weakref.WeakSet[ReadAheadWindow] = weakref.WeakSet()  # of maps with a buffersize
        self._shutdown_lock = threading.Lock()
        self._shutdown_thread = False  # the standard library's name: shutdown() was called
        self._engine: Optional[ProcessEngine] = None
        self._finalizer: Optional[util.Finalize] = None

    def __repr__(self) -> str:
        cls = type(self)
        state = "shutdown" if self._shutdown_thread else "running"
        return f"<{cls.__module__}.{cls.__qualname__} max_workers={self._max_workers} {state}>"

    def __reduce__(self) -> Any:
        raise TypeError("executors cannot be passed between processes or pickled")

    @property
    def _processes(self) -> dict[int, Any]:
        """The worker processes by pid, those not known to have exited (the standard library's attribute)."""
        engine = self._engine
        if engine is None:
            return {}
        return {process.pid: process for process in list(engine.processes) if process.exitcode is None}

    @property
    def _executor_manager_thread(self) -> Any:
        """The thread that hands calls to the workers and settles the futures (the standard library's attribute).

        ``None`` before the first call; ``join()`` waits until the executor
        has shut down and its workers have exited.
        """
        engine = self._engine
        return None if engine is None else engine.thread

    @property
    def _broken(self) -> Any:
        """Why the executor cannot run calls (false while it can), as the standard library has it."""
        engine = self._engine
        broken = None if engine is None else engine.broken
        return False if broken is None else str(broken)

    def _running_engine(self) -> ProcessEngine:
        """The engine to submit to, started on first use; raises if no call can be submitted."""
        with self._shutdown_lock:
            engine = self._engine
            if engine is not None and engine.broken is not None:
                raise _executor_error(_errors.fresh_copy(engine.broken))
            if self._shutdown_thread:
                raise RuntimeError(_SHUTDOWN_MESSAGE)
            if util.is_exiting():
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            if os.getpid() != self._creator_pid:
                raise RuntimeError("an executor can only be used by the process that created it")
            if engine is None:
                engine = self._engine = self._start_engine()
            return engine

    def _start_engine(self) -> ProcessEngine:
        ctx = self._mp_context
        engine = ProcessEngine(
            process_factory=ctx.Process,
            processes=self._max_workers,
            initializer=None if self._initializer is None else _LoggedInitializer(self._initializer),
            initargs=self._initargs,
            maxtasksperchild=self._max_tasks_per_child,
            serializer=self._serializer,
            cache=self._cache,
            zygote=ctx.get_start_method() == "fork",
            # Workers start on demand, as the standard library's (all at
            # once under fork: they are forked before the pool has threads).
            start=None if ctx.get_start_method() == "fork" else 0,
            memory_limit=self._memory_limit,
        )
        self._finalizer = util.Finalize(self, _finalize_engine, args=(engine, self._windows), exitpriority=15)
        return engine

    def _release_finalizer(self) -> None:
        # The engine has stopped: the finalizer (which holds it, and with it
        # the initargs) has nothing left to do.
        finalizer = self._finalizer
        if finalizer is not None:
            finalizer()

    # ---------------------------------------------------------------- submitting

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        """Schedule ``fn(*args, **kwargs)`` in a worker; return its ``Future`` at once.

        A call that cannot be serialized fails its future (the error names
        the function or argument).  Raises ``RuntimeError`` after
        ``shutdown()`` and ``BrokenProcessPool`` once the executor is broken.
        """
        engine = self._running_engine()
        future: Future[_T]
        if self._cancel_running:
            future = stoppable = _StoppableFuture()
            side = stoppable._engine_side = _FutureResult(stoppable)
        else:
            future = Future()
            side = _FutureResult(future)
        try:
            engine.submit_call(side, fn, args, kwargs, "submit", limit=self._task_timeout)
        except _errors.BrokenPoolError as exc:
            raise _executor_error(exc) from exc.__cause__
        if engine.grows() and not engine.claim_idle_worker():
            # A worker is started for the call if every one is busy, before
            # submit returns, as the standard library's (``_processes`` shows it).
            _after_dispatch(engine, lambda: None)
        return future

    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: Optional[float] = None,
        chunksize: int = 1,
        buffersize: Optional[int] = None,
        task_timeout: Optional[float] = _POOL_DEFAULT,
        progress: _progress.ProgressArgument = None,
    ) -> Iterator[_T]:
        """``map(fn, *iterables)`` computed by the workers: an iterator over the results, in input order.

        Without ``buffersize`` the input is read at once and every call is
        submitted now (an error of the input is raised here); with it, the
        input is read lazily, at most ``buffersize`` chunks of
        ``chunksize`` calls ahead of the results taken, so an endless
        input works.  ``timeout`` (seconds from this call) bounds the wait
        for each result: ``TimeoutError`` when it passes.  A call's
        exception is raised at its position; that, a timeout or closing the
        iterator cancels the calls not yet started.  ``task_timeout``: each
        item's limit for this call (default: the executor's).

        ``progress``: ``True`` for a tqdm bar (``pip install
        multiprocess[progress]``), a dict of tqdm arguments for one made
        with them, or any object with an ``update(n)`` method; it advances
        by a chunk's number of calls as each chunk finishes (per call with
        the default ``chunksize=1``).  A bar's total is the number of calls
        when the inputs' lengths are known; a bar made here is closed when
        the map's work has ended (every call finished, or cancelled).
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None:
            if not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        limit = self._task_timeout if task_timeout is _POOL_DEFAULT else check_task_timeout(task_timeout)
        end_time = None if timeout is None else timeout + time.monotonic()
        engine = self._running_engine()
        calls: Iterable[tuple[Any, ...]] = zip(*iterables)
        window = None
        if buffersize is None:
            calls = list(calls)
        sink = _progress.make_progress(progress, _calls_if_known(calls, iterables)) if progress is not None else None
        if buffersize is not None:
            window = ReadAheadWindow(buffersize)
            self._windows.add(window)
        results: IMapIterator[_T] = IMapIterator(None)  # (no reference to the executor: see _FutureResult)
        try:
            engine.submit_map(results, fn, True, "map", calls, chunksize, window=window, limit=limit, progress=sink)
        except _errors.BrokenPoolError as exc:
            raise _executor_error(exc) from exc.__cause__
        return _MapResults(results, engine, end_time, chunksize, window)

    # ---------------------------------------------------------------- shutting down

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more calls; the workers exit once the submitted calls are done.

        ``wait``: return only then.  ``cancel_futures``: cancel the calls
        not yet sent to a worker (their futures report ``cancelled()``;
        a ``map`` iterator raises ``CancelledError`` at the first of them).
        A ``map`` with a ``buffersize`` whose input is not read to the end
        raises ``RuntimeError`` at the first position it can no longer
        submit, as the standard library's does.
        """
        with self._shutdown_lock:
            self._shutdown_thread = True
            engine = self._engine
        if engine is None:
            return
        if cancel_futures:
            # As the standard library's: the calls already handed to workers
            # (one per worker, at least) run; the others are cancelled.
            self._cancel_after_dispatch(engine)
        self._close_windows(keep_credits=True)
        engine.close()
        if wait:
            engine.join()
            self._release_finalizer()

    def terminate_workers(self) -> None:
        """Shut down now: cancel the pending calls and send every worker SIGTERM (SIGKILL after a grace).

        The futures still running fail with ``BrokenProcessPool``; no
        worker is left behind.  No call can be submitted afterwards.
        """
        self._force_shutdown(kill=False)

    def kill_workers(self) -> None:
        """As ``terminate_workers()``, with SIGKILL at once."""
        self._force_shutdown(kill=True)

    def _force_shutdown(self, kill: bool) -> None:
        with self._shutdown_lock:
            self._shutdown_thread = True
            engine = self._engine
        if engine is None:
            return
        self._cancel_pending(engine)
        self._close_windows()
        engine.terminate(kill=kill)
        if not engine.owns_current_thread():
            self._release_finalizer()

    def _cancel_after_dispatch(self, engine: ProcessEngine) -> None:
        _after_dispatch(engine, lambda: self._cancel_pending(engine))

    def _cancel_pending(self, engine: ProcessEngine) -> None:
        for result in list(self._cache.values()):
            job = result._job
            if isinstance(result, _FutureResult):
                if result.future.cancel() and job is not None:
                    engine.cancel(job, CancelledError())  # dropped from the queue now
            elif job is not None:
                engine.cancel(job, CancelledError())

    def _close_windows(self, keep_credits: bool = False) -> None:
        # ``keep_credits``: the items within a map's window count as submitted
        # before the shutdown (see ``ReadAheadWindow``).
        for window in list(self._windows):
            window.close(RuntimeError(_SHUTDOWN_MESSAGE), keep_credits)
