"""mp_dask.Pool on a LocalCluster of 2 worker processes: the Pool API, errors, faults, callbacks, asyncio."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
import uuid
import warnings

import pytest

from .conftest import NEEDS_DISTRIBUTED

pytest.importorskip("mp_dask", reason=NEEDS_DISTRIBUTED)  # before distributed: see mp_dask._distributed

import mp_dask  # noqa: E402
from mp_pool.pool import IMapIterator, MapResult, RemoteTraceback  # noqa: E402

from . import _worker_state  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def double(x):
    return 2 * x


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"item {x} is not welcome")
    return x


# ---------------------------------------------------------------- the API


def test_apply_and_apply_async_call_back_before_get_returns(pool):
    assert pool.apply(divmod, (17, 5)) == (3, 2)
    assert pool.apply(lambda a, b=0: a - b, (10,), {"b": 4}) == 6
    seen = []
    result = pool.apply_async(double, (21,), callback=seen.append)
    assert result.get(timeout=30) == 42
    assert seen == [42]
    assert result.ready() and result.successful()

    errors = []
    failing = pool.apply_async(fail_on_three, (3,), error_callback=errors.append)
    failing.wait(30)
    assert failing.ready() and not failing.successful()
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    with pytest.raises(ValueError, match="item 3 is not welcome"):
        failing.get(0)


def test_map_starmap_and_their_async_forms_with_lambdas_and_closures(pool):
    offset = 100  # a closure: travels with the function, by value
    assert pool.map(lambda x: x + offset, range(10)) == [x + 100 for x in range(10)]
    assert pool.map(double, range(7), chunksize=1) == [0, 2, 4, 6, 8, 10, 12]
    assert pool.map(double, []) == []
    assert pool.starmap(lambda a, b: a * b + offset, [(1, 2), (3, 4)]) == [102, 112]

    seen = []
    result = pool.map_async(double, range(5), callback=seen.append)
    assert isinstance(result, MapResult)
    assert result.get(timeout=30) == [0, 2, 4, 6, 8]
    assert seen == [[0, 2, 4, 6, 8]]
    assert pool.starmap_async(pow, [(2, 5), (3, 3)], chunksize=1).get(timeout=30) == [32, 27]
    empty = []
    assert pool.map_async(double, [], callback=empty.append).get(timeout=30) == [] and empty == [[]]


def test_one_dask_task_per_chunk_with_the_standard_chunk_size(pool, monkeypatch):
    spans = []
    submit = pool._engine.submit_chunks

    def recording(job, func_payload, chunks):
        spans.append([span for _index, _start, span, _payload in chunks])
        return submit(job, func_payload, chunks)

    monkeypatch.setattr(pool._engine, "submit_chunks", recording)
    assert pool.map(double, range(10), chunksize=3) == [2 * x for x in range(10)]
    # The standard library's default: ceil(len / (4 * workers)), 2 workers here.
    assert pool.map(double, range(100)) == [2 * x for x in range(100)]
    assert spans == [[3, 3, 3, 1], [13] * 7 + [9]]


def test_imap_keeps_order_and_reads_a_generator_lazily(pool):
    consumed = itertools.count()
    read = []

    def numbers():
        for n in consumed:
            read.append(n)
            yield n

    iterator = pool.imap(double, numbers(), chunksize=2)  # an endless input
    assert isinstance(iterator, IMapIterator)
    assert [next(iterator) for _ in range(20)] == [2 * n for n in range(20)]
    # Never more than the window of chunks ahead of what was handed out.
    assert len(read) <= 20 + (pool._engine.window + 1) * 2
    iterator.close()
    assert pool._engine.wait_idle(30), "the feeder and the chunks in flight did not finish"
    stopped_at = len(read)
    assert pool.map(double, [1]) == [2]
    assert len(read) == stopped_at  # the feeder stopped reading


def test_imap_unordered_and_an_input_that_raises(pool):
    assert sorted(pool.imap_unordered(double, iter(range(9)), chunksize=2)) == [2 * n for n in range(9)]

    def three_then_fail():
        yield from (1, 2, 3)
        raise LookupError("the input gave out")

    iterator = pool.imap(double, three_then_fail())
    assert [next(iterator) for _ in range(3)] == [2, 4, 6]
    with pytest.raises(LookupError, match="the input gave out"):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)


def test_task_error_arrives_with_its_type_and_the_remote_traceback(pool):
    with pytest.raises(ValueError, match="item 3 is not welcome") as excinfo:
        pool.map(fail_on_three, range(6), chunksize=2)
    cause = excinfo.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "fail_on_three" in cause.tb and "raise ValueError" in cause.tb
    # The pool goes on.
    assert pool.map(fail_on_three, [1, 2]) == [1, 2]


def test_await_and_async_for(pool):
    async def main():
        value = await pool.apply_async(double, (8,))
        mapped = await pool.map_async(double, range(4))
        streamed = [x async for x in pool.imap(double, range(5))]
        return value, mapped, streamed

    assert asyncio.run(main()) == (16, [0, 2, 4, 6], [0, 2, 4, 6, 8])


def test_unserializable_argument_raises_at_the_sender(pool):
    with pytest.raises(TypeError, match="generator"):
        pool.apply_async(double, ((n for n in range(3)),))
    assert pool.apply(double, (1,)) == 2


def test_close_and_join_wait_for_the_work_and_leave_the_callers_client_open(client):
    p = mp_dask.Pool(client=client)
    result = p.map_async(double, range(20), chunksize=1)
    p.close()
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(double, (1,))
    p.join()
    assert result.ready() and result.get(0) == [2 * n for n in range(20)]
    assert client.submit(double, 4).result(timeout=30) == 8  # the caller's client still works


def test_terminate_fails_what_is_pending(client, tmp_path):
    fifo = str(tmp_path / "release")
    os.mkfifo(fifo)
    p = mp_dask.Pool(client=client)
    blocked = p.apply_async(_worker_state.block_until_released, (fifo,))
    p.terminate()
    p.join()
    with pytest.raises(mp_dask.PoolTerminatedError):
        blocked.get(30)
    with open(fifo, "w") as f:  # the worker's thread cannot be stopped: let it finish
        f.write("go\n")


# ---------------------------------------------------------------- initializer and options


def test_initializer_runs_once_per_worker_before_its_first_task(client):
    tag = uuid.uuid4().hex
    with mp_dask.Pool(client=client, initializer=_worker_state.record_initializer, initargs=(tag,)) as p:
        seen = p.map(_worker_state.what_this_worker_saw, range(40), chunksize=1)
    for _pid, initialized in seen:
        assert initialized.count(tag) == 1


def test_failing_initializer_breaks_the_pool(client):
    with mp_dask.Pool(client=client, initializer=_worker_state.failing_initializer, initargs=("no db",)) as p:
        with pytest.raises(mp_dask.BrokenPoolError, match="no db") as excinfo:
            p.map(double, range(4))
        assert isinstance(excinfo.value.__cause__, RuntimeError)
        with pytest.raises(mp_dask.BrokenPoolError):
            p.apply_async(double, (1,))


def test_options_that_do_not_apply_are_refused_or_warned(client):
    with pytest.warns(RuntimeWarning, match="maxtasksperchild"):
        p = mp_dask.Pool(client=client, maxtasksperchild=10)
    p.terminate()
    p.join()
    with pytest.raises(ValueError, match="maxtasksperchild"):
        mp_dask.Pool(client=client, maxtasksperchild=0)
    with pytest.raises(NotImplementedError, match="task_timeout"):
        mp_dask.Pool(client=client, task_timeout=1.0)
    with pytest.raises(NotImplementedError, match="cancel"):
        mp_dask.Pool(client=client, cancel_running=True)
    with pytest.raises(ValueError, match="not both"):
        mp_dask.Pool(client=client, address="tcp://127.0.0.1:1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with mp_dask.Pool(client=client) as p:
            with pytest.raises(NotImplementedError, match="task_timeout"):
                p.map(double, [1], task_timeout=5)


# ---------------------------------------------------------------- faults


def test_a_killed_worker_fails_its_chunk_with_worker_lost_error_and_the_pool_goes_on(pool, tmp_path):
    fifo = str(tmp_path / "running")
    os.mkfifo(fifo)
    result = pool.apply_async(_worker_state.announce_then_block, (fifo,))
    with open(fifo) as f:  # the task has started when its pid arrives
        pid = int(f.readline())
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(mp_dask.WorkerLostError, match=r"dask worker tcp://127\.0\.0\.1:\d+ died") as excinfo:
        result.get(timeout=30)
    assert time.monotonic() - killed < 30
    assert excinfo.value.task == "announce_then_block"
    assert pool.map(double, range(6)) == [0, 2, 4, 6, 8, 10]
