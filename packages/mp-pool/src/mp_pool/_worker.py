"""The worker side of a process pool: what runs in each child.

A worker owns two pipes: it reads tasks from one and writes results to the
other, one result per task, in the order the tasks arrived (the parent
relies on that order to know which task a dead worker was running).  It
exits when its task pipe reaches end of file (the pool closed it, or the
pool's owner is gone), when told to stop (the pool is closing, or the
worker said it is over its memory limit: end of
file alone is not enough, since a process forked by the program with
``os.fork()`` may hold a copy of the pipe's write end), after ``maxtasks``
tasks, or, from a watcher
thread, as soon as the owning process dies, even in the middle of a task:
its results would have nowhere to go.
"""

from __future__ import annotations

import os
import sys
import time
from itertools import starmap

from mp_core import process as _process
from mp_core import reduction
from mp_core._forksafe_threads import ForkSafeThread
from mp_core._framing import BadMessageLength, FrameReader
from mp_core._io import write_buffers
from mp_core._wait import wait

from . import _wire
from ._errors import MaybeEncodingError, format_remote
from ._item_watch import ItemTimedOut, ItemWatch
from ._memory import MemoryLimit

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time; annotations are strings anyway
    from typing import Any, Callable, Optional, Sequence

    from mp_core._connection import Connection

# (Not mp_core.connection: its listener needs the socket module, whose
# import (enum) would cost every spawned worker's start milliseconds.)

__all__ = ["run_worker"]

_loads = reduction.loads

# Exit status of a worker whose parent vanished; nobody will read it, it
# only shows up in tools such as ps.
_PARENT_GONE = 70
# Exit status of a worker that stopped an item past its time limit.
_TIMED_OUT = 71


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
            ready = wait([sentinel, wake_r])
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
    tasks: Connection,
    results: Connection,
    initializer: Optional[Callable[..., Any]],
    initargs: Sequence[Any],
    maxtasks: Optional[int],
    serializer: Optional[reduction.Serializer],
    memory_limit: Optional[MemoryLimit] = None,
) -> None:
    """The body of a pool worker process (the ``target`` of its ``Process``).

    With ``memory_limit``, the worker checks its resident memory after each
    task (``_memory.MemoryLimit.over_limit_check``); the first time it is over the limit, that task's result carries
    ``_wire.RETIRING`` and the worker goes on answering what it was sent
    until the parent's STOP (see ``_engine``).  Already over the limit
    before any task, it says so with its READY.
    """
    _watch_parent()
    results_fd = results.fileno()

    def send(parts: list) -> None:
        write_buffers(results_fd, parts)

    resident: Optional[Callable[[], int]] = None
    over_limit: Optional[Callable[[], bool]] = None
    limit = 0
    try:
        if memory_limit is not None:
            resident, limit = memory_limit.open_reader(), memory_limit.limit
            over_limit = memory_limit.over_limit_check(resident)
        if initializer is not None:
            initializer(*initargs)
    except BaseException as exc:  # noqa: BLE001 - even SystemExit is a failed initializer
        _send_failure(send, _wire.NO_TASK, _wire.INIT_FAILED, exc, serializer)
        return
    try:
        size = 0 if resident is None else resident()
        if size > limit:
            send(_wire.result_frame(_wire.NO_TASK, _wire.READY | _wire.RETIRING, 0.0, size))
        else:
            send(_wire.result_frame(_wire.NO_TASK, _wire.READY, 0.0, has_body=False))
        _serve(tasks, send, maxtasks, serializer, over_limit)
    except OSError:
        # The result pipe is broken: the parent is gone or has terminated us.
        return


def _serve(
    tasks: Connection,
    send: Callable[[Any], None],
    maxtasks: Optional[int],
    serializer: Optional[reduction.Serializer],
    over_limit: Optional[Callable[[], bool]] = None,
) -> None:
    recv = FrameReader(tasks.fileno()).next_frame
    unpack = _wire.TASK_HEAD.unpack_from
    body_at = _wire.TASK_HEAD.size
    clock = time.perf_counter
    funcs: dict[int, Any] = {}
    limits: dict[int, float] = {}  # task_timeout by job, for the jobs that have one
    watch: Optional[ItemWatch] = None
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
            if limits.pop(job_id, None) is not None and not limits and watch is not None:
                watch.disarm()
            continue
        if kind == _wire.LIMIT:
            if len(data) != body_at + _wire.LIMIT_BODY.size:
                raise _corrupt_tasks(f"a limit frame of {len(data)} bytes (job id {job_id})")
            (limits[job_id],) = _wire.LIMIT_BODY.unpack_from(data, body_at)
            continue
        if kind == _wire.STOP:
            return
        if kind not in _RUNNABLE:
            raise _corrupt_tasks(f"unknown task kind {kind} (task id {task_id}, job id {job_id})")
        if limits:
            limit = limits.pop(job_id, None) if kind == _wire.CALL else limits.get(job_id)
            if limit is not None:
                if watch is None:
                    watch = ItemWatch()
                if not _run_timed(send, kind, task_id, job_id, data, funcs, limit, watch, serializer, over_limit):
                    _exit_timed_out()
                if not limits:
                    watch.disarm()  # (a call's limit is used once)
                done += 1
                continue
        started = clock()
        try:
            body = _loads(memoryview(data)[body_at:])
            del data
            if kind == _wire.CALL:
                func, args, kwds = body
                body = None
                try:
                    value = func(*args, **kwds)
                finally:
                    # The call's arguments go now, not when the next task
                    # replaces them: their finalizers run when the caller expects.
                    func = args = kwds = None
            else:
                func = funcs[job_id]
                if type(func) is _UnloadableFunction:
                    _send_failure(send, task_id, _wire.ERROR, func.error, serializer, func.tb)
                    done += 1
                    continue
                value = list(map(func, body) if kind == _wire.MAP else starmap(func, body))
        except BaseException as exc:  # noqa: BLE001 - sys.exit() in a task is that task's error, as in concurrent.futures
            body = value = None
            flags = _wire.RETIRING if over_limit is not None and over_limit() else 0
            _send_failure(send, task_id, _wire.ERROR | flags, exc, serializer)
            del exc
        else:
            body = None
            flags = _wire.RETIRING if over_limit is not None and over_limit() else 0  # (the value counts)
            _send_value(send, task_id, clock() - started, value, serializer, flags)
            value = None
        done += 1


