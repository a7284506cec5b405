"""Pool: every method of the standard library's API and its edge cases, under every start method."""

from __future__ import annotations

import gc
import os
import pickle
import threading
import time
import warnings

import pytest

import mp_core
import mp_pool
from mp_core.context import TimeoutError
from mp_pool import Pool, PoolTerminatedError
from mp_pool import pool as pool_module

from . import helpers

pytestmark = pytest.mark.timeout(120)


def test_every_method_returns_the_right_results(make_pool):
    pool = make_pool(2)
    assert pool.apply(helpers.add, (2, 3)) == 5
    assert pool.apply(helpers.add, (), {"a": 1, "b": 2}) == 3
    assert pool.apply_async(helpers.square, (7,)).get(30) == 49
    assert pool.map(helpers.square, range(10)) == [x * x for x in range(10)]
    assert pool.map(helpers.square, range(10), chunksize=3) == [x * x for x in range(10)]
    assert pool.map_async(helpers.square, [1, 2, 3]).get(30) == [1, 4, 9]
    assert pool.starmap(helpers.add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.starmap_async(helpers.add, [(1, 2), (3, 4)], chunksize=1).get(30) == [3, 7]
    assert list(pool.imap(helpers.square, range(10))) == [x * x for x in range(10)]
    assert list(pool.imap(helpers.square, range(10), chunksize=4)) == [x * x for x in range(10)]
    assert sorted(pool.imap_unordered(helpers.square, range(10))) == sorted(x * x for x in range(10))
    assert sorted(pool.imap_unordered(helpers.square, range(10), chunksize=3)) == sorted(x * x for x in range(10))


def test_generators_and_other_iterables_as_input(make_pool):
    pool = make_pool(2)
    assert pool.map(helpers.square, (x for x in range(5))) == [0, 1, 4, 9, 16]
    assert pool.starmap(helpers.add, zip(range(3), range(3))) == [0, 2, 4]
    assert sorted(pool.map(helpers.identity, {"a": 1, "b": 2})) == ["a", "b"]
    assert list(pool.imap(helpers.square, iter(range(50)), chunksize=7)) == [x * x for x in range(50)]
    assert sorted(pool.imap_unordered(helpers.square, (x for x in range(50)))) == sorted(x * x for x in range(50))
    big = list(range(10_000))
    assert pool.map(helpers.identity, big) == big
    assert pool.map(helpers.identity, tuple(big), chunksize=999) == big


def test_empty_inputs_and_chunksize_zero_as_the_stdlib(make_pool):
    pool = make_pool(2)
    seen = []
    assert pool.map(helpers.square, []) == []
    assert pool.starmap(helpers.add, []) == []
    assert list(pool.imap(helpers.square, [])) == []
    assert list(pool.imap_unordered(helpers.square, iter([]))) == []
    result = pool.map_async(helpers.square, [], callback=seen.append)
    assert result.get(10) == [] and result.successful()
    # The documentation says the callback is applied when the result becomes
    # ready; CPython's Pool skips it for an empty input (undocumented, and a
    # program waiting for its callback then waits for ever).  We follow the
    # documentation.
    assert seen == [[]]
    # map with chunksize=0 sends nothing and returns [None] * len; imap refuses it.
    assert pool.map(helpers.square, [1, 2, 3], chunksize=0) == [None, None, None]
    with pytest.raises(ValueError, match="Chunksize must be 1\\+, not 0"):
        pool.imap(helpers.square, [1, 2, 3], chunksize=0)
    with pytest.raises(ValueError, match="Chunksize must be 1\\+"):
        pool.imap_unordered(helpers.square, [1], chunksize=-1)
    assert not pool._cache


def test_result_objects_api(make_pool, gate):
    # Gated tasks cannot finish before the test opens the gate, however
    # slowly the test itself runs.
    pool = make_pool(2, **gate.pool_args)
    slow = pool.apply_async(helpers.gated, ("done",))
    assert not slow.ready()
    with pytest.raises(ValueError, match="not ready"):
        slow.successful()
    with pytest.raises(TimeoutError):
        slow.get(timeout=0.01)
    slow.wait(0.01)
    assert not slow.ready()
    gate.open()
    assert slow.get(30) == "done" and slow.ready() and slow.successful()
    failing = pool.apply_async(helpers.raise_value_error, ("nope",))
    failing.wait(30)
    assert failing.ready() and not failing.successful()
    with pytest.raises(ValueError, match="nope"):
        failing.get()
    iterator = pool.imap(helpers.gated, [None, None])
    with pytest.raises(TimeoutError):
        iterator.next(timeout=0.01)
    gate.open(2)
    assert iterator.next(timeout=30) is None
    assert next(iterator) is None
    with pytest.raises(StopIteration):
        iterator.next(timeout=1)
    unordered = pool.imap_unordered(helpers.gated, [None])
    with pytest.raises(TimeoutError):
        unordered.next(timeout=0.01)
    gate.open()
    assert unordered.next(timeout=30) is None
    with pytest.raises(StopIteration):
        unordered.next(timeout=1)
    mapped = pool.map_async(helpers.gated, [None, None], chunksize=1)
    assert not mapped.ready()
    with pytest.raises(ValueError, match="not ready"):
        mapped.successful()
    with pytest.raises(TimeoutError):
        mapped.get(timeout=0.01)
    mapped.wait(0.01)
    assert not mapped.ready()
    gate.open(2)
    assert mapped.get(30) == [None, None] and mapped.successful()
    assert isinstance(iterator, pool_module.IMapIterator)
    assert isinstance(pool.map_async(helpers.square, [1]), pool_module.MapResult)
    assert pool_module.AsyncResult is pool_module.ApplyResult
    assert pool_module.TimeoutError is mp_core.TimeoutError


def test_map_fails_with_the_first_error_and_imap_at_its_position(make_pool):
    pool = make_pool(2)
    with pytest.raises(KeyError, match="bad item 3"):
        pool.starmap(helpers.fail_on, [(x, 3) for x in range(10)], chunksize=2)
    items = list(zip(range(6), [4] * 6))
    iterator = pool.imap(_fail_on_pair, items)
    got = []
    while True:
        try:
            got.append(next(iterator))
        except KeyError:
            got.append("error")
        except StopIteration:
            break
    assert got == [0, 1, 2, 3, "error", 5]


def _fail_on_pair(pair):
    return helpers.fail_on(*pair)


def test_an_input_iterator_that_raises_fails_imap_at_that_position(make_pool):
    def numbers():
        yield 1
        yield 2
        raise OSError("input broke")

    pool = make_pool(2)
    iterator = pool.imap(helpers.square, numbers())
    assert next(iterator) == 1
    assert next(iterator) == 4
    with pytest.raises(OSError, match="input broke"):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)


