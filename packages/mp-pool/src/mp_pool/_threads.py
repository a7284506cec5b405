"""The engine of ``ThreadPool``: the pool's API on threads of this process.

::

    caller thread                      worker threads (N)
    -------------                      ------------------
    map_async(f, items) ──> job ──> job queue ──> take the next chunk (under the engine lock)
    imap(f, generator)                               run f over it
      feeder thread ──> job's buffer ─┘              deliver (one delivery at a time) ──> result,
                                                     callback

Nothing is serialized: tasks, arguments and results are the caller's own
objects.  Deliveries, and so callbacks, never run concurrently, as with the
single result-handler thread of the standard library.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque

from mp_core._forksafe_threads import ForkSafeThread

from ._errors import BrokenPoolError, PoolTerminatedError, fresh_copy
from ._jobs import Job, finish_submission, open_job
from ._progress import Progress
from ._results import PendingResult
from ._sources import Chunk, SingleSource, make_source

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Callable, Optional, Sequence

__all__ = ["ThreadEngine"]


def _in_background(stop: Callable[[], None], fallback: Callable[[], None]) -> None:
    """Run ``stop`` in a new daemon thread; ``fallback`` if none can be started (interpreter shutdown)."""
    try:
        threading.Thread(target=stop, name="PoolTerminator", daemon=True).start()
    except RuntimeError:
        fallback()


_CALL, _MAP, _STARMAP = "call", "map", "starmap"


def _no_limit(limit: Optional[float]) -> None:
    # (ThreadPool refuses task_timeout before it gets here; this keeps the engine honest.)
    if limit is not None:
        raise NotImplementedError("threads cannot be stopped: a ThreadPool has no task_timeout")


class ThreadEngine:
    """Runs a ``ThreadPool``'s jobs on worker threads; never refers back to the pool."""

    def __init__(
        self,
        *,
        process_factory: Callable[..., Any],
        processes: int,
        initializer: Optional[Callable[..., Any]],
        initargs: Sequence[Any],
        cache: dict[int, Any],
        **_ignored: Any,
    ) -> None:
        self.size = processes
        self._cache = cache  # the pool's ``_cache``: results not yet ready, by job id
        self.processes: list[Any] = []
        self.broken: Optional[BrokenPoolError] = None
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._cond = threading.Condition(threading.Lock())
        self._delivering = threading.Lock()
        # One joiner at a time: PyPy's Thread.join, raced by a second joiner
        # of the same thread (the terminator thread and the caller of join),
        # fails with "cannot release un-acquired lock".
        self._joining = threading.Lock()
        self._local = threading.local()
        self._queue: deque[Job] = deque()
        self._active: dict[int, Job] = {}
        self._closing = False
        self._terminating = False
        self._feeders: weakref.WeakSet[ForkSafeThread] = weakref.WeakSet()
        for _ in range(processes):
            worker = process_factory(target=self._work)
            worker.daemon = True
            worker.start()
            self.processes.append(worker)

    def repopulate(self) -> None:
        """Nothing to do: worker threads never retire."""

    # ---------------------------------------------------------------- submission (any thread)

    def submit_call(
        self,
        result: PendingResult,
        func: Any,
        args: Any,
        kwds: Any,
        name: str = "apply",
        limit: Optional[float] = None,
    ) -> None:
        _no_limit(limit)
        job_id = open_job(self._cache, result, self)
        self._submit(Job(job_id, _CALL, "apply", func, result, SingleSource((func, args, kwds))))

    def submit_map(
        self,
        result: PendingResult,
        func: Any,
        star: bool,
        name: str,
        iterable: Any,
        chunksize: int,
        sized: bool = False,
        limit: Optional[float] = None,
        progress: Optional[Progress] = None,
    ) -> None:
        """As ``ProcessEngine.submit_map``; chunks are never cut by size here (nothing is serialized)."""
        _no_limit(limit)
        job_id = open_job(self._cache, result, self)
        try:
            source = make_source(
                iterable, chunksize, lambda: self._notify_source(job), limit=4 * self.size, name=f"PoolFeeder-{job_id}"
            )
        except BaseException:
            if progress is not None:
                progress.close()  # (a TypeError for an input that is not iterable)
            raise
        job = Job(job_id, _STARMAP if star else _MAP, name, func, result, source)
        job.progress = progress
        if source.thread is not None:
            self._feeders.add(source.thread)
        self._submit(job)

    def forget_result(self, job_id: int) -> None:
        """The result of job ``job_id`` is ready: it leaves the pool's cache."""
        self._cache.pop(job_id, None)

    #: Threads cannot be stopped: running calls are never cancelled here.
    cancel_running = False

    def cancel_now(self, job_id: int, error: BaseException, kill_running: Optional[bool], force: bool) -> bool:
        """As ``ProcessEngine.cancel_now``, except that a running call cannot be stopped (``kill_running``)."""
        if kill_running:
            raise NotImplementedError(
                "a ThreadPool cannot cancel a running call: a thread cannot be stopped from outside; "
                "use a process Pool (multiprocess.Pool) for calls that must be stopped"
            )
        with self._cond:
            job = self._active.get(job_id)
            if job is None:
                return False
            if job.outstanding and not force:
                return False
            job.source.stop()
            job.drained = True
            if job.queued:
                self._queue.remove(job)
                job.queued = False
            if not job.outstanding:
                self._active.pop(job_id, None)
                if self._closing and not self._active:
                    self._cond.notify_all()
        with self._delivering:
            job.end_progress()
            job.result._abort(error, notify=True)
        return True

    def _submit(self, job: Job) -> None:
        with self._cond:
            error: Optional[BaseException] = None
            if self.broken is not None:
                error = fresh_copy(self.broken)
            elif self._terminating:
                error = PoolTerminatedError("the pool was terminated")
            else:
                self._active[job.id] = job
                job.queued = True
                self._queue.append(job)
                self._cond.notify(self.size)
        finish_submission(job, error)

    def _notify_source(self, job: Job) -> None:
        with self._cond:
            if job.id in self._active and not job.queued and not job.drained:
                job.queued = True
                self._queue.append(job)
                self._cond.notify()

    # ---------------------------------------------------------------- life cycle (any thread)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def terminate(self) -> None:
        """Stop the workers; pending results fail with ``PoolTerminatedError``.

        From a thread of this engine (a callback, the pool's finalizer run
        by a worker or a feeder), which may hold the locks that stopping
        needs and that the other workers wait for, the stop is handed to a
        thread of its own and this call returns at once.
        """
        if self.owns_current_thread():
            _in_background(self.terminate, self._request_stop)
            return
        self._stop(PoolTerminatedError("the pool was terminated"), notify=False)
        with self._joining:
            for worker in self.processes:
                if worker.ident is not None:
                    worker.join()

    def join(self) -> None:
        """Wait for every worker thread to finish (from outside the pool's own threads)."""
        if self.owns_current_thread():
            raise RuntimeError(
                "cannot join a pool from one of its own threads (a callback, or an object "
                "collected in a worker): the workers may be waiting for this very thread"
            )
        with self._joining:
            for worker in self.processes:
                worker.join()

    def owns_current_thread(self) -> bool:
        """Whether the running thread is one of this engine's workers or input feeders."""
        current = threading.current_thread()
        # (Feeders are ForkSafeThreads: the thread under each changes when the process forks.)
        return any(worker is current for worker in self.processes) or any(
            feeder.is_current() for feeder in list(self._feeders)
        )

    def _request_stop(self) -> None:
        # Only when no thread can be started (interpreter shutdown): the
        # workers see the flag the next time they look for work.
        self._terminating = True

    def delivers_in_current_thread(self) -> bool:
        """Whether the running thread is delivering a result (running a callback)."""
        return getattr(self._local, "delivering", False)

    def _stop(self, error: BaseException, notify: bool) -> None:
        with self._cond:
            if isinstance(error, BrokenPoolError):
                if self.broken is not None:
                    return
                self.broken = error
            else:
                self._terminating = True
            jobs = list(self._active.values())
            self._active.clear()
            self._queue.clear()
            self._cond.notify_all()
        for job in jobs:
            job.source.stop()
            with self._delivering:
                job.end_progress()
                job.result._abort(error, notify)

    # ---------------------------------------------------------------- worker threads

    def _work(self) -> None:
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException as exc:  # noqa: BLE001 - reported through every pending result
                error = BrokenPoolError(f"the pool's initializer failed in {threading.current_thread().name}: {exc!r}")
                error.__cause__ = exc
                self._stop(error, notify=True)
                return
        while True:
            with self._cond:
                while True:
                    if self._terminating or self.broken is not None:
                        return
                    picked = self._next_chunk()
                    if picked is not None:
                        break
                    if self._closing and not self._active:
                        self._cond.notify_all()
                        return
                    self._cond.wait()
            # Run in a call of its own: nothing of the task (the job, its
            # arguments, its result) stays referenced from this frame while
            # the thread waits for the next one.
            self._run(*picked)
            picked = None

    def _run(self, job: Job, chunk: Chunk) -> None:
        index, start, items, error = chunk
        del chunk
        if job.kind == _CALL:
            span = 1
            try:
                func, args, kwds = items
                value, ok = func(*args, **kwds), True
            except Exception as exc:
                value, ok = exc, False
        elif error is not None:
            span, value, ok = 1, error, False
        else:
            span = len(items)
            try:
                if job.kind == _MAP:
                    value = list(map(job.func, items))
                else:
                    value = [job.func(*args) for args in items]
                ok = True
            except Exception as exc:
                value, ok = exc, False
        del items
        self._deliver(job, index, start, span, ok, value)

    def _next_chunk(self) -> Optional[tuple[Job, Chunk]]:
        queue = self._queue
        while queue:
            job = queue[0]
            chunk = job.source.take()
            if chunk is not None:
                job.outstanding += 1
                return job, chunk
            queue.popleft()
            job.queued = False
            if job.source.exhausted and job.mark_drained():
                self._active.pop(job.id, None)
                job.end_progress()
        return None

    def _deliver(self, job: Job, index: int, start: int, span: int, ok: bool, value: Any) -> None:
        with self._delivering:
            self._local.delivering = True
            try:
                if job.progress is not None:
                    job.progress.advance(span)  # before the delivery, as in ProcessEngine._finish
                    with self._cond:
                        last = job.drained and job.outstanding == 1
                    if last:
                        job.end_progress()
                job.result._deliver(index, start, span, ok, value)
            finally:
                self._local.delivering = False
        with self._cond:
            if job.task_finished() and self._active.pop(job.id, None) is not None:
                job.end_progress()
                if self._closing and not self._active:
                    self._cond.notify_all()
