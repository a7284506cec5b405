"""Lock, RLock, Semaphore, BoundedSemaphore: exclusion, counting, ownership, sharing, cleanup."""

from __future__ import annotations

import os
import pickle
import threading
import time

import pytest

import mp_core
from mp_core import reduction
from mp_sync import synchronize

from ..support import collect_garbage, run_python, run_script, shm_entries

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- children


def add_to_file_counter(lock, path, times):
    """Increment the number in ``path`` ``times`` times, each a read-sleep-write under ``lock``."""
    for _ in range(times):
        with lock:
            with open(path) as f:
                value = int(f.read())
            # Widen the window between read and write, so that a broken
            # lock would lose updates.
            time.sleep(0.0002)
            with open(path, "w") as f:
                f.write(str(value + 1))


def log_visits(sem, path, visits):
    """Enter ``sem`` ``visits`` times, logging entry and exit to ``path`` (one append each)."""
    for _ in range(visits):
        with sem:
            with open(path, "a") as f:
                f.write("+\n")
            time.sleep(0.01)
            with open(path, "a") as f:
                f.write("-\n")


def hold_until_told(lock, held, done):
    with lock:
        held.set()
        done.wait(30)


def hold_all_until_told(obj, times, held, done):
    for _ in range(times):
        obj.acquire()
    held.set()
    done.wait(30)
    for _ in range(times):
        obj.release()


def try_release(lock, conn):
    try:
        lock.release()
    except Exception as exc:
        conn.send((type(exc).__name__, str(exc)))
    else:
        conn.send(None)
    conn.close()


def report_repr(obj, conn):
    conn.send(repr(obj))
    conn.close()


def acquire_and_report(lock, conn):
    conn.send(lock.acquire(timeout=10))
    lock.release()
    conn.close()


# ---------------------------------------------------------------- Lock


def test_lock_gives_mutual_exclusion_under_load(ctx, start, tmp_path):
    path = tmp_path / "counter"
    path.write_text("0")
    lock = ctx.Lock()
    procs = [start(add_to_file_counter, lock, str(path), 40) for _ in range(4)]
    add_to_file_counter(lock, str(path), 40)
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert path.read_text() == str(5 * 40)


def test_lock_acquire_block_and_timeout_against_another_process(ctx, start):
    lock, held, done = ctx.Lock(), ctx.Event(), ctx.Event()
    proc = start(hold_until_told, lock, held, done)
    assert held.wait(30)
    assert lock.locked()
    assert lock.acquire(False) is False
    assert lock.acquire(block=False) is False
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.2) is False
    assert 0.15 < time.monotonic() - t0 < 5
    assert repr(lock) == "<Lock(owner=SomeOtherProcess)>"
    done.set()
    assert lock.acquire(timeout=30) is True
    assert repr(lock) == "<Lock(owner=MainProcess)>"
    lock.release()
    proc.join(30)
    assert proc.exitcode == 0


def test_lock_basics_and_repr(ctx):
    lock = ctx.Lock()
    assert isinstance(lock, synchronize.Lock)
    assert repr(lock) == "<Lock(owner=None)>"
    assert not lock.locked()
    with lock as entered:
        assert entered is True
        assert lock.locked()
        assert repr(lock) == "<Lock(owner=MainProcess)>"
        seen = []
        thread = threading.Thread(target=lambda: seen.append(repr(lock)), name="Other")
        thread.start()
        thread.join()
        assert seen == ["<Lock(owner=SomeOtherThread)>"]
    assert lock.acquire() is True
    lock.release()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()


def test_lock_may_be_released_by_another_process(ctx, start):
    # Unlike RLock, a Lock has no owner (as threading.Lock).
    lock = ctx.Lock()
    lock.acquire()
    left, right = ctx.Pipe()
    proc = start(try_release, lock, right)
    assert left.recv() is None
    proc.join(30)
    assert not lock.locked()


def test_lock_repr_in_a_child_holding_it(ctx, start):
    lock = ctx.Lock()
    left, right = ctx.Pipe()
    with lock:
        proc = start(report_repr, lock, right)
        assert left.recv() == "<Lock(owner=SomeOtherProcess)>"
    proc.join(30)


@pytest.mark.parametrize("factory", ["Lock", "RLock", "Semaphore", "BoundedSemaphore"])
def test_locked_reports_whether_acquire_would_fail_here_and_from_another_process(ctx, start, factory):
    # Python 3.14's locked(), on every version: true exactly when a
    # non-blocking acquire would fail; a semaphore of value 2 is locked only
    # once both are taken.
    args = (2,) if "Semaphore" in factory else ()
    value = args[0] if args else 1
    obj = getattr(ctx, factory)(*args)
    assert obj.locked() is False
    for _ in range(value):
        assert obj.acquire(False)
    assert obj.locked() is True
    for _ in range(value):
        obj.release()
    assert obj.locked() is False
    held, done = ctx.Event(), ctx.Event()
    proc = start(hold_all_until_told, obj, value, held, done)
    assert held.wait(30)
    assert obj.locked() is True
    assert obj.acquire(False) is False
    done.set()
    proc.join(30)
    assert proc.exitcode == 0
    assert obj.locked() is False


