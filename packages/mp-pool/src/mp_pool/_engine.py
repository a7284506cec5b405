"""The parent side of a process pool: one thread that schedules jobs on workers and settles their results.

How a task travels (the module that does each step in brackets)::

    caller thread                 manager thread (one per pool)                  worker process
    -------------                 -----------------------------                  --------------
    pool.map_async(f, items)                                                     [_worker]
      MapResult ─> submit_map:    [pool, _results]
        open_job: a job id, the
        result filed in Pool._cache [_jobs]
        pickle f once             [_wire]
        Job ─> inbox ─(wake pipe)─> job queue (FIFO)
                                    │ a READY worker has room? the job's next
                                    │ Chunk (sized in _sources), pickle it:
                                    │ a Task; the job's first task for this
                                    │ worker: FUNC frame (f) in front
                                    │ outbox ─ non-blocking write ── task pipe ─> read ahead,
                                    │   [_transport]                              run f over the chunk
                                    │ poll(): result pipes, sentinels,   <─ result pipe ─ one result
                                    │ writable task pipes, wake pipe                    per task
                                    └ results (many per read): unpickle,
                                      result._deliver(the chunk's values)
                                      ─> callback; the last chunk: the
                                      result leaves Pool._cache, get() wakes
    result.get() <───────────────────────────┘
    imap(f, generator)
      feeder thread [_sources]: reads the input a few chunks ahead ─> the job's buffer ─(wake)─> (as above)

    worker life cycle [_worker_processes]: pipes and Process from the pool's factory,
      forked from the zygote under fork; end of file at close; SIGTERM, then SIGKILL

This module keeps the schedule (the job queue, which worker gets which
task, how deep) and what each event means: a result settles its task, a
sentinel settles the dead worker's tasks and asks ``WorkerProcesses`` for
a replacement, a failure to start breaks the pool.

The engine and the results meet only at ``_results.PendingResult`` (what
the engine calls) and ``_results.ResultOwner`` (what a result asks of the
engine).  The engine never refers to the ``Pool``; a result holds it only
to keep it alive while pending.

Each worker owns its two pipes: no lock is shared between processes, so a
worker that dies holds nothing another needs.  A worker answers its tasks
in the order it received them, so the pool always knows which task a worker
is running (the oldest unanswered) and which ones it has not started.  When
a worker's sentinel fires, its last results are read first; then the task
it was running fails with ``WorkerLostError`` (naming the exit code or
signal and the task), the tasks queued behind it go to other workers, and
a replacement starts.  A worker over ``max_memory_per_child`` flags the
result of the task that put it there (``_wire.RETIRING``): it is sent
nothing more but STOP, answers the tasks it holds, exits and is replaced,
as a worker that reached ``maxtasksperchild``.  A worker that dies before it is ready (its
initializer failed, the main module cannot be imported) breaks the pool
with ``BrokenPoolError`` instead of being respawned for ever.

Under the fork start method the manager thread never forks: the first
workers are forked by the thread that creates the pool, and their
replacements by the pool's zygote (``mp_core._zygote``, owned by
``_worker_processes``), forked before the pool had a thread; the manager
thread and the ``imap`` feeders step aside whenever the process forks
(``mp_core._forksafe_threads``).

``ProcessEngine`` is written in four parts, one concern each: this
module (submission, the manager loop, the workers' life cycle, dispatch),
``_engine_results`` (reading and settling results), ``_engine_cancel``
(cancelling a job) and ``_engine_limits`` (items past ``task_timeout``).

The bytes move through ``_transport``: writes to task pipes never block (a
full pipe keeps the rest in the worker's outbox until ``poll`` reports
room), results are read ahead, many per system call.

A worker gets tasks only once it has said READY (its initializer ran):
workers start concurrently, and the first one ready takes all the work
there is, instead of a task waiting in the pipe of one still importing.
A worker started on demand (``start``) stands for one waiting task until
then, so that the pool does not start another for the same task.

Short tasks are hidden behind one another: a worker holds several tasks
(``_depth``: about ``QUEUED_WORK`` seconds of them, at most ``MAX_DEPTH``)
while the recent tasks of the job took less than ``PREFETCH_BELOW``
seconds, so it never waits a round trip between two tasks and the manager
writes and reads many frames per system call.  A worker is topped up only
once it holds half its depth or less (``_refill_below``): each write to a
worker that waits in ``read`` wakes it, which costs the manager more than
the write itself, so the tasks go in a few large writes, not one by one.
Long tasks go only to idle workers, so that a slow task never holds a
queued one hostage while another worker idles.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import types
import weakref
from collections import deque

from mp_core import _cpickle, reduction, util
from mp_core._forksafe_threads import ForkSafeThread
from mp_core._zygote import Zygote

from . import _wire
from ._engine_cancel import Cancelling, CancelRequest
from ._engine_limits import TimeLimits
from ._engine_results import Results
from ._errors import (
    BrokenPoolError,
    PoolTerminatedError,
    WorkerLostError,
    describe_exit,
    fresh_copy,
)
from ._jobs import (
    Job,
    Task,
    call_serialization_error,
    chunk_serialization_error,
    finish_submission,
    function_serialization_error,
    open_job,
)
from ._memory import MemoryLimit
from ._progress import Progress
from ._results import PendingResult
from ._sources import ReadAheadWindow, SingleSource, make_source
from ._time_limits import Deadlines
from ._transport import RESULTS, SENTINEL, WAKE, Transport
from ._worker_processes import Worker, WorkerProcesses

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Callable, Optional, Sequence

__all__ = ["ProcessEngine"]

#: A job whose recent tasks took less than this (seconds) gets tasks queued behind the running one.
PREFETCH_BELOW = 0.05
#: About how much work (seconds) to keep queued per worker for short tasks...
QUEUED_WORK = 0.002
#: ...and at most this many tasks per worker (running included): tiny tasks
#: then go half of it per write (see ``_refill_below``).
MAX_DEPTH = 64
#: Workers killed by a signal before they were ready, in a row, before the pool gives up.
MAX_STARTUP_KILLS = 3


def _discard_call(payload: tuple[int, list[Any]]) -> None:
    """A call cancelled before it was sent: its large arguments' shared memory goes now (see ``submit_call``)."""
    _wire.discard_frame(payload[1])


