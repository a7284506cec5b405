"""``Pool`` on a dask.distributed cluster (this module is ``multiprocess.dask``).

The one-line change from one machine to a cluster::

    from multiprocess import Pool            # worker processes on this machine
    from multiprocess.dask import Pool       # dask workers, here or on a cluster

    with Pool(address="tcp://scheduler:8786") as pool:
        pool.map(lambda x: x * x, range(1000))

``Pool`` has ``multiprocess.pool.Pool``'s API and signatures: ``apply``,
``apply_async`` (callbacks, error callbacks), ``map``, ``map_async``,
``imap``, ``imap_unordered`` (lazy input, a bounded number of chunks on the
cluster), ``starmap``, ``starmap_async``, ``close``, ``join``,
``terminate``, the context manager; the results are ``multiprocess.pool``'s
own (``get``/``wait``/``ready``/``successful``, ``await``, ``async for``),
and so are the errors (``WorkerLostError``, ``BrokenPoolError``,
``PoolTerminatedError``, ``MaybeEncodingError``, ``RemoteTraceback``).
Functions, arguments and results are serialized by ``mp_core.reduction``
(lambdas, closures, ``__main__`` definitions), one dask task per chunk.

What a cluster changes (each is said where it applies):

* ``maxtasksperchild``, ``context`` and ``max_memory_per_child`` do not
  apply (dask starts and recycles its workers itself: its ``memory_limit``
  does what ``max_memory_per_child`` does): given, they are ignored with a
  ``RuntimeWarning``;
* ``task_timeout`` and ``cancel_running=True`` cannot be honoured (a
  worker thread cannot be stopped from outside): they raise
  ``NotImplementedError``; ``cancel()`` drops the chunks that have not run;
* a script whose pool starts its own ``LocalCluster`` needs the ``if
  __name__ == "__main__":`` guard, as with the spawn start method: dask
  starts its workers by spawning.
"""

from __future__ import annotations

import os
import uuid
import warnings
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

from mp_core import reduction, util
from mp_pool import _progress
from mp_pool.pool import POOL_DEFAULT as POOL_DEFAULT
from mp_pool.pool import ApplyResult as ApplyResult
from mp_pool.pool import AsyncResult as AsyncResult
from mp_pool.pool import BrokenPoolError as BrokenPoolError
from mp_pool.pool import IMapIterator as IMapIterator
from mp_pool.pool import IMapUnorderedIterator as IMapUnorderedIterator
from mp_pool.pool import MapResult as MapResult
from mp_pool.pool import MaybeEncodingError as MaybeEncodingError
from mp_pool.pool import PoolTerminatedError as PoolTerminatedError
from mp_pool.pool import RemoteTraceback as RemoteTraceback
from mp_pool.pool import TimeoutError as TimeoutError
from mp_pool.pool import WorkerLostError as WorkerLostError

from . import _trampoline
from ._cluster import Cluster
from ._distributed import distributed
from ._engine import DaskEngine

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "BrokenPoolError",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "MaybeEncodingError",
    "Pool",
    "PoolTerminatedError",
    "RemoteTraceback",
    "TimeoutError",
    "WorkerLostError",
]

# Pool states (the standard library's values).
_RUN = "RUN"
_CLOSE = "CLOSE"
_TERMINATE = "TERMINATE"

_S = TypeVar("_S")
_T = TypeVar("_T")
_P = TypeVar("_P", bound="Pool")


def map_chunksize(length: int, chunksize: Optional[int], workers: int) -> int:
    """The standard library's chunk size of a ``map``: ``ceil(length / (4 * workers))`` unless given."""
    if chunksize is not None:
        return chunksize
    if length == 0:
        return 0
    size, extra = divmod(length, workers * 4)
    return size + 1 if extra else size


def _name_of(func: Any) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or type(func).__name__
    return str(name).replace("<", "").replace(">", "")


def _not_applicable(argument: str, why: str) -> None:
    warnings.warn(f"mp_dask.Pool ignores {argument}: {why}", RuntimeWarning, stacklevel=3)


