"""Condition and Event: waiting, notifying and time-outs across processes."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- children


def wait_on(cond, sleeping, woken):
    """Announce (under the lock) that we sleep, wait to be notified, report it."""
    with cond:
        sleeping.release()
        notified = cond.wait(30)
    if notified:
        woken.release()


def bump(cond, counter, times):
    """Release ``counter`` ``times`` times, a little apart, notifying each time."""
    for _ in range(times):
        time.sleep(0.05)
        with cond:
            counter.release()
            cond.notify_all()


def wait_for_event(event, timeout, results, ready=None):
    if ready is not None:
        ready.release()
    results.put(event.wait(timeout))


def set_event_later(event, delay):
    time.sleep(delay)
    event.set()


# ---------------------------------------------------------------- Condition


def test_notify_wakes_one_then_notify_all_wakes_the_rest(ctx, start):
    cond, sleeping, woken = ctx.Condition(), ctx.Semaphore(0), ctx.Semaphore(0)
    procs = [start(wait_on, cond, sleeping, woken) for _ in range(3)]
    for _ in range(3):
        assert sleeping.acquire(timeout=30)
    with cond:
        # Each child released `sleeping` while holding the lock, and waits
        # now that we have it: all three are asleep.
        assert repr(cond) == "<Condition(<RLock(MainProcess, 1)>, 3)>"
        cond.notify()
    assert woken.acquire(timeout=30)
    assert not woken.acquire(timeout=0.3)  # exactly one woke
    with cond:
        cond.notify_all()
    assert woken.acquire(timeout=30) and woken.acquire(timeout=30)
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert repr(cond) == "<Condition(<RLock(None, 0)>, 0)>"


def test_notify_n_wakes_that_many(ctx, start):
    cond, sleeping, woken = ctx.Condition(ctx.Lock()), ctx.Semaphore(0), ctx.Semaphore(0)
    procs = [start(wait_on, cond, sleeping, woken) for _ in range(3)]
    for _ in range(3):
        assert sleeping.acquire(timeout=30)
    with cond:
        cond.notify(2)
    assert woken.acquire(timeout=30) and woken.acquire(timeout=30)
    assert not woken.acquire(timeout=0.3)
    with cond:
        cond.notify()
    assert woken.acquire(timeout=30)
    for proc in procs:
        proc.join(30)


def test_wait_for_times_out_then_sees_another_process_make_it_true(ctx, start):
    cond, counter = ctx.Condition(), ctx.Semaphore(0)
    with cond:
        t0 = time.monotonic()
        assert cond.wait_for(lambda: counter.get_value() >= 2, timeout=0.2) is False
        assert 0.18 < time.monotonic() - t0 < 5
        assert cond.wait_for(lambda: counter.get_value() >= 2, timeout=0) is False
    proc = start(bump, cond, counter, 2)
    with cond:
        assert cond.wait_for(lambda: counter.get_value() >= 2, timeout=30)
        # A true predicate returns at once, with its own value.
        assert cond.wait_for(lambda: "ready") == "ready"
    proc.join(30)
    assert proc.exitcode == 0


def test_wait_times_out_and_keeps_an_rlock_held_recursively(ctx):
    cond = ctx.Condition()
    with cond:
        with cond:
            t0 = time.monotonic()
            assert cond.wait(0.1) is False
            assert time.monotonic() - t0 >= 0.09
            assert repr(cond) == "<Condition(<RLock(MainProcess, 2)>, 0)>"
    assert repr(cond) == "<Condition(<RLock(None, 0)>, 0)>"


def test_a_notify_without_waiters_is_not_kept_for_later_ones(ctx):
    cond = ctx.Condition(ctx.Lock())
    with cond:
        assert cond.wait(0.05) is False  # a sleeper that timed out...
    with cond:
        cond.notify()  # ...is not woken now, and leaves no token behind
        cond.notify_all()
    with cond:
        assert cond.wait(0.1) is False


def test_wait_and_notify_require_the_lock(ctx):
    cond = ctx.Condition()
    for call in (cond.wait, cond.notify, cond.notify_all):
        with pytest.raises(RuntimeError, match="must acquire"):
            call()
        with pytest.raises(AssertionError):  # the standard library's process condition raises this
            call()
    # Held by another thread is not held by us.
    seen = []

    def notify_from_another_thread():
        try:
            cond.notify()
        except RuntimeError:
            seen.append("refused")

    with cond:
        thread = threading.Thread(target=notify_from_another_thread)
        thread.start()
        thread.join()
    assert seen == ["refused"]


def test_condition_between_threads_too(ctx):
    cond = ctx.Condition()
    items = []

    def consumer():
        with cond:
            cond.wait_for(lambda: items, timeout=30)
            items.append("seen")

    thread = threading.Thread(target=consumer)
    thread.start()
    with cond:
        items.append("x")
        cond.notify()
    thread.join(30)
    assert items == ["x", "seen"]


# ---------------------------------------------------------------- Event


def test_event_set_wakes_waiters_in_other_processes(ctx, start):
    event, results = ctx.Event(), ctx.SimpleQueue()
    assert repr(event) == f"<Event at {id(event):#x} unset>"  # the stdlib's form
    ready = ctx.Semaphore(0)
    procs = [start(wait_for_event, event, 30, results, ready) for _ in range(3)]
    for _ in range(3):
        assert ready.acquire(timeout=60)
    # Each child is about to wait (or waiting) for 30 s: none can answer before the set.
    assert results.empty()
    event.set()
    assert event.is_set() and repr(event) == f"<Event at {id(event):#x} set>"
    assert [results.get() for _ in range(3)] == [True, True, True]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0


def test_event_wait_returns_the_flag_on_time_out(ctx, start):
    event, results = ctx.Event(), ctx.SimpleQueue()
    t0 = time.monotonic()
    assert event.wait(0.1) is False
    assert time.monotonic() - t0 >= 0.09
    proc = start(wait_for_event, event, 0.1, results)
    assert results.get() is False
    proc.join(30)
    # Set by a child: seen here.
    proc = start(set_event_later, event, 0.05)
    assert event.wait(30) is True
    proc.join(30)
    event.set()  # setting twice keeps it set once
    event.clear()
    assert not event.is_set()
    assert event.wait(0) is False
    event.set()
    assert event.wait() is True
