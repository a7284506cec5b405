"""A corrupt byte stream between the pool and a worker: a clear error, never a hang or a flood of memory.

Something in a worker may write to its result pipe (a task that writes to a
descriptor it should not); the parent must then break the pool with a
``BrokenPoolError`` that names the worker and what was wrong, without
committing the memory a bogus size header announces.  A worker whose task
pipe carries garbage exits saying so, and the pool replaces it.
"""

from __future__ import annotations

import os
import struct
import sys
import time

import pytest

from mp_pool import BrokenPoolError, MaybeEncodingError, WorkerLostError, _wire

from .helpers import square

pytestmark = pytest.mark.timeout(120)


def rss_mib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


def write_to_result_pipe(data: bytes, status_for_own_task: int = -1, elapsed: float = 0.0) -> str:
    """A task that writes ``data`` to its worker's result pipe, then returns normally.

    With ``status_for_own_task`` (or ``elapsed``), ``data`` is a result
    frame for the task itself, with that status (and run time).
    """
    frame = sys._getframe()
    while frame.f_code.co_name != "_serve":
        frame = frame.f_back
    if status_for_own_task != -1:
        head = _wire.RESULT_HEAD.pack(frame.f_locals["task_id"], status_for_own_task, elapsed)
        data = struct.pack("!i", len(head)) + head
    while frame.f_code.co_name != "run_worker":
        frame = frame.f_back
    os.write(frame.f_locals["results_fd"], data)
    return "returned"


def result_head(task_id: int, status: int) -> bytes:
    return _wire.RESULT_HEAD.pack(task_id, status, 0.0)


GARBAGE = {
    # The real result frame follows the bogus header, and becomes its payload.
    "a bare 512 MiB header": (struct.pack("!i", 512 << 20), "a result for task id"),
    "a bare 4 GiB long header": (struct.pack("!i", -1) + struct.pack("!Q", 4 << 30), "a result for task id"),
    "a negative size": (struct.pack("!i", -5), "malformed message header (size -5"),
    "a long size past 2**63": (struct.pack("!i", -1) + struct.pack("!Q", 2**64 - 2), "bytes was announced"),
    "a frame shorter than a result head": (struct.pack("!i", 3) + b"abc", "shorter than its 17-byte head"),
    "a result for another task": (struct.pack("!i", 17) + result_head(987654, _wire.OK), "task id 987654"),
    "an unknown status": (9, "unknown status 9 for task"),
    "a retiring flag from a pool without a memory limit": (
        _wire.OK | _wire.RETIRING,
        "a retiring flag (status 128) for task id",
    ),
    "a run time that is not a number": ("nan", "an impossible run time nan for task"),
    "a negative run time": ("-1", "an impossible run time -1.0 for task"),
    "text": (b"hello, world\n", "a result for task id"),
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_garbage_on_a_result_pipe_breaks_the_pool_naming_the_worker(make_pool, garbage):
    data, problem = GARBAGE[garbage]
    pool = make_pool(1)
    worker_pid = pool.apply(os.getpid)
    before = rss_mib()
    if isinstance(data, int):
        args = (b"", data)
    elif isinstance(data, str):  # a run time, in an otherwise valid frame of the task
        args = (b"", _wire.OK, float(data))
    else:
        args = (data,)
    result = pool.apply_async(write_to_result_pipe, args)
    with pytest.raises(BrokenPoolError) as caught:
        result.get(timeout=60)
    message = str(caught.value)
    assert f"worker {worker_pid} sent a corrupt result stream: " in message
    assert problem in message
    assert rss_mib() - before < 128, "memory committed for a size header"
    with pytest.raises(BrokenPoolError):
        pool.apply(square, (3,))
    pool.terminate()
    pool.join()


def test_an_error_frame_whose_body_is_no_exception_is_an_encoding_error(make_pool):
    # Before: the manager thread died on "'int' object has no attribute '__cause__'".
    pool = make_pool(1)
    result = pool.apply_async(write_error_frame_for_own_task, ((1, 2),))
    with pytest.raises(MaybeEncodingError, match=r"expected \(exception, traceback text\), got \(int, int\)"):
        result.get(timeout=60)
    assert pool._engine.thread.is_alive() and pool._engine.broken is None


def write_error_frame_for_own_task(body) -> str:
    """Answer for ourselves with an ERROR frame carrying ``body``; the real answer then comes for no task."""
    frame = sys._getframe()
    while frame.f_code.co_name != "_serve":
        frame = frame.f_back
    task_id = frame.f_locals["task_id"]
    while frame.f_code.co_name != "run_worker":
        frame = frame.f_back
    parts = _wire.result_frame(task_id, _wire.ERROR, 0.0, body)
    os.write(frame.f_locals["results_fd"], b"".join(bytes(p) for p in parts))
    os._exit(0)  # no second answer: the worker goes, and is replaced


def test_a_valid_frame_written_by_a_task_is_caught_too(make_pool):
    # Well formed, for the right task: the real result then arrives for no task.
    pool = make_pool(1)
    first = pool.apply_async(square, (2,))
    assert first.get(timeout=60) == 4
    frame = result_head(-1, _wire.READY)
    result = pool.apply_async(write_to_result_pipe, (struct.pack("!i", len(frame)) + frame,))
    with pytest.raises(BrokenPoolError, match="corrupt result stream: a result for task id -1 where task 2 was due"):
        result.get(timeout=60)


TASK_GARBAGE = {
    "a negative size": (struct.pack("!i", -7), "malformed message header (size -7"),
    "a frame shorter than a task head": (struct.pack("!i", 2) + b"ab", "a task frame of 2 bytes, shorter than"),
    "an unknown task kind": (struct.pack("!i", 17) + _wire.TASK_HEAD.pack(99, 1, 2), "unknown task kind 99"),
}


@pytest.mark.parametrize("garbage", list(TASK_GARBAGE))
def test_a_worker_whose_task_pipe_carries_garbage_exits_saying_so_and_is_replaced(make_pool, capfd, garbage):
    data, problem = TASK_GARBAGE[garbage]
    pool = make_pool(1)
    worker = pool._engine._workers[0]
    pid = pool.apply(os.getpid)
    process = worker.process
    os.write(worker.channel.task_fd, data)  # the pool is idle: nothing else is being written
    process.join(60)
    assert process.exitcode == 1
    assert f"pool worker {pid}: corrupt task stream from the pool: {problem}" in capfd.readouterr().err
    assert pool.apply(square, (7,)) == 49  # a replacement serves
    assert pool.apply(os.getpid) != pid


def announce_then_sleep(path: str, seconds: float) -> str:
    with open(path, "x"):
        pass
    time.sleep(seconds)  # the garbage arrives meanwhile
    return "slept"


def test_garbage_reaching_a_busy_worker_fails_no_task_before_it(make_pool, tmp_path):
    pool = make_pool(1)
    worker = pool._engine._workers[0]
    started = tmp_path / "started"
    busy = pool.apply_async(announce_then_sleep, (str(started), 0.5))
    queued = pool.apply_async(square, (5,))
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists()
    os.write(worker.channel.task_fd, struct.pack("!i", -7))
    outcomes = []
    for result in (busy, queued):
        try:
            outcomes.append(result.get(timeout=60))
        except WorkerLostError as exc:
            outcomes.append(type(exc).__name__)
    # The worker may have been sent the queued task before the garbage.
    assert outcomes in (["slept", "WorkerLostError"], ["slept", 25])
    assert pool.apply(square, (6,)) == 36
