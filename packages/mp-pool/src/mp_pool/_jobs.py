"""Jobs and tasks as the engines see them, and how to name what could not be sent.

A *job* is one call of the pool's API (``apply_async``, ``map``, ``imap``...):
a result to fill and a source of chunks.  A *task* is one chunk of a job
sent to one worker.  Errors about serialization name the job, the task, the
chunk and the item or argument at fault, with the serializer's exception
type (``PicklingError``, ``TypeError``...) and its message.
"""

from __future__ import annotations

import pickle
from typing import Any, Optional

from mp_core import reduction

from . import _wire
from ._errors import BrokenPoolError

__all__ = [
    "Job",
    "Task",
    "describe_object",
    "function_serialization_error",
    "call_serialization_error",
    "chunk_serialization_error",
]


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
    )

    def __init__(self, kind: Any, name: str, func: Any, result: Any, source: Any) -> None:
        self.id: int = result._job
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

    __slots__ = ("id", "job", "index", "start", "span", "frame")

    def __init__(self, task_id: int, job: Job, index: int, start: int, span: int) -> None:
        self.id = task_id
        self.job = job
        self.index = index
        self.start = start
        self.span = span
        self.frame: Any = None

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
        job.result._abort(error, notify=False)
        if isinstance(error, BrokenPoolError):
            raise error
        return False
    start_feeding = getattr(job.source, "start", None)
    if start_feeding is not None:
        start_feeding()
    return True


def describe_object(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None)
    kind = type(obj).__qualname__
    return f"{kind} {name!r}" if isinstance(name, str) else f"{kind} object"


def as_sending_error(message: str, exc: BaseException) -> BaseException:
    """The error a submitter sees when something cannot be serialized, naming it.

    The serializer's own errors (``PicklingError``, ``TypeError``,
    ``AttributeError``) become a new exception of the same type carrying
    ``message``.  Anything else was raised by the object itself (its
    ``__reduce__``, say) and is what the standard library lets through: the
    original exception, with ``message`` attached as a note where Python
    supports notes (3.11+).
    """
    if type(exc) in (pickle.PicklingError, TypeError, AttributeError):
        error = type(exc)(message)
        error.__cause__ = exc
        return error
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(message)
    return exc


def function_serialization_error(name: str, job_id: int, func: Any, exc: BaseException) -> BaseException:
    return as_sending_error(f"cannot send the function of {name} job {job_id} ({describe_object(func)}): {exc}", exc)


def call_serialization_error(
    job_id: int, func: Any, args: Any, kwds: Any, exc: BaseException, serializer: Optional[reduction.Serializer]
) -> BaseException:
    """Name the part of an ``apply`` call that cannot be serialized."""
    chosen = serializer or reduction.get_serializer()
    parts: list[tuple[str, Any]] = [("the function", func)]
    try:
        parts += [(f"argument {i}", arg) for i, arg in enumerate(args)]
        parts += [(f"keyword argument {key!r}", value) for key, value in dict(kwds).items()]
    except Exception:
        pass  # args/kwds of the wrong type: the original error says so
    for what, obj in parts:
        try:
            chosen.dumps(obj)
        except Exception as part_exc:
            return as_sending_error(
                f"cannot send {what} of apply job {job_id} ({describe_object(obj)}): {part_exc}", part_exc
            )
    return as_sending_error(f"cannot send apply job {job_id}: {exc}", exc)


def chunk_serialization_error(
    task: Task, items: Any, exc: BaseException, serializer: Optional[reduction.Serializer]
) -> BaseException:
    """Name what could not be serialized: the function, or the item of the chunk."""
    what = task.describe()
    if task.job.kind != _wire.CALL and isinstance(items, (list, tuple)):
        chosen = serializer or reduction.get_serializer()
        for offset, item in enumerate(items):
            try:
                chosen.dumps(item)
            except Exception as item_exc:
                what = f"item {task.start + offset} ({describe_object(item)}) of {task.describe()}"
                exc = item_exc
                break
    return as_sending_error(f"cannot send {what}: {exc}", exc)
