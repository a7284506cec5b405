"""Workers that replace others are forked by the pool's zygote under fork; the API does not change.

Under the fork start method the first workers are forked by the process
that creates the pool, the later ones (after a death, ``maxtasksperchild``,
``_repopulate_pool``) by the pool's zygote (``mp_core._zygote``).  These
tests check that such a worker is an ordinary process object to its
owner, that its death is reported as any other's, and that the zygote
leaves nothing behind: after ``close``, after ``terminate``, after the
owner is killed.  The API tests run under every start method.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import mp_core
from mp_pool import WorkerLostError

from . import helpers

pytestmark = pytest.mark.timeout(120)


def identity_and_parents(_=None):
    parent = mp_core.parent_process()
    return os.getpid(), os.getppid(), parent.pid, parent.is_alive(), mp_core.current_process().name


def zygote_of(pool):
    return pool._engine._zygote


def wait_for_replacement(pool, lost_pid, size, timeout=30.0):
    deadline = time.monotonic() + timeout
    while len(pool._pool) != size or lost_pid in {w.pid for w in pool._pool}:
        assert time.monotonic() < deadline, f"no replacement for {lost_pid}: {pool._pool}"
        time.sleep(0.01)


def test_replacements_come_from_the_zygote_and_see_the_owner_as_their_parent(make_pool, start_method):
    pool = make_pool(1, maxtasksperchild=1)
    me = os.getpid()
    first, second = pool.map(identity_and_parents, range(2), chunksize=1)
    assert first[0] != second[0]  # maxtasksperchild=1: a new worker for the second task
    for _pid, _ppid, parent_pid, parent_alive, name in (first, second):
        assert parent_pid == me and parent_alive
        assert name.startswith(("ForkPoolWorker", "SpawnPoolWorker", "ForkServerPoolWorker"))
    zygote = zygote_of(pool)
    if start_method == "fork":
        assert zygote is not None and zygote.pid not in (me, None)
        assert first[1] == me  # the first worker: forked by the pool's creator
        assert second[1] == zygote.pid  # its replacement: forked by the zygote
        assert zygote.pid not in {w.pid for w in mp_core.active_children()}  # a helper, not a worker
    else:
        assert zygote is None


def test_a_replacement_is_an_ordinary_process_object(make_pool, start_method):
    pool = make_pool(1)
    pool.apply(helpers.square, (2,))
    first = pool._pool[0]
    first.kill()
    first.join(30)
    assert first.exitcode == -signal.SIGKILL
    wait_for_replacement(pool, first.pid, 1)
    worker = pool._pool[0]
    assert pool.apply(os.getpid) == worker.pid
    assert worker.is_alive() and worker.exitcode is None and worker.daemon
    assert isinstance(worker.sentinel, int) and isinstance(worker.pid, int)
    assert "PoolWorker-" in worker.name
    assert worker in mp_core.active_children()
    worker.join(0.01)  # a timeout, not an error, while it runs
    assert worker.is_alive()
    assert f"pid={worker.pid}" in repr(worker) and "started daemon" in repr(worker)
    worker.terminate()
    worker.join(30)
    assert worker.exitcode == -signal.SIGTERM and not worker.is_alive()
    assert worker not in mp_core.active_children()
    if start_method == "fork":
        assert helpers.process_gone(worker.pid)  # reaped by the zygote, no zombie
    wait_for_replacement(pool, worker.pid, 1)
    assert pool.map(helpers.square, range(10)) == [x * x for x in range(10)]


@pytest.mark.parametrize(
    "how, fragment, code", [("kill", "died with SIGKILL", -signal.SIGKILL), ("exit", "exited with code 5", 5)]
)
def test_the_death_of_a_replacement_is_reported_with_its_signal_or_exit_code(make_pool, how, fragment, code):
    pool = make_pool(1)
    for generation in range(3):  # the first worker, then two born in the zygote under fork
        before = pool.apply(os.getpid)
        with pytest.raises(WorkerLostError) as excinfo:
            pool.apply(helpers.die_on, (1, 1, how))
        message = str(excinfo.value)
        assert f"worker {before} {fragment} while running task" in message, message
        assert excinfo.value.pid == before and excinfo.value.exitcode == code
        assert helpers.process_gone(before)
        assert pool.apply(helpers.square, (generation,)) == generation * generation


# Without its zygote the pool forks replacements from its manager thread:
# on 3.12+ that fork warns, as the standard library's pool always does.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_killed_zygote_does_not_lose_the_pool(make_pool, start_method):
    if start_method != "fork":
        pytest.skip("only fork pools have a zygote")
    pool = make_pool(2)
    zygote = zygote_of(pool)
    os.kill(zygote.pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError, match="died with SIGKILL"):
        pool.apply(helpers.kill_self)
    # The replacement is forked directly now (the zygote is gone).
    assert pool.map(helpers.square, range(20), chunksize=1) == [x * x for x in range(20)]
    assert zygote_of(pool) is None
    assert len(pool._pool) == 2


def test_the_zygote_and_its_children_are_gone_after_close_and_after_terminate(ctx, start_method):
    if start_method != "fork":
        pytest.skip("only fork pools have a zygote")
    from mp_pool import Pool

    for finish in ("close", "terminate"):
        pool = Pool(2, maxtasksperchild=1, context=ctx)
        zygote_pid = zygote_of(pool).pid
        pids = set(pool.map(helpers.pid_of, range(6), chunksize=1))  # zygote-born workers among them
        pids |= {w.pid for w in pool._pool}
        if finish == "close":
            pool.close()
        else:
            pool.terminate()
        pool.join()
        assert zygote_of(pool) is None
        # join() does not wait for the zygote's own exit: a thread reaps it.
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{zygote_pid}") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not os.path.exists(f"/proc/{zygote_pid}"), "the zygote was not reaped"
        assert all(helpers.process_gone(pid) for pid in pids)
        assert not [w for w in pool._pool if w.is_alive()]


OWNER = textwrap.dedent("""
    import json, os, sys
    import mp_core
    from mp_pool import Pool
    from tests.pool.helpers import pid_of, sleep_then

    if __name__ == "__main__":
        pool = Pool(2, maxtasksperchild=1, context=mp_core.get_context("fork"))
        pool.map(pid_of, range(4), chunksize=1)   # the workers now are zygote-born
        busy = pool.map_async(sleep_then, [60] * 4, chunksize=1)
        print(json.dumps({"zygote": pool._engine._zygote.pid, "workers": [w.pid for w in pool._pool]}), flush=True)
        sys.stdin.read()
