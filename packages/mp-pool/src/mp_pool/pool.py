"""``Pool`` and ``ThreadPool``: the standard library's pool API (this module is ``multiprocess.pool``).

``Pool`` runs tasks in worker processes started with its context's start
method; functions, arguments and results travel through
``mp_core.reduction``, so lambdas, closures and ``__main__`` objects work
under every start method.  What differs from the standard library's pool:

* a worker that dies (signal, segfault, ``os._exit``, the OOM killer) fails
  the task it was running with ``WorkerLostError`` and is replaced; the
  pool never hangs on it;
* the function of a ``map``/``imap``/``starmap`` is serialized once per
  call and sent once to each worker, not once per chunk;
* workers exit on their own when the process that owns the pool dies;
* a failing ``initializer`` breaks the pool with ``BrokenPoolError``
  (pending and later calls raise it) instead of respawning workers forever;
* ``terminate()`` fails the results still pending with
  ``PoolTerminatedError`` instead of leaving ``get()`` blocked for ever;
* ``map_async`` calls its callback for an empty input too;
* ``max_memory_per_child`` (from billiard) recycles a worker whose
  resident memory grew past a limit;
* ``map``, ``imap``, ``imap_unordered``, ``starmap`` and their async forms
  take ``progress=`` (a tqdm bar, a dict of its arguments, or any object
  with ``update(n)``: ``mp_pool._progress``), advanced as chunks finish;
* under the fork start method no fork happens while a thread of the pool
  runs: workers that replace others are forked by the pool's zygote, a
  single-threaded copy of the process made by ``Pool()`` (their
  ``os.getppid()`` is the zygote's; ``parent_process()`` is the pool's
  owner), and the pool's threads step aside whenever the process forks.

How work moves between the caller, the pool's manager thread and the
workers is drawn in ``mp_pool._engine``; the worker side is
``mp_pool._worker``.
"""

from __future__ import annotations

import itertools
import os
import warnings

import mp_core
from mp_core import reduction, util
from mp_core.context import TimeoutError as TimeoutError

from . import _errors, _memory, _progress, _results, _sources
from ._dummy_process import DummyProcess
from ._engine import ProcessEngine
from ._errors import BrokenPoolError as BrokenPoolError
from ._errors import ExceptionWithTraceback as ExceptionWithTraceback
from ._errors import MaybeEncodingError as MaybeEncodingError
from ._errors import PoolTerminatedError as PoolTerminatedError
from ._errors import RemoteTraceback as RemoteTraceback
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import WorkerLostError as WorkerLostError
from ._errors import rebuild_exc as rebuild_exc
from ._jobs import job_counter as job_counter
from ._results import ApplyResult as ApplyResult
from ._results import AsyncResult as AsyncResult
from ._results import IMapIterator as IMapIterator
from ._results import IMapUnorderedIterator as IMapUnorderedIterator
from ._results import MapResult as MapResult
from ._threads import ThreadEngine
from ._time_limits import check_task_timeout

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

    _S = TypeVar("_S")  # an item of a map's input
    _T = TypeVar("_T")  # what the mapped or applied function returns
    _P = TypeVar("_P", bound="Pool")  # ``with ThreadPool() as pool`` is a ThreadPool

__all__ = ["Pool", "ThreadPool"]

# Pool states (the standard library's values).
INIT = "INIT"
RUN = "RUN"
CLOSE = "CLOSE"
TERMINATE = "TERMINATE"

#: The default of a call's ``task_timeout``: the pool's own (``None`` means no limit for that call).
POOL_DEFAULT: Any = type("PoolDefault", (), {"__repr__": lambda self: "<the pool's setting>"})()


def mapstar(args: tuple) -> list:
    """``list(map(func, items))`` for ``args = (func, items)``: the standard library's chunk helper, kept by name."""
    func, items = args
    return list(map(func, items))


def starmapstar(args: tuple) -> list:
    """``list(starmap(func, argument_tuples))`` for ``args = (func, argument_tuples)``; as ``mapstar``."""
    func, argument_tuples = args
    return list(itertools.starmap(func, argument_tuples))


def _length_if_known(iterable: Iterable[Any]) -> Optional[int]:
    """``len(iterable)`` for an input that has a length, else ``None`` (a generator, an iterator)."""
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _default_processes() -> int:
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return count or 1


