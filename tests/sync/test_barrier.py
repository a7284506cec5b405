"""Barrier across processes: indices, action, time-out, abort, reset."""

from __future__ import annotations

import functools
import threading
import time

import pytest

from mp_sync import BrokenBarrierError

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- helpers


def append_line(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")


def fail_action():
    raise ZeroDivisionError("action failed")


def pass_barrier(barrier, results, cycles=1, timeout=30):
    """Wait at the barrier ``cycles`` times; report each index or the error's name."""
    for _ in range(cycles):
        try:
            results.put(barrier.wait(timeout))
        except Exception as exc:
            results.put(type(exc).__name__)


def wait_until(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# ---------------------------------------------------------------- tests


def test_barrier_trips_each_cycle_with_distinct_indices_and_runs_the_action_once(ctx, start, tmp_path):
    path = tmp_path / "trips"
    barrier = ctx.Barrier(3, action=functools.partial(append_line, str(path), "tripped"))
    assert barrier.parties == 3 and barrier.n_waiting == 0 and not barrier.broken
    results = ctx.SimpleQueue()
    procs = [start(pass_barrier, barrier, results, 3) for _ in range(2)]
    mine = [barrier.wait(30) for _ in range(3)]
    theirs = [results.get() for _ in range(6)]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert sorted(mine + theirs) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert path.read_text().split() == ["tripped"] * 3
    assert repr(barrier) == "<Barrier(waiters=0/3)>"


def test_a_lambda_action_reaches_every_start_method(ctx, start):
    results = ctx.SimpleQueue()
    barrier = ctx.Barrier(2, action=lambda: results.put("action"))
    proc = start(pass_barrier, barrier, results)
    index = barrier.wait(30)
    got = {results.get(), results.get()}
    proc.join(30)
    assert got == {"action", 1 - index}


def test_time_out_breaks_the_barrier_and_reset_repairs_it(ctx, start):
    barrier = ctx.Barrier(2, timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(BrokenBarrierError):
        barrier.wait()  # the barrier's own default time-out
    assert 0.18 < time.monotonic() - t0 < 10
    assert barrier.broken and repr(barrier) == "<Barrier(broken)>"
    with pytest.raises(BrokenBarrierError):
        barrier.wait(30)  # broken: fails at once
    barrier.reset()
    assert not barrier.broken
    results = ctx.SimpleQueue()
    proc = start(pass_barrier, barrier, results)
    index = barrier.wait(30)
    assert {index, results.get()} == {0, 1}
    proc.join(30)
    with pytest.raises(BrokenBarrierError):
        barrier.wait(0.05)  # an explicit time-out too


def test_abort_breaks_a_waiter_in_another_process(ctx, start):
    barrier, results = ctx.Barrier(2), ctx.SimpleQueue()
    proc = start(pass_barrier, barrier, results)
    wait_until(lambda: barrier.n_waiting == 1)
    barrier.abort()
    assert results.get() == "BrokenBarrierError"
    assert barrier.broken and barrier.n_waiting == 0
    with pytest.raises(BrokenBarrierError):
        barrier.wait(30)
    proc.join(30)
    assert proc.exitcode == 0


def test_reset_breaks_current_waiters_and_leaves_a_working_barrier(ctx, start):
    barrier, results = ctx.Barrier(2), ctx.SimpleQueue()
    proc = start(pass_barrier, barrier, results)
    wait_until(lambda: barrier.n_waiting == 1)
    barrier.reset()
    assert results.get() == "BrokenBarrierError"
    proc.join(30)
    assert not barrier.broken
    proc = start(pass_barrier, barrier, results)
    index = barrier.wait(30)
    assert {index, results.get()} == {0, 1}
    proc.join(30)


def test_a_failing_action_breaks_the_barrier(ctx, start):
    barrier, results = ctx.Barrier(2, action=fail_action), ctx.SimpleQueue()
    proc = start(pass_barrier, barrier, results)
    wait_until(lambda: barrier.n_waiting == 1)
    with pytest.raises(ZeroDivisionError, match="action failed"):
        barrier.wait(30)  # the last to arrive runs the action and gets its error
    assert results.get() == "BrokenBarrierError"
    assert barrier.broken
    proc.join(30)


def test_barrier_between_threads_and_arguments(ctx):
    with pytest.raises(ValueError):
        ctx.Barrier(0)
    barrier = ctx.Barrier(3)
    indices = []
    threads = [threading.Thread(target=lambda: indices.append(barrier.wait(30))) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: barrier.n_waiting == 2)
    assert repr(barrier) == "<Barrier(waiters=2/3)>"
    indices.append(barrier.wait(30))
    for thread in threads:
        thread.join(30)
    assert sorted(indices) == [0, 1, 2]
    assert barrier.n_waiting == 0