""")

# Becomes a subreaper, so that what the killed owner leaves is reparented
# here (not to init): every descendant must exit and be reaped in time.
REAPER = textwrap.dedent("""
    import ctypes, json, os, signal, subprocess, sys, time
    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    owner = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    report = json.loads(owner.stdout.readline())
    descendants = [report["zygote"], *report["workers"]]
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    reaped = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # nothing left to reap
        if pid:
            reaped.append(pid)
        else:
            time.sleep(0.02)
    left = [pid for pid in descendants if os.path.exists(f"/proc/{pid}")]
    print(json.dumps({"report": report, "reaped": reaped, "left": left}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs prctl(PR_SET_CHILD_SUBREAPER)")
def test_sigkill_of_the_owner_leaves_no_zygote_and_no_worker():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-c", REAPER, OWNER], capture_output=True, text=True, timeout=90, env=env, cwd=os.getcwd()
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["left"] == [], outcome
    # The zygote, orphaned, was reaped by the subreaper; its children, by the zygote.
    assert outcome["report"]["zygote"] in outcome["reaped"], outcome


def test_results_and_callbacks_flow_while_the_process_forks(make_pool, start):
    from mp_core import _forksafe_threads

    pool = make_pool(2)
    delivered = []
    result = pool.map_async(helpers.square, range(2000), chunksize=1, callback=delivered.append)
    children = [start(helpers.square, 3) for _ in range(4)]  # under fork the manager steps aside each time
    for _ in range(20):  # and as often again, at once
        _forksafe_threads._before_fork()
        _forksafe_threads._resume_paused()
    assert result.get(60) == [x * x for x in range(2000)]
    assert delivered == [result.get()]
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    assert pool.apply(helpers.square, (7,)) == 49


# The program ends right after terminate() (as a ``with Pool`` block does):
# its zygote, stopped, cannot exit before the reaper thread kills it.
OWNER_EXITS = textwrap.dedent("""
    import json, os, signal
    import mp_core
    from mp_core import _zygote
    from mp_pool import Pool
    from tests.pool.helpers import pid_of

    _zygote.EXIT_WAIT = 0.5  # how long the reaper waits before it kills a zygote that does not exit

    def run(pool):
        assert len(pool.map(pid_of, range(4))) == 4
        zygote = pool._engine._zygote.pid
        os.kill(zygote, signal.SIGSTOP)
        print(json.dumps({"zygote": zygote}), flush=True)

    if __name__ == "__main__":
        if ENDING == "with":
            with Pool(2, context=mp_core.get_context("fork")) as pool:
                run(pool)
        else:  # left open: the pool's exit finalizer terminates it
            pool = Pool(2, context=mp_core.get_context("fork"))
            run(pool)
""")

# A subreaper runs the program: a zygote that outlived it would be
# reparented here, found, and killed.
EXIT_RUNNER = textwrap.dedent("""
    import ctypes, json, os, signal, subprocess, sys, tempfile
    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
    # (Its exit is waited for, not the end of its output: a zygote left behind holds that open.)
    zygote = None
    with tempfile.TemporaryFile("w+") as errors:
        owner = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            line = owner.stdout.readline()
            zygote = json.loads(line)["zygote"] if line.strip() else None
            returncode = owner.wait(timeout=60)
        finally:
            if owner.poll() is None:  # (stuck: the test fails, and leaves nothing behind)
                owner.kill()
                owner.wait()
            owner.stdout.close()
            left = zygote is not None and os.path.exists(f"/proc/{zygote}")
            if left:  # reparented here: killed and reaped
                os.kill(zygote, signal.SIGKILL)
                os.waitpid(zygote, 0)
        errors.seek(0)
        stderr = errors.read()
    print(json.dumps({"returncode": returncode, "stderr": stderr, "zygote": zygote, "left": left}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs prctl(PR_SET_CHILD_SUBREAPER)")
@pytest.mark.parametrize("ending", ["with", "left open"])
def test_a_program_that_ends_after_terminate_reaps_its_zygote_first(ending):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-c", EXIT_RUNNER, f"ENDING = {ending!r}\n" + OWNER_EXITS],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=os.getcwd(),
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["returncode"] == 0 and outcome["zygote"], outcome
    assert not outcome["left"], outcome
