"""Life cycle: callbacks that submit or terminate, forked children, exiting without close, endless input."""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import mp_core
from mp_core.reduction import Serializer
from mp_pool import Pool, PoolTerminatedError

from . import helpers
from .helpers import square

pytestmark = pytest.mark.timeout(120)


def test_callbacks_may_submit_more_work_and_terminate_the_pool(make_pool):
    pool = make_pool(2)
    done = threading.Event()
    chained = []

    def then_more(value):
        chained.append(pool.apply_async(helpers.square, (value,), callback=lambda v: done.set()))

    pool.apply_async(helpers.add, (1, 2), callback=then_more).get(30)
    assert done.wait(30) and chained[0].get(30) == 9
    stopper = make_pool(1)
    pending = stopper.apply_async(helpers.sleep_then, (30,))
    stopper_two = make_pool(1)
    stopper_two.apply_async(helpers.square, (1,), callback=lambda v: stopper.terminate()).get(30)
    with pytest.raises(PoolTerminatedError):
        pending.get(10)


def _use_parents_pool(pool, conn):
    try:
        pool.apply(helpers.square, (2,))
    except RuntimeError as exc:
        conn.send(str(exc))
    else:
        conn.send("no error")


def test_a_forked_child_cannot_use_its_parents_pool(make_pool):
    pool = make_pool(1, context=mp_core.get_context("fork"))
    ctx = mp_core.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_use_parents_pool, args=(pool, writer))
    child.start()
    try:
        assert reader.poll(30)
        assert "only be used by the process that created it" in reader.recv()
    finally:
        child.join(30)
    assert child.exitcode == 0
    assert pool.apply(helpers.square, (3,)) == 9


# The test forks with os.fork() itself while the pool runs: on 3.13 that warns
# (the pool's threads step aside for it, but 3.13 counts threads before the
# fork hooks run); the warning is about the test's fork, not ours.
@pytest.mark.filterwarnings("ignore:This process .*is multi-threaded:DeprecationWarning")
def test_close_and_join_do_not_wait_for_a_child_forked_with_os_fork(make_pool):
    # A child forked by the program itself (not a Process) inherits copies
    # of the pool's task pipes; the workers must still stop on close().
    pool = make_pool(2)
    assert pool.map(square, range(10)) == [x * x for x in range(10)]
    workers = [w.pid for w in pool._pool]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked child
        time.sleep(60)
        os._exit(0)
    try:
        started = time.monotonic()
        pool.close()
        pool.join()
        assert time.monotonic() - started < 30  # not waiting for the child's 60 s
        assert all(helpers.process_gone(w) for w in workers)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


EXIT_WITHOUT_CLOSE = textwrap.dedent("""
    import sys
    import mp_core
    from mp_pool import Pool
    from tests.pool.helpers import square

    if __name__ == "__main__":
        pool = Pool(2, context=mp_core.get_context(sys.argv[1]))
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
        print("PIDS", *(w.pid for w in pool._pool), flush=True)
        pending = pool.apply_async(square, (3,))
        # no close(), no join(): the exit handlers must stop the workers
""")


def test_a_program_that_exits_without_closing_its_pool(start_method):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-W", "ignore::ResourceWarning", "-c", EXIT_WITHOUT_CLOSE, start_method],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.getcwd(),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    pids = [int(pid) for pid in done.stdout.split("PIDS", 1)[1].split()]
    assert len(pids) == 2
    assert all(helpers.process_gone(pid) for pid in pids)
    assert "Traceback" not in done.stderr, done.stderr


def test_an_endless_imap_is_read_lazily_and_stopped_by_terminate(make_pool):
    pool = make_pool(2)
    consumed = []

    def endless():
        for i in itertools.count():
            consumed.append(i)
            yield i

    # imap returns at once: an input read to its end first would never end.
    iterator = pool.imap(helpers.square, endless())
    assert [next(iterator) for _ in range(10)] == [i * i for i in range(10)]
    # (How far the feeder has read ahead by now depends on the machine's
    # load: results wait in the iterator until read, as with the standard
    # library, and only the input waiting for a worker is bounded.)
    assert len(consumed) >= 10
    feeders = [t for t in threading.enumerate() if t.name == f"PoolFeeder-{iterator._job}"]
    assert len(feeders) == 1
    pool.terminate()
    feeders[0].join(30)
    assert not feeders[0].is_alive()
    # Stopped for good: the input is not read any further.
    read = len(consumed)
    with pytest.raises((PoolTerminatedError, StopIteration)):
        for _ in range(10_000):
            next(iterator)
    assert len(consumed) == read


