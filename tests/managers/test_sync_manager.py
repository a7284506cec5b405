"""SyncManager: every shared type from several processes at once, nesting, references, errors."""

from __future__ import annotations

import copy
import functools
import gc
import pickle
import threading

import pytest

from mp_core import reduction
from mp_managers._protocol import RemoteTraceback
from mp_managers.managers import (
    AcquirerProxy,
    DictProxy,
    IteratorProxy,
    ListProxy,
    RemoteError,
    SyncManager,
)
from mp_pool.pool import Pool

from ..support import collect_garbage

pytestmark = pytest.mark.timeout(120)

WORKERS = 3
ROUNDS = 15


# ---------------------------------------------------------------- child targets


def use_every_type(worker_id, shared):
    (d, lst, ns, q, jq, lock, rlock, sem, bsem, cond, event, barrier, value, array) = shared
    assert barrier.wait(timeout=30) in range(WORKERS)
    for i in range(ROUNDS):
        with lock:
            value.value = value.value + 1
        with rlock:
            with rlock:  # recursive: same client thread, same server thread
                array[0] = array[0] + 1
        d[(worker_id, i)] = i * worker_id
        lst.append(worker_id)
    assert sem.acquire(timeout=30)
    sem.release()
    with bsem:
        pass
    setattr(ns, f"w{worker_id}", worker_id)
    task = jq.get(timeout=30)
    q.put((worker_id, task))
    jq.task_done()
    with cond:
        d["arrived"] = d.get("arrived", 0) + 1
        cond.notify_all()
    assert event.wait(30), "the parent never set the event"


def use_nested(worker_id, outer, queue):
    inner = outer["inner"]
    assert isinstance(inner, ListProxy)
    inner.append(worker_id)
    outer["ns"].last = worker_id
    assert outer["f"](worker_id) == worker_id * 2  # a lambda stored in the dict
    keys = sorted(key for key in outer if isinstance(key, str))  # iterates in the server
    assert keys == ["f", "inner", "ns"], keys
    sent = queue.get(timeout=30)  # a proxy that travelled through a managed queue
    sent.append(("from", worker_id))


def add_item(d, key, value):
    d[key] = value
    return key


def square(x):
    return x * x


# ---------------------------------------------------------------- tests


def test_every_type_used_from_several_processes_at_once(manager, children):
    m = manager
    shared = (
        m.dict(),
        m.list(),
        m.Namespace(),
        m.Queue(),
        m.JoinableQueue(),
        m.Lock(),
        m.RLock(),
        m.Semaphore(2),
        m.BoundedSemaphore(1),
        m.Condition(),
        m.Event(),
        m.Barrier(WORKERS),
        m.Value("i", 0),
        m.Array("i", [0, 7]),
    )
    d, lst, ns, q, jq, lock, rlock, sem, bsem, cond, event, barrier, value, array = shared
    for task in range(WORKERS):
        jq.put(task)
    children.start(use_every_type, [(i, shared) for i in range(WORKERS)])
    with cond:
        assert cond.wait_for(lambda: d.get("arrived", 0) == WORKERS, timeout=60)
    event.set()
    assert children.join() == [0] * WORKERS
    jq.join()
    assert value.value == WORKERS * ROUNDS
    assert array[0] == WORKERS * ROUNDS and array[1] == 7 and len(array) == 2
    assert sorted(lst) == sorted(list(range(WORKERS)) * ROUNDS)
    assert all(d[(w, i)] == i * w for w in range(WORKERS) for i in range(ROUNDS))
    assert sorted(q.get(timeout=5)[1] for _ in range(WORKERS)) == list(range(WORKERS))
    assert q.empty() and jq.empty()
    assert all(getattr(ns, f"w{w}") == w for w in range(WORKERS))
    assert barrier.parties == WORKERS and barrier.n_waiting == 0 and not barrier.broken
    assert event.is_set()
    assert not lock.acquire(False) or lock.release() is None
    assert bsem.acquire(timeout=1)
    bsem.release()
    with pytest.raises(ValueError):
        bsem.release()  # bounded: the server's error, raised here


def test_nested_proxies_across_processes(manager, children):
    m = manager
    outer = m.dict()
    outer["inner"] = m.list([0])
    outer["ns"] = m.Namespace(last=None)
    outer["f"] = lambda x: x * 2
    queue = m.Queue()
    collected = m.list()
    for _ in range(WORKERS):
        queue.put(collected)
    assert children.run(use_nested, [(i, outer, queue) for i in range(WORKERS)]) == [0] * WORKERS
    assert sorted(outer["inner"]) == [0, *range(WORKERS)]
    assert outer["ns"].last in range(WORKERS)
    assert sorted(collected) == sorted(("from", i) for i in range(WORKERS))
    # A list inside a list inside a dict: nesting goes as deep as you like.
    outer["deep"] = m.list([m.dict(level=2)])
    outer["deep"][0]["x"] = 1
    assert outer["deep"][0]["x"] == 1
    assert copy.deepcopy(outer["inner"]) == outer["inner"]._getvalue()


def test_objects_are_freed_with_their_last_proxy(manager):
    m = manager
    base = m._number_of_objects()
    d = m.dict()
    inner = m.list([1, 2])
    d["inner"] = inner
    assert m._number_of_objects() == base + 2
    del inner
    collect_garbage()
    assert m._number_of_objects() == base + 2  # still held by the dict
    fetched = d["inner"]
    assert fetched[1] == 2
    del fetched
    d.clear()
    collect_garbage()
    assert m._number_of_objects() == base + 1
    it = iter(d)
    assert isinstance(it, IteratorProxy)
    assert m._number_of_objects() == base + 2
    del it, d
    collect_garbage()
    assert m._number_of_objects() == base
    assert isinstance(m._debug_info(), str)


