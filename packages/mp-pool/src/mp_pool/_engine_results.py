"""The process engine's result side: reading what workers send, checking it, and settling tasks.

Results are read many per system call (``_transport``); each frame's
fixed head is checked against what the worker owes before anything is
unpickled (``_unexpected``: a stray or corrupt stream breaks the pool,
naming the worker and the problem, instead of handing a result to the
wrong task); then the task is settled (``_finish``): the result is
delivered, the progress advanced, and a job whose last task finished is
retired (its function forgotten by the workers that hold it).  A worker's
report that it stopped an item past its limit goes to ``_timed_out``
(``_engine_limits``); one over its memory limit is retired.
"""

from __future__ import annotations

import math
import sys
import warnings

from mp_core import reduction, util

from . import _wire
from ._errors import BrokenPoolError, MaybeEncodingError, attach_remote_traceback
from ._jobs import Job, Task
from ._memory import MIB

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Optional

if TYPE_CHECKING:
    from ._memory import MemoryLimit
    from ._time_limits import Deadlines
    from ._transport import Transport
    from ._worker_processes import Worker, WorkerProcesses

__all__ = ["Results"]


class Results:
    """Reading and settling results (a part of ``ProcessEngine``, on its state)."""

    if TYPE_CHECKING:
        broken: Optional[BrokenPoolError]
        _active: dict[int, Job]
        _avg: Optional[float]
        _deadlines: Deadlines
        _memory_limit: Optional[MemoryLimit]
        _startup_kills: int
        _terminating: bool
        _transport: Transport
        _warned_fresh_over_limit: bool
        _worker_processes: WorkerProcesses
        _workers: list[Worker]
        _target: int
        size: int

        def _worker_idle(self) -> None: ...
        def _break(self, error: BrokenPoolError, cause: Optional[BaseException]) -> None: ...
        def _end_cancelled(self, job: Job) -> None: ...
        def _timed_out(self, worker: Worker, task: Task, body: memoryview, elapsed: float) -> None: ...

    def _receive(self, worker: Worker) -> int:
        """Handle every result waiting in ``worker``'s pipe; return how many there were."""
        channel = worker.channel
        reader = channel.reader
        frames = self._transport.receive(channel)
        for data in frames:
            self._handle_result(worker, data)
        if reader.error is not None:
            self._corrupt(worker, str(reader.error))
        elif not reader.eof and self.broken is None:
            # A frame still arriving must be the answer we expect: a stray
            # header (something else writing to the pipe) would otherwise
            # swallow the real frames behind it, and wait for ever.
            head = reader.pending_head(_wire.RESULT_HEAD.size)
            if head is not None:
                problem = self._unexpected(worker, head)
                if problem:
                    self._corrupt(worker, problem)
        return len(frames)

    def _unexpected(self, worker: Worker, data: Any) -> Optional[str]:
        """What is wrong with a result frame (its head) from ``worker``, or ``None`` if it is the one due."""
        if len(data) < _wire.RESULT_HEAD.size:
            return f"a result frame of {len(data)} bytes, shorter than its {_wire.RESULT_HEAD.size}-byte head"
        if worker.doomed:
            return None  # stopped by the pool: nothing it sends is read
        task_id, status, _elapsed = _wire.RESULT_HEAD.unpack_from(data)
        if status & _wire.RETIRING:
            if self._memory_limit is None:
                return f"a retiring flag (status {status}) for task id {task_id}, in a pool without a memory limit"
            status ^= _wire.RETIRING
            if status == _wire.INIT_FAILED:
                return f"a retiring flag on a failed start (status {status | _wire.RETIRING})"
        if not worker.ready:
            if task_id != _wire.NO_TASK or status not in (_wire.READY, _wire.INIT_FAILED):
                return f"task id {task_id}, status {status} before the worker said it was ready"
            return None
        running = worker.running
        if not running or running[0].id != task_id:
            expected = f"task {running[0].id}" if running else "no result (no task was sent)"
            return f"a result for task id {task_id} where {expected} was due"
        if status not in (_wire.OK, _wire.ERROR) and not (status == _wire.TIMED_OUT and running[0].job.limit):
            return f"unknown status {status} for task {task_id}"
        if not 0.0 <= _elapsed < math.inf:  # NaN fails both
            return f"an impossible run time {_elapsed!r} for task {task_id}"
        return None

    def _corrupt(self, worker: Worker, problem: str) -> None:
        """``worker``'s result stream cannot be trusted: break the pool, naming the worker and the problem."""
        self._transport.stop_reading(worker.channel)
        if self._terminating or self.broken is not None:
            return
        self._break(
            BrokenPoolError(
                f"worker {worker.pid} sent a corrupt result stream: {problem} (something else in the worker "
                "wrote to its result pipe, or closed it); the pool cannot tell whose results follow"
            ),
            None,
        )

    def _handle_result(self, worker: Worker, data: Any) -> None:
        if self.broken is not None or worker.doomed:
            return  # a broken pool has failed every task already; a doomed worker's tasks are settled
        problem = self._unexpected(worker, data)
        if problem:
            self._corrupt(worker, problem)
            return
        task_id, status, elapsed = _wire.RESULT_HEAD.unpack_from(data)
        body = memoryview(data)[_wire.RESULT_HEAD.size :]
        retiring = status & _wire.RETIRING
        if retiring:
            status ^= retiring
        if task_id == _wire.NO_TASK:
            if status == _wire.READY:
                worker.ready = True
                worker.claimed = False  # (an idle worker from now on until the dispatch gives it a task)
                self._startup_kills = 0
                if retiring:
                    self._fresh_worker_over_limit(worker, body)
            else:
                self._initializer_failed(worker, body)
            return
        if retiring:
            self._retire_worker(worker)
        running = worker.running
        task = running.popleft()
        if not running and self._target < self.size:
            self._worker_idle()  # (before the result is delivered: the caller's next submit may claim it)
        if status == _wire.TIMED_OUT:
            self._timed_out(worker, task, body, elapsed)
            return
        if status == _wire.OK:
            try:
                value, ok = reduction.loads(body), True
            except Exception as exc:
                value, ok = MaybeEncodingError(exc, f"<the result of {task.describe()}>"), False
            job = task.job
            job.avg = elapsed if job.avg is None else 0.75 * job.avg + 0.25 * elapsed
            self._avg = elapsed if self._avg is None else 0.75 * self._avg + 0.25 * elapsed
        else:
            value, ok = _load_exception(body, task.describe()), False
        body.release()
        self._finish(task, ok, value)

    def _retire_worker(self, worker: Worker) -> None:
        """``worker`` is over the memory limit: it gets nothing more but STOP, answers what it holds, exits."""
        util.debug("worker %s is over max_memory_per_child: retiring it", worker.pid)
        worker.retiring = True  # (dispatch passes it by; its exit is replaced as any other)
        self._worker_processes.stop(worker)

    def _fresh_worker_over_limit(self, worker: Worker, body: memoryview) -> None:
        """Warn once per pool: its workers are over the limit before any task, so each retires at once."""
        if self._warned_fresh_over_limit or self._memory_limit is None:
            return
        self._warned_fresh_over_limit = True
        try:
            size = f"{reduction.loads(body) / MIB:.1f} MiB"
        except Exception:  # noqa: BLE001 - only the figure in the message is lost
            size = "more"
        message = (
            f"max_memory_per_child={self._memory_limit.limit / MIB:g} MiB is below what a fresh worker of this "
            f"pool already uses ({size}, worker {worker.pid}): each worker runs the tasks it holds when it first "
            "answers, then exits and is replaced, so the pool keeps going but starts a process for about every "
            "task; raise the limit"
        )
        try:
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        except Exception:  # noqa: BLE001 - warnings turned into errors must not stop the manager thread
            sys.stderr.write(f"RuntimeWarning: {message}\n")

    def _initializer_failed(self, worker: Worker, body: memoryview) -> None:
        error = _load_exception(body, "the initializer")
        self._break(BrokenPoolError(f"the pool's initializer failed in worker {worker.pid}: {error!r}"), error)

    def _finish(self, task: Task, ok: bool, value: Any) -> None:
        job = task.job
        task.frame = task.items = None
        done = job.task_finished()
        if job.progress is not None:
            # Before the delivery: once the result is complete, the
            # progress already counts (and our bar is closed).
            job.progress.advance(task.span)
            if done:
                job.end_progress()  # closed before the caller can see the result complete
        job.result._deliver(task.index, task.start, task.span, ok, value)
        if done:
            if job.cancelled is not None:
                self._end_cancelled(job)
            else:
                self._retire(job)

    def _retire(self, job: Job) -> None:
        job.end_progress()
        if self._active.pop(job.id, None) is None:
            return
        if job.limit is not None:
            self._deadlines.timed_jobs -= 1
        if job.func_frame is None:
            return
        forget = None
        for worker in self._workers:
            if job.id in worker.funcs:
                worker.funcs.discard(job.id)
                if worker.channel.tasks is not None:
                    if forget is None:
                        forget = _wire.task_frame(_wire.FORGET, 0, job.id)
                    worker.channel.outbox.put(forget)
                    self._transport.flush(worker.channel)


def _load_exception(body: memoryview, what: str) -> BaseException:
    try:
        exc, tb = reduction.loads(body)
        if not isinstance(exc, BaseException) or not (tb is None or isinstance(tb, str)):
            raise TypeError(f"expected (exception, traceback text), got ({type(exc).__name__}, {type(tb).__name__})")
    except Exception as load_error:
        return MaybeEncodingError(load_error, f"<the exception raised by {what}>")
    return attach_remote_traceback(exc, tb)
