"""Cancelling calls: pending ones dropped, running ones stopped on request, imap close(), Ctrl-C; every start method."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mp_pool import ThreadPool
from mp_pool.futures import ProcessPoolExecutor

from . import helpers

pytestmark = pytest.mark.timeout(120)


def lines_of(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.01)


def running_pids(pool) -> list[int]:
    """The pids of the workers running a task (the engine's view)."""
    return [worker.pid for worker in list(pool._engine._workers) if worker.running]


def test_a_pending_call_is_dropped_and_never_runs(make_pool, gate, tmp_path):
    pool = make_pool(1, **gate.pool_args)
    running = pool.apply_async(helpers.gated, ("first",))
    gate.wait_started()
    marker = tmp_path / "ran"
    errors: list[BaseException] = []
    pending = pool.apply_async(helpers.append_line, (str(marker), "cancelled"), error_callback=errors.append)
    assert pending.cancel() is True
    assert pending.cancelled() and pending.ready() and not pending.successful()
    with pytest.raises(cf.CancelledError, match="cancelled by the caller"):
        pending.get(0)
    assert len(errors) == 1 and isinstance(errors[0], cf.CancelledError)
    assert pending.cancel() is True  # again: still cancelled
    assert running.cancel() is False and not running.cancelled()  # running: not without cancel_running
    gate.open()
    assert running.get(60) == "first"
    assert running.cancel() is False  # finished
    assert pool.apply(helpers.append_line, (str(marker), "later")) == "later"
    pool.close()
    pool.join()
    assert lines_of(marker) == ["later"]
    assert not pool._cache


def test_cancel_running_stops_the_worker_and_spares_the_others(make_pool, gate):
    pool = make_pool(2, **gate.pool_args)
    victim = pool.apply_async(helpers.gated, ("victim",))
    gate.wait_started()
    (pid,) = running_pids(pool)
    other = pool.apply_async(helpers.gated, ("other",))
    gate.wait_started()
    assert victim.cancel(cancel_running=True) is True
    assert victim.cancelled()
    with pytest.raises(cf.CancelledError):
        victim.get(0)
    wait_until(lambda: helpers.process_gone(pid), "the cancelled call's worker exit")
    gate.open()
    assert other.get(60) == "other"
    assert pool.map(helpers.square, range(6)) == [0, 1, 4, 9, 16, 25]
    wait_until(lambda: pid not in {p.pid for p in pool._pool}, "the pool forgetting the stopped worker")


def test_the_pools_cancel_running_is_the_default(make_pool, gate):
    pool = make_pool(1, cancel_running=True, **gate.pool_args)
    result = pool.map_async(helpers.gated, range(3), chunksize=1)
    gate.wait_started()
    (pid,) = running_pids(pool)
    assert result.cancel() is True
    with pytest.raises(cf.CancelledError):
        result.get(0)
    wait_until(lambda: helpers.process_gone(pid), "the worker exit")
    gate.open(3)
    assert pool.apply(helpers.square, (4,)) == 16
    assert result.cancel(cancel_running=False) is True  # already cancelled


def test_a_map_not_started_is_cancelled_whole(make_pool, gate, tmp_path):
    pool = make_pool(1, **gate.pool_args)
    blocker = pool.apply_async(helpers.gated)
    gate.wait_started()
    marker = str(tmp_path / "ran")
    mapped = pool.map_async(lambda x: helpers.append_line(marker, str(x)), range(20), chunksize=2)
    assert mapped.cancel() is True
    gate.open()
    blocker.get(60)
    pool.close()
    pool.join()
    assert lines_of(tmp_path / "ran") == []


def test_imap_close_on_an_endless_input(make_pool):
    pool = make_pool(2)
    produced = [0]

    def endless():
        while True:
            produced[0] += 1
            yield produced[0]

    results = pool.imap(helpers.square, endless())
    assert [next(results) for _ in range(5)] == [1, 4, 9, 16, 25]
    results.close()
    assert results.cancelled()
    with pytest.raises(StopIteration):
        next(results)
    wait_until(
        lambda: not [t for t in __import__("threading").enumerate() if t.name.startswith("PoolFeeder")],
        "the feeder's exit",
    )
    read = produced[0]
    assert pool.map(helpers.square, [7]) == [49]
    assert produced[0] == read  # the input is not read any more
    assert not pool._cache


def test_imap_close_stops_running_items_with_cancel_running(make_pool, gate):
    pool = make_pool(2, cancel_running=True, **gate.pool_args)
    results = pool.imap_unordered(helpers.gated, range(10))
    gate.wait_started(2)
    pids = running_pids(pool)
    assert len(pids) == 2
    results.close()
    for pid in pids:
        wait_until(lambda pid=pid: helpers.process_gone(pid), "a cancelled worker's exit")
    assert list(results) == []
    gate.open(10)  # (nothing else is gated: the replacements run the next call)
    assert pool.map(helpers.square, range(3)) == [0, 1, 4]


def test_imap_close_without_cancel_running_lets_running_items_finish(make_pool, gate):
    pool = make_pool(1, **gate.pool_args)
    results = pool.imap(helpers.gated, range(10))
    gate.wait_started()
    (pid,) = running_pids(pool)
    results.close()
    assert list(results) == []
    gate.open()
    assert pool.apply(helpers.pid_of) == pid  # the same worker: it finished its item and goes on
    assert not gate.started.acquire(block=False)  # no other item started


def test_thread_pool_cancels_pending_calls_and_refuses_to_stop_running_ones():
    import threading

    release = threading.Event()
    started = threading.Event()

    def block():
        started.set()
        assert release.wait(60)
        return "done"

    with ThreadPool(1) as pool:
        running = pool.apply_async(block)
        assert started.wait(60)
        pending = pool.apply_async(abs, (-1,))
        assert pending.cancel() is True and pending.cancelled()
        assert running.cancel() is False
        with pytest.raises(NotImplementedError, match="a thread cannot be stopped"):
            running.cancel(cancel_running=True)
        release.set()
        assert running.get(60) == "done"
    with pytest.raises(TypeError):
        ThreadPool(1, cancel_running=True)  # type: ignore[call-arg]


def test_thread_pool_cancels_a_pending_call_of_several_arguments():
    # The thread engine's pending call is (func, args, kwds), not a frame:
    # dropping it frees nothing (it used to read the arguments as frame
    # parts and raise TypeError from cancel()).
    import threading

    release = threading.Event()
    with ThreadPool(1) as pool:
        running = pool.apply_async(release.wait, (60,))
        pending = pool.apply_async(max, (1, 2), {"key": abs})
        assert pending.cancel() is True and pending.cancelled()
        with pytest.raises(cf.CancelledError, match="cancelled by the caller"):
            pending.get(60)
        release.set()
        assert running.get(60) is True


def test_the_executor_can_stop_a_running_future(ctx, gate):
    with ProcessPoolExecutor(1, mp_context=ctx, cancel_running=True, **_initializer(gate)) as executor:
        future = executor.submit(helpers.gated)
        gate.wait_started()
        (pid,) = executor._processes
        done_callbacks: list[bool] = []
        future.add_done_callback(lambda f: done_callbacks.append(f.cancelled()))
        assert future.running()
        assert future.cancel() is True
        assert future.cancelled() and future.done()
        with pytest.raises(cf.CancelledError):
            future.result(0)
        done, _ = cf.wait([future], timeout=0)
        assert done == {future}
        assert done_callbacks == [True]
        wait_until(lambda: helpers.process_gone(pid), "the worker's exit")
        gate.open(3)
        assert executor.submit(helpers.square, 5).result(60) == 25
    with ProcessPoolExecutor(1, mp_context=ctx, **_initializer(gate)) as plain:
        future = plain.submit(helpers.gated, "kept")
        gate.wait_started()
        assert future.cancel() is False  # as the standard library's
        gate.open()
        assert future.result(60) == "kept"


def _initializer(gate):
    return {"initializer": gate.pool_args["initializer"], "initargs": gate.pool_args["initargs"]}


INTERRUPTED_MAP = """
import os, signal, sys, time
import multiprocess as mp

# A test run started in the background without job control (nohup ... &, some
# CI runners) inherits SIGINT ignored, and so would this program: a user at a
# terminal has Python's handler, which is what this test is about.
signal.signal(signal.SIGINT, signal.default_int_handler)

def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True

if __name__ == "__main__":
    method, folder = sys.argv[1], sys.argv[2]
    def task(x):
        open(os.path.join(folder, f"started-{os.getpid()}"), "w").close()
        time.sleep(60)
        return x
    with mp.get_context(method).Pool(2) as pool:
        try:
            pool.map(task, range(6), chunksize=1)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        pids = [int(name.split("-")[1]) for name in os.listdir(folder)]
        print(pool.map(abs, [-1, -2, -3]), flush=True)
        deadline = time.monotonic() + 60
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.01)
        print("stopped" if all(gone(pid) for pid in pids) else f"still running: {pids}", flush=True)
"""


def test_ctrl_c_in_map_stops_that_calls_tasks_and_the_pool_goes_on(start_method, tmp_path):
    program = tmp_path / "program.py"
    program.write_text(textwrap.dedent(INTERRUPTED_MAP))
    folder = tmp_path / "started"
    folder.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(program), start_method, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: len(os.listdir(folder)) == 2, "both workers starting a task")
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.split("\n")[:3] == ["interrupted", "[1, 2, 3]", "stopped"], (out, err)


def test_ctrl_c_right_after_the_submission_still_cancels_that_call(make_pool, gate):
    """The interrupt can come before the caller reaches its wait (a busy machine): the call is cancelled all the same.

    Seen under load: the workers had started the call's tasks, the caller
    was still returning from the submission, and the job ran on.
    """
    pool = make_pool(2, **gate.pool_args)
    engine = pool._engine
    submit_map = engine.submit_map

    def submit_then_interrupt(*args, **kwds):
        submit_map(*args, **kwds)
        gate.wait_started(2)  # both workers run a task of the call
        raise KeyboardInterrupt

    engine.submit_map = submit_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        pool.map(helpers.gated, range(6), chunksize=1)
    engine.submit_map = submit_map
    # Its running tasks were stopped (their workers replaced): the next call runs.
    assert pool.map_async(abs, [-1, -2, -3]).get(60) == [1, 2, 3]
