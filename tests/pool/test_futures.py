"""multiprocess.futures.ProcessPoolExecutor: the concurrent.futures API on the pool's engine, every start method."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool as StdlibBrokenProcessPool
from pathlib import Path
from typing import Any, Callable

import pytest

import mp_core
from mp_pool import futures
from mp_pool._errors import RemoteTraceback
from mp_pool.futures import BrokenProcessPool, ProcessPoolExecutor, WorkerLostError

from ..support import collect_garbage, run_python
from . import helpers

pytestmark = pytest.mark.timeout(120)


def lines_of(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.01)


# ---------------------------------------------------------------- the module


def test_module_is_multiprocess_futures_and_stands_in_for_concurrent_futures():
    import multiprocess.futures

    assert multiprocess.futures is futures
    assert futures.ThreadPoolExecutor is cf.ThreadPoolExecutor
    for name in ("Future", "CancelledError", "TimeoutError", "wait", "as_completed", "FIRST_COMPLETED", "Executor"):
        assert getattr(futures, name) is getattr(cf, name), name
    assert issubclass(ProcessPoolExecutor, cf.Executor)
    assert issubclass(BrokenProcessPool, StdlibBrokenProcessPool)
    assert issubclass(WorkerLostError, StdlibBrokenProcessPool)
    assert issubclass(WorkerLostError, mp_core.ProcessError)


def test_bad_arguments_raise_as_the_stdlib(ctx):
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        ProcessPoolExecutor(0)
    with pytest.raises(ValueError, match="max_tasks_per_child must be >= 1"):
        ProcessPoolExecutor(1, max_tasks_per_child=0)
    with pytest.raises(TypeError, match="max_tasks_per_child must be an integer"):
        ProcessPoolExecutor(1, max_tasks_per_child="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initializer must be a callable"):
        ProcessPoolExecutor(1, initializer=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"multiprocess context, not builtins\.str"):
        ProcessPoolExecutor(1, mp_context="spawn")  # type: ignore[arg-type]
    with ProcessPoolExecutor(1, mp_context=ctx) as executor:
        with pytest.raises(ValueError, match="chunksize must be >= 1"):
            executor.map(abs, [1], chunksize=0)
        with pytest.raises(ValueError, match="buffersize must be None or > 0"):
            executor.map(abs, [1], buffersize=0)
        with pytest.raises(TypeError, match="buffersize must be an integer or None"):
            executor.map(abs, [1], buffersize=1.5)  # type: ignore[arg-type]
        assert executor._processes == {}  # nothing submitted, nothing started


def test_a_standard_library_context_is_refused_with_the_way_out():
    import multiprocessing  # the test's own import: the library never imports it

    with pytest.raises(TypeError, match=r"multiprocessing\.context\.\w+Context.*multiprocess\.get_context"):
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- submit and futures


def test_submit_returns_stdlib_futures_with_values(make_executor):
    executor = make_executor(2)
    future = executor.submit(helpers.add, 2, b=3)
    assert type(future) is cf.Future
    assert future.result(60) == 5
    k = 10
    assert executor.submit(lambda x: x + k, 5).result(60) == 15  # a closure
    assert executor.submit(pow, 2, 10).result(60) == 1024
    # fn is positional-only: a keyword argument named fn goes to the call.
    assert executor.submit(lambda **kw: kw, fn=1).result(60) == {"fn": 1}
    futures_ = [executor.submit(helpers.square, i) for i in range(50)]
    assert [f.result(60) for f in futures_] == [i * i for i in range(50)]
    assert len(executor._processes) == 2
    assert all(isinstance(pid, int) for pid in executor._processes)


def test_wait_as_completed_and_done_callbacks_work_unchanged(make_executor):
    executor = make_executor(2)
    seen: list[Any] = []
    called = threading.Event()
    fs = [executor.submit(helpers.square, i) for i in range(10)]
    fs[0].add_done_callback(lambda f: (seen.append(f.result()), called.set()))
    done, not_done = cf.wait(fs, timeout=60)
    assert len(done) == 10 and not not_done
    assert sorted(f.result() for f in cf.as_completed(fs, timeout=60)) == sorted(i * i for i in range(10))
    assert called.wait(60) and seen == [0]
    bad = executor.submit(helpers.raise_value_error, "no")
    done, _ = cf.wait([bad, executor.submit(helpers.square, 1)], timeout=60, return_when=cf.FIRST_EXCEPTION)
    assert bad in done


def test_a_call_raising_arrives_with_its_type_and_the_remote_traceback(make_executor):
    executor = make_executor(1)
    future = executor.submit(helpers.raise_value_error, "boom")
    with pytest.raises(ValueError, match="boom") as info:
        future.result(60)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "raise_value_error" in info.value.__cause__.tb
    assert isinstance(future.exception(), ValueError)
    assert executor.submit(abs, -1).result(60) == 1


def test_an_argument_that_cannot_be_sent_fails_its_future_only(make_executor):
    executor = make_executor(1)
    generator = (x for x in range(3))  # neither pickle nor dill can carry it
    future = executor.submit(helpers.identity, generator)
    with pytest.raises(Exception, match=r"cannot send argument 0 of submit job \d+ \(.*generator"):
        future.result(60)
    assert executor.submit(abs, -2).result(60) == 2


def test_cancel_removes_a_pending_call_that_never_runs(make_executor, gate, tmp_path):
    executor = make_executor(1, initializer=gate.pool_args["initializer"], initargs=gate.pool_args["initargs"])
    running = executor.submit(helpers.gated, "first")
    gate.wait_started()
    marker = tmp_path / "ran"
    pending = executor.submit(helpers.append_line, str(marker), "cancelled-call")
    assert running.running() and not running.cancel()
    assert pending.cancel() and pending.cancelled()
    gate.open()
    assert running.result(60) == "first"
    assert executor.submit(helpers.append_line, str(marker), "later-call").result(60) == "later-call"
    executor.shutdown(wait=True)
    assert lines_of(marker) == ["later-call"]
    with pytest.raises(cf.CancelledError):
        pending.result(0)
    assert not executor._cache  # nothing is kept for the cancelled call


# ---------------------------------------------------------------- map


def test_map_over_several_iterables_in_order_with_any_chunksize(make_executor):
    executor = make_executor(2)
    assert list(executor.map(helpers.add, range(10), range(100, 110))) == [i + i + 100 for i in range(10)]
    assert list(executor.map(helpers.square, range(100), chunksize=7)) == [i * i for i in range(100)]
    assert list(executor.map(lambda a, b: a * b, [1, 2, 3], [4, 5])) == [4, 10]  # shortest input wins, as zip
    assert list(executor.map(helpers.square, [])) == []
    assert list(executor.map(helpers.square, (i for i in range(5)), timeout=60)) == [0, 1, 4, 9, 16]


def test_map_raises_a_calls_error_at_its_position_and_stops(make_executor):
    executor = make_executor(2)
    results = executor.map(helpers.fail_on, range(10), [4] * 10)
    assert [next(results) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(KeyError, match="bad item 4"):
        next(results)
    with pytest.raises(StopIteration):
        next(results)


def test_map_reads_a_list_input_at_once_and_raises_its_errors_there(make_executor):
    executor = make_executor(1)

    def broken_input():
        yield 1
        raise OSError("input failed")

    with pytest.raises(OSError, match="input failed"):
        executor.map(helpers.square, broken_input())


def test_map_timeout_raises_timeout_error_and_cancels_the_rest(make_executor, gate):
    executor = make_executor(1, initializer=gate.pool_args["initializer"], initargs=gate.pool_args["initargs"])
    results = executor.map(helpers.gated, range(4), timeout=0.5)
    gate.wait_started()
    with pytest.raises(cf.TimeoutError):
        next(results)
    gate.open(4)  # (enough for every call, should one run by mistake)
    executor.shutdown(wait=True)
    # Only the call that was running ran: the other three were cancelled.
    assert not gate.started.acquire(block=False)


def test_map_with_buffersize_reads_an_endless_input_lazily(make_executor):
    executor = make_executor(2)
    produced = [0]

    def endless():
        i = 0
        while True:
            produced[0] += 1
            yield i
            i += 1

    buffersize, chunksize = 3, 2
    results = executor.map(helpers.square, endless(), chunksize=chunksize, buffersize=buffersize)
    for taken in range(1, 41):
        assert next(results) == (taken - 1) ** 2
        # A chunk's credit comes back once all of its results were taken.
        assert produced[0] <= (taken // chunksize + buffersize) * chunksize, (taken, produced[0])
    results.close()
    after_close = produced[0]
    wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("PoolFeeder")], "feeder exit")
    assert produced[0] == after_close
    assert list(executor.map(helpers.square, range(5), buffersize=1)) == [0, 1, 4, 9, 16]


def test_shutdown_ends_a_lazy_map_with_runtime_error_where_input_is_left(make_executor):
    executor = make_executor(1)
    results = executor.map(helpers.square, iter(range(100)), buffersize=2)
    assert next(results) == 0
    executor.shutdown(wait=True)
    got = []
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        for value in results:
            got.append(value)
    assert got == [1, 4][: len(got)] and len(got) <= 2
    # An input that was read to its end is not an error.
    executor2 = ProcessPoolExecutor(1, mp_context=executor._mp_context)
    with executor2:
        done = executor2.map(helpers.square, iter(range(2)), buffersize=4)
        assert next(done) == 0
    assert list(done) == [1]


def test_a_shutdown_right_after_a_lazy_map_runs_what_its_buffersize_covered(make_executor):
    # The standard library submits the first buffersize calls in map()
    # itself: a shutdown after it runs them, however late our feeder reads them.
    executor = make_executor(1)
    reading, go_on = threading.Event(), threading.Event()

    def late_input():
        reading.set()
        assert go_on.wait(30)
        yield from range(3)

    results = executor.map(helpers.square, late_input(), buffersize=4)
    assert reading.wait(30)  # the feeder is held inside the input, before its first item
    executor.shutdown(wait=False)
    go_on.set()
    assert list(results) == [0, 1, 4]


# ---------------------------------------------------------------- shutdown, terminate, kill


def test_shutdown_with_cancel_futures_cancels_what_has_not_started(make_executor, gate):
    executor = make_executor(1, initializer=gate.pool_args["initializer"], initargs=gate.pool_args["initargs"])
    running = executor.submit(helpers.gated, "running")
    gate.wait_started()
    pending = [executor.submit(helpers.gated, i) for i in range(5)]
    mapped = executor.map(helpers.gated, range(3))
    executor.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in pending)
    assert not running.cancelled()
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        executor.submit(abs, 1)
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        executor.map(abs, [1])
    gate.open(9)
    assert running.result(60) == "running"
    with pytest.raises(cf.CancelledError):
        next(mapped)
    executor.shutdown(wait=True)  # a second call is harmless
    processes = list(executor._processes.values())
    assert not processes
    assert not gate.started.acquire(block=False)  # none of the cancelled calls ran


def test_the_context_manager_waits_for_the_work_and_the_workers(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        fs = [executor.submit(helpers.sleep_then, 0.05, i) for i in range(6)]
        workers = list(executor._engine.processes)  # type: ignore[union-attr]
    assert [f.result(0) for f in fs] == list(range(6))
    assert all(p.exitcode == 0 for p in workers)


@pytest.mark.parametrize("how", ["terminate_workers", "kill_workers"])
def test_terminate_and_kill_workers_end_running_calls_and_leave_no_process(make_executor, gate, how):
    executor = make_executor(2, initializer=gate.pool_args["initializer"], initargs=gate.pool_args["initargs"])
    running = [executor.submit(helpers.gated, i) for i in range(2)]
    gate.wait_started(2)
    pending = [executor.submit(helpers.gated, i) for i in range(3)]
    workers = list(executor._processes.values())
    getattr(executor, how)()
    for future in running:
        with pytest.raises(BrokenProcessPool, match="terminated"):
            future.result(60)
    assert all(f.cancelled() for f in pending)
    expected = -signal.SIGKILL if how == "kill_workers" else -signal.SIGTERM
    assert [p.exitcode for p in workers] == [expected, expected]
    assert executor._processes == {}
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(abs, 1)


# ---------------------------------------------------------------- faults


def test_a_worker_killed_mid_call_fails_that_future_only_naming_pid_and_signal(make_executor, gate):
    executor = make_executor(1, initializer=gate.pool_args["initializer"], initargs=gate.pool_args["initargs"])
    future = executor.submit(helpers.gated, "never")
    gate.wait_started()
    (pid,) = executor._processes
    queued = executor.submit(helpers.square, 7)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError) as info:
        future.result(60)
    # Detected through the worker's sentinel: promptly (the bound is generous for a loaded machine).
    assert time.monotonic() - killed_at < 30
    assert isinstance(info.value, StdlibBrokenProcessPool)
    assert f"worker {pid} died with SIGKILL" in str(info.value)
    assert (info.value.pid, info.value.exitcode) == (pid, -signal.SIGKILL)
    # Not broken for ever: the call queued behind it and later ones run on a replacement.
    assert queued.result(60) == 49
    assert executor.submit(helpers.square, 8).result(60) == 64
    assert pid not in executor._processes


def test_a_call_that_kills_its_worker_fails_with_worker_lost_error(make_executor):
    executor = make_executor(2)
    future = executor.submit(helpers.kill_self)
    with pytest.raises(WorkerLostError, match="died with SIGKILL") as info:
        future.result(60)
    assert "kill_self" in str(info.value)
    assert list(executor.map(helpers.square, range(4))) == [0, 1, 4, 9]


def test_a_failing_initializer_breaks_the_executor_without_respawning(make_executor):
    executor = make_executor(2, initializer=helpers.failing_initializer)
    with pytest.raises(BrokenProcessPool, match="initializer") as info:
        # (The submission itself raises if the executor broke first.)
        executor.submit(helpers.square, 3).result(60)
    assert isinstance(info.value, StdlibBrokenProcessPool)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "initializer says no" in str(info.value.__cause__)
    with pytest.raises(BrokenProcessPool):
        executor.submit(helpers.square, 3)
    with pytest.raises(BrokenProcessPool):
        executor.map(helpers.square, [1])
    assert executor._broken
    wait_until(lambda: not executor._processes, "the broken executor's workers exit")
    executor.shutdown(wait=True)


def test_max_tasks_per_child_replaces_workers(make_executor):
    executor = make_executor(1, max_tasks_per_child=2)
    pids = [executor.submit(helpers.pid_of).result(60) for _ in range(6)]
    assert len(set(pids)) == 3
    assert [pids.count(pid) for pid in dict.fromkeys(pids)] == [2, 2, 2]


def test_initializer_runs_in_every_worker(make_executor):
    executor = make_executor(2, initializer=helpers.remember, initargs=("init",))
    assert list(executor.map(helpers.initialized, range(8))) == [["init"]] * 8


# ---------------------------------------------------------------- asyncio and programs


def test_run_in_executor_with_a_lambda(make_executor):
    executor = make_executor(2)

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        calls = [loop.run_in_executor(executor, lambda i=i: i * 3) for i in range(10)]
        wrapped = asyncio.wrap_future(executor.submit(helpers.square, 9))
        return [*await asyncio.gather(*calls), await wrapped]

    assert asyncio.run(main()) == [i * 3 for i in range(10)] + [81]


PROGRAM = """
import sys
import multiprocess as mp
from multiprocess.futures import ProcessPoolExecutor
if __name__ == "__main__":
    method = sys.argv[1] if len(sys.argv) > 1 else "{method}"
    k = 7
    def helper(x):
        return x + k
    class Box:
        def __init__(self, v):
            self.v = v
    with ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as ex:
        print(ex.submit(lambda x: helper(x) * 2, 1).result(60))
        print(list(ex.map(lambda b: b.v, [Box(1), Box(2)], timeout=60)))
        print(ex.submit(Box, 5).result(60).v)
