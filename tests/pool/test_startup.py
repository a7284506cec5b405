"""Workers that are still starting up: work goes to the ready ones, and nothing is lost or reordered.

A task is sent to a worker only once it has said READY (its initializer
ran): a spawned interpreter that is still importing, or an initializer that
takes its time, must never hold work that a ready worker could run.  The
tests hold workers in their initializer with semaphores (no sleeps) and
check results, their order, errors, a worker killed while starting up, and
a pool closed or terminated before its workers are ready.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

import pytest

import mp_core
from mp_pool import Pool, PoolTerminatedError

from ..support import run_python, run_script
from . import helpers

#: What a worker that runs a named function from an importable module never needs.
NOT_NEEDED = ("dill", "typing", "numbers", "concurrent.futures", "logging")


class Held:
    """The test's side of ``helpers.hold_all_but_one`` / ``hold_every_worker``."""

    def __init__(self, ctx):
        self.first, self.hold = ctx.Semaphore(1), ctx.Semaphore(0)
        self.reader, self.writer = ctx.Pipe(duplex=False)

    def pid(self):
        """The pid of the next worker that entered the initializer (fails after 60 s)."""
        assert self.reader.poll(60), "no worker entered its initializer"
        return self.reader.recv()


@pytest.fixture
def held(ctx):
    """A ``Held`` of the test's context; its pipe is closed and its semaphores dropped at the end."""
    made = Held(ctx)
    yield made
    made.reader.close()
    made.writer.close()
    del made.first, made.hold


def test_work_goes_to_the_ready_worker_while_another_is_still_starting(make_pool, held):
    hold = held.hold
    pool = make_pool(2, initializer=helpers.hold_all_but_one, initargs=(held.first, hold, held.writer))
    # Ten items in five chunks: before READY gated the dispatch, one chunk
    # waited in the held worker's pipe and this map with it.
    ran_on = pool.map_async(helpers.pid_of, range(10), chunksize=2).get(60)
    both = {held.pid(), held.pid()}
    assert len(set(ran_on)) == 1 and set(ran_on) < both
    assert pool.map(helpers.square, range(50), chunksize=3) == [x * x for x in range(50)]
    assert list(pool.imap(helpers.square, range(30))) == [x * x for x in range(30)]
    with pytest.raises(KeyError, match="bad item 7"):
        pool.starmap(helpers.fail_on, [(x, 7) for x in range(20)], chunksize=1)
    assert pool.apply(helpers.pid_of) in ran_on
    hold.release()  # the held worker starts: both take tasks from now on
    assert pool.map(helpers.square, range(200), chunksize=1) == [x * x for x in range(200)]
    pool.close()
    pool.join()


def test_a_worker_killed_while_starting_up_is_replaced_and_no_task_is_lost(make_pool, held):
    hold = held.hold
    pool = make_pool(2, initializer=helpers.hold_all_but_one, initargs=(held.first, hold, held.writer))
    (ready,) = set(pool.map(helpers.pid_of, range(4), chunksize=1))
    (starting,) = {held.pid(), held.pid()} - {ready}
    result = pool.map_async(helpers.square, range(40), chunksize=1)
    os.kill(starting, signal.SIGKILL)
    assert result.get(60) == [x * x for x in range(40)]
    replacement = held.pid()  # it is held in the initializer too
    assert replacement not in (ready, starting)
    assert helpers.process_gone(starting)
    hold.release()
    assert sorted(pool.map(helpers.square, range(100), chunksize=1)) == sorted(x * x for x in range(100))
    pool.close()
    pool.join()


def test_a_pool_closed_before_its_workers_are_ready_runs_what_it_was_given(make_pool, held):
    hold = held.hold
    pool = make_pool(2, initializer=helpers.hold_every_worker, initargs=(hold, held.writer))
    result = pool.map_async(helpers.square, range(20), chunksize=1)
    call = pool.apply_async(helpers.raise_value_error, ("no",))
    pool.close()
    assert {held.pid(), held.pid()}  # both workers are in their initializer
    hold.release()
    hold.release()
    assert result.get(60) == [x * x for x in range(20)]
    with pytest.raises(ValueError, match="no"):
        call.get(60)
    pool.join()


def test_a_pool_terminated_before_its_workers_are_ready(make_pool, held):
    hold = held.hold
    pool = make_pool(2, initializer=helpers.hold_every_worker, initargs=(hold, held.writer))
    result = pool.map_async(helpers.square, range(20), chunksize=1)
    workers = {held.pid(), held.pid()}
    pool.terminate()
    pool.join()
    with pytest.raises(PoolTerminatedError):
        result.get(60)
    assert all(helpers.process_gone(pid) for pid in workers)