def test_chained_imap_over_a_generator_does_not_deadlock(make_pool):
    pool = make_pool(2)
    inner = pool.imap(helpers.square, (x for x in range(30)))
    outer = pool.imap(helpers.identity, inner)
    assert list(outer) == [x * x for x in range(30)]


def test_callbacks_run_before_get_returns_and_one_at_a_time(make_pool):
    pool = make_pool(2)
    seen, errors, threads = [], [], set()
    active = threading.Lock()

    def callback(value):
        assert active.acquire(blocking=False), "callbacks overlapped"
        threads.add(threading.get_ident())
        seen.append(value)
        time.sleep(0.001)
        active.release()

    results = [pool.apply_async(helpers.square, (i,), callback=callback) for i in range(20)]
    failed = pool.apply_async(helpers.raise_value_error, ("cb",), error_callback=errors.append)
    mapped = pool.map_async(helpers.square, range(5), callback=callback)
    for result in results:
        result.get(30)
    assert mapped.get(30) == [0, 1, 4, 9, 16]
    with pytest.raises(ValueError):
        failed.get(30)
    assert sorted(v for v in seen if isinstance(v, int)) == [i * i for i in range(20)]
    assert [0, 1, 4, 9, 16] in seen
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert threading.get_ident() not in threads


def test_a_failing_callback_is_reported_and_the_pool_goes_on(make_pool, capfd):
    pool = make_pool(1)

    def bad_callback(value):
        raise RuntimeError("callback broke")

    result = pool.apply_async(helpers.square, (3,), callback=bad_callback)
    assert result.get(30) == 9
    assert pool.apply(helpers.square, (4,)) == 16
    assert "callback broke" in capfd.readouterr().err


