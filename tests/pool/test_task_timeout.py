"""task_timeout: a per-item time limit on Pool, ThreadPool (refused) and the executor, under every start method."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import mp_core
from mp_pool import Pool, ThreadPool
from mp_pool.futures import ProcessPoolExecutor
from mp_pool.pool import TaskTimeoutError

from . import helpers

pytestmark = pytest.mark.timeout(180)

#: Long enough that a tiny task never reaches it, even on a loaded machine.
LIMIT = 1.0


def lines_of(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def worker_pids(pool: Pool) -> set[int]:
    return {process.pid for process in pool._pool if process.exitcode is None}


def test_task_timeout_is_a_multiprocess_timeout_error():
    assert issubclass(TaskTimeoutError, mp_core.TimeoutError)
    error = TaskTimeoutError("item 3 ran past", "f", 3, 1.5)
    import pickle

    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.func, copy.index, copy.timeout) == (
        TaskTimeoutError,
        "item 3 ran past",
        "f",
        3,
        1.5,
    )


def test_an_apply_past_its_limit_fails_and_its_worker_is_replaced(make_pool):
    pool = make_pool(1, task_timeout=LIMIT)
    (old_pid,) = worker_pids(pool)
    asked = time.monotonic()
    with pytest.raises(TaskTimeoutError) as info:
        pool.apply(helpers.sleep_then, (60,))
    waited = time.monotonic() - asked
    assert LIMIT <= waited < LIMIT + 30  # stopped at the limit, not at the end of the sleep
    error = info.value
    assert (error.func, error.index, error.timeout) == ("sleep_then", 0, LIMIT)
    assert "apply job" in str(error) and "calling sleep_then" in str(error) and "task_timeout of 1 s" in str(error)
    assert f"worker {old_pid} was stopped and replaced" in str(error)
    new_pid = pool.apply(helpers.pid_of)
    assert new_pid != old_pid
    assert helpers.process_gone(old_pid)


def test_a_pure_python_loop_and_a_task_catching_exception_are_stopped(make_pool):
    pool = make_pool(2, task_timeout=LIMIT)
    spinning = pool.apply_async(helpers.spin_forever)
    catching = pool.apply_async(helpers.catch_everything_and_sleep)
    for result in (spinning, catching):
        with pytest.raises(TaskTimeoutError):
            result.get(60)
    assert pool.map(helpers.square, range(5)) == [0, 1, 4, 9, 16]


def test_a_chunk_keeps_what_finished_and_runs_the_rest_elsewhere(make_pool, tmp_path):
    pool = make_pool(2)
    log = tmp_path / "log"
    path = str(log)
    results = pool.imap(lambda x: helpers.record_then_sleep(x, path, 5), range(12), chunksize=4, task_timeout=LIMIT)
    got: list[object] = []
    for _ in range(12):
        try:
            got.append(next(results))
        except TaskTimeoutError as error:
            got.append(("timed out", error.index))
    with pytest.raises(StopIteration):
        next(results)
    assert got == [x * x for x in range(5)] + [("timed out", 5)] + [x * x for x in range(6, 12)]
    # Nothing that finished ran twice, nothing was lost: item 5 started once and never ended.
    lines = lines_of(log)
    assert sorted(lines) == sorted(set(lines))
    assert {f"start-{x}" for x in range(12)} == {line for line in lines if line.startswith("start")}
    assert {f"end-{x}" for x in range(12) if x != 5} == {line for line in lines if line.startswith("end")}


def test_map_raises_the_items_time_out_and_the_pool_goes_on(make_pool, tmp_path):
    pool = make_pool(2, task_timeout=LIMIT)
    log = tmp_path / "log"
    with pytest.raises(TaskTimeoutError) as info:
        pool.starmap(helpers.record_then_sleep, [(x, str(log), 6) for x in range(10)], chunksize=4)
    assert info.value.index == 6 and "item 6 of starmap job" in str(info.value)
    assert pool.map(helpers.square, range(8), chunksize=3) == [x * x for x in range(8)]
    # Every item ran (the map's other chunks complete, as the standard library's do), once.
    lines = lines_of(log)
    assert sorted(lines) == sorted(set(lines)) and len([line for line in lines if line.startswith("start")]) == 10


def test_imap_unordered_raises_the_time_out_once_and_delivers_the_rest(make_pool, tmp_path):
    pool = make_pool(2)
    log = str(tmp_path / "log")
    results = pool.imap_unordered(lambda x: helpers.record_then_sleep(x, log, 2), range(6), 3, task_timeout=LIMIT)
    values, errors = [], []
    while True:
        try:
            values.append(next(results))
        except StopIteration:
            break
        except TaskTimeoutError as error:
            errors.append(error.index)
    assert errors == [2]
    assert sorted(values) == [0, 1, 9, 16, 25]


def test_the_call_overrides_the_pools_limit(make_pool):
    pool = make_pool(1, task_timeout=0.2)
    assert pool.apply(helpers.sleep_then, (0.6, "slow but allowed"), task_timeout=None) == "slow but allowed"
    assert pool.map(helpers.sleep_then, [0.3], task_timeout=30) == [None]
    with pytest.raises(TaskTimeoutError):
        pool.apply(helpers.sleep_then, (60,))
    plain = make_pool(1)
    with pytest.raises(TaskTimeoutError):
        plain.apply_async(helpers.sleep_then, (60,), task_timeout=LIMIT).get(60)
    with pytest.raises(TaskTimeoutError):
        plain.map_async(helpers.sleep_then, [60], task_timeout=LIMIT).get(60)


def test_code_that_blocks_the_timer_is_stopped_by_the_parent(make_pool):
    pool = make_pool(1, task_timeout=0.5)
    (old_pid,) = worker_pids(pool)
    with pytest.raises(TaskTimeoutError, match="did not stop the item itself") as info:
        pool.apply(helpers.sleep_with_alarms_blocked)
    assert f"worker {old_pid}" in str(info.value)
    assert pool.apply(helpers.pid_of) != old_pid


def test_bad_limits_are_refused():
    for bad, error in ((0, ValueError), (-1, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(error, match="task_timeout must be"):
            Pool(1, task_timeout=bad)  # type: ignore[arg-type]


def test_thread_pool_refuses_a_limit_at_the_call():
    with ThreadPool(1) as pool:
        for call in (
            lambda: pool.apply(abs, (1,), task_timeout=1),
            lambda: pool.apply_async(abs, (1,), task_timeout=1),
            lambda: pool.map(abs, [1], task_timeout=1),
            lambda: pool.imap(abs, [1], task_timeout=1),
            lambda: pool.starmap_async(abs, [(1,)], task_timeout=1),
        ):
            with pytest.raises(NotImplementedError, match="a thread cannot be stopped"):
                call()
        assert pool.map(abs, [-1], task_timeout=None) == [1]


def test_the_executor_limits_submit_and_map(ctx):
    with ProcessPoolExecutor(2, mp_context=ctx, task_timeout=LIMIT) as executor:
        future = executor.submit(helpers.sleep_then, 60)
        with pytest.raises(TaskTimeoutError, match="submit job"):
            future.result(60)
        results = executor.map(helpers.sleep_then, [0, 60, 0], [1, 2, 3], chunksize=3)
        assert next(results) == 1
        with pytest.raises(TaskTimeoutError) as info:
            next(results)
        assert info.value.index == 1
        assert list(executor.map(helpers.sleep_then, [0.3], ["ok"], task_timeout=None)) == ["ok"]
        assert executor.submit(abs, -5).result(60) == 5