"""


@pytest.mark.parametrize("method", mp_core.get_all_start_methods())
def test_main_module_lambdas_classes_from_python_c(method):
    result = run_python(PROGRAM, method)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["16", "[1, 2]", "5"]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_main_module_lambdas_from_a_stdin_program(method):
    result = subprocess.run([sys.executable, "-", method], input=PROGRAM, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["16", "[1, 2]", "5"]


def test_pending_calls_finish_when_the_program_exits_without_shutdown(tmp_path):
    marker = tmp_path / "done"
    code = f"""
    import multiprocess as mp
    from multiprocess.futures import ProcessPoolExecutor
    from tests.pool.helpers import append_line
    ex = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"))
    for i in range(4):
        ex.submit(append_line, {str(marker)!r}, str(i))
    """
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert sorted(lines_of(marker)) == ["0", "1", "2", "3"]


def test_an_executor_dropped_with_calls_pending_completes_them_and_stops(ctx, gate):
    executor = ProcessPoolExecutor(
        1, mp_context=ctx, initializer=helpers.install_gate, initargs=gate.pool_args["initargs"]
    )
    future = executor.submit(helpers.gated, "done")
    gate.wait_started()
    thread = executor._executor_manager_thread
    workers = list(executor._processes.values())
    del executor
    collect_garbage()
    assert not future.done()
    gate.open()
    assert future.result(60) == "done"
    thread.join(60)
    assert not thread.is_alive()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0


def test_workers_start_on_demand_except_under_fork(ctx, gate):
    on_demand = ctx.get_start_method() != "fork"
    with ProcessPoolExecutor(5, mp_context=ctx, **_gate_initializer(gate)) as executor:
        for value in range(4):  # one call at a time: an idle worker is reused
            assert executor.submit(helpers.square, value).result(60) == value * value
        assert len(executor._processes) == (1 if on_demand else 5)
        gated = [executor.submit(helpers.gated, i) for i in range(3)]
        # Each on a worker of its own, started while the others were busy, and known when submit returns.
        assert len(executor._processes) == (3 if on_demand else 5)
        gate.wait_started(3)
        gate.open(3)
        assert [f.result(60) for f in gated] == [0, 1, 2]
        assert len(executor._processes) <= (4 if on_demand else 5)


def test_a_submit_returns_only_once_its_call_was_read_by_the_dispatch(ctx, gate):
    """A submit that came while the manager thread was dispatching earlier work must wait for the next round.

    The race behind ``test_workers_start_on_demand_except_under_fork`` seeing
    two workers instead of three under load: the manager had read its inbox,
    the submit queued its call and asked to be told of its dispatch, and the
    round that had not seen the call told it so.  Here the manager thread
    itself waits, in its dispatch, for that submit: the interleaving is forced.
    """
    if ctx.get_start_method() == "fork":
        pytest.skip("under fork every worker starts at once")
    with ProcessPoolExecutor(3, mp_context=ctx, **_gate_initializer(gate)) as executor:
        first = executor.submit(helpers.gated, 0)
        gate.wait_started(1)
        engine = executor._engine
        real_dispatch, real_after_dispatch = engine._dispatch, engine.after_dispatch
        seen: dict[str, object] = {}
        registered = threading.Event()

        def late_submit() -> None:
            seen["future"] = executor.submit(helpers.gated, 2)
            seen["processes"] = len(executor._processes)  # a worker for it is known when submit returns

        def after_dispatch(action):
            kept = real_after_dispatch(action)
            if threading.current_thread() is seen.get("thread"):
                registered.set()  # the late submit has queued its call and waits to be told
            return kept

        def dispatch() -> None:
            if "thread" not in seen and engine._queue:
                # The main thread's call was read and is about to be handed out: another submit comes now.
                thread = seen["thread"] = threading.Thread(target=late_submit)
                thread.start()
                assert registered.wait(60)
            real_dispatch()

        engine.after_dispatch, engine._dispatch = after_dispatch, dispatch
        second = executor.submit(helpers.gated, 1)
        thread = seen["thread"]
        thread.join(60)
        engine.after_dispatch, engine._dispatch = real_after_dispatch, real_dispatch
        assert not thread.is_alive()
        assert seen["processes"] == 3
        gate.wait_started(2)
        gate.open(3)
        assert [f.result(60) for f in (first, second, seen["future"])] == [0, 1, 2]


def _gate_initializer(gate):
    return {"initializer": gate.pool_args["initializer"], "initargs": gate.pool_args["initargs"]}


def test_exits_and_unsendable_results_fail_their_future_as_the_stdlib_has_them(make_executor):
    import pickle

    executor = make_executor(1)
    with pytest.raises(SystemExit) as exited:
        executor.submit(helpers.call_sys_exit, 4).result(60)
    assert exited.value.code == 4
    with pytest.raises(SystemExit) as exited:
        executor.submit(helpers.return_exit_when_pickled).result(60)
    assert exited.value.code == 5
    with pytest.raises((pickle.PicklingError, TypeError), match="generator"):
        executor.submit(helpers.return_unpicklable).result(60)
    (pid,) = executor._processes
    assert executor.submit(helpers.pid_of).result(60) == pid  # the same worker throughout
