"""Pools that only their results keep alive, collected in the pool's own threads.

When the last reference to a pool goes away in a thread of the pool (the
manager thread or a worker thread that delivers the last result, a feeder,
a callback), its finalizer must not wait for that very thread: the results
arrive, the workers stop, nothing hangs.
"""

from __future__ import annotations

import copy
import queue
import sys
import threading
import weakref

import pytest

import mp_core
from mp_pool import Pool, PoolTerminatedError, ThreadPool

from ..support import START_METHODS, collect_garbage
from . import helpers
from .helpers import square

pytestmark = pytest.mark.timeout(120)

KINDS = ["map_async", "map_async+callback", "apply_async", "apply_async+callback", "imap", "imap_unordered"]
EXPECTED = [0, 1, 4, 9]


def submit(pool, kind, func=square):
    """Submit ``func`` over 0..3 with ``kind``; return a function that collects the four values, sorted."""
    delivered: queue.Queue = queue.Queue()
    if kind.startswith("map_async"):
        callback = delivered.put if kind.endswith("+callback") else None
        result = pool.map_async(func, range(4), callback=callback)

        def collect():
            values = result.get(60)
            if callback is not None:
                assert delivered.get(timeout=60) == values
            return values
    elif kind.startswith("apply_async"):
        callback = delivered.put if kind.endswith("+callback") else None
        results = [pool.apply_async(func, (x,), callback=callback) for x in range(4)]

        def collect():
            values = [result.get(60) for result in results]
            if callback is not None:
                assert sorted(delivered.get(timeout=60) for _ in range(4)) == values
            return values
    else:
        iterator = getattr(pool, kind)(func, range(4))

        def collect():
            return sorted(iterator)

    return collect


def workers_stop(workers):
    for worker in workers:
        worker.join(60)
        assert not worker.is_alive(), f"{worker!r} still running after its pool was collected"


class Flavour:
    """A pool class and, for processes, a start method; makes two-worker pools and their gates."""

    def __init__(self, name):
        self.name = name
        self.threads = name == "threads"
        self.ctx = None if self.threads else mp_core.get_context(name)

    def pool(self, **kwds):
        if self.threads:
            return ThreadPool(2, **kwds)
        return Pool(2, context=self.ctx, **kwds)

    def gate(self):
        return threading.Event() if self.threads else self.ctx.Event()


@pytest.fixture(params=["threads", *START_METHODS])
def flavour(request):
    """A ``ThreadPool``, then a ``Pool`` under each start method."""
    return Flavour(request.param)


@pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_a_pool_that_only_its_results_keep_alive(flavour, kind):
    def make():
        pool = flavour.pool()
        return weakref.ref(pool), list(pool._pool), submit(pool, kind)

    pool_ref, workers, collect = make()
    assert collect() == EXPECTED
    collect_garbage()
    assert pool_ref() is None
    workers_stop(workers)


@pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_a_pool_dropped_while_its_results_are_pending(flavour, kind):
    gate = flavour.gate()
    pool = flavour.pool(initializer=helpers.keep_gate, initargs=(gate,))
    pool_ref, workers = weakref.ref(pool), list(pool._pool)
    collect = submit(pool, kind, helpers.square_after_gate)
    del pool
    collect_garbage()
    assert pool_ref() is not None, "pending results keep their pool alive"
    gate.set()
    assert collect() == EXPECTED
    collect_garbage()
    assert pool_ref() is None
    workers_stop(workers)


class Holder:
    """A helper object that owns a pool and terminates it when it goes."""

    def __init__(self, pool):
        self.pool = pool
        self.seen: queue.Queue = queue.Queue()

    def note(self, value):
        self.seen.put(value)

    def __del__(self):
        self.pool.terminate()


@pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning")
def test_a_helper_object_deleted_in_the_thread_that_delivers_its_results(flavour):
    seen: queue.Queue = queue.Queue()

    def make():
        holder = Holder(flavour.pool())
        holder.seen = seen
        holder.pool.apply_async(square, (3,), callback=holder.note)  # the result is not kept
        holder.pool.map_async(square, range(4), callback=holder.note)
        return weakref.ref(holder), list(holder.pool._pool)

    holder_ref, workers = make()
    assert sorted([seen.get(timeout=60), seen.get(timeout=60)], key=repr) == [9, EXPECTED]
    # The last callback's result held the last reference to the holder:
    # its __del__ terminated the pool from the pool's own thread.
    if sys.implementation.name != "cpython":
        # Without reference counting (PyPy) the holder goes at a collection,
        # which cannot be made to happen in the pool's thread: here, then.
        collect_garbage()
    workers_stop(workers)
    collect_garbage()
    assert holder_ref() is None


class PlainHolder:
    def __init__(self, pool):
        self.pool = pool


@pytest.mark.filterwarnings("ignore:unclosed running multiprocessing pool:ResourceWarning")
def test_a_helper_object_that_is_copied_then_deleted(flavour):
    holder = PlainHolder(flavour.pool())
    workers = list(holder.pool._pool)
    twin = copy.copy(holder)
    with pytest.raises(NotImplementedError, match="pool objects cannot be passed between processes or pickled"):
        copy.deepcopy(holder)
    del holder
    assert twin.pool.map(square, range(4)) == EXPECTED
    collect = submit(twin.pool, "imap")
    pool_ref = weakref.ref(twin.pool)
    del twin
    assert collect() == EXPECTED
    collect_garbage()
    assert pool_ref() is None
    workers_stop(workers)


def test_terminate_from_a_callback_stops_the_pool_and_fails_what_is_pending(flavour):
    terminate_from_a_callback(flavour)
    collect_garbage()  # the caught exception's traceback holds the gate's semaphores in a cycle


def terminate_from_a_callback(flavour):
    gate = flavour.gate()
    pool = flavour.pool(initializer=helpers.keep_gate, initargs=(gate,))
    workers = list(pool._pool)
    try:
        pending = pool.apply_async(helpers.square_after_gate, (5,))
        returned = threading.Event()

        def stop(value):
            pool.terminate()
            returned.set()

        # The gate stays shut: one worker holds `pending`, the other runs this.
        assert pool.apply_async(abs, (-2,), callback=stop).get(60) == 2
        assert returned.wait(60), "terminate() in a callback did not return"
        with pytest.raises(PoolTerminatedError):
            pending.get(60)
        if flavour.threads:
            gate.set()  # a thread cannot be stopped mid-task: let it finish
        pool.join()
        workers_stop(workers)
    finally:
        # The gate stays shut: setting an Event whose waiter was killed
        # would wait for that waiter for ever (as in the standard library).
        pool.terminate()
        pool.join()


def test_join_from_a_callback_is_refused(flavour):
    pool = flavour.pool()
    closed = threading.Event()
    errors: queue.Queue = queue.Queue()

    def join_here(value):
        closed.wait(60)
        try:
            pool.join()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.put(exc)
        else:
            errors.put(None)

    try:
        result = pool.apply_async(abs, (-1,), callback=join_here)
        pool.close()
        closed.set()
        assert result.get(60) == 1
        error = errors.get(timeout=60)
        assert isinstance(error, RuntimeError), error
        assert "cannot join a pool from one of its own threads" in str(error)
        pool.join()  # from outside, it works
    finally:
        pool.terminate()
        pool.join()