def test_waiting_inside_a_callback_is_an_error_not_a_deadlock(make_pool, gate):
    pool = make_pool(2, **gate.pool_args)
    other = pool.apply_async(helpers.gated, (1,))  # not ready until the gate opens
    caught = []

    def callback(value):
        try:
            other.get()
        except RuntimeError as exc:
            caught.append(exc)

    pool.apply_async(helpers.square, (2,), callback=callback).get(30)
    assert caught and "callback" in str(caught[0])
    gate.open()
    assert other.get(30) == 1


def test_close_lets_work_finish_and_refuses_more(make_pool, gate):
    pool = make_pool(2, **gate.pool_args)
    pending = pool.map_async(helpers.gated, [None] * 4, chunksize=1)
    gate.wait_started(2)  # both workers are busy with it
    iterator = pool.imap(helpers.square, range(5))
    with pytest.raises(ValueError, match="Pool is still running"):
        pool.join()
    pool.close()
    assert repr(pool).endswith("state=CLOSE pool_size=2>")
    for submit in (
        lambda: pool.apply_async(helpers.square, (1,)),
        lambda: pool.apply(helpers.square, (1,)),
        lambda: pool.map(helpers.square, [1]),
        lambda: pool.map_async(helpers.square, [1]),
        lambda: pool.starmap(helpers.add, [(1, 2)]),
        lambda: pool.starmap_async(helpers.add, [(1, 2)]),
        lambda: pool.imap(helpers.square, [1]),
        lambda: pool.imap_unordered(helpers.square, [1]),
    ):
        with pytest.raises(ValueError, match="Pool not running"):
            submit()
    assert not pending.ready()
    gate.open(4)
    pool.join()
    assert pending.get(0) == [None] * 4
    assert list(iterator) == [x * x for x in range(5)]
    assert not pool._cache
    assert all(not p.is_alive() for p in pool._pool)


def test_context_manager_exit_terminates(make_pool):
    pool = make_pool(2)
    with pool as entered:
        assert entered is pool
        pending = pool.apply_async(helpers.sleep_then, (30,))
        workers = list(pool._pool)
    assert pool._state == pool_module.TERMINATE
    assert all(not w.is_alive() for w in workers)
    with pytest.raises(PoolTerminatedError):
        pending.get(5)
    with pytest.raises(ValueError, match="Pool not running"):
        pool.apply(helpers.square, (1,))
    pool.join()


def test_the_default_size_is_the_cpu_count(ctx):
    pool = Pool(context=ctx)
    try:
        expected = getattr(os, "process_cpu_count", os.cpu_count)() or 1  # as the stdlib of this Python
        assert pool._processes == expected == len(pool._pool)
        assert pool.map(helpers.square, range(4)) == [0, 1, 4, 9]
    finally:
        pool.terminate()
        pool.join()


def test_the_default_size_follows_process_cpu_count_where_python_has_it(ctx, monkeypatch):
    # Python 3.13 sizes a pool by os.process_cpu_count() (the CPUs this
    # process may run on), older ones by os.cpu_count(): so do we.
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    monkeypatch.setattr(os, "process_cpu_count", lambda: 2, raising=False)
    pool = Pool(context=ctx)
    try:
        assert pool._processes == 2 == len(pool._pool)
        assert pool.map(abs, [-1, -2, 3]) == [1, 2, 3]
    finally:
        pool.terminate()
        pool.join()
    monkeypatch.delattr(os, "process_cpu_count")
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one worker
    pool = Pool(context=ctx)
    try:
        assert pool._processes == 1 == len(pool._pool)
    finally:
        pool.terminate()
        pool.join()


def test_constructor_validates_its_arguments():
    with pytest.raises(ValueError, match="Number of processes must be at least 1"):
        Pool(0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        Pool(1, initializer=3)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="maxtasksperchild must be a positive int or None"):
            Pool(1, maxtasksperchild=bad)


