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
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

import mp_core
from mp_core import reduction, util
from mp_core.context import TimeoutError as TimeoutError

from . import _errors, _sources
from ._dummy_process import DummyProcess
from ._engine import ProcessEngine
from ._errors import BrokenPoolError as BrokenPoolError
from ._errors import ExceptionWithTraceback as ExceptionWithTraceback
from ._errors import MaybeEncodingError as MaybeEncodingError
from ._errors import PoolTerminatedError as PoolTerminatedError
from ._errors import RemoteTraceback as RemoteTraceback
from ._errors import WorkerLostError as WorkerLostError
from ._errors import rebuild_exc as rebuild_exc
from ._jobs import job_counter as job_counter
from ._results import ApplyResult as ApplyResult
from ._results import AsyncResult as AsyncResult
from ._results import IMapIterator as IMapIterator
from ._results import IMapUnorderedIterator as IMapUnorderedIterator
from ._results import MapResult as MapResult
from ._threads import ThreadEngine

__all__ = ["Pool", "ThreadPool"]

# Pool states (the standard library's values).
INIT = "INIT"
RUN = "RUN"
CLOSE = "CLOSE"
TERMINATE = "TERMINATE"

_S = TypeVar("_S")  # an item of a map's input
_T = TypeVar("_T")  # what the mapped or applied function returns
_P = TypeVar("_P", bound="Pool")  # ``with ThreadPool() as pool`` is a ThreadPool


def mapstar(args: tuple) -> list:
    """``list(map(func, items))`` for ``args = (func, items)``: the standard library's chunk helper, kept by name."""
    func, items = args
    return list(map(func, items))


def starmapstar(args: tuple) -> list:
    """``list(starmap(func, argument_tuples))`` for ``args = (func, argument_tuples)``; as ``mapstar``."""
    func, argument_tuples = args
    return list(itertools.starmap(func, argument_tuples))


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
        self._processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasksperchild = maxtasksperchild
        self._serializer = serializer
        self._creator_pid = os.getpid()
        self._engine = self._make_engine()
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

    # ---------------------------------------------------------------- single calls

    def apply(self, func: Callable[..., _T], args: Iterable[Any] = (), kwds: Optional[Mapping[str, Any]] = None) -> _T:
        """Call ``func(*args, **kwds)`` in a worker and return its result (blocking)."""
        self._check_running()
        return self.apply_async(func, args, kwds if kwds is not None else {}).get()

    def apply_async(
        self,
        func: Callable[..., _T],
        args: Iterable[Any] = (),
        kwds: Optional[Mapping[str, Any]] = None,
        callback: Optional[Callable[[_T], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
    ) -> ApplyResult[_T]:
        """Call ``func(*args, **kwds)`` in a worker; return an ``ApplyResult`` at once.

        ``callback(value)`` or ``error_callback(exception)`` runs in the pool's
        manager thread when the call finishes, before ``get()`` returns.
        """
        self._check_running()
        result: ApplyResult[_T] = ApplyResult(self, callback, error_callback)
        self._engine.submit_call(result, func, args, kwds if kwds is not None else {})
        return result

    # ---------------------------------------------------------------- maps

    def map(self, func: Callable[[_S], _T], iterable: Iterable[_S], chunksize: Optional[int] = None) -> list[_T]:
        """``list(map(func, iterable))`` computed by the workers, in chunks."""
        return self._map_async(func, iterable, False, chunksize, "map").get()

    def starmap(
        self, func: Callable[..., _T], iterable: Iterable[Iterable[Any]], chunksize: Optional[int] = None
    ) -> list[_T]:
        """Like ``map``, with each item unpacked as arguments: ``func(*item)``."""
        return self._map_async(func, iterable, True, chunksize, "starmap").get()

    def map_async(
        self,
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[list[_T]], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
    ) -> MapResult[_T]:
        """Asynchronous ``map``: return a ``MapResult`` at once."""
        return self._map_async(func, iterable, False, chunksize, "map", callback, error_callback)

    def starmap_async(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Iterable[Any]],
        chunksize: Optional[int] = None,
        callback: Optional[Callable[[list[_T]], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
    ) -> MapResult[_T]:
        """Asynchronous ``starmap``: return a ``MapResult`` at once."""
        return self._map_async(func, iterable, True, chunksize, "starmap", callback, error_callback)

    def _map_async(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Any],
        star: bool,
        chunksize: Optional[int],
        name: str,
        callback: Optional[Callable[[list[_T]], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
    ) -> MapResult[_T]:
        self._check_running()
        items = iterable if type(iterable) in _sources.SEQUENCE_TYPES else list(iterable)
        length = len(items)  # type: ignore[arg-type]
        size, sized = _sources.map_chunksize(length, chunksize, self._processes)
        result = MapResult(self, size, length, callback, error_callback)
        if not result.ready():
            self._engine.submit_map(result, func, star, name, items, size, sized)
        return result

    def imap(self, func: Callable[[_S], _T], iterable: Iterable[_S], chunksize: int = 1) -> IMapIterator[_T]:
        """An iterator over ``func(item)`` for each item, in input order, as results arrive.

        The input is read lazily (a few chunks ahead of the workers) in a
        thread of its own; an exception raised by the input is raised by the
        iterator at the position where it happened.
        """
        return self._imap(IMapIterator, func, iterable, chunksize, "imap")

    def imap_unordered(self, func: Callable[[_S], _T], iterable: Iterable[_S], chunksize: int = 1) -> IMapIterator[_T]:
        """Like ``imap``, but results come in the order they finish."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize, "imap_unordered")

    def _imap(
        self, kind: type[IMapIterator[_T]], func: Callable[[_S], _T], iterable: Iterable[_S], chunksize: int, name: str
    ) -> IMapIterator[_T]:
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        result = kind(self)
        self._engine.submit_map(result, func, False, name, iterable, chunksize)
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

    def _make_engine(self) -> Any:
        factory = type(self).Process
        return ThreadEngine(
            process_factory=lambda *args, **kwds: factory(None, *args, **kwds),
            processes=self._processes,
            initializer=self._initializer,
            initargs=self._initargs,
            cache=self._cache,
        )