class Pool:
    """A pool of worker processes that run tasks submitted by this process.

    ``processes`` workers (default: the number of CPUs) are started with
    ``context``'s start method (default: the default context).  Each runs
    ``initializer(*initargs)`` first; if that raises, the pool breaks (see
    ``BrokenPoolError``).  With ``maxtasksperchild``, a worker exits after
    that many tasks and a fresh one takes its place.  ``serializer`` (a
    ``mp_core.reduction.Serializer``) sets how this pool's tasks and
    results are serialized; by default the process-wide setting applies.

    ``task_timeout`` (seconds) limits every item's call, whatever the
    chunk size; each submission method's ``task_timeout=`` overrides it
    for that call (``None``: no limit).  An item over its limit fails with
    ``TaskTimeoutError`` at its position; its worker is stopped (SIGTERM,
    SIGKILL after a grace) and replaced; the items of its chunk that
    finished are delivered and those after it run on another worker.  The
    limit is enforced in the worker by a ``SIGALRM`` timer while timed
    items run (see ``mp_pool._item_watch``), so a timed task should not
    use ``SIGALRM`` itself.

    ``cancel_running``: whether ``result.cancel()`` stops a call that is
    already running (its worker is killed and replaced) when ``cancel``
    is not told; by default, as ``concurrent.futures``, a running call is
    not cancelled.  An interrupted wait (Ctrl-C in ``map``, ``apply``, an
    ``imap`` loop) always stops that call's tasks, running ones included,
    and the pool goes on with the next call.

    With ``max_memory_per_child`` (MiB, a positive number), a worker reads
    its resident memory (RSS) after each task (skipping the reading while
    too little time has passed for it to have grown past the limit: see
    ``mp_pool._memory``); the first time it is over
    the limit, that task's result is delivered as usual, the worker is sent
    nothing more, answers the tasks it already holds (short tasks are
    queued a few deep per worker), exits and is replaced, as with
    ``maxtasksperchild``: no task is lost or run twice.  A limit below what
    a fresh worker already uses (the interpreter, the imports, the
    initializer's work; under fork, the parent's pages it shares count
    too) still makes progress: each worker runs the tasks it holds when it
    first answers, then is replaced; a ``RuntimeWarning`` says so once per
    pool.  Where billiard (Celery's ``worker_max_memory_per_child``) counts
    kibibytes, this counts mebibytes; and it is the resident size after
    the task that counts, so memory a task frees again does not recycle the
    worker.  Read from ``/proc/self/statm`` on Linux (one ``pread`` per
    reading), elsewhere with psutil; without either the argument raises
    ``ImportError`` (``TypeError``/``ValueError`` for a value that is not
    a positive number).

    Results are delivered, and callbacks run, in the pool's manager thread:
    a callback should return quickly and must not wait for another result
    of the same pool.
    """

    # The standard library's class attribute (its workers wrap exceptions for
    # sending when true); nothing here reads it, it is kept because code
    # written against the standard library's Pool may look it up.
    _wrap_exception = True

    @staticmethod
    def Process(ctx: Any, *args: Any, **kwds: Any) -> Any:
        """Create a worker process object (override to customize workers)."""
        return ctx.Process(*args, **kwds)

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Sequence[Any] = (),
        maxtasksperchild: Optional[int] = None,
        context: Any = None,
        *,
        serializer: Optional[reduction.Serializer] = None,
        task_timeout: Optional[float] = None,
        cancel_running: bool = False,
        max_memory_per_child: Optional[float] = None,
    ) -> None:
        self._pool: list[Any] = []
        self._state = INIT
        self._cache: dict[int, Any] = {}
        self._ctx = context or mp_core.get_context()
        if processes is None:
            processes = _default_processes()
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._memory_limit = _memory.MemoryLimit.from_argument(max_memory_per_child)
        self._processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasksperchild = maxtasksperchild
        self._serializer = serializer
        self._task_timeout = check_task_timeout(task_timeout)
        self._creator_pid = os.getpid()
        self._engine = self._make_engine()
        if cancel_running:
            if isinstance(self._engine, ThreadEngine):
                raise NotImplementedError("a ThreadPool cannot cancel a running call: a thread cannot be stopped")
            self._engine.cancel_running = True
        self._pool = self._engine.processes
        self._state = RUN
        self._terminate = util.Finalize(self, self._engine.terminate, exitpriority=15)

    def _make_engine(self) -> Any:
        ctx, factory = self._ctx, type(self).Process
        return ProcessEngine(
            process_factory=lambda *args, **kwds: factory(ctx, *args, **kwds),
            processes=self._processes,
            initializer=self._initializer,
            initargs=self._initargs,
            maxtasksperchild=self._maxtasksperchild,
            serializer=self._serializer,
            cache=self._cache,
            zygote=self._ctx.get_start_method() == "fork",
            memory_limit=self._memory_limit,
        )

    def __del__(self, _warn: Callable[..., None] = warnings.warn, RUN: str = RUN) -> None:
        if getattr(self, "_state", None) == RUN and getattr(self, "_creator_pid", None) == os.getpid():
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)
            # The finalizer stops the workers.  CPython runs it right after
            # this method, in the same collection; PyPy only at the next one
            # (an object with __del__ is freed, and its weak references
            # cleared, a collection later): run it now on every interpreter.
            terminate = getattr(self, "_terminate", None)
            if terminate is not None:
                terminate()

    def __repr__(self) -> str:
        cls = type(self)
        return f"<{cls.__module__}.{cls.__qualname__} state={self._state} pool_size={len(self._pool)}>"

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")
        if os.getpid() != self._creator_pid:
            # A forked child has a copy of the pool object but none of its threads.
            raise RuntimeError("a pool can only be used by the process that created it")
        broken = self._engine.broken
        if broken is not None:
            raise _errors.fresh_copy(broken)

    def _limit(self, task_timeout: Any) -> Optional[float]:
        """A call's ``task_timeout``: its own, or the pool's when it gave none."""
        if task_timeout is POOL_DEFAULT:
            return self._task_timeout
        return check_task_timeout(task_timeout)

    # ---------------------------------------------------------------- single calls

    @staticmethod
    def _wait_for(submit: Callable[[], Any]) -> Any:
        # Ctrl-C while submitting or waiting: that call's tasks stop
        # (running ones too), the pool stays usable for the next call.
        return _results.wait_interruptibly(submit)

    def apply(
        self,
        func: Callable[..., _T],
        args: Iterable[Any] = (),
        kwds: Optional[Mapping[str, Any]] = None,
        *,
        task_timeout: Optional[float] = POOL_DEFAULT,
    ) -> _T:
        """Call ``func(*args, **kwds)`` in a worker and return its result (blocking)."""
        self._check_running()
        return self._wait_for(
            lambda: self.apply_async(func, args, kwds if kwds is not None else {}, task_timeout=task_timeout)
        )

    def apply_async(
        self,
        func: Callable[..., _T],
        args: Iterable[Any] = (),
        kwds: Optional[Mapping[str, Any]] = None,
        callback: Optional[Callable[[_T], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        *,
        task_timeout: Optional[float] = POOL_DEFAULT,
    ) -> ApplyResult[_T]:
        """Call ``func(*args, **kwds)`` in a worker; return an ``ApplyResult`` at once.

        ``callback(value)`` or ``error_callback(exception)`` runs in the pool's
        manager thread when the call finishes, before ``get()`` returns.
        ``task_timeout``: this call's limit in seconds (default: the pool's).
        """
        self._check_running()
        limit = self._limit(task_timeout)
        result: ApplyResult[_T] = ApplyResult(self, callback, error_callback)
        self._engine.submit_call(result, func, args, kwds if kwds is not None else {}, limit=limit)
        return result

    # ---------------------------------------------------------------- maps

    def map(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: Optional[int] = None,
        *,
        task_timeout: Optional[float] = POOL_DEFAULT,
        progress: _progress.ProgressArgument = None,
    ) -> list[_T]:
        """``list(map(func, iterable))`` computed by the workers, in chunks.

        ``progress``: ``True`` for a tqdm bar (``pip install
        mp-pool[progress]``), a dict of tqdm arguments for one made with
        them, or any object with an ``update(n)`` method; it advances by a
        chunk's number of items as each chunk finishes, failed or not (per
        item with ``chunksize=1``).  A bar made here is closed before the
        call returns or raises, or when the work still running after an
        error has finished.  ``TypeError`` for any other value.
        """
        return self._wait_for(
            lambda: self._map_async(
                func, iterable, False, chunksize, "map", task_timeout=task_timeout, progress=progress
            )
        )

    def starmap(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
        *,
        task_timeout: Optional[float] = POOL_DEFAULT,
        progress: _progress.ProgressArgument = None,
    ) -> list[_T]:
        """Like ``map``, with each item unpacked as arguments: ``func(*item)``."""
        return self._wait_for(
            lambda: self._map_async(
                func, iterable, True, chunksize, "starmap", task_timeout=task_timeout, progress=progress
            )
        )

    def map_async(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[list[_T]], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        *,
        task_timeout: Optional[float] = POOL_DEFAULT,
        progress: _progress.ProgressArgument = None,
    ) -> MapResult[_T]:
        """Asynchronous ``map``: return a ``MapResult`` at once (``progress`` as for ``map``)."""
        return self._map_async(
            func, iterable, False, chunksize, "map", callback, error_callback, task_timeout, progress
        )

    def starmap_async(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[list[_T]], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        *,
        task_timeout: Optional[float] = POOL_DEFAULT,
        progress: _progress.ProgressArgument = None,
    ) -> MapResult[_T]:
        """Asynchronous ``starmap``: return a ``MapResult`` at once (``progress`` as for ``map``)."""
        return self._map_async(
            func, iterable, True, chunksize, "starmap", callback, error_callback, task_timeout, progress
        )

    def _map_async(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Any],
        star: bool,
        chunksize: Optional[int],
        name: str,
        callback: Optional[Callable[[list[_T]], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        task_timeout: Optional[float] = POOL_DEFAULT,
        progress: _progress.ProgressArgument = None,
    ) -> MapResult[_T]:
        self._check_running()
        limit = self._limit(task_timeout)
        items = iterable if type(iterable) in _sources.SEQUENCE_TYPES else list(iterable)
        length = len(items)  # type: ignore[arg-type]
        size, sized = _sources.map_chunksize(length, chunksize, self._processes)
        sink = _progress.make_progress(progress, length)
        result = MapResult(self, size, length, callback, error_callback)
        if not result.ready():
            self._engine.submit_map(result, func, star, name, items, size, sized, limit=limit, progress=sink)
        elif sink is not None:
            sink.close()  # nothing to run (an empty input)
        return result

    def imap(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: int = 1,
        *,
        task_timeout: Optional[float] = POOL_DEFAULT,
        progress: _progress.ProgressArgument = None,
    ) -> IMapIterator[_T]:
        """An iterator over ``func(item)`` for each item, in input order, as results arrive.

        The input is read lazily (a few chunks ahead of the workers) in a
        thread of its own; an exception raised by the input is raised by the
        iterator at the position where it happened, and so is an item's
        ``TaskTimeoutError``.  ``progress`` as for ``map``; a bar's total is
        ``len(iterable)`` when the input has a length, else it is filled in
        once the input has been read to its end.
        """
        return self._imap(IMapIterator, func, iterable, chunksize, "imap", task_timeout, progress)

    def imap_unordered(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: int = 1,
        *,
        task_timeout: Optional[float] = POOL_DEFAULT,
        progress: _progress.ProgressArgument = None,
    ) -> IMapIterator[_T]:
        """Like ``imap``, but results come in the order they finish."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize, "imap_unordered", task_timeout, progress)

    def _imap(
        self,
        kind: type[IMapIterator[_T]],
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: int,
        name: str,
        task_timeout: Any,
        progress: _progress.ProgressArgument = None,
    ) -> IMapIterator[_T]:
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        limit = self._limit(task_timeout)
        sink = _progress.make_progress(progress, _length_if_known(iterable)) if progress is not None else None
        result = kind(self)
        self._engine.submit_map(result, func, False, name, iterable, chunksize, limit=limit, progress=sink)
        return result

    # ---------------------------------------------------------------- life cycle

    def _repopulate_pool(self) -> None:
        """Bring the pool back to its full number of workers (the standard library's hook).

        Workers that exit are replaced on their own; this only asks for it
        to happen now.
        """
        self._engine.repopulate()

    def close(self) -> None:
        """Accept no more work; workers exit once the submitted work is done."""
        util.debug("closing pool")
        if self._state == RUN:
            self._state = CLOSE
            self._engine.close()

    def terminate(self) -> None:
        """Stop the workers now, even mid-task; pending results fail with ``PoolTerminatedError``."""
        util.debug("terminating pool")
        self._state = TERMINATE
        self._terminate()

    def join(self) -> None:
        """Wait for the workers to exit; only after ``close()`` or ``terminate()``."""
        util.debug("joining pool")
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._engine.join()

    def __enter__(self: _P) -> _P:
        self._check_running()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.terminate()


class ThreadPool(Pool):
    """The ``Pool`` API on threads of this process: nothing is serialized or copied."""

    _wrap_exception = False

    @staticmethod
    def Process(ctx: Any = None, *args: Any, **kwds: Any) -> Any:
        """Create a worker thread (a ``DummyProcess``)."""
        return DummyProcess(*args, **kwds)

    def __init__(
        self,
        processes: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: Sequence[Any] = (),
    ) -> None:
        Pool.__init__(self, processes, initializer, initargs)

    def _limit(self, task_timeout: Any) -> Optional[float]:
        limit = Pool._limit(self, task_timeout)
        if limit is not None:
            raise NotImplementedError(
                "ThreadPool cannot enforce task_timeout: a thread cannot be stopped from outside; "
                "use a process Pool (multiprocess.Pool) for calls that must be stopped"
            )
        return None

    def _make_engine(self) -> Any:
        factory = type(self).Process
        return ThreadEngine(
            process_factory=lambda *args, **kwds: factory(None, *args, **kwds),
            processes=self._processes,
            initializer=self._initializer,
            initargs=self._initargs,
            cache=self._cache,
        )