def test_a_spawned_worker_imports_only_what_it_needs():
    # A bare interpreter of the same kind may load some of them itself (site, .pth files): those do not count.
    bare = run_python(f"import sys; print(sorted(m for m in {NOT_NEEDED!r} if m in sys.modules))")
    assert bare.returncode == 0, bare.stderr
    with Pool(2, context=mp_core.get_context("spawn")) as pool:
        loaded = pool.apply(helpers.loaded_of, (NOT_NEEDED,))
        pool.close()
        pool.join()
    assert set(loaded) <= set(eval(bare.stdout)), loaded
    # ``import multiprocess`` needs neither, nor importlib (which imports warnings), weakref or mmap:
    # nothing beyond what threading, which it needs, imports (3.13's imports warnings).
    # (PyPy's pure-Python pickler needs mmap to tell which buffers it may keep out of band.)
    names = (
        *NOT_NEEDED,
        "importlib",
        "warnings",
        "weakref",
        *(("mmap",) if sys.implementation.name == "cpython" else ()),
    )
    bare = run_python(f"import sys, threading; print(sorted(m for m in {names!r} if m in sys.modules))")
    importer = run_python(f"import sys, multiprocess; print(sorted(m for m in {names!r} if m in sys.modules))")
    assert importer.returncode == 0, importer.stderr
    assert set(eval(importer.stdout)) <= set(eval(bare.stdout)), importer.stdout
    # The versions are read when asked for (one module fewer each for every import), and right.
    versions = run_python(
        "import sys, multiprocess, mp_core\n"
        "before = sorted(m for m in sys.modules if m.endswith('.__about__'))\n"
        "from mp_core import *\n"
        "print(before, multiprocess.__version__, mp_core.__version__, __version__)"
    )
    assert versions.returncode == 0, versions.stderr
    from mp_core.__about__ import __version__ as core_version
    from multiprocess.__about__ import __version__ as meta_version

    assert versions.stdout.split() == ["[]", meta_version, core_version, core_version], versions.stdout
    # A program's first Pool imports the pool: not concurrent.futures (and logging) for it, nor
    # typing (annotations are strings), nor traceback (imported at the first failure) beyond
    # what threading, which the pool needs, imports (PyPy's imports traceback).
    names = ("concurrent.futures", "logging", "typing", "traceback")
    bare = run_python(f"import sys, threading; print(sorted(m for m in {names!r} if m in sys.modules))")
    pooled = run_python(f"import sys, multiprocess.pool; print(sorted(m for m in {names!r} if m in sys.modules))")
    assert pooled.returncode == 0, pooled.stderr
    assert set(eval(pooled.stdout)) <= set(eval(bare.stdout)), pooled.stdout


#: What ``import multiprocess``, a fork pool and a spawned worker leave out on CPython (each costs ms:
#: enum, which socket, signal and re build their constants with; pickle's pure-Python half, which imports re).
LEFT_OUT = ("socket", "selectors", "signal", "enum", "re", "pickle", "runpy", "pkgutil")


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="PyPy's only pickler is the pickle module's")
def test_import_a_fork_pool_and_a_spawned_worker_leave_out_socket_signal_and_the_pickle_module(tmp_path):
    bare = run_python(f"import sys, threading; print(sorted(m for m in {LEFT_OUT!r} if m in sys.modules))")
    assert bare.returncode == 0, bare.stderr
    # The worker runs the script again (as __mp_main__) and a function defined in it.
    done = run_script(
        tmp_path / "program.py",
        f"""
        import sys

        def loaded(_):
            return sorted(m for m in {LEFT_OUT!r} if m in sys.modules)

        if __name__ == "__main__":
            import multiprocess
            from multiprocess import reduction

            print(loaded(0))
            with multiprocess.get_context("fork").Pool(2) as pool:
                assert pool.map(abs, [-1, -2]) == [1, 2]
                print(loaded(0))  # a fork pool's parent: the zygote, the pipes, the manager thread
            with multiprocess.get_context("spawn").Pool(1) as pool:
                print(pool.apply(loaded, (0,)))
            print(reduction.HAVE_SEND_HANDLE, "socket" in sys.modules)
        """,
    )
    assert done.returncode == 0, done.stderr
    importer, fork_parent, worker, send_handle = done.stdout.splitlines()
    allowed = set(eval(bare.stdout))
    assert set(eval(importer)) <= allowed, importer
    assert set(eval(fork_parent)) <= allowed, fork_parent
    assert set(eval(worker)) <= allowed, worker
    assert send_handle == "True True"  # read when asked for: then it asks the socket module


def test_nothing_is_queued_behind_a_busy_worker_while_another_is_starting(make_pool, held, gate):
    pool = make_pool(
        2,
        initializer=helpers.hold_all_but_one_with_gate,
        initargs=(held.first, held.hold, held.writer, gate.started, gate.gate),
    )
    # (Which worker is held is known from the work: both send their pid
    # before one of them finds it is not the first.)
    both = {held.pid(), held.pid()}
    # The ready worker learns that tasks here are short: later ones would be queued behind it.
    ran_on = set(pool.map(helpers.pid_of, range(200), chunksize=1))
    assert len(ran_on) == 1 and ran_on < both, (ran_on, both)
    (late_pid,) = both - ran_on
    busy = pool.apply_async(helpers.gated)
    gate.wait_started()
    queued = pool.apply_async(helpers.pid_of)
    held.hold.release()  # the late worker starts: the queued call is its, not the busy worker's
    assert queued.get(60) == late_pid
    gate.open()
    assert busy.get(60) is None


def test_chunks_guessed_short_are_spread_over_the_workers(make_pool, gate):
    pool = make_pool(2, **gate.pool_args)
    both = [pool.apply_async(helpers.gated) for _ in range(2)]
    gate.wait_started(2)  # each worker runs one: both are ready
    gate.open(2)
    assert [r.get(60) for r in both] == [None, None]
    pool.map(helpers.square, range(2000), chunksize=1)  # the pool's tasks are short, so far
    # Eight chunks of a job with no timing of its own: all queued at once,
    # four per worker (before, the first worker took seven of them).
    pids = pool.map(helpers.pid_of, range(400), chunksize=50)
    assert sorted(Counter(pids).values()) == [200, 200]