def test_a_running_pool_collected_warns_and_stops_its_workers(ctx):
    pool = Pool(2, context=ctx)
    workers = list(pool._pool)
    pool.map(helpers.square, [1, 2])
    with pytest.warns(ResourceWarning, match="unclosed running multiprocessing pool"):
        del pool
        gc.collect()
    for worker in workers:
        worker.join(10)
        assert not worker.is_alive()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        closed = Pool(1, context=ctx)
        closed.close()
        closed.join()
        del closed
        gc.collect()


def test_the_attributes_and_names_downstream_code_relies_on(make_pool, start_method, gate):
    pool = make_pool(3, **gate.pool_args)
    assert not hasattr(Pool, "__slots__")
    pool._pathos_nodes = 3  # pathos stores its own attributes on the pool
    assert pool._state == pool_module.RUN == "RUN"
    assert pool._processes == 3
    assert isinstance(pool._cache, dict) and not pool._cache
    assert len(pool._pool) == 3
    names = set()
    for worker in pool._pool:
        assert isinstance(worker, mp_core.process.BaseProcess)
        assert worker.is_alive() and worker.daemon
        names.add(worker.name)
    assert all("PoolWorker" in name for name in names), names
    identities = pool.map(helpers.worker_identity, range(30), chunksize=1)
    assert {pid for _, _, pid in identities} <= {w.pid for w in pool._pool}
    assert all(daemon for _, daemon, _ in identities)
    pending = pool.apply_async(helpers.gated)
    assert pending._job in pool._cache
    gate.open()
    pending.get(30)
    assert pending._job not in pool._cache
    for name in (
        "ApplyResult",
        "AsyncResult",
        "MapResult",
        "IMapIterator",
        "IMapUnorderedIterator",
        "Pool",
        "ThreadPool",
        "RUN",
        "CLOSE",
        "TERMINATE",
        "MaybeEncodingError",
        "RemoteTraceback",
    ):
        assert hasattr(pool_module, name), name
    import multiprocess.pool

    assert multiprocess.pool is pool_module
    assert repr(pool) == "<mp_pool.pool.Pool state=RUN pool_size=3>"
    with pytest.raises(NotImplementedError):
        pickle.dumps(pool)


def test_the_stdlib_modules_helpers_are_there_by_name():
    # Code written against multiprocessing.pool imports these (custom pools, wrappers).
    assert pool_module.mapstar((abs, [-1, -2])) == [1, 2]
    assert pool_module.starmapstar((pow, [(2, 3), (3, 2)])) == [8, 9]
    try:
        raise KeyError("in the worker")
    except KeyError as exc:
        packed = pool_module.ExceptionWithTraceback(exc, exc.__traceback__)
    unpacked = pickle.loads(pickle.dumps(packed))
    assert type(unpacked) is KeyError and unpacked.args == ("in the worker",)
    assert isinstance(unpacked.__cause__, pool_module.RemoteTraceback)
    assert "test_the_stdlib_modules_helpers_are_there_by_name" in str(unpacked.__cause__)
    assert pool_module.rebuild_exc(ValueError("x"), "tb text").__cause__.tb == "tb text"


def test_the_context_factory_and_the_door(ctx):
    pool = ctx.Pool(2)
    try:
        assert isinstance(pool, mp_pool.Pool)
        assert pool._ctx is ctx
        assert pool.map(helpers.square, [3]) == [9]
    finally:
        pool.terminate()
        pool.join()
    assert mp_pool.__version__
    assert set(mp_pool.__all__) >= {"Pool", "ThreadPool", "WorkerLostError", "MaybeEncodingError"}


def test_big_payloads_both_ways(make_pool):
    pool = make_pool(2)
    blob = bytes(range(256)) * (4 * 4096)  # 4 MiB: more than a pipe holds
    assert pool.apply(helpers.identity, (blob,)) == blob
    blobs = [blob[i:] for i in range(6)]
    assert pool.map(helpers.identity, blobs) == blobs
    assert list(pool.imap_unordered(len, blobs)) != []


def test_many_tiny_tasks_in_flight_at_once(make_pool):
    pool = make_pool(2)
    results = [pool.apply_async(helpers.add, (i, 1)) for i in range(500)]
    assert [r.get(60) for r in results] == list(range(1, 501))
    assert pool.map(helpers.square, range(3000), chunksize=1) == [x * x for x in range(3000)]
    assert not pool._cache