class Pool:
    """``multiprocess.pool.Pool``'s API on a dask.distributed cluster.

    Where it runs: on ``client`` (a ``distributed.Client`` of the caller's,
    left open), or on the scheduler at ``address`` (``"tcp://host:8786"``;
    the pool's own client is closed with the pool, the cluster is not), or
    by default on a ``LocalCluster`` the pool starts and owns: ``processes``
    worker processes (default: the number of CPUs) of one thread each,
    shut down by ``close()``+``join()``, ``terminate()``, the ``with``
    block's end, garbage collection or interpreter exit, and gone with this
    process even when it is killed.  ``cluster_options`` are more
    ``LocalCluster`` arguments (``memory_limit``...), for that case only.
    ``connect_timeout`` (seconds) bounds reaching the scheduler: an
    unreachable address raises ``OSError`` (a ``TimeoutError``) naming it.
    With ``client``/``address``, ``processes`` is only the count the
    default chunk size divides by (default: the cluster's worker threads).

    ``initializer(*initargs)`` runs once in each worker process before its
    first task of this pool; if it raises, the pool breaks
    (``BrokenPoolError`` for pending and later calls).  ``serializer`` (a
    ``mp_core.reduction.Serializer``) sets how tasks and results are
    serialized.  The workers need the packages of the tasks they run,
    ``mp-dask`` itself included, as every dask worker does.

    A dask worker that dies running a chunk (SIGKILL, segfault, OOM) fails
    that chunk's items with ``WorkerLostError`` naming the worker's
    address; the pool keeps running on the other workers (dask's nanny
    replaces the dead one).  On the pool's own cluster that happens at
    once; a scheduler the pool does not own first retries the task on
    other workers ``distributed.scheduler.allowed-failures`` times.

    Results are delivered, and callbacks run, in the pool's delivery thread
    (answers are fetched from the cluster in batches: see
    ``mp_dask._engine``): a callback should return quickly and must not
    wait for another result of the same pool.
    """

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
        address: Optional[str] = None,
        client: Optional[distributed.Client] = None,
        connect_timeout: Optional[float] = None,
        cluster_options: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self._state = "INIT"
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if task_timeout is not None:
            raise NotImplementedError(
                "mp_dask.Pool cannot enforce task_timeout: a dask worker thread cannot be stopped from outside"
            )
        if cancel_running:
            raise NotImplementedError(
                "mp_dask.Pool cannot cancel a running call: a dask worker thread cannot be stopped from outside"
            )
        if maxtasksperchild is not None:
            _not_applicable("maxtasksperchild", "dask workers are long-lived and recycled by dask, not per task")
        if context is not None:
            _not_applicable("context", "dask starts its own worker processes")
        if max_memory_per_child is not None:
            _not_applicable("max_memory_per_child", "use dask's memory_limit (cluster_options) on the workers")
        self._serializer = serializer
        init_payload = None
        if initializer is not None:
            init_payload = bytes(reduction.dumps((initializer, tuple(initargs)), serializer=serializer))
        self._creator_pid = os.getpid()
        self._cluster = Cluster(processes, address, client, connect_timeout, cluster_options)
        try:
            threads = self._cluster.worker_threads()
            self._processes = processes or threads
            self._engine = DaskEngine(
                self._cluster,
                token=uuid.uuid4().hex,
                init_payload=init_payload,
                serializer=serializer,
                window=max(4, 2 * threads),
                describe_initializer=repr(initializer),
            )
        except BaseException:
            self._cluster.shutdown()
            raise
        self._state = _RUN
        self._terminate = util.Finalize(self, _shut_down, args=(self._engine, self._cluster), exitpriority=15)

    @property
    def client(self) -> distributed.Client:
        """The ``distributed.Client`` this pool submits through."""
        return self._cluster.client

    @property
    def scheduler_address(self) -> str:
        """The address of the scheduler this pool's work goes to."""
        return self._cluster.address

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if getattr(self, "_state", None) == _RUN and getattr(self, "_creator_pid", None) == os.getpid():
            _warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, source=self)
            terminate = getattr(self, "_terminate", None)
            if terminate is not None:
                terminate()

    def __repr__(self) -> str:
        cls = type(self)
        where = getattr(getattr(self, "_cluster", None), "local", None) is not None and "own LocalCluster" or "client"
        return f"<{cls.__module__}.{cls.__qualname__} state={self._state} on {where}>"

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")
        if os.getpid() != self._creator_pid:
            raise RuntimeError("a pool can only be used by the process that created it")
        broken = self._engine.broken
        if broken is not None:
            copy = BrokenPoolError(*broken.args)
            copy.__cause__ = broken.__cause__
            raise copy

    @staticmethod
    def _check_limit(task_timeout: Any) -> None:
        if task_timeout is not POOL_DEFAULT and task_timeout is not None:
            raise NotImplementedError(
                "mp_dask.Pool cannot enforce task_timeout: a dask worker thread cannot be stopped from outside"
            )

    @staticmethod
    def _wait_for(result: Any) -> Any:
        try:
            return result.get()
        except KeyboardInterrupt:
            result._interrupted()
            raise

    def _serialize_func(self, func: Callable[..., Any]) -> bytes:
        return self._engine.serialize(func)

    # ---------------------------------------------------------------- single calls

    def apply(
        self,
        func: Callable[..., _T],
        args: Iterable[Any] = (),
        kwds: Optional[Mapping[str, Any]] = None,
        *,
        task_timeout: Optional[float] = POOL_DEFAULT,
    ) -> _T:
        """Call ``func(*args, **kwds)`` on a dask worker and return its result (blocking)."""
        self._check_running()
        return self._wait_for(self.apply_async(func, args, kwds if kwds is not None else {}, task_timeout=task_timeout))

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
        """Call ``func(*args, **kwds)`` on a dask worker; return an ``ApplyResult`` at once.

        ``callback(value)`` or ``error_callback(exception)`` runs when the
        call finishes, before ``get()`` returns.  A function or arguments
        that cannot be serialized raise here, naming what failed.
        """
        self._check_running()
        self._check_limit(task_timeout)
        func_payload = self._serialize_func(func)
        items_payload = self._engine.serialize([(tuple(args), dict(kwds or {}))])
        result: ApplyResult[_T] = ApplyResult(self, callback, error_callback)
        job = self._engine.new_job(_name_of(func), result, _trampoline.APPLY)
        self._engine.submit_chunks(job, func_payload, [(0, 0, 1, items_payload)])
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
        """``list(map(func, iterable))`` computed on the cluster, one dask task per chunk.

        ``progress`` as for ``multiprocess.Pool.map`` (a tqdm bar, its
        arguments, or an object with ``update(n)``), advanced per chunk.
        """
        self._check_limit(task_timeout)
        return self._wait_for(self._map_async(func, iterable, _trampoline.MAP, chunksize, progress=progress))

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
        self._check_limit(task_timeout)
        return self._wait_for(self._map_async(func, iterable, _trampoline.STARMAP, chunksize, progress=progress))

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
        """Asynchronous ``map``: return a ``MapResult`` at once."""
        self._check_limit(task_timeout)
        return self._map_async(func, iterable, _trampoline.MAP, chunksize, callback, error_callback, progress)

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
        """Asynchronous ``starmap``: return a ``MapResult`` at once."""
        self._check_limit(task_timeout)
        return self._map_async(func, iterable, _trampoline.STARMAP, chunksize, callback, error_callback, progress)

    def _map_async(
        self,
        func: Callable[..., _T],
        iterable: Iterable[Any],
        kind: str,
        chunksize: Optional[int],
        callback: Optional[Callable[[list[_T]], object]] = None,
        error_callback: Optional[Callable[[BaseException], object]] = None,
        progress: _progress.ProgressArgument = None,
    ) -> MapResult[_T]:
        self._check_running()
        items = iterable if isinstance(iterable, (list, tuple, range)) else list(iterable)
        length = len(items)
        size = map_chunksize(length, chunksize, self._processes)
        func_payload = self._serialize_func(func)
        chunks = []
        if size > 0:
            for index, start in enumerate(range(0, length, size)):
                chunk = list(items[start : start + size])
                chunks.append((index, start, len(chunk), self._engine.serialize(chunk)))
        sink = _progress.make_progress(progress, length)
        result: MapResult[_T] = MapResult(self, size, length, callback, error_callback)
        if result.ready():
            if sink is not None:
                sink.close()  # nothing to run (an empty input)
            return result
        job = self._engine.new_job(_name_of(func), result, kind, sink)
        self._engine.submit_chunks(job, func_payload, chunks)
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

        The input is read lazily in a thread of its own: at most ``2 x`` the
        cluster's worker threads (4 at least) chunks of this call are on the
        cluster at once, and the next chunk is read when one comes back.
        An exception raised by the input is raised by the iterator at the
        position where it happened.
        """
        return self._imap(IMapIterator, func, iterable, chunksize, task_timeout, progress)

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
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize, task_timeout, progress)

    def _imap(
        self,
        kind: type[IMapIterator[_T]],
        func: Callable[[_S], _T],
        iterable: Iterable[_S],
        chunksize: int,
        task_timeout: Any,
        progress: _progress.ProgressArgument,
    ) -> IMapIterator[_T]:
        self._check_running()
        self._check_limit(task_timeout)
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        func_payload = self._serialize_func(func)
        total = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        sink = _progress.make_progress(progress, total) if progress is not None else None
        result = kind(self)
        job = self._engine.new_job(_name_of(func), result, _trampoline.MAP, sink)
        self._engine.feed_lazily(job, func_payload, iterable, chunksize)
        return result

    # ---------------------------------------------------------------- life cycle

    def close(self) -> None:
        """Accept no more work; ``join()`` then waits for the submitted work and shuts the cluster down."""
        util.debug("closing dask pool")
        if self._state == _RUN:
            self._state = _CLOSE

    def terminate(self) -> None:
        """Stop now: pending results fail with ``PoolTerminatedError``; the pool's own cluster shuts down."""
        util.debug("terminating dask pool")
        self._state = _TERMINATE
        self._terminate()

    def join(self) -> None:
        """Wait for the submitted work, then close the pool's client and its own cluster (after ``close``)."""
        util.debug("joining dask pool")
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        if self._state not in (_CLOSE, _TERMINATE):
            raise ValueError("In unknown state")
        self._engine.wait_idle()
        self._terminate()

    def __enter__(self: _P) -> _P:
        self._check_running()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.terminate()


def _shut_down(engine: DaskEngine, cluster: Cluster) -> None:
    # The finalizer of a pool: also at interpreter exit, where distributed's
    # own exit hooks may have closed the client or the cluster already.
    engine.stop_all(lambda: PoolTerminatedError("the pool was terminated before this result was ready"), True)
    try:
        cluster.shutdown()
    except Exception as exc:
        util.debug(f"shutting down the dask pool's cluster: {exc!r}")
