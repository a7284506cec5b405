"""The errors a pool reports, and how a worker's exception crosses back to the caller.

A task's exception travels as ``(exception, formatted traceback)``; the
parent re-attaches the text as the exception's ``__cause__``, a
``RemoteTraceback``, so the caller sees both its own traceback and the
worker's, as with the standard library.
"""

from __future__ import annotations

from mp_core.context import ProcessError
from mp_core.context import TimeoutError as _TimeoutError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Optional

__all__ = [
    "RemoteTraceback",
    "MaybeEncodingError",
    "WorkerLostError",
    "BrokenPoolError",
    "PoolTerminatedError",
    "TaskTimeoutError",
    "fresh_copy",
    "describe_exit",
    "format_remote",
    "attach_remote_traceback",
    "ExceptionWithTraceback",
    "rebuild_exc",
]


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker.

    Set as ``__cause__`` of the exception the caller receives, so that
    tracebacks print the worker's frames under "The above exception was the
    direct cause of the following exception".
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class MaybeEncodingError(Exception):
    """A task's result (or exception) could not be serialized to be sent back.

    ``exc`` and ``value`` are the ``repr`` of the serialization error and of
    the offending result, so the error itself always travels.
    """

    def __init__(self, exc: Any, value: Any) -> None:
        self.exc = repr(exc)
        self.value = repr(value)
        super().__init__(self.exc, self.value)
        #: The serialization error itself, where it could travel too (``multiprocess.futures`` raises it,
        #: as ``concurrent.futures`` does); ``None`` otherwise.
        self.error: Optional[BaseException] = exc if isinstance(exc, BaseException) else None

    def __str__(self) -> str:
        return f"Error sending result: '{self.value}'. Reason: '{self.exc}'"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self}>"


class WorkerLostError(ProcessError, RuntimeError):
    """The worker running a task died (signal, ``os._exit``, crash) before reporting.

    ``pid`` and ``exitcode`` describe the worker (``exitcode`` is negative
    for a signal, as ``Process.exitcode``); ``task`` names the task it held.
    The pool replaces the worker and goes on with the other tasks.

    Also a ``RuntimeError``, as ``concurrent.futures``' ``BrokenProcessPool``
    is: code that guards a pool with ``except RuntimeError`` (frameworks
    that wrap worker crashes in their own ``RuntimeError``) still catches it.
    """

    def __init__(
        self, message: str, pid: Optional[int] = None, exitcode: Optional[int] = None, task: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode
        self.task = task

    def __reduce__(self) -> tuple:
        return type(self), (self.args[0], self.pid, self.exitcode, self.task)


class TaskTimeoutError(_TimeoutError):
    """A task ran past its ``task_timeout``: its worker was stopped and replaced.

    A ``multiprocess.TimeoutError``.  ``func`` names the function, ``index``
    is the item's position in the call's input (0 for ``apply``), and
    ``timeout`` the limit in seconds.  Raised by ``get()`` (for ``map``) or
    at the item's position (``imap``); the call's other items are not
    affected.
    """

    def __init__(self, message: str, func: Optional[str] = None, index: int = 0, timeout: float = 0.0) -> None:
        super().__init__(message)
        self.func = func
        self.index = index
        self.timeout = timeout

    def __reduce__(self) -> tuple:
        return type(self), (self.args[0], self.func, self.index, self.timeout)


class BrokenPoolError(ProcessError):
    """The pool cannot run tasks: its initializer failed, or its workers cannot start.

    Raised by every result that was pending when the pool broke and by every
    later submission; ``__cause__`` carries the original error when there
    is one.  ``close()``, ``terminate()`` and ``join()`` still work.
    """


def fresh_copy(error: BrokenPoolError) -> BrokenPoolError:
    """A new exception equal to the pool's ``error`` (its cause included), so that each raise gets its own traceback."""
    copy = BrokenPoolError(*error.args)
    copy.__cause__ = error.__cause__
    return copy


class PoolTerminatedError(ProcessError):
    """``terminate()`` stopped the pool before this result was ready."""


def describe_exit(exitcode: Optional[int]) -> str:
    """'died with SIGKILL', 'exited with code 3', ... for a process exit code."""
    if exitcode is None:
        return "died"
    if exitcode < 0:
        import signal  # (here: a spawned worker imports this module, and signal's import costs it ms)

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"died with {name}"
    return f"exited with code {exitcode}"


def format_remote(exc: BaseException) -> str:
    """The traceback text of ``exc`` as the worker saw it."""
    return _format_exception(exc, exc.__traceback__)


def _format_exception(exc: BaseException, tb: Any) -> str:
    # traceback (with linecache and tokenize) is imported at the first
    # failure, not by every program's first Pool.
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, tb))


def attach_remote_traceback(exc: BaseException, tb: Optional[str]) -> BaseException:
    """Make ``tb`` (a worker's traceback text) the ``__cause__`` of ``exc``."""
    if tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc


def rebuild_exc(exc: BaseException, tb: Optional[str]) -> BaseException:
    """The standard library's name for ``attach_remote_traceback`` (what ``ExceptionWithTraceback`` unpickles with)."""
    return attach_remote_traceback(exc, tb)


class ExceptionWithTraceback:
    """An exception packed with its traceback as text, for sending to another process.

    Kept for code written against the standard library's ``pool`` module:
    unpickled, it is the exception itself, with the traceback attached as
    its ``RemoteTraceback`` cause.
    """

    def __init__(self, exc: BaseException, tb: Any) -> None:
        self.exc = exc
        self.tb = _format_exception(exc, tb)

    def __reduce__(self) -> tuple:
        return rebuild_exc, (self.exc, self.tb)
