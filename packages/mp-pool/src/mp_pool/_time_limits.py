"""The parent's side of ``task_timeout``: per-worker deadlines, and the errors that name what overran.

Each item's limit is enforced in the worker (``mp_pool._item_watch``),
which reports what finished and which item overran.  The parent keeps two
kinds of deadline per worker, on the manager thread's clock:

* a *backstop* for the task a worker is running: its items' limits added
  up, plus a grace.  It only fires when the worker could not stop the
  item itself (code that keeps Python from running signal handlers); the
  worker is then killed and the task fails as a whole;
* a *kill* deadline for a worker told to stop (SIGTERM): SIGKILL once
  ``TERMINATE_GRACE`` has passed.

``Deadlines.due()`` says how long the manager thread may wait in ``poll``;
``expired()`` hands out what has passed.
"""

from __future__ import annotations

import time

from . import _wire
from ._errors import TaskTimeoutError
from ._item_watch import tick_for

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Optional

__all__ = ["Deadlines", "backstop_for", "item_timeout_error", "backstop_error", "check_task_timeout"]

#: Seconds a worker told to stop (SIGTERM) gets before SIGKILL.
TERMINATE_GRACE = 1.0


def check_task_timeout(value: Any) -> Optional[float]:
    """``value`` as a limit in seconds, or ``None``; ``ValueError``/``TypeError`` for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"task_timeout must be a number of seconds or None, not {type(value).__name__}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"task_timeout must be a positive, finite number of seconds or None, not {value!r}")
    return float(value)


def backstop_for(span: int, limit: float) -> float:
    """Seconds after a task's start when the parent stops waiting for the worker to stop an item itself."""
    return span * (limit + tick_for(limit)) + max(5.0, limit)


def _func_name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or type(func).__name__


def item_timeout_error(job: Any, task: Any, offset: int, limit: float, elapsed: float, pid: Any) -> TaskTimeoutError:
    """The error of the item ``offset`` of ``task`` that ran past ``limit`` seconds."""
    func = _func_name(job.func)
    index = task.start + offset
    if job.kind == _wire.CALL:
        what = f"{job.name} job {job.id} (calling {func})"
    else:
        what = f"item {index} of {job.name} job {job.id} (calling {func})"
    return TaskTimeoutError(
        f"{what} ran past its task_timeout of {limit:g} s (stopped after {elapsed:.3g} s); "
        f"its worker {pid} was stopped and replaced",
        func,
        index,
        limit,
    )


def backstop_error(job: Any, task: Any, limit: float, waited: float, pid: Any) -> TaskTimeoutError:
    """The error of a whole task whose worker did not stop its overrunning item itself."""
    func = _func_name(job.func)
    return TaskTimeoutError(
        f"{task.describe()} did not finish within {waited:.3g} s ({task.span} item(s) with a task_timeout of "
        f"{limit:g} s each) and its worker {pid} did not stop the item itself (its code kept Python from "
        "running signal handlers): the worker was killed and replaced",
        func,
        task.start,
        limit,
    )


#: How often (seconds) the manager thread looks at its deadlines while any is set: they are backstops
#: with seconds of slack, so looking costs nothing per task.
CHECK_EVERY = 0.05


class Deadlines:
    """The workers' backstop and kill deadlines (``time.monotonic``), kept by the manager thread only.

    Nothing is done per task: every ``CHECK_EVERY`` seconds, while a job
    with a time limit is active, ``late`` looks at the task each worker is
    running; a task seen for the first time is stamped then (so its start
    is known to within one check, never early), and one running longer
    than its backstop is reported.
    """

    __slots__ = ("kills", "heads", "timed_jobs", "next_check")

    def __init__(self) -> None:
        self.kills: dict[Any, float] = {}  # worker -> when to SIGKILL it
        self.heads: dict[Any, tuple[Any, float]] = {}  # worker -> (the task it runs, when first seen running)
        self.timed_jobs = 0  # active jobs with a task_timeout
        self.next_check = 0.0

    def poll_timeout(self) -> Optional[float]:
        """How long the manager thread may wait for events: unbounded unless a deadline may pass."""
        return CHECK_EVERY if self.timed_jobs or self.kills else None

    def due(self) -> Optional[float]:
        """The current time if the deadlines are to be looked at now, else ``None``."""
        if not (self.timed_jobs or self.kills):
            return None
        now = time.monotonic()
        if now < self.next_check:
            return None
        self.next_check = now + CHECK_EVERY
        return now

    def late(self, workers: Any, now: float) -> list[tuple[Any, Any, float]]:
        """``(worker, task, seconds allowed)`` for each worker running a timed task past its backstop."""
        heads = self.heads
        found = []
        for worker in workers:
            running = worker.running
            task = running[0] if running and not worker.doomed else None
            if task is None or task.job.limit is None:
                if heads:
                    heads.pop(worker, None)
                continue
            seen = heads.get(worker)
            if seen is None or seen[0] is not task:
                heads[worker] = (task, now)
                continue
            allowed = backstop_for(task.span, task.job.limit)
            if now - seen[1] > allowed:
                del heads[worker]
                found.append((worker, task, allowed))
        return found

    def kill_later(self, worker: Any) -> None:
        """``worker`` was sent SIGTERM: SIGKILL it after the grace."""
        self.heads.pop(worker, None)
        self.kills[worker] = time.monotonic() + TERMINATE_GRACE

    def kills_due(self, now: float) -> list[Any]:
        """The workers to SIGKILL now."""
        kill = [worker for worker, deadline in self.kills.items() if deadline <= now]
        for worker in kill:
            del self.kills[worker]
        return kill

    def forget(self, worker: Any) -> None:
        """``worker`` has exited."""
        self.heads.pop(worker, None)
        self.kills.pop(worker, None)
