"""Cancelling a job of the process engine: what has not started is dropped, what runs is stopped on request.

Two ways in, both carried out by the manager thread (which owns the job
queue and the workers' task lists):

* ``cancel(job, error)``: the executor's (``shutdown(cancel_futures=True)``,
  a ``map`` iterator closed early): no further task of the job is sent,
  the tasks already sent run and deliver, and the result ends with
  ``error`` at the first position that did not run;
* ``cancel_now(job, error, kill_running, force)``: the caller's
  (``AsyncResult.cancel()``, an ``imap`` closed, Ctrl-C while waiting),
  answered at once: the result ends with ``error`` now; the running tasks
  are stopped with their workers (``kill_running``) or left to finish with
  their results dropped (``force``), or, with neither, the answer is "no"
  while any task of the job is held by a worker.

A cancelled job stays active until its last outstanding task has ended,
so that the workers' bookkeeping (the job's function, ``FORGET``) stays
right.
"""

from __future__ import annotations

import threading
from collections import deque

from ._jobs import Job, Task

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Optional

if TYPE_CHECKING:
    from ._worker_processes import Worker

__all__ = ["CancelRequest", "Cancelling"]


class CancelRequest:
    """A caller's ``cancel_now``, answered by the manager thread."""

    __slots__ = ("job_id", "error", "kill_running", "force", "answered", "outcome")

    def __init__(self, job_id: int, error: BaseException, kill_running: bool, force: bool) -> None:
        self.job_id = job_id
        self.error = error
        self.kill_running = kill_running
        self.force = force
        self.answered = threading.Event()
        self.outcome = False


class Cancelling:
    """The process engine's cancel operations (a part of ``ProcessEngine``, on its state)."""

    if TYPE_CHECKING:
        _lock: threading.Lock
        _stopped: bool
        _cancels: deque[tuple[int, BaseException]]
        _cancel_requests: deque[CancelRequest]
        _active: dict[int, Job]
        _workers: list[Worker]
        _queue: deque[Job]
        _requeued: deque[Task]

        def _wake(self) -> None: ...
        def owns_current_thread(self) -> bool: ...
        def _doom(self, worker: Worker, at_once: bool = False) -> None: ...
        def _retire(self, job: Job) -> None: ...

    #: Whether ``cancel_now`` stops running tasks when its caller does not say (the pool's ``cancel_running``).
    cancel_running = False

    def cancel(self, job_id: int, error: BaseException) -> None:
        """Send no more of job ``job_id``'s tasks to workers; its result then ends with ``error``.

        The tasks already sent run to the end and deliver their results;
        once they have, the result is aborted with ``error`` (a
        ``CancelledError``, say) at the first position that was not run.
        Nothing happens for a job that has finished.  Any thread.
        """
        self._cancels.append((job_id, error))
        self._wake()

    def cancel_now(self, job_id: int, error: BaseException, kill_running: Optional[bool], force: bool) -> bool:
        """Cancel job ``job_id`` at once: its result ends with ``error`` now; true if that took effect.

        The tasks no worker has are dropped.  Tasks a worker has (running,
        or queued behind its running task): with ``kill_running``, the
        workers running them are stopped (SIGTERM, SIGKILL after a grace)
        and replaced, and their other tasks go elsewhere; otherwise, with
        ``force``, they finish and their results are dropped; with neither,
        nothing is done and the answer is false (the job is running, as the
        standard library's futures say).  False too for a job that has
        finished.  Waits for the manager thread's answer, except when
        called from it (a callback): the cancel is then carried out once
        the callback returns, and the answer is true.
        """
        if kill_running is None:
            kill_running = self.cancel_running
        request = CancelRequest(job_id, error, kill_running, force)
        with self._lock:
            if self._stopped:
                return False
            self._cancel_requests.append(request)
        self._wake()
        if self.owns_current_thread():
            return True
        request.answered.wait()
        return request.outcome

    def _cancel_now(self, request: CancelRequest) -> bool:
        job = self._active.get(request.job_id)
        if job is None:
            return False  # finished (or refused)
        if job.cancelled is not None:
            return True
        holders = [worker for worker in self._workers if any(task.job is job for task in worker.running)]
        if holders and not (request.kill_running or request.force):
            return False
        if request.kill_running:
            for worker in holders:
                if worker.running and worker.running[0].job is job and not worker.doomed:
                    self._drop(worker.running.popleft())
                    self._doom(worker)
        error = request.error
        job.end_progress()  # (a bar of ours closes with the call; what still runs counts for the user's object)
        job.result._abort(error, notify=True)
        self._cancel(job.id, error)
        return True

    def _drop(self, task: Task) -> None:
        """``task`` will not run (or its result is not wanted): its job stops counting it."""
        task.frame = task.items = None
        task.job.outstanding -= 1

    def _requeue(self, tasks: Any) -> None:
        """Tasks a worker had not started go first in line, except those of cancelled jobs."""
        kept = []
        ended = []
        for task in tasks:
            if task.job.cancelled is None:
                kept.append(task)
            else:
                self._drop(task)
                if task.job.outstanding == 0:
                    ended.append(task.job)
        self._requeued.extendleft(reversed(kept))
        for job in ended:
            if job.cancelled is not None:
                self._end_cancelled(job)

    def _cancel(self, job_id: int, error: BaseException) -> None:
        """Drop the tasks of job ``job_id`` that no worker has; abort its result once the others finish."""
        job = self._active.get(job_id)
        if job is None or job.cancelled is not None:
            return
        job.cancelled = error
        job.drained = True  # no more chunks are to be cut: the job ends with its last outstanding task
        job.source.stop()
        if job.queued:
            self._queue.remove(job)
            job.queued = False
        dropped = [task for task in self._requeued if task.job is job]
        if dropped:
            self._requeued = deque(task for task in self._requeued if task.job is not job)
            job.outstanding -= len(dropped)
        if job.outstanding == 0:
            self._end_cancelled(job)

    def _end_cancelled(self, job: Job) -> None:
        error, job.cancelled = job.cancelled, None
        job.end_progress()
        if error is not None:
            job.result._abort(error, notify=True)
        self._retire(job)