def test_remote_exception_is_raised_with_its_traceback(manager):
    d = manager.dict()
    with pytest.raises(KeyError) as info:
        d["missing"]
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "Traceback (most recent call last)" in str(cause) and "KeyError" in str(cause)
    lst = manager.list()
    with pytest.raises(IndexError):
        lst.pop()
    lst.append(1)  # the connection is still in step after errors
    assert lst[0] == 1


def test_unexposed_methods_are_refused(manager):
    d = manager.dict()
    with pytest.raises(AttributeError, match="not in exposed"):
        d._callmethod("__sizeof__")
    with pytest.raises(RemoteError, match="not in exposed"):  # what the standard library raises
        d._callmethod("__sizeof__")
    with pytest.raises(AttributeError, match="not in exposed"):
        d._callmethod("__class__")
    assert str(d) == "{}"  # __repr__/__str__ are always allowed
    assert d._getvalue() == {}


def test_unserializable_arguments_raise_and_keep_the_connection(manager):
    d = manager.dict()
    with pytest.raises(Exception, match="cannot serialize"):
        d["gen"] = (i for i in range(3))
    d["ok"] = 1
    assert d["ok"] == 1


def test_shutdown_with_live_proxies(manager):
    m = manager
    d = m.dict(a=1)
    lst = m.list()
    lock = m.Lock()
    m.shutdown()
    assert m._process is None or m._process.exitcode == 0
    for call in (
        functools.partial(d.__setitem__, "b", 2),
        functools.partial(lst.append, 1),
        functools.partial(lock.acquire, False),
    ):
        with pytest.raises((EOFError, OSError)):
            call()
    del d, lst, lock
    gc.collect()  # releasing references of a stopped manager neither raises nor hangs
    m.shutdown()  # idempotent
    with pytest.raises(Exception, match="shut down"):
        m.dict()


def test_threads_have_their_own_connections(manager):
    m = manager
    rlock = m.RLock()
    counter = m.Value("i", 0)
    errors = []

    def work():
        try:
            for _ in range(20):
                with rlock:
                    with rlock:
                        counter.value = counter.value + 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert counter.value == 80
    # A thread that does not hold the RLock cannot release it.
    rlock.acquire()
    outcome = []
    t = threading.Thread(target=lambda: outcome.append(_raises(rlock.release)))
    t.start()
    t.join(30)
    rlock.release()
    assert outcome == [RuntimeError]


def _raises(func):
    try:
        func()
    except Exception as exc:
        return type(exc)
    return None


def test_context_manager_and_states(ctx):
    with SyncManager(ctx=ctx) as m:
        assert isinstance(m.dict(), DictProxy)
        assert isinstance(m.Lock(), AcquirerProxy)
        with pytest.raises(Exception, match="Already started"):
            m.start()
    with pytest.raises(Exception, match="shut down"):
        m.start()
    assert m._process is None or not m._process.is_alive()


def test_proxies_passed_to_a_pool(ctx, manager):
    d = manager.dict()
    with ctx.Pool(2) as pool:
        assert isinstance(pool, Pool)
        keys = pool.starmap(add_item, [(d, i, i * i) for i in range(6)])
    assert sorted(keys) == list(range(6))
    assert dict(d.items()) == {i: i * i for i in range(6)}


def test_pool_held_by_the_manager(manager):
    with manager.Pool(2) as pool:
        assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]
        assert pool.apply_async(square, (7,)).get(timeout=30) == 49
        assert sorted(pool.imap_unordered(square, range(4))) == [0, 1, 4, 9]
        assert list(pool.imap(square, range(3))) == [0, 1, 4]


def test_proxy_handed_over_through_the_manager_outlives_its_sender(manager):
    m = manager
    base = m._number_of_objects()
    queue = m.Queue()
    queue.put(m.list([1, 2]))  # the sender's proxy is gone once put() returns
    collect_garbage()
    assert m._number_of_objects() == base + 2  # the queue's copy keeps the list
    received = queue.get()  # the server drops its copy as the reply goes out
    assert received[:] == [1, 2]
    del received
    collect_garbage()
    assert m._number_of_objects() == base + 1


def append_to_first(lst, item):
    lst[0].append(item)


def test_temporary_proxy_passed_to_a_new_child(manager, children, start_method):
    if start_method == "fork":
        pytest.skip(
            "a forked child counts its inherited proxies after fork, racing the parent's release "
            "of a temporary (as in the standard library)"
        )
    results = manager.list()
    # The only reference to the child's argument is the process object's, and
    # Process.start() drops it as soon as the child is created.
    children.start(append_to_first, [(manager.list([results]), "x")])
    gc.collect()
    assert children.join() == [0]
    assert results[:] == ["x"]


def test_pickling_outside_process_creation_never_carries_the_authkey(manager):
    d = manager.dict(a=1)
    data = bytes(reduction.dumps(d))
    assert bytes(manager._authkey) not in data
    again = pickle.loads(data)  # counts its own reference
    assert again["a"] == 1 and again._authkey == d._authkey
    before = manager._number_of_objects()
    del d
    gc.collect()
    assert manager._number_of_objects() == before and again["a"] == 1
