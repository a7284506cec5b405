"""ThreadPool (the pool API on threads) and ``multiprocess.dummy`` (the multiprocessing API on threads)."""

from __future__ import annotations

import gc
import queue
import threading
import time

import pytest

import mp_pool.dummy as dummy
from mp_core.context import TimeoutError
from mp_pool import BrokenPoolError, PoolTerminatedError, ThreadPool
from mp_pool.dummy import connection as dummy_connection

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def thread_pool():
    pools = []

    def make(*args, **kwds):
        pool = ThreadPool(*args, **kwds)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.terminate()
        pool.join()


def test_every_method_on_threads(thread_pool):
    pool = thread_pool(3)
    unpicklable = threading.Lock()
    assert pool.apply(lambda lock: lock, (unpicklable,)) is unpicklable  # nothing is copied
    assert pool.apply_async(pow, (2, 10)).get(10) == 1024
    assert pool.map(lambda x: x * 2, range(100)) == [x * 2 for x in range(100)]
    assert pool.map(str, [], chunksize=3) == []
    assert pool.map(str, [1, 2], chunksize=0) == [None, None]
    assert pool.map_async(abs, [-1, -2]).get(10) == [1, 2]
    assert pool.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]
    assert pool.starmap_async(pow, [(2, 2)]).get(10) == [4]
    assert list(pool.imap(lambda x: x + 1, (x for x in range(20)), chunksize=3)) == list(range(1, 21))
    assert sorted(pool.imap_unordered(abs, [-3, -1, -2])) == [1, 2, 3]
    with pytest.raises(ValueError, match="Chunksize must be 1"):
        pool.imap(abs, [1], chunksize=0)
    names = {pool.apply(lambda: threading.current_thread().name) for _ in range(10)}
    assert threading.current_thread().name not in names


def test_results_errors_callbacks_and_timeouts(thread_pool):
    pool = thread_pool(2)
    event = threading.Event()
    slow = pool.apply_async(event.wait, (10,))
    with pytest.raises(ValueError, match="not ready"):
        slow.successful()
    with pytest.raises(TimeoutError):
        slow.get(0.01)
    iterator = pool.imap(lambda _: event.wait(10), [0])
    with pytest.raises(TimeoutError):
        iterator.next(timeout=0.01)
    event.set()
    assert slow.get(10) is True and iterator.next(10) is True
    original = KeyError("mine")

    def fail():
        raise original

    errors, values = [], []
    result = pool.apply_async(fail, error_callback=errors.append)
    with pytest.raises(KeyError) as excinfo:
        result.get(10)
    assert excinfo.value is original and errors == [original]
    pool.map_async(abs, [-5], callback=values.append).get(10)
    assert values == [[5]]


def test_initializer_close_join_and_context_manager(thread_pool):
    seen = []
    pool = thread_pool(2, initializer=seen.append, initargs=("init",))
    pending = pool.map_async(time.sleep, [0.05] * 4)
    pool.close()
    for submit in (
        lambda: pool.apply(abs, (1,)),
        lambda: pool.apply_async(abs, (1,)),
        lambda: pool.map(abs, [1]),
        lambda: pool.map_async(abs, [1]),
        lambda: pool.starmap(pow, [(2, 2)]),
        lambda: pool.starmap_async(pow, [(2, 2)]),
        lambda: pool.imap(abs, [1]),
        lambda: pool.imap_unordered(abs, [1]),
    ):
        with pytest.raises(ValueError, match="Pool not running"):
            submit()
    pool.join()
    assert pending.ready() and seen == ["init", "init"]
    with thread_pool(1) as pool:
        assert pool.apply(abs, (-1,)) == 1
        started, blocker = threading.Event(), threading.Event()
        pool.apply_async(lambda: (started.set(), blocker.wait(60)))  # the only thread is busy until released
        assert started.wait(30)
        queued = pool.apply_async(abs, (-2,))
        # Leaving the block terminates the pool: it fails the queued call, then
        # joins the busy thread, which the releaser frees once the call has failed.
        releaser = threading.Thread(target=lambda: (queued.wait(30), blocker.set()))
        releaser.start()
    releaser.join()
    with pytest.raises(PoolTerminatedError):
        queued.get(5)
    with pytest.raises(ValueError, match="Pool is still running"):
        thread_pool(1).join()


