"""Jobs and tasks as the engines see them, and how to name what could not be sent.

A *job* is one call of the pool's API (``apply_async``, ``map``, ``imap``...):
a result to fill and a source of chunks.  A *task* is one chunk of a job
sent to one worker.  The engine mints the job's id when it is submitted
(``open_job``) and retires it once its source is drained and its last task
has finished.  Errors about serialization name the job, the task, the
chunk and the item or argument at fault, with the serializer's exception
type (``PicklingError``, ``TypeError``...) and its message
(``mp_core.reduction.serialization_error``).
"""

from __future__ import annotations

import itertools

from mp_core import reduction
from mp_core.reduction import describe, find_unserializable, serialization_error

from . import _wire
from ._errors import BrokenPoolError
from ._progress import Progress
from ._results import PendingResult, ResultOwner
from ._sources import ChunkSource

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time (a program's first Pool imports this); annotations are strings
    from typing import Any, Optional

__all__ = [
    "Job",
    "Task",
    "job_counter",
    "open_job",
    "finish_submission",
    "function_serialization_error",
    "call_serialization_error",
    "chunk_serialization_error",
]

#: Job ids, unique within the process (the keys of ``Pool._cache``), as the standard library's.
job_counter = itertools.count()


def open_job(cache: dict[int, Any], result: PendingResult, owner: ResultOwner) -> int:
    """Mint a job id for ``result`` and file it in the pool's ``cache`` until it is ready."""
    job_id = next(job_counter)
    cache[job_id] = result
    result._opened(job_id, owner)
    return job_id


class Job:
    """One submitted call, as the engines see it: its source of chunks and its result."""

    __slots__ = (
        "id",
        "kind",
        "name",
        "func",
        "result",
        "source",
        "func_frame",
        "outstanding",
        "drained",
        "queued",
        "avg",
        "cancelled",
        "limit",
        "progress",
    )

    def __init__(
        self, job_id: int, kind: Any, name: str, func: Any, result: PendingResult, source: ChunkSource
    ) -> None:
        self.id = job_id
        self.kind = kind
        self.name = name
        self.func = func
        self.result = result
        self.source = source
        self.func_frame: Optional[list] = None
        self.outstanding = 0  # tasks cut from the source and not yet finished
        self.drained = False  # the source has been seen exhausted
        self.queued = False
        self.avg: Optional[float] = None
        self.cancelled: Optional[BaseException] = None  # what the result ends with once the sent tasks finish
        self.limit: Optional[float] = None  # task_timeout: seconds per item
        self.progress: Optional[Progress] = None  # advanced by each finished chunk's span (``progress=``)

    def mark_drained(self) -> bool:
        """The source is exhausted: tell the result how long the input was; true if the job is done (retire it)."""
        self.drained = True
        done = self.outstanding == 0
        if self.progress is not None:
            self.progress.set_total(self.source.count)  # (closes our bar if done, before the result can end)
            if done:
                # A bar whose given ``total`` overstates the input is closed
                # here too: before the result can end, not when the job retires.
                self.progress.close()
        self.result._set_length(self.source.count)
        return done

    def end_progress(self) -> None:
        """The job has ended (done, cancelled, the pool broken or stopped): close the bar made for it, if any."""
        if self.progress is not None:
            self.progress.close()

    def task_finished(self) -> bool:
        """One of its tasks has finished; true if it was the last of a drained job (retire it)."""
        self.outstanding -= 1
        return self.drained and self.outstanding == 0

    def describe(self, task_id: int, index: int, start: int, span: int) -> str:
        func = getattr(self.func, "__qualname__", None) or type(self.func).__name__
        if self.kind == _wire.CALL:
            return f"task {task_id} ({self.name} job {self.id} calling {func})"
        items = f"item {start}" if span == 1 else f"items {start}-{start + span - 1}"
        return f"task {task_id} ({self.name} job {self.id}, chunk {index}: {items}, calling {func})"


class Task:
    """One chunk of a job sent to one worker.

    The frame is kept until the result arrives: if the worker dies before
    starting the task, the same frame goes to another worker.
    """

    __slots__ = ("id", "job", "index", "start", "span", "frame", "items")

    def __init__(self, task_id: int, job: Job, index: int, start: int, span: int) -> None:
        self.id = task_id
        self.job = job
        self.index = index
        self.start = start
        self.span = span
        self.frame: Any = None
        self.items: Any = None  # kept only under a time limit: the items after one that overran run elsewhere

    def describe(self) -> str:
        return self.job.describe(self.id, self.index, self.start, self.span)


def finish_submission(job: Job, error: Optional[BaseException]) -> bool:
    """Complete a submission after the pool decided whether to accept ``job``.

    A refused job (``error`` set) is stopped and its result fails at once;
    a broken pool's error is raised in the submitting caller as well.
    An accepted job starts feeding its input.  Returns whether it was accepted.
    """
    if error is not None:
        job.source.stop()
        job.end_progress()
        job.result._abort(error, notify=False)
        if isinstance(error, BrokenPoolError):
            raise error
        return False
    job.source.start()
    return True


def function_serialization_error(name: str, job_id: int, func: Any, exc: BaseException) -> BaseException:
    return serialization_error(f"cannot send the function of {name} job {job_id} ({describe(func)}): {exc}", exc)


def call_serialization_error(
    name: str,
    job_id: int,
    func: Any,
    args: Any,
    kwds: Any,
    exc: BaseException,
    serializer: Optional[reduction.Serializer],
) -> BaseException:
    """Name the part of an ``apply`` (or ``submit``: ``name``) call that cannot be serialized."""
    parts: list[tuple[str, Any]] = [("the function", func)]
    try:
        parts += [(f"argument {i}", arg) for i, arg in enumerate(args)]
        parts += [(f"keyword argument {key!r}", value) for key, value in dict(kwds).items()]
    except Exception:
        pass  # args/kwds of the wrong type: the original error says so
    culprit = find_unserializable([obj for _what, obj in parts], serializer)
    if culprit is None:
        return serialization_error(f"cannot send {name} job {job_id}: {exc}", exc)
    position, obj, part_exc = culprit
    what = parts[position][0]
    return serialization_error(f"cannot send {what} of {name} job {job_id} ({describe(obj)}): {part_exc}", part_exc)


def chunk_serialization_error(
    task: Task, items: Any, exc: BaseException, serializer: Optional[reduction.Serializer]
) -> BaseException:
    """Name what could not be serialized: the function, or the item of the chunk."""
    what = task.describe()
    if task.job.kind != _wire.CALL and isinstance(items, (list, tuple)):
        culprit = find_unserializable(items, serializer)
        if culprit is not None:
            offset, item, exc = culprit
            what = f"item {task.start + offset} ({describe(item)}) of {what}"
    return serialization_error(f"cannot send {what}: {exc}", exc)
