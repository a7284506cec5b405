"""Faults: workers that die mid-task, crash, exit early or never start; terminate; an owner that is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mp_core import ProcessError
from mp_pool import BrokenPoolError, PoolTerminatedError, WorkerLostError

from . import helpers

pytestmark = pytest.mark.timeout(120)


def assert_lost(excinfo, *fragments):
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, message


# Losing a worker fails its task at once (a few milliseconds here, measured by
# ``python -m tools.promptness``); the tests allow a loaded machine 10 s and
# still fail if the loss is only noticed by a time-out or at shutdown.
PROMPT = 10.0


def assert_replaced(pool, lost_pid, size):
    """The pool is back to ``size`` workers, none of them the one that died."""
    assert len(pool._pool) == size and lost_pid not in {w.pid for w in pool._pool}


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_a_worker_dying_mid_task_fails_that_task_promptly_and_the_pool_goes_on(make_pool, how):
    pool = make_pool(2)
    pool.map(helpers.square, range(4))  # workers are up
    before = {w.pid for w in pool._pool}
    started = time.monotonic()
    with pytest.raises(WorkerLostError) as excinfo:
        pool.apply(helpers.die_on, (1, 1, how))
    assert time.monotonic() - started < PROMPT
    assert isinstance(excinfo.value, ProcessError)
    assert isinstance(excinfo.value, RuntimeError)  # as BrokenProcessPool is
    if how == "kill":
        assert_lost(excinfo, "died with SIGKILL while running task", "apply job", "die_on")
        assert excinfo.value.exitcode == -signal.SIGKILL
    else:
        assert_lost(excinfo, "exited with code 5 while running task", "apply job", "die_on")
        assert excinfo.value.exitcode == 5
    assert excinfo.value.pid in before
    assert pool.map(helpers.square, range(20)) == [x * x for x in range(20)]
    assert_replaced(pool, excinfo.value.pid, 2)


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_a_worker_dying_inside_a_map_raises_from_map_and_the_next_map_works(make_pool, how):
    pool = make_pool(2)
    pool.apply(helpers.square, (1,))
    started = time.monotonic()
    with pytest.raises(WorkerLostError) as excinfo:
        pool.starmap(helpers.die_on, [(x, 7, how) for x in range(20)], chunksize=2)
    assert time.monotonic() - started < PROMPT
    expected = "died with SIGKILL" if how == "kill" else "exited with code 5"
    assert_lost(excinfo, expected, "starmap job", "chunk 3: items 6-7", "die_on")
    assert pool.map(helpers.square, range(50)) == [x * x for x in range(50)]
    assert_replaced(pool, excinfo.value.pid, 2)


@pytest.mark.parametrize("how", ["kill", "exit"])
@pytest.mark.parametrize("ordered", [False, True], ids=["imap_unordered", "imap"])
def test_other_tasks_complete_when_a_worker_dies(make_pool, how, ordered):
    pool = make_pool(2)
    pool.apply(helpers.square, (1,))  # tasks are short: workers prefetch
    method = pool.imap if ordered else pool.imap_unordered
    outcomes = list(_drain(method(_die_on_13_killed if how == "kill" else _die_on_13_exited, range(40))))
    errors = [o for o in outcomes if isinstance(o, WorkerLostError)]
    results = [o for o in outcomes if not isinstance(o, WorkerLostError)]
    assert len(errors) == 1 and "item 13" in str(errors[0])
    if ordered:
        assert outcomes[:13] == list(range(13)) and outcomes[14:] == list(range(14, 40))
    else:
        assert sorted(results) == [x for x in range(40) if x != 13]


def _die_on_13_killed(x):
    return helpers.die_on(x, 13, "kill")


def _die_on_13_exited(x):
    return helpers.die_on(x, 13, "exit")


def _drain(iterator):
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            yield exc


def test_a_segfaulting_task(make_pool):
    pool = make_pool(1)
    pool.apply(helpers.square, (1,))  # the worker is up
    started = time.monotonic()
    with pytest.raises(WorkerLostError) as excinfo:
        pool.apply(helpers.segfault)
    assert time.monotonic() - started < PROMPT
    assert_lost(excinfo, "died with SIGSEGV", "segfault")
    assert excinfo.value.exitcode == -signal.SIGSEGV
    assert pool.apply(helpers.square, (5,)) == 25
    assert_replaced(pool, excinfo.value.pid, 1)


def test_a_lost_worker_is_caught_by_except_runtime_error_and_survives_pickling(make_pool):
    # Frameworks wrap worker crashes with ``except RuntimeError`` (as they
    # would around concurrent.futures' BrokenProcessPool).
    import pickle

    pool = make_pool(1)
    try:
        pool.apply(helpers.die_on, (1, 1, "exit"))
    except RuntimeError as exc:
        caught = exc
    else:  # pragma: no cover - the assertion below says what went wrong
        caught = None
    assert type(caught) is WorkerLostError and isinstance(caught, ProcessError)
    assert WorkerLostError.__mro__[1:3] == (ProcessError, RuntimeError)
    copy = pickle.loads(pickle.dumps(caught))
    assert (type(copy), copy.args, copy.pid, copy.exitcode, copy.task) == (
        WorkerLostError,
        caught.args,
        caught.pid,
        5,
        caught.task,
    )


def test_a_worker_killed_while_idle_is_replaced(make_pool):
    pool = make_pool(2)
    victim = pool._pool[0]
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while victim.pid in {w.pid for w in pool._pool} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert victim.pid not in {w.pid for w in pool._pool}
    assert pool.map(helpers.square, range(10)) == [x * x for x in range(10)]
    assert len(pool._pool) == 2


def test_maxtasksperchild_1_gives_every_task_a_fresh_worker(make_pool, start_method):
    # 200 replacements under fork (the zygote forks them); fewer where each
    # is a new interpreter: PyPy under spawn, on a busy machine, starts
    # one in about a second.
    tasks = 200 if start_method == "fork" else 60
    pool = make_pool(2, maxtasksperchild=1)
    pids = pool.map(helpers.pid_of, range(tasks), chunksize=1)
    assert len(pids) == tasks
    assert len(set(pids)) == tasks  # each worker ran exactly one task
    assert len(pool._pool) <= 2
    assert sorted(pool.map(helpers.square, range(10), chunksize=1)) == sorted(x * x for x in range(10))


def test_maxtasksperchild_with_chunks_loses_and_duplicates_nothing(make_pool):
    pool = make_pool(2, maxtasksperchild=3)
    assert pool.map(helpers.identity, range(300), chunksize=7) == list(range(300))
    assert sorted(pool.imap_unordered(helpers.identity, range(100), chunksize=3)) == list(range(100))


def test_terminate_during_a_long_map_is_prompt(make_pool, gate):
    pool = make_pool(2, **gate.pool_args)
    pending = pool.map_async(helpers.gated, [None] * 6)
    iterator = pool.imap(helpers.gated, [None] * 4)
    gate.wait_started(2)  # both workers are in a task that waits 90 s for a gate nobody opens
    workers = list(pool._pool)
    started = time.monotonic()
    pool.terminate()
    assert time.monotonic() - started < 30
    assert all(not w.is_alive() for w in workers)
    with pytest.raises(PoolTerminatedError):
        pending.get(1)
    with pytest.raises(PoolTerminatedError):
        next(iterator)
    pool.join()


def test_an_initializer_that_raises_breaks_the_pool_with_a_clear_error(make_pool):
    pool = make_pool(2, initializer=helpers.failing_initializer)
    with pytest.raises(BrokenPoolError, match="initializer failed") as excinfo:
        pool.map(helpers.square, range(10))
    cause = excinfo.value.__cause__
    assert isinstance(cause, RuntimeError) and "initializer says no" in str(cause)
    assert "failing_initializer" in str(cause.__cause__)  # the remote traceback
    with pytest.raises(BrokenPoolError):
        pool.apply_async(helpers.square, (1,))
    pool.close()
    pool.join()


def test_an_initializer_that_exits_breaks_the_pool(make_pool):
    pool = make_pool(2, initializer=helpers.exiting_initializer)
    with pytest.raises(BrokenPoolError, match="exited with code 7 while starting up"):
        pool.apply(helpers.square, (3,))
    pool.terminate()
    pool.join()


OWNER = textwrap.dedent("""
    import sys, time
    import mp_core
    from mp_core import forkserver, resource_tracker
    from mp_pool import Pool
    from tests.pool.helpers import gated, install_gate

    if __name__ == "__main__":
        ctx = mp_core.get_context(sys.argv[1])
        started, gate = ctx.Semaphore(0), ctx.Semaphore(0)
        pool = Pool(2, context=ctx, initializer=install_gate, initargs=(started, gate))
        result = pool.map_async(gated, range(8), chunksize=1)
        for _ in range(2):  # both workers are busy
            assert started.acquire(timeout=60), "the workers did not start their tasks"
        print(" ".join(str(w.pid) for w in pool._pool), flush=True)
        # The helpers this process started, when it has any: they must not
        # outlive it either.
        helpers = [forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid]
        print(" ".join(str(pid) for pid in helpers if pid is not None), flush=True)
        time.sleep(120)
""")


def test_workers_exit_when_the_pools_owner_is_killed(start_method, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, start_method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
        env=env,
    )
    try:
        line = owner.stdout.readline()
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2, (line, owner.stderr.read() if owner.poll() is not None else "")
        others = [int(pid) for pid in owner.stdout.readline().split()]
        if start_method == "forkserver":
            assert others, "the fork server's pid was not reported"
        everyone = pids + others
        assert not any(helpers.process_gone(pid) for pid in everyone)
        owner.kill()
        owner.wait(10)
        deadline = time.monotonic() + 30
        while not all(helpers.process_gone(pid) for pid in everyone) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(helpers.process_gone(pid) for pid in everyone), [
            pid for pid in everyone if not helpers.process_gone(pid)
        ]
    finally:
        owner.kill()
        owner.wait(10)
        owner.stdout.close()
        owner.stderr.close()
