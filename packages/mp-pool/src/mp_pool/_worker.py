"""The worker side of a process pool: what runs in each child.

A worker owns two pipes: it reads tasks from one and writes results to the
other, one result per task, in the order the tasks arrived (the parent
relies on that order to know which task a dead worker was running).  It
exits when its task pipe reaches end of file (the pool closed it, or the
pool's owner is gone), when told to stop (the pool is closing: end of
file alone is not enough, since a process forked by the program with
``os.fork()`` may hold a copy of the pipe's write end), after ``maxtasks``
tasks, or, from a watcher
thread, as soon as the owning process dies, even in the middle of a task:
its results would have nowhere to go.
"""

from __future__ import annotations

import os
import time
from itertools import starmap
from typing import Any, Callable, Optional, Sequence

from mp_core import connection, reduction
from mp_core import process as _process
from mp_core._forksafe_threads import ForkSafeThread
from mp_core._framing import BadMessageLength, FrameReader
from mp_core._io import write_buffers

from . import _wire
from ._errors import MaybeEncodingError, format_remote

__all__ = ["run_worker"]

_loads = reduction.loads

# Exit status of a worker whose parent vanished; nobody will read it, it
# only shows up in tools such as ps.
_PARENT_GONE = 70


class _UnloadableFunction:
    """Stands in for a job's function that could not be rebuilt in this worker."""

    __slots__ = ("error", "tb")

    def __init__(self, error: BaseException, tb: str) -> None:
        self.error = error
        self.tb = tb


def _watch_parent() -> None:
    """Exit this worker as soon as the process that owns the pool is gone."""
    parent = _process.parent_process()
    sentinel = getattr(parent, "_sentinel", None)
    if sentinel is None:
        return

    # The watcher steps aside while a task forks (see mp_core._forksafe_threads).
    wake_r, wake_w = os.pipe()

    def watch() -> bool:
        try:
            ready = connection.wait([sentinel, wake_r])
        except (OSError, ValueError):
            return False
        if sentinel in ready:
            os._exit(_PARENT_GONE)
        os.read(wake_r, 64)
        return True

    def wake() -> None:
        os.write(wake_w, b"\0")

    ForkSafeThread(watch, name="pool-parent-watch", wake=wake).start()


def run_worker(
    tasks: connection.Connection,
    results: connection.Connection,
    initializer: Optional[Callable[..., Any]],
    initargs: Sequence[Any],
    maxtasks: Optional[int],
    serializer: Optional[reduction.Serializer],
) -> None:
    """The body of a pool worker process (the ``target`` of its ``Process``)."""
    _watch_parent()
    results_fd = results.fileno()

    def send(parts: list) -> None:
        write_buffers(results_fd, parts)

    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:  # noqa: BLE001 - even SystemExit is a failed initializer
            _send_failure(send, _wire.NO_TASK, _wire.INIT_FAILED, exc, serializer)
            return
    try:
        send(_wire.result_frame(_wire.NO_TASK, _wire.READY, 0.0, has_body=False))
        _serve(tasks, send, maxtasks, serializer)
    except OSError:
        # The result pipe is broken: the parent is gone or has terminated us.
        return


def _serve(
    tasks: connection.Connection,
    send: Callable[[Any], None],
    maxtasks: Optional[int],
    serializer: Optional[reduction.Serializer],
) -> None:
    recv = FrameReader(tasks.fileno()).next_frame
    unpack = _wire.TASK_HEAD.unpack_from
    body_at = _wire.TASK_HEAD.size
    clock = time.perf_counter
    funcs: dict[int, Any] = {}
    done = 0
    while maxtasks is None or done < maxtasks:
        try:
            data = recv()
        except BadMessageLength as exc:
            raise _corrupt_tasks(str(exc)) from None
        except (EOFError, OSError):
            return  # the pool closed our pipe, or its owner is gone
        if len(data) < body_at:
            raise _corrupt_tasks(f"a task frame of {len(data)} bytes, shorter than its {body_at}-byte head")
        kind, task_id, job_id = unpack(data)
        if kind == _wire.FUNC:
            try:
                funcs[job_id] = _loads(memoryview(data)[body_at:])
            except Exception as exc:
                funcs[job_id] = _UnloadableFunction(exc, format_remote(exc))
            continue
        if kind == _wire.FORGET:
            funcs.pop(job_id, None)
            continue
        if kind == _wire.STOP:
            return
        if kind not in _RUNNABLE:
            raise _corrupt_tasks(f"unknown task kind {kind} (task id {task_id}, job id {job_id})")
        started = clock()
        try:
            body = _loads(memoryview(data)[body_at:])
            del data
            if kind == _wire.CALL:
                func, args, kwds = body
                value = func(*args, **kwds)
            else:
                func = funcs[job_id]
                if type(func) is _UnloadableFunction:
                    _send_failure(send, task_id, _wire.ERROR, func.error, serializer, func.tb)
                    done += 1
                    continue
                value = list(map(func, body) if kind == _wire.MAP else starmap(func, body))
        except Exception as exc:
            body = value = None
            _send_failure(send, task_id, _wire.ERROR, exc, serializer)
        else:
            body = None
            _send_value(send, task_id, clock() - started, value, serializer)
            value = None
        done += 1


_RUNNABLE = frozenset({_wire.CALL, _wire.MAP, _wire.STARMAP})


def _corrupt_tasks(problem: str) -> SystemExit:
    """The worker's way out when its task stream cannot be trusted: exit code 1, saying why."""
    return SystemExit(f"pool worker {os.getpid()}: corrupt task stream from the pool: {problem}")


def _send_value(
    send: Callable[[Any], None], task_id: int, elapsed: float, value: Any, serializer: Optional[reduction.Serializer]
) -> None:
    try:
        payload = _wire.result_frame(task_id, _wire.OK, elapsed, value, serializer=serializer)
    except Exception as exc:
        culprit = value
        if type(value) is list:  # a chunk's results: name the one that cannot travel
            found = reduction.find_unserializable(value, serializer)
            if found is not None:
                culprit = found[1]
        payload = _wire.result_frame(task_id, _wire.ERROR, elapsed, (MaybeEncodingError(exc, culprit), None))
    send(payload)


def _send_failure(
    send: Callable[[Any], None],
    task_id: int,
    status: int,
    exc: BaseException,
    serializer: Optional[reduction.Serializer],
    tb: Optional[str] = None,
) -> None:
    if tb is None:
        tb = format_remote(exc)
    try:
        payload = _wire.result_frame(task_id, status, 0.0, (exc, tb), serializer=serializer)
    except Exception as encoding_error:
        payload = _wire.result_frame(task_id, status, 0.0, (MaybeEncodingError(encoding_error, exc), tb))
    send(payload)