_RUNNABLE = frozenset({_wire.CALL, _wire.MAP, _wire.STARMAP})


def _run_timed(
    send: Callable[[Any], None],
    kind: int,
    task_id: int,
    job_id: int,
    data: Any,
    funcs: dict[int, Any],
    limit: float,
    watch: ItemWatch,
    serializer: Optional[reduction.Serializer],
    over_limit: Optional[Callable[[], bool]] = None,
) -> bool:
    """Run a task whose items each have ``limit`` seconds; false if one ran past it (reported: exit now).

    The items run exactly as untimed ones do; ``watch`` stops the one
    that overruns (``mp_pool._item_watch``).  What finished before it goes
    back in a ``TIMED_OUT`` frame, so that the parent delivers it and runs
    the items after it elsewhere.
    """
    started = time.perf_counter()
    values: list[Any] = []
    try:
        body = _loads(memoryview(data)[_wire.TASK_HEAD.size :])
        if kind == _wire.CALL:
            func, args, kwds = body
            watch.watch(values, 1, limit)
            values.append(func(*args, **kwds))
        else:
            func = funcs[job_id]
            if type(func) is _UnloadableFunction:
                _send_failure(send, task_id, _wire.ERROR, func.error, serializer, func.tb)
                return True
            watch.watch(values, len(body), limit)
            values.extend(map(func, body) if kind == _wire.MAP else starmap(func, body))
        watch.stop()
    except ItemTimedOut:
        watch.stop()
        elapsed = watch.running_for()
        try:
            payload = _wire.result_frame(task_id, _wire.TIMED_OUT, elapsed, values, serializer=serializer)
        except Exception:
            # The finished items' values cannot travel: they run again elsewhere.
            payload = _wire.result_frame(task_id, _wire.TIMED_OUT, elapsed, [], serializer=serializer)
            sys.stderr.write(f"pool worker {os.getpid()}: the values finished before a time-out cannot be sent\n")
        send(payload)
        return False
    except BaseException as exc:  # noqa: BLE001 - as in _serve
        watch.stop()
        flags = _wire.RETIRING if over_limit is not None and over_limit() else 0
        _send_failure(send, task_id, _wire.ERROR | flags, exc, serializer)
        return True
    value = values[0] if kind == _wire.CALL else values
    flags = _wire.RETIRING if over_limit is not None and over_limit() else 0
    _send_value(send, task_id, time.perf_counter() - started, value, serializer, flags)
    return True


def _exit_timed_out() -> None:
    """Leave at once after a time-out: the stopped item may have left any state half-done."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(_TIMED_OUT)


def _corrupt_tasks(problem: str) -> SystemExit:
    """The worker's way out when its task stream cannot be trusted: exit code 1, saying why."""
    return SystemExit(f"pool worker {os.getpid()}: corrupt task stream from the pool: {problem}")


def _send_value(
    send: Callable[[Any], None],
    task_id: int,
    elapsed: float,
    value: Any,
    serializer: Optional[reduction.Serializer],
    flags: int = 0,
) -> None:
    try:
        payload = _wire.result_frame(task_id, _wire.OK | flags, elapsed, value, serializer=serializer)
    except Exception as exc:
        culprit = value
        if type(value) is list:  # a chunk's results: name the one that cannot travel
            found = reduction.find_unserializable(value, serializer)
            if found is not None:
                culprit = found[1]
        error = MaybeEncodingError(exc, culprit)
        try:
            payload = _wire.result_frame(task_id, _wire.ERROR | flags, elapsed, (error, None))
        except Exception:
            error.error = None  # the serialization error itself cannot travel: its text does
            payload = _wire.result_frame(task_id, _wire.ERROR | flags, elapsed, (error, None))
    except BaseException as exc:  # noqa: BLE001 - sys.exit() in a __reduce__: the result's error, not the worker's end
        _send_failure(send, task_id, _wire.ERROR | flags, exc, serializer)
        return
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