# ---------------------------------------------------------------- RLock


def test_rlock_recursion_count_and_repr(ctx):
    rlock = ctx.RLock()
    assert repr(rlock) == "<RLock(None, 0)>"
    assert rlock.acquire()
    assert rlock.acquire(timeout=1)
    with rlock:
        assert repr(rlock) == "<RLock(MainProcess, 3)>"
    assert repr(rlock) == "<RLock(MainProcess, 2)>"
    rlock.release()
    rlock.release()
    assert repr(rlock) == "<RLock(None, 0)>"
    with pytest.raises(AssertionError, match="not owned"):
        rlock.release()


def test_rlock_refuses_release_from_another_thread_and_process(ctx, start):
    rlock = ctx.RLock()
    rlock.acquire()
    errors = []

    def from_thread():
        try:
            rlock.release()
        except AssertionError as exc:
            errors.append(type(exc))  # not the exception: its traceback would make a cycle
        errors.append(repr(rlock))
        errors.append(rlock.acquire(False))

    thread = threading.Thread(target=from_thread)
    thread.start()
    thread.join()
    assert errors[0] is AssertionError
    assert errors[1:] == ["<RLock(SomeOtherThread, nonzero)>", False]

    left, right = ctx.Pipe()
    proc = start(try_release, rlock, right)
    kind, message = left.recv()
    assert kind == "AssertionError" and "not owned" in message
    proc.join(30)
    assert proc.exitcode == 0

    left, right = ctx.Pipe()
    proc = start(report_repr, rlock, right)
    assert left.recv() == "<RLock(SomeOtherProcess, nonzero)>"
    proc.join(30)
    rlock.release()
    # Free again: a child can take it.
    left, right = ctx.Pipe()
    proc = start(acquire_and_report, rlock, right)
    assert left.recv() is True
    proc.join(30)


def test_rlock_held_at_fork_is_not_owned_by_the_child(start_method, ctx, start):
    # The child's copy of the recursion count is reset (after-fork hook):
    # it must not believe it owns its parent's lock.
    rlock = ctx.RLock()
    with rlock:
        left, right = ctx.Pipe()
        proc = start(try_release, rlock, right)
        kind, _message = left.recv()
        assert kind == "AssertionError"
        proc.join(30)


# ---------------------------------------------------------------- semaphores


def test_semaphore_counts_and_limits_concurrency(ctx, start, tmp_path):
    sem = ctx.Semaphore(2)
    assert repr(sem) == "<Semaphore(value=2)>"
    path = tmp_path / "visits"
    procs = [start(log_visits, sem, str(path), 3) for _ in range(4)]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    inside = peak = 0
    for line in path.read_text().split():
        inside += 1 if line == "+" else -1
        peak = max(peak, inside)
    assert inside == 0
    assert peak <= 2  # never more than the semaphore's value
    assert sem.get_value() == 2
    # ...and that many are admitted at once (without relying on the visits
    # above overlapping in time: slow starts, on PyPy say, keep them apart).
    done = ctx.Event()
    held = [ctx.Event() for _ in range(2)]
    holders = [start(hold_until_told, sem, event, done) for event in held]
    try:
        assert all(event.wait(60) for event in held)
        assert sem.get_value() == 0 and sem.acquire(False) is False
    finally:
        done.set()
    for proc in holders:
        proc.join(60)
        assert proc.exitcode == 0
    assert sem.get_value() == 2


def test_semaphore_acquire_release_and_timeout(ctx):
    sem = ctx.Semaphore(0)
    assert repr(sem) == "<Semaphore(value=0)>"
    assert sem.acquire(False) is False
    t0 = time.monotonic()
    assert sem.acquire(timeout=0.1) is False
    assert time.monotonic() - t0 >= 0.09
    for _ in range(3):
        sem.release()
    assert sem.get_value() == 3
    assert all(sem.acquire(False) for _ in range(3))
    assert sem.acquire(False) is False
    sem.release()  # an unbounded semaphore may be released at will
    sem.release()
    assert sem.get_value() == 2
    with pytest.raises(ValueError, match=">= 0"):
        ctx.Semaphore(-1)


def test_bounded_semaphore_refuses_over_release(ctx):
    sem = ctx.BoundedSemaphore(2)
    assert repr(sem) == "<BoundedSemaphore(value=2, maxvalue=2)>"
    with pytest.raises(ValueError):
        sem.release()
    assert sem.acquire()
    assert repr(sem) == "<BoundedSemaphore(value=1, maxvalue=2)>"
    sem.release()
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()
    assert sem.get_value() == 2