@pytest.mark.timeout(30)
def test_joining_a_thread_pool_from_its_own_input_feeder_is_refused(thread_pool):
    # The feeder thread reads imap's input: joining there would wait for
    # workers that wait for this very job's input to end.
    pool = thread_pool(2)

    def items():
        yield 1
        pool.close()
        pool.join()
        yield 2

    iterator = pool.imap(lambda x: x * 10, items())
    assert next(iterator) == 10
    with pytest.raises(RuntimeError, match="cannot join a pool from one of its own threads"):
        next(iterator)


def test_a_thread_pool_has_no_slots_and_warns_when_collected_running():
    assert not hasattr(ThreadPool, "__slots__")
    pool = ThreadPool(2)
    pool._pathos_nodes = 2  # downstream code stores its own attributes
    threads = list(pool._pool)
    assert pool.map(abs, [-1, -2]) == [1, 2]
    with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool"):
        del pool
        gc.collect()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def test_a_failing_initializer_breaks_a_thread_pool(thread_pool):
    def bad():
        raise RuntimeError("no threads for you")

    pool = thread_pool(2, initializer=bad)
    with pytest.raises(BrokenPoolError) as excinfo:
        pool.map(abs, range(10))
    assert isinstance(excinfo.value.__cause__, RuntimeError)
    with pytest.raises(BrokenPoolError):
        pool.apply(abs, (1,))


def test_dummy_processes_and_primitives():
    results = dummy.Queue()
    proc = dummy.Process(target=results.put, args=(42,))
    assert proc.exitcode is None
    proc.start()
    proc.join()
    assert results.get(timeout=5) == 42 and proc.exitcode == 0 and proc.pid is None
    assert dummy.current_process() is threading.current_thread()
    assert dummy.active_children() == []
    for name in ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event", "Barrier"):
        assert getattr(dummy, name) is getattr(threading, name)
    assert dummy.Queue is queue.Queue and dummy.JoinableQueue is queue.Queue
    dummy.freeze_support()
    manager = dummy.Manager()
    assert manager is dummy
    ns = manager.Namespace(a=1)
    ns.b = 2
    assert repr(ns) == "Namespace(a=1, b=2)"
    value = manager.Value("i", 3)
    value.value += 1
    assert value.value == 4 and repr(value) == "<Value('i', 4)>"
    assert list(manager.Array("d", [1, 2])) == [1.0, 2.0]
    assert manager.dict(a=1) == {"a": 1} and manager.list([1]) == [1]
    pool = dummy.Pool(2)
    try:
        assert isinstance(pool, ThreadPool) and pool.map(abs, [-1]) == [1]
    finally:
        pool.terminate()
        pool.join()
    import multiprocess.dummy

    assert multiprocess.dummy is dummy


def test_dummy_connections():
    left, right = dummy.Pipe()
    left.send("ping")
    assert right.poll(1) and right.recv() == "ping"
    assert not left.poll()
    with dummy_connection.Listener() as listener:

        def serve():
            conn = listener.accept()
            conn.send(conn.recv() * 2)

        server = threading.Thread(target=serve)
        server.start()
        client = dummy_connection.Client(listener.address)
        client.send(21)
        assert client.recv() == 42
        server.join(5)
    with pytest.raises(ConnectionRefusedError):
        dummy_connection.Client(listener.address)
    assert set(dummy_connection.__all__) == {"Client", "Listener", "Pipe"}


@pytest.mark.timeout(30)
def test_dummy_connection_poll_waits_without_deadlock():
    import threading
    import time

    from mp_pool.dummy.connection import Pipe

    a, b = Pipe()
    assert b.poll(0.05) is False  # waits, then times out (used to deadlock)
    timer = threading.Timer(0.1, a.send, args=("late",))
    timer.start()
    started = time.monotonic()
    assert b.poll(10) is True
    assert time.monotonic() - started < 5
    assert b.recv() == "late"
    timer.join()