def test_a_pool_with_its_own_serializer(make_pool):
    plain = make_pool(1, serializer=Serializer(mode="pickle"))
    assert plain.map(helpers.square, [2]) == [4]
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError), match="cannot send the function"):
        plain.map(lambda x: x, [1])
    with pytest.raises(Exception, match="cannot send"):
        plain.apply(lambda: 1)
    dilled = make_pool(1, serializer=Serializer(mode="dill"))
    assert dilled.apply(lambda: square(5)) == 25
    assert dilled.map(lambda x: -x, [1, 2]) == [-1, -2]


def test_pools_started_by_a_pool_worker_are_refused_like_the_stdlib(make_pool):
    pool = make_pool(1)
    with pytest.raises(AssertionError, match="daemonic processes are not allowed to have children"):
        pool.apply(_start_a_pool)


def _start_a_pool():
    inner = Pool(1)
    inner.terminate()


class Counted:
    """An object whose live instances are counted (weakly)."""


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_task_arguments_and_results_are_released_after_the_call(make_pool, kind):
    # bpo-29861: neither the pool nor its threads keep the last tasks alive.
    import gc
    import weakref

    from mp_pool import ThreadPool

    if kind == "thread":
        pool = ThreadPool(3)
    else:
        pool = make_pool(2)
    try:
        objs = [Counted() for _ in range(10)]
        refs = [weakref.ref(o) for o in objs]
        assert len(pool.map(helpers.identity, objs)) == 10
        assert pool.apply(helpers.identity, (objs[0],)) is not None
        del objs
        deadline = time.monotonic() + 30
        while any(r() is not None for r in refs) and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)
        assert [r() for r in refs] == [None] * 10
    finally:
        if kind == "thread":
            pool.terminate()
            pool.join()


def test_repopulate_pool_restores_the_full_number_of_workers(make_pool):
    pool = make_pool(3, maxtasksperchild=2)
    first = {w.pid for w in pool._pool}
    assert [r.get(30) for r in [pool.apply_async(square, (i,)) for i in range(30)]] == [i * i for i in range(30)]
    pool._repopulate_pool()
    # A worker whose second result has just arrived is still on its way out
    # (and replaced once it is gone): the check is made on one snapshot in
    # which all three are alive and none is of the first generation (each of
    # those ran its two tasks and retires), not on the live list read again.
    deadline = time.monotonic() + 10
    while True:
        workers = list(pool._pool)
        pids = {w.pid for w in workers}
        if len(workers) == 3 and all(w.is_alive() for w in workers) and not first & pids:
            break
        assert time.monotonic() < deadline, ([(w.pid, w.exitcode) for w in workers], first)
        time.sleep(0.01)
    assert None not in pids and len(pids) == 3
    assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]


class _FakeProcess:
    """A process factory's product that starts three times, then fails (as in CPython's test)."""

    budget = 3
    made: list = []

    def __init__(self, **kwds):
        self.name = "Fake Process"
        self.exitcode = None
        self.state = None
        _FakeProcess.made.append(self)

    def start(self):
        if _FakeProcess.budget <= 0:
            raise OSError("Manually induced OSError")
        _FakeProcess.budget -= 1
        self.state = "started"

    def terminate(self):
        self.state = "stopping"

    def join(self):
        if self.state == "stopping":
            self.state = "stopped"

    def is_alive(self):
        return self.state in ("started", "stopping")


def test_a_worker_that_cannot_start_fails_the_pool_and_stops_the_others():
    import unittest.mock

    _FakeProcess.budget, _FakeProcess.made = 3, []
    with pytest.raises(OSError, match="Manually induced OSError"):
        Pool(5, context=unittest.mock.MagicMock(Process=_FakeProcess))
    assert [p.state for p in _FakeProcess.made] == ["stopped"] * 3 + [None]