def test_module_level_and_context_factories_make_our_types(ctx):
    assert type(ctx.Lock()) is synchronize.Lock
    assert type(ctx.RLock()) is synchronize.RLock
    assert type(ctx.Semaphore()) is synchronize.Semaphore
    assert type(ctx.BoundedSemaphore()) is synchronize.BoundedSemaphore
    assert type(mp_core.Lock()) is synchronize.Lock


# ---------------------------------------------------------------- sharing


@pytest.mark.parametrize("factory", ["Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition", "Event"])
def test_pickling_outside_process_creation_raises_the_stdlib_error(ctx, factory):
    obj = getattr(ctx, factory)()
    message = f"{factory} objects should only be shared between processes through inheritance"
    with pytest.raises(RuntimeError, match=message):
        pickle.dumps(obj)
    with pytest.raises(RuntimeError, match=message):
        reduction.dumps(obj)
    with pytest.raises(RuntimeError, match="Barrier objects should only be shared"):
        pickle.dumps(ctx.Barrier(2))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_fork_context_lock_cannot_reach_a_child_of_another_method(method):
    lock = mp_core.get_context("fork").Lock()
    proc = mp_core.get_context(method).Process(target=report_repr, args=(lock, None))
    with pytest.raises(RuntimeError) as info:
        proc.start()
    assert str(info.value) == (
        f"A SemLock created in a fork context is being shared with a process in a {method} context, "
        f"which is not supported: create the Lock from the same context as the Process (ctx.Lock())"
    )


def test_named_semaphores_exist_only_while_needed(start_method, ctx):
    before = shm_entries()
    lock = ctx.Lock()
    names = shm_entries() - before
    if start_method == "fork":
        assert names == set()  # anonymous from the start
    else:
        assert len(names) == 1 and next(iter(names)).startswith("sem.mp-")
    left, right = ctx.Pipe()
    proc = ctx.Process(target=acquire_and_report, args=(lock, right))
    proc.start()
    assert left.recv() is True
    proc.join(30)
    del lock
    collect_garbage()
    if start_method != "fork":
        # Still linked: a child it was sent to may be about to open it.
        assert len(shm_entries() - before) == 1
    del proc
    collect_garbage()
    assert shm_entries() - before == set()


def test_a_semaphore_passed_only_as_an_argument_outlives_its_creator(ctx):
    # The Lock below is referenced only by the Process arguments, which
    # start() drops: it must stay open until the child has opened it.
    left, right = ctx.Pipe()
    proc = ctx.Process(target=acquire_and_report, args=(ctx.Lock(), right))
    proc.start()
    collect_garbage()
    assert left.poll(30) and left.recv() is True
    proc.join(30)
    assert proc.exitcode == 0


def test_semaphores_of_a_killed_program_are_unlinked_by_the_tracker():
    # The program names its own semaphores: entries of other programs in
    # /dev/shm, made meanwhile, are none of this test's business.
    out = run_python("""
        import os, sys
        import mp_core
        ctx = mp_core.get_context("spawn")
        lock, semaphore, cond = ctx.Lock(), ctx.Semaphore(3), ctx.Condition()
        every = [lock, semaphore, cond._lock, cond._sleeping_count, cond._woken_count, cond._wait_semaphore]
        print(*("sem." + each._semlock.name.lstrip("/") for each in every), flush=True)
        os._exit(0)  # no finalizer runs: only the resource tracker can clean up
    """)
    assert out.returncode == 0, out.stderr
    names = out.stdout.split()
    assert len(names) == 6 and all(name.startswith("sem.mp-") for name in names)
    deadline = time.monotonic() + 20
    while any(os.path.exists("/dev/shm/" + name) for name in names) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [name for name in names if os.path.exists("/dev/shm/" + name)] == []
    assert "leaked semaphore objects" in out.stderr


GLOBAL_SEMAPHORE_PROGRAM = """
    import os, sys
    import mp_core

    ctx = mp_core.get_context(sys.argv[1])
    # Made again in a spawned child, which imports this module again.
    global_resource = ctx.Semaphore()

    def submain():
        print("child", os.getpid(), flush=True)

    if __name__ == "__main__":
        p = ctx.Process(target=submain)
        p.start()
        p.join(60)
        print("exitcode", p.exitcode)
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_global_named_semaphore_in_main_does_not_leak_through_a_child(tmp_path, method):
    # The child's copy is released at the child's exit: no leak warning from
    # the resource tracker (the stdlib's gh-90549).  Under forkserver the
    # server, which preloads the main module (seeing the program's argv),
    # releases its own copy when it exits.
    result = run_script(tmp_path / "global_semaphore.py", GLOBAL_SEMAPHORE_PROGRAM, method)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "exitcode 0"
    assert result.stderr == ""
