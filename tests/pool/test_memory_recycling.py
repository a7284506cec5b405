"""``max_memory_per_child``: a worker over the limit after a task is replaced, losing nothing, running nothing twice."""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import pytest

from mp_pool import Pool, ThreadPool, _memory
from mp_pool.futures import ProcessPoolExecutor

from . import helpers

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="the tests read RSS from /proc"),
]

#: What a heavy task keeps (MiB), and how far above a fresh worker's resident memory the limit is.
HEAVY = 200
MARGIN = 100

_fresh_worker_mib: dict[str, float] = {}


@pytest.fixture
def limit(ctx: Any, start_method: str) -> float:
    """A limit (MiB) ``MARGIN`` above a fresh worker of this start method: a heavy task crosses it, light ones never."""
    if start_method not in _fresh_worker_mib:
        with Pool(1, context=ctx) as probe:
            _fresh_worker_mib[start_method] = probe.apply(helpers.resident_mib)
    return _fresh_worker_mib[start_method] + MARGIN


def wait_gone(pids: set, seconds: float = 30) -> None:
    """Return once every pid in ``pids`` has exited; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not all(helpers.process_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(helpers.process_gone(pid) for pid in pids), [pid for pid in pids if not helpers.process_gone(pid)]


def recorded(path: Any) -> list[int]:
    return sorted(int(line) for line in path.read_text().split())


def test_a_task_that_keeps_200_mib_gets_its_worker_replaced(make_pool, limit):
    pool = make_pool(1, max_memory_per_child=limit)
    before = pool.apply(helpers.pid_of)
    assert pool.apply(helpers.keep_mib, (HEAVY,)) == before  # its result arrives as usual
    after = pool.apply(helpers.pid_of)
    assert after != before
    # The replacement starts only once the old worker has exited and been reaped.
    assert helpers.process_gone(before)
    assert pool.apply(helpers.resident_mib) < limit  # the replacement starts small again
    assert [p.pid for p in pool._pool] == [after]


@pytest.mark.parametrize("chunksize", [1, 3])
def test_a_map_mixing_heavy_and_light_items_loses_nothing_and_runs_nothing_twice(make_pool, limit, tmp_path, chunksize):
    pool = make_pool(2, max_memory_per_child=limit)
    first = {p.pid for p in pool._pool}
    path = tmp_path / "ran"
    heavy = {1, 7}
    items = [(str(path), i, HEAVY if i in heavy else 0) for i in range(16)]
    results = pool.starmap(helpers.record_then_keep, items, chunksize=chunksize)
    assert [index for index, _pid in results] == list(range(16))
    assert recorded(path) == list(range(16))  # each item ran exactly once
    heavy_pids = {pid for index, pid in results if index in heavy}
    assert heavy_pids & first  # (item 1 ran on a first worker)
    # The workers that kept the memory get nothing more, and go.
    later = set(pool.map(helpers.pid_of, range(12), chunksize=1))
    assert not later & heavy_pids
    wait_gone(heavy_pids)


def test_tasks_under_the_limit_never_recycle(make_pool, limit, tmp_path):
    pool = make_pool(2, max_memory_per_child=limit)
    first = {p.pid for p in pool._pool}
    path = tmp_path / "ran"
    results = pool.starmap(helpers.record_then_keep, [(str(path), i) for i in range(200)], chunksize=1)
    assert [index for index, _pid in results] == list(range(200))
    assert {pid for _index, pid in results} <= first
    assert pool.map(helpers.square, range(50), chunksize=5) == [x * x for x in range(50)]
    assert {p.pid for p in pool._pool} == first
    assert recorded(path) == list(range(200))


def test_the_executor_replaces_a_worker_over_the_limit(ctx, limit, tmp_path):
    with ProcessPoolExecutor(1, mp_context=ctx, max_memory_per_child=limit) as executor:
        before = executor.submit(helpers.pid_of).result(60)
        assert executor.submit(helpers.keep_mib, HEAVY).result(60) == before
        after = executor.submit(helpers.pid_of).result(60)
        assert after != before
        assert helpers.process_gone(before)
        path = tmp_path / "ran"
        items = [(str(path), i, HEAVY if i == 2 else 0) for i in range(6)]
        results = list(executor.map(helpers.record_then_keep, *zip(*items)))
        assert [index for index, _pid in results] == list(range(6))
        assert recorded(path) == list(range(6))
        heavy_pid = results[2][1]
        assert executor.submit(helpers.pid_of).result(60) != heavy_pid
        wait_gone({heavy_pid})


def test_a_limit_below_a_fresh_worker_still_makes_progress_and_warns_once(make_pool, tmp_path):
    # Every worker is over 1 MiB before its first task: each runs what it
    # holds when it first answers, then is replaced.
    path = tmp_path / "ran"
    with pytest.warns(RuntimeWarning, match=r"max_memory_per_child=1 MiB is below what a fresh worker") as caught:
        pool = make_pool(2, max_memory_per_child=1)
        results = pool.starmap(helpers.record_then_keep, [(str(path), i) for i in range(8)], chunksize=1)
    assert [index for index, _pid in results] == list(range(8))
    assert recorded(path) == list(range(8))
    assert len([w for w in caught if "max_memory_per_child" in str(w.message)]) == 1
    # Every worker that ran a task retired after it: none of them runs the next one.
    pids = {pid for _index, pid in results}
    assert pool.apply(helpers.pid_of) not in pids
    wait_gone(pids)


def test_without_a_limit_a_growing_worker_is_kept(make_pool):
    pool = make_pool(1)
    assert pool._engine._worker_processes._worker_args[-1] is None  # (the serializer: no limit is sent)
    pid = pool.apply(helpers.keep_mib, (HEAVY,))
    assert pool.apply(helpers.pid_of) == pid


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, "positive, finite number of MiB or None, not 0"),
        (-5, ValueError, "not -5"),
        (float("nan"), ValueError, "not nan"),
        (float("inf"), ValueError, "not inf"),
        ("100", TypeError, "must be a number of MiB or None, not str"),
        (True, TypeError, "not bool"),
        ([100], TypeError, "not list"),
    ],
)
def test_bad_limits_are_refused(value, error, message):
    for make in (Pool, ProcessPoolExecutor):
        with pytest.raises(error, match=re.escape(message)) as excinfo:
            make(1, max_memory_per_child=value)
        assert str(excinfo.value).startswith("max_memory_per_child must be")


def test_fractional_limits_are_mebibytes():
    assert _memory.MemoryLimit.from_argument(1.5).limit == 3 << 19
    assert _memory.MemoryLimit.from_argument(200).limit == 200 << 20
    assert _memory.MemoryLimit.from_argument(None) is None


def test_thread_pools_take_no_memory_limit():
    with pytest.raises(TypeError, match="max_memory_per_child"):
        ThreadPool(1, max_memory_per_child=100)  # type: ignore[call-arg]


def test_without_statm_or_psutil_the_limit_is_refused_naming_psutil(monkeypatch, tmp_path):
    monkeypatch.setattr(_memory, "STATM_PATH", str(tmp_path / "no-statm"))
    monkeypatch.setitem(sys.modules, "psutil", None)  # ``import psutil`` raises ImportError
    with pytest.raises(ImportError, match=r"psutil is not installed \(pip install psutil\)"):
        Pool(1, max_memory_per_child=100)
    with pytest.raises(ImportError, match="max_memory_per_child needs a way to read"):
        ProcessPoolExecutor(1, max_memory_per_child=100)


def test_without_statm_workers_measure_with_psutil(make_pool, monkeypatch, tmp_path, limit):
    psutil = pytest.importorskip("psutil")
    monkeypatch.setattr(_memory, "STATM_PATH", str(tmp_path / "no-statm"))
    pool = make_pool(1, max_memory_per_child=limit)
    assert pool._memory_limit.method == _memory.PSUTIL
    reader = pool._memory_limit.open_reader()
    assert abs(reader() - psutil.Process().memory_info().rss) < 64 << 20
    before = pool.apply(helpers.pid_of)
    assert pool.apply(helpers.keep_mib, (HEAVY,)) == before
    assert pool.apply(helpers.pid_of) != before


def statm_descriptors() -> set:
    """This process's descriptors open on its /proc/.../statm."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == f"/proc/{os.getpid()}/statm":
                found.add(int(name))
        except OSError:
            pass  # (the listing's own descriptor, closed by now)
    return found