def _closed_to_tasks(worker: Worker) -> bool:
    """Whether ``worker`` takes no more tasks (retiring, or its task pipe closing or its result pipe ended)."""
    return worker.retiring or worker.channel.closing or worker.channel.eof


class ProcessEngine(Cancelling, TimeLimits, Results):
    """Runs a pool's jobs on worker processes; owned by a ``Pool``, never referring back to it."""

    def __init__(
        self,
        *,
        process_factory: Callable[..., Any],
        processes: int,
        initializer: Optional[Callable[..., Any]],
        initargs: Sequence[Any],
        maxtasksperchild: Optional[int],
        serializer: Optional[reduction.Serializer],
        cache: dict[int, Any],
        zygote: bool = False,
        memory_limit: Optional[MemoryLimit] = None,
        start: Optional[int] = None,
    ) -> None:
        self._cache = cache  # the pool's ``_cache``: results not yet ready, by job id
        # How many workers the pool keeps: all of them from the start, or
        # (``start``) a few, one more each time work waits and none is idle.
        self._target = processes if start is None else min(start, processes)
        self._idle_tokens = 0  # workers that became idle while the pool grows, not yet claimed by a submission
        self.size = processes
        self._maxtasks = maxtasksperchild
        self._memory_limit = memory_limit
        self._warned_fresh_over_limit = False
        self._serializer = serializer
        self._transport = Transport()
        # Forks the zygote first, while this pool has neither threads nor pipes.
        self._worker_processes = WorkerProcesses(
            process_factory=process_factory,
            initializer=initializer,
            initargs=initargs,
            maxtasksperchild=maxtasksperchild,
            serializer=serializer,
            transport=self._transport,
            zygote=zygote,
            memory_limit=memory_limit,
        )
        # The same lists as the WorkerProcesses' own: read on every dispatch.
        self._workers = self._worker_processes.workers
        self.processes = self._worker_processes.processes  # the pool's ``_pool``: live worker processes
        self.broken: Optional[BrokenPoolError] = None
        self._inbox: deque[Job] = deque()
        self._lock = threading.Lock()  # submitters against the final shutdown
        self._queue: deque[Job] = deque()  # jobs that may have chunks to hand out
        self._requeued: deque[Task] = deque()  # tasks of dead workers that had not started
        self._active: dict[int, Job] = {}
        self._task_ids = itertools.count(1)
        self._avg: Optional[float] = None  # recent task duration, across jobs
        self._startup_kills = 0
        self._cancels: deque[tuple[int, BaseException]] = deque()
        self._cancel_requests: deque[CancelRequest] = deque()
        self._after_dispatch: deque[Callable[[], None]] = deque()
        self._actions_due = 0  # how many of them this round of the manager loop runs (``_take_inbox``)
        self._deadlines = Deadlines()  # task_timeout: backstops, and SIGKILLs due
        self._closing = False
        self._terminating = False
        self._kill_now = False
        self._stopped = False
        self._feeders: weakref.WeakSet[ForkSafeThread] = weakref.WeakSet()
        try:
            self._wake_r, self._wake_w = os.pipe()
        except BaseException:
            self._worker_processes.close_zygote()
            raise
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False
        self._repopulate = False
        self._transport.watch(self._wake_r, WAKE, None)
        util.register_after_fork(self, ProcessEngine._after_fork_in_child)
        # The manager thread steps aside whenever this process forks (a
        # worker of another pool, a Process, the program's own os.fork()).
        self.thread = ForkSafeThread(self._run, name="PoolManager", wake=self._wake)
        try:
            for _ in range(self._target):
                self._worker_processes.start(from_zygote=False)
            self.thread.start()
        except BaseException:
            self._worker_processes.kill()
            self._close_own_fds()
            self._worker_processes.close_zygote()
            raise

    @property
    def _zygote(self) -> Optional[Zygote]:
        """The zygote that forks replacement workers, if any (read by tests and when debugging)."""
        return self._worker_processes.zygote

    # ================================================================ any thread

    def submit_call(
        self,
        result: PendingResult,
        func: Any,
        args: Any,
        kwds: Any,
        name: str = "apply",
        limit: Optional[float] = None,
    ) -> None:
        """Queue ``func(*args, **kwds)`` for ``result``, serialized here, in the caller's thread.

        A payload that cannot be serialized fails ``result`` at once, naming
        the function or argument (and the call: ``name`` job N).  ``limit``:
        the call's ``task_timeout`` in seconds.
        """
        job_id = open_job(self._cache, result, self)
        task_id = next(self._task_ids)
        try:
            frame = _wire.task_frame(_wire.CALL, task_id, job_id, (func, args, kwds), True, self._serializer)
        except Exception as exc:
            result._abort(call_serialization_error(name, job_id, func, args, kwds, exc, self._serializer), notify=True)
            return
        job = Job(job_id, _wire.CALL, name, func, result, SingleSource((task_id, frame), _discard_call))
        job.limit = limit
        self._submit(job)

    def submit_map(
        self,
        result: PendingResult,
        func: Any,
        star: bool,
        name: str,
        iterable: Any,
        chunksize: int,
        sized: bool = False,
        window: Optional[ReadAheadWindow] = None,
        limit: Optional[float] = None,
        progress: Optional[Progress] = None,
    ) -> None:
        """Queue ``func`` over the items of ``iterable`` in chunks, for ``result``.

        The function is serialized once, here; the chunks come from
        ``make_source`` (``sized``: cut by serialized size, at most
        ``chunksize`` items; ``window``: read no further ahead of the
        consumer than it allows).  ``limit``: each item's ``task_timeout``.
        ``progress`` is advanced by each finished chunk's number of items
        and closed when the job ends (at once if it cannot be submitted).
        """
        job_id = open_job(self._cache, result, self)
        kind = _wire.STARMAP if star else _wire.MAP
        try:
            func_frame = self._func_frame(job_id, func)
        except Exception as exc:
            if progress is not None:
                progress.close()
            result._abort(function_serialization_error(name, job_id, func, exc), notify=True)
            return
        try:
            source = make_source(
                iterable,
                chunksize,
                lambda: self.notify_source(job),
                limit=2 * MAX_DEPTH * self.size,
                name=f"PoolFeeder-{job_id}",
                sized=sized,
                window=window,
            )
        except BaseException:
            if progress is not None:
                progress.close()  # (a TypeError for an input that is not iterable)
            raise
        job = Job(job_id, kind, name, func, result, source)
        job.func_frame = func_frame
        job.limit = limit
        job.progress = progress
        if source.thread is not None:
            self._feeders.add(source.thread)
        self._submit(job)

    def _submit(self, job: Job) -> None:
        with self._lock:
            error: Optional[BaseException] = None
            if self.broken is not None:
                error = fresh_copy(self.broken)
            elif self._stopped:
                error = PoolTerminatedError("the pool was terminated")
            else:
                self._inbox.append(job)
        if finish_submission(job, error):
            self._wake()

    def after_dispatch(self, action: Callable[[], None]) -> bool:
        """Run ``action()`` in the manager thread once the jobs submitted so far have been offered to the workers.

        False (and ``action`` is not kept) if the engine has stopped.
        """
        with self._lock:
            if self._stopped:
                return False
            self._after_dispatch.append(action)
        self._wake()
        return True

    def forget_result(self, job_id: int) -> None:
        """The result of job ``job_id`` is ready: it leaves the pool's cache."""
        self._cache.pop(job_id, None)

    def notify_source(self, job: Job) -> None:
        """A feeder has added chunks to ``job`` (or finished): have it looked at again."""
        self._inbox.append(job)
        self._wake()

    def repopulate(self) -> None:
        """Start workers until the pool has its full size again (as workers that exit are replaced anyway)."""
        self._repopulate = True
        self._wake()

    def close(self) -> None:
        """Finish the submitted jobs, then let the workers exit."""
        self._closing = True
        self._wake()

    def terminate(self, kill: bool = False) -> None:
        """Stop the workers now; pending results fail with ``PoolTerminatedError``.

        Workers get SIGTERM and, after a grace period, SIGKILL; with
        ``kill``, SIGKILL at once.

        Waits for the manager thread to finish, except when called from a
        thread of this engine (a callback, the pool's finalizer run by the
        manager or a feeder thread): that thread may be the one the wait
        would be for, so the manager is only told to stop.
        """
        if kill:
            self._kill_now = True
        self._terminating = True
        self._wake()
        if not self.owns_current_thread():
            self.thread.join()

    def join(self) -> None:
        """Wait until the manager thread (and with it every worker) has finished."""
        if self.owns_current_thread():
            raise RuntimeError(
                "cannot join a pool from one of its own threads (a callback, or an object "
                "collected while results were delivered): that thread is the one that "
                "stops the workers"
            )
        self.thread.join()
        for process in self.processes:
            process.join()

    def owns_current_thread(self) -> bool:
        """Whether the running thread is this engine's manager thread or one of its input feeders."""
        # (ForkSafeThreads: the thread under each changes when the process forks.)
        thread = getattr(self, "thread", None)
        if thread is not None and thread.is_current():
            return True
        return any(feeder.is_current() for feeder in list(self._feeders))

    def delivers_in_current_thread(self) -> bool:
        """Whether the running thread is the manager thread, the one that delivers results."""
        return self.thread.is_current()

    def _wake(self) -> None:
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # full (the manager will wake anyway) or closed (it is gone)

    # ================================================================ manager thread

    def _run(self) -> bool:
        """The manager thread's body; true when it steps aside for a fork (it is run again after)."""
        reason: BaseException = PoolTerminatedError("the pool was terminated")
        try:
            if self._loop():
                return True
            if self.broken is not None:
                reason = self.broken
        except BaseException as exc:  # noqa: BLE001 - callers must never be left waiting
            import traceback  # (only now: see _errors._format_exception)

            sys.stderr.write("Exception in the pool's manager thread:\n")
            traceback.print_exc()
            reason = BrokenPoolError(f"the pool's manager thread failed: {exc!r}")
            reason.__cause__ = exc
        self._shut_down(reason)
        return False

    def _shut_down(self, reason: BaseException) -> None:
        self._worker_processes.retire_zygote()  # it exits while the workers are stopped; reaped below
        try:
            self._worker_processes.kill(at_once=self._kill_now)
        finally:
            with self._lock:
                self._stopped = True
                leftovers = list(self._inbox)
                self._inbox.clear()
                requests = list(self._cancel_requests)
                self._cancel_requests.clear()
                actions = list(self._after_dispatch)
                self._after_dispatch.clear()
            for action in actions:
                action()
            for request in requests:
                request.answered.set()  # (false: the pool is gone, the result fails with the reason below)
            for job in [*self._active.values(), *leftovers]:
                job.source.stop()
                job.end_progress()
                job.result._abort(reason, notify=False)
            self._active.clear()
            self._deadlines.timed_jobs = 0
            self._close_own_fds()
            # Reaped in the background if still exiting: join need not wait.
            self._worker_processes.close_zygote(wait=False)

    def _loop(self) -> bool:
        """Serve until the pool is done (false) or the process is about to fork (true)."""
        poll = self._transport.poll
        thread = self.thread
        while True:
            if self._terminating:
                return False
            if self._closing and self._close_workers():
                return False
            if thread.pausing:
                return True
            exited: list[Any] = []
            deadlines = self._deadlines
            self._actions_due = 0
            for kind, worker in poll(deadlines.poll_timeout()):
                if kind == RESULTS:
                    self._receive(worker)
                elif kind == SENTINEL:
                    exited.append(worker)
                elif kind == WAKE:
                    self._take_inbox()
            for worker in exited:
                self._on_exit(worker)
            if deadlines.timed_jobs or deadlines.kills:
                now = deadlines.due()
                if now is not None:
                    self._check_deadlines(now)
            self._dispatch()
            # Only the actions whose work this dispatch saw (``_take_inbox``):
            # one registered since then waits for the next round (its wake
            # byte makes one), or a submitter would be told its work was
            # handed out before it was even read.
            after = self._after_dispatch
            for _ in range(self._actions_due):
                after.popleft()()

    def _take_inbox(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except OSError:
            pass
        # Cleared before the inbox is read: a submitter that finds the flag
        # down after this point writes a new wake byte.
        self._wake_pending = False
        # A submitter queues its work before it asks to be told of its
        # dispatch (``after_dispatch``): the work of every action already
        # registered is in the inbox read below.
        self._actions_due = len(self._after_dispatch)
        if self._repopulate:
            self._repopulate = False
            self._fill_up()
        self._take_jobs()
        cancels = self._cancels
        while cancels:
            self._cancel(*cancels.popleft())
        requests = self._cancel_requests
        while requests:
            request = requests.popleft()
            # Its job was queued before it (the same thread, in that order):
            # a job queued since the inbox was read is taken first, so that a
            # Ctrl-C right after a submission cancels it.
            self._take_jobs()
            request.outcome = self._cancel_now(request)
            request.answered.set()

    def _take_jobs(self) -> None:
        """Move the submitted jobs from the inbox to the active jobs and the queue."""
        inbox = self._inbox
        while inbox:
            job = inbox.popleft()
            if self.broken is not None:
                job.source.stop()
                job.end_progress()
                job.result._abort(self.broken, notify=True)
                continue
            if job.id not in self._active:
                if job.drained:
                    continue  # a late notification from a feeder that has finished
                self._active[job.id] = job
                if job.limit is not None:
                    self._deadlines.timed_jobs += 1
            if not job.queued and not job.drained:
                job.queued = True
                self._queue.append(job)

    # ---------------------------------------------------------------- worker deaths, replacements, breakage

    def _on_exit(self, worker: Worker) -> None:
        """A worker's sentinel fired: collect its last results, settle its tasks, replace it."""
        while not worker.channel.eof:
            if not self._receive(worker) and not worker.channel.eof:
                break  # (only if another process holds the pipe's write end)
        process = worker.process
        process.join(5)
        exitcode = process.exitcode
        self._worker_processes.forget(worker)
        self._deadlines.forget(worker)
        # Not closed: other threads may still be looking at it in ``_pool``;
        # its descriptors go with the object.
        self.processes.remove(process)
        lost = worker.running
        util.debug("worker %s exited with %s", worker.pid, exitcode)
        if self._terminating or self.broken is not None:
            return
        if not worker.ready:
            self._requeue(lost)
            if self._startup_failed(worker, exitcode):
                return
        elif lost:
            task = lost.popleft()
            self._requeue(lost)
            error = WorkerLostError(
                f"worker {worker.pid} {describe_exit(exitcode)} while running {task.describe()}",
                pid=worker.pid,
                exitcode=exitcode,
                task=task.describe(),
            )
            self._finish(task, False, error)
        self._fill_up()

    def _fill_up(self) -> None:
        """Start workers until the pool has its size again; break it if one cannot be started."""
        while self._needs_workers():
            try:
                self._worker_processes.start()
            except Exception as exc:
                self._break(BrokenPoolError(f"cannot start a replacement worker: {exc!r}"), exc)

    def _startup_failed(self, worker: Worker, exitcode: Optional[int]) -> bool:
        """A worker died before it was ready; break the pool if it cannot start workers."""
        if exitcode is not None and exitcode < 0:
            self._startup_kills += 1
            if self._startup_kills < MAX_STARTUP_KILLS:
                return False
            message = (
                f"{MAX_STARTUP_KILLS} workers in a row were killed while starting up "
                f"(the last, {worker.pid}, {describe_exit(exitcode)})"
            )
        else:
            message = (
                f"worker {worker.pid} {describe_exit(exitcode)} while starting up, before running "
                "any task (its error output above says why: often the main module could not be "
                "imported, or the initializer could not be loaded)"
            )
        self._break(BrokenPoolError(message), None)
        return True

    def _needs_workers(self) -> bool:
        if self._terminating or self.broken is not None or len(self._workers) >= self._target:
            return False
        if self._closing:
            return bool(self._active or self._requeued or self._inbox)
        return True

    def _close_workers(self) -> bool:
        """While closing: once no work is left, send every worker end of file; true when all are gone."""
        if self._active or self._requeued or self._inbox:
            return False
        self._worker_processes.retire_zygote()
        self._worker_processes.send_eof()
        return not self._workers

    def _break(self, error: BrokenPoolError, cause: Optional[BaseException]) -> None:
        """The pool cannot run tasks any more: fail everything pending and stop the workers."""
        if self.broken is not None:
            return
        if cause is not None:
            error.__cause__ = cause
        util.debug("pool broken: %s", error)
        with self._lock:
            self.broken = error
        jobs = list(self._active.values())
        self._active.clear()
        self._deadlines.timed_jobs = 0
        self._queue.clear()
        self._requeued.clear()
        for worker in self._workers:
            worker.running.clear()
        for job in jobs:
            job.source.stop()
            job.end_progress()
            job.result._abort(error, notify=True)
        self._worker_processes.terminate()

    # ---------------------------------------------------------------- dispatch

    def _dispatch(self) -> None:
        if not (self._queue or self._requeued) or self.broken is not None:
            return
        self._hand_out(prefetch=self._target >= self.size)
        while self._target < self.size and self._work_waiting() and not self._idle_worker():
            # Work is waiting and every worker is busy: one more, rather than
            # queuing behind a busy one (as the standard library's executor
            # spawns its workers on demand).  Until it is ready it stands for
            # one waiting task (``claimed``), which any worker may run.
            self._target += 1
            started = len(self._workers)
            self._fill_up()
            for worker in self._workers[started:]:
                worker.claimed = True
            self._hand_out(prefetch=self._target >= self.size)

    def grows(self) -> bool:
        """Whether workers start on demand and not all of them have started (any thread)."""
        return self._target < self.size

    def claim_idle_worker(self) -> bool:
        """For a submission, while the pool grows: whether a worker that became idle is there to take it.

        When none is, the submitter waits for the manager thread's next
        dispatch (``after_dispatch``), which starts a worker for the work
        if every worker is busy: as the standard library's executor does
        in ``submit``, so that the new worker is known when it returns.
        """
        with self._lock:
            if self._idle_tokens > 0:
                self._idle_tokens -= 1
                return True
            return False

    def _worker_idle(self) -> None:
        with self._lock:
            self._idle_tokens += 1

    def _work_waiting(self) -> bool:
        """Whether more tasks wait than the workers started for them and not yet ready will take."""
        # (A job whose source was just emptied stays first in the queue
        # until the next look at it: it is no work.)
        claimed = sum(1 for worker in self._workers if worker.claimed)
        waiting = len(self._requeued)
        for job in self._queue:
            if waiting > claimed:
                break
            waiting += job.source.waiting(claimed + 1 - waiting)
        return waiting > claimed

    def _idle_worker(self) -> bool:
        return any(
            not (worker.running or worker.claimed or worker.retiring or worker.channel.closing or worker.channel.eof)
            for worker in list(self._workers)
        )

    def _hand_out(self, prefetch: bool) -> None:
        touched: dict[int, Worker] = {}
        try:
            # Only to workers that said READY: a task sent to one still
            # starting (a spawned interpreter importing, an initializer
            # running) could wait there long after a ready worker ran out of
            # work, and hold up its whole job.
            takers = [worker for worker in self._workers if worker.ready and not _closed_to_tasks(worker)]
            # Idle workers first, one task each.
            for worker in takers:
                if not worker.running:
                    task = self._next_task(0)
                    if task is None:
                        return
                    self._send(worker, task)
                    touched[id(worker)] = worker
            # Then (``prefetch``) queue more behind the running ones, as deep
            # as the tasks are short: one more per worker per round, so that
            # tasks guessed short (a job with no timing of its own yet) are
            # spread evenly rather than piled on the first worker.  Not while
            # a worker is starting: it is about to be idle, and what was
            # queued behind a task that turns out long would wait there.
            if not prefetch or self._starting():
                return
            low = self._refill_below()
            takers = [worker for worker in takers if len(worker.running) <= low]
            while takers and (self._queue or self._requeued):
                took = []
                for worker in takers:
                    if _closed_to_tasks(worker):
                        continue
                    task = self._next_task(len(worker.running))
                    if task is not None:
                        self._send(worker, task)
                        touched[id(worker)] = worker
                        took.append(worker)
                takers = took
        finally:
            for worker in touched.values():
                channel = worker.channel
                if channel.outbox and not channel.writing:
                    self._transport.flush(channel)

    def _starting(self) -> bool:
        """Whether a worker has not said READY yet (and will: it is not on its way out)."""
        return any(not worker.ready and not _closed_to_tasks(worker) for worker in self._workers)

    def _next_task(self, busy: int) -> Optional[Task]:
        """The next task to send to a worker already holding ``busy`` tasks, if it should get one."""
        requeued = self._requeued
        if requeued:
            if busy >= self._depth(requeued[0].job):
                return None
            return requeued.popleft()
        queue = self._queue
        while queue:
            job = queue[0]
            if busy >= self._depth(job):
                return None
            source = job.source
            chunk = source.take()
            if chunk is None:
                queue.popleft()
                job.queued = False
                if source.exhausted and job.mark_drained():
                    self._retire(job)
                continue
            index, start, items, error = chunk
            if job.kind == _wire.CALL:
                if not job.result._start():
                    # Cancelled before it was sent (the job retires when its
                    # source is seen empty): large arguments' shared memory goes now.
                    _wire.discard_frame(items[1])
                    continue
                task_id, task_frame = items  # serialized by submit_call
                task = Task(task_id, job, 0, 0, 1)
                task.frame = task_frame
                job.outstanding += 1
                return task
            span = 1 if items is None else len(items)
            task = Task(next(self._task_ids), job, index, start, span)
            job.outstanding += 1
            if error is not None:
                self._finish(task, False, error)
                continue
            try:
                task.frame = _wire.task_frame(job.kind, task.id, job.id, items, True, self._serializer)
            except Exception as exc:
                self._finish(task, False, chunk_serialization_error(task, items, exc, self._serializer))
                continue
            if job.limit is not None and span > 1:
                task.items = items
            if source.sized:
                source.observe(span, _wire.frame_size(task.frame))
            return task
        return None

    def _func_frame(self, job_id: int, func: Any) -> list[Any]:
        """The FUNC frame of a job: ``func`` serialized, by name if every worker has it as it is.

        A function defined at the top of ``__main__`` before a fork pool
        was created, and unchanged since, is in every worker already (each
        is forked from that moment): it goes by name, as the standard
        library sends it, instead of by value (which needs ``dill``, whose
        import is most of a program's first ``map``).
        """
        serializer = self._serializer
        known = self._worker_processes.forked_main
        if known and type(func) is types.FunctionType and (serializer is None or serializer.mode == "auto"):
            entry = known.get(func.__qualname__)
            if (
                entry is not None
                and entry[0] is func
                and entry[1] is func.__code__
                and entry[2] is func.__defaults__
                and entry[3] is func.__kwdefaults__
                and not func.__dict__
                and getattr(sys.modules.get("__main__"), func.__qualname__, None) is func
            ):
                protocol = (serializer or reduction.get_serializer()).protocol or reduction.DEFAULT_PROTOCOL
                return _wire.task_frame_of_pickle(_wire.FUNC, 0, job_id, _cpickle.dumps(func, protocol))
        return _wire.task_frame(_wire.FUNC, 0, job_id, func, True, serializer)

    def _refill_below(self) -> int:
        """How few tasks a worker holds before it is topped up: half its depth for the job next in line."""
        if self._requeued:
            job = self._requeued[0].job
        elif self._queue:
            job = self._queue[0]
        else:
            return 0
        return self._depth(job) // 2

    def _depth(self, job: Job) -> int:
        """How many tasks of ``job`` a worker may hold: 1 for long tasks, more the shorter they are."""
        avg = job.avg if job.avg is not None else self._avg
        if avg is None or avg >= PREFETCH_BELOW:
            return 1
        return min(MAX_DEPTH, 2 + int(QUEUED_WORK / max(avg, 1e-7)))

    def _send(self, worker: Worker, task: Task) -> None:
        job = task.job
        put = worker.channel.outbox.put
        if job.func_frame is not None and job.id not in worker.funcs:
            worker.funcs.add(job.id)
            put(job.func_frame)
            if job.limit is not None:
                put(_wire.limit_frame(job.id, job.limit))
        elif job.limit is not None and job.kind == _wire.CALL:
            put(_wire.limit_frame(job.id, job.limit))  # (the worker drops a call's limit once used)
        put(task.frame)
        worker.running.append(task)
        worker.sent += 1
        if self._maxtasks is not None and worker.sent >= self._maxtasks:
            worker.retiring = True

    # ---------------------------------------------------------------- plumbing

    def _close_own_fds(self) -> None:
        # Forgotten before closed: another thread's _wake() must never write
        # to a descriptor number that has been reused meanwhile.
        fds = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1
        util.close_fds(*fds)

    def _after_fork_in_child(self) -> None:
        self._worker_processes.close_in_child()
        self._close_own_fds()
