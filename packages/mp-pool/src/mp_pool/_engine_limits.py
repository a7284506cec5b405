"""``task_timeout`` in the process engine: what the manager thread does when an item overran its limit.

The worker stops the item itself and reports what finished
(``mp_pool._item_watch``); ``_timed_out`` delivers that, fails the item
with ``TaskTimeoutError`` at its position, queues the items after it as a
task of their own (first in line), and stops the worker (SIGTERM, SIGKILL
after a grace: ``_doom``).  When the worker could not stop the item (its
code kept Python from running signal handlers), the task's backstop
(``mp_pool._time_limits.Deadlines``) passes and ``_check_deadlines`` kills
the worker and fails the task as a whole.
"""

from __future__ import annotations

from collections import deque

from mp_core import reduction

from . import _wire
from ._jobs import Job, Task, chunk_serialization_error
from ._time_limits import Deadlines, backstop_error, item_timeout_error

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Callable, Optional

if TYPE_CHECKING:
    import itertools

    from ._transport import Transport
    from ._worker_processes import Worker

__all__ = ["TimeLimits", "send_signal"]


def send_signal(send: Callable[[], None]) -> None:
    """Call a process's ``kill``/``terminate``; one that is already gone (or closed) is no error."""
    try:
        send()
    except (OSError, ValueError, AttributeError):
        pass  # its sentinel says so


class TimeLimits:
    """The process engine's handling of items past their time limit (a part of ``ProcessEngine``, on its state)."""

    if TYPE_CHECKING:
        _deadlines: Deadlines
        _workers: list[Worker]
        _requeued: deque[Task]
        _transport: Transport
        _serializer: Optional[reduction.Serializer]
        _task_ids: itertools.count[int]

        def _finish(self, task: Task, ok: bool, value: Any) -> None: ...
        def _retire(self, job: Job) -> None: ...
        def _end_cancelled(self, job: Job) -> None: ...
        def _requeue(self, tasks: Any) -> None: ...
        def _corrupt(self, worker: Worker, problem: str) -> None: ...

    def _timed_out(self, worker: Worker, task: Task, body: memoryview, elapsed: float) -> None:
        """``worker`` stopped an item of ``task`` past its limit: deliver what finished, run the rest elsewhere."""
        job = task.job
        try:
            values = reduction.loads(body)
            if type(values) is not list or len(values) >= task.span:
                raise TypeError(f"expected the values of fewer than {task.span} items, got {type(values).__name__}")
        except Exception as exc:
            body.release()
            self._corrupt(worker, f"an unreadable time-out report for task {task.id}: {exc!r}")
            return
        body.release()
        done = len(values)
        error = item_timeout_error(job, task, done, job.limit or 0.0, elapsed, worker.pid)
        self._doom(worker)
        rest = task.span - done - 1
        if rest > 0 and job.cancelled is None and task.items is not None:
            self._requeue_rest(task, task.items[done + 1 :], task.start + done + 1)
        result = job.result
        finished = job.task_finished()
        task.frame = task.items = None
        if job.progress is not None:
            job.progress.advance(done + 1)  # (the rest, requeued, counts when it finishes: ``_finish``)
            if finished:
                job.end_progress()
        if done:
            result._deliver(task.index, task.start, done, True, values)
        result._deliver(task.index, task.start + done, 1, False, error)
        if finished:
            if job.cancelled is not None:
                self._end_cancelled(job)
            else:
                self._retire(job)

    def _requeue_rest(self, task: Task, items: Any, start: int) -> None:
        """The items of ``task`` after the one that overran: a task of their own, first in line."""
        job = task.job
        rest = Task(next(self._task_ids), job, task.index, start, len(items))
        rest.items = items
        job.outstanding += 1
        try:
            rest.frame = _wire.task_frame(job.kind, rest.id, job.id, items, True, self._serializer)
        except Exception as exc:  # they were sent once already: only an odd __reduce__ gets here
            self._finish(rest, False, chunk_serialization_error(rest, items, exc, self._serializer))
            return
        self._requeued.appendleft(rest)

    def _doom(self, worker: Worker, at_once: bool = False) -> None:
        """Stop ``worker`` (SIGTERM, SIGKILL after a grace; ``at_once``: SIGKILL): its queued tasks go elsewhere."""
        worker.doomed = worker.retiring = True
        running = list(worker.running)
        worker.running.clear()
        self._requeue(running)
        self._transport.stop_reading(worker.channel)
        if at_once:
            self._deadlines.forget(worker)
            send_signal(worker.process.kill)
        else:
            self._deadlines.kill_later(worker)
            send_signal(worker.process.terminate)

    def _check_deadlines(self, now: float) -> None:
        for worker in self._deadlines.kills_due(now):
            send_signal(worker.process.kill)
        for worker, task, waited in self._deadlines.late(self._workers, now):
            if worker.running[0] is not task:
                continue
            worker.running.popleft()
            job = task.job
            error = backstop_error(job, task, job.limit or 0.0, waited, worker.pid)
            self._doom(worker, at_once=True)
            self._finish(task, False, error)