def test_the_statm_reader_reads_this_process_with_one_descriptor():
    limit = _memory.MemoryLimit.from_argument(100)
    assert limit is not None and limit.method == _memory.STATM
    assert repr(limit) == "MemoryLimit(100 MiB, read with statm)"
    before = statm_descriptors()  # (from_argument closed the one it checked with)
    reader = limit.open_reader()
    opened = statm_descriptors() - before
    assert len(opened) == 1
    try:
        first = reader()
        assert abs(first / (1 << 20) - helpers.resident_mib()) < 16
        block = bytearray(64 << 20)
        block[::4096] = b"\1" * len(range(0, len(block), 4096))
        assert reader() - first >= 60 << 20
        del block
        assert statm_descriptors() - before == opened  # one descriptor, read again and again
    finally:
        os.close(opened.pop())


def test_readings_are_skipped_only_while_the_limit_is_out_of_reach(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(_memory.time, "monotonic", lambda: now[0])
    limit = _memory.MemoryLimit(1 << 30, _memory.STATM)
    sizes = [(1 << 30) - (256 << 20)]  # 256 MiB below the limit: out of reach for 1/1024 s
    readings = []

    def read():
        readings.append(now[0])
        return sizes[0]

    over = limit.over_limit_check(read)
    assert over() is False and readings == [100.0]
    now[0] += 0.0009
    assert over() is False and readings == [100.0]  # could not have grown 256 MiB in 0.9 ms
    now[0] += 0.0002
    sizes[0] = (1 << 30) + 1
    assert over() is True and len(readings) == 2
    now[0] += 100
    assert over() is False and len(readings) == 2  # said once: the worker is retiring


def test_timed_tasks_are_checked_too(make_pool, limit):
    pool = make_pool(1, max_memory_per_child=limit, task_timeout=60)
    heavy = pool.apply(helpers.keep_mib, (HEAVY,))  # (the worker's pid)
    assert pool.apply(helpers.pid_of) != heavy
    assert helpers.process_gone(heavy)
