"""No fork of ours happens while a thread of ours runs: CPython 3.12+ would warn (DeprecationWarning).

Each case is a small program run under the fork start method with
``-W error::DeprecationWarning``, as the issue asks, plus
``-W always:This process:DeprecationWarning``: CPython clears the error it
would raise for the fork warning (``-W error`` alone makes it vanish), so
the fork warning is shown instead of silenced and the test can see it.  On
every interpreter the programs must exit 0 and print what they computed;
on 3.12+ their stderr must hold no warning at all.  On older versions
there is no warning to look for, but the same programs must pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import multiprocess

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif("fork" not in multiprocess.get_all_start_methods(), reason="needs the fork start method"),
]

PROLOGUE = """
import os, signal, sys, time
import multiprocess as mp
ctx = mp.get_context("fork")

def square(x):
    return x * x

def pid_of(_=None):
    return os.getpid()

def put_in(q, value):
    q.put(value)

def wait_until(condition, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.01)
"""

PROGRAMS = {
    "a pool worker killed and replaced": """
        with ctx.Pool(2) as pool:
            assert pool.map(square, range(10)) == [x * x for x in range(10)]
            victim = pool._pool[0]
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(30)
            wait_until(lambda: len(pool._pool) == 2 and victim not in pool._pool, "the replacement")
            assert pool.map(square, range(10)) == [x * x for x in range(10)]
            print("replaced", victim.exitcode)
    """,
    "maxtasksperchild=1 churn": """
        with ctx.Pool(2, maxtasksperchild=1) as pool:
            pids = pool.map(pid_of, range(20), chunksize=1)
            assert len(set(pids)) == 20, pids
            print("churned", len(set(pids)))
    """,
    "two pools at once, one busy while the other starts": """
        with ctx.Pool(2) as first:
            busy = first.map_async(square, range(2000), chunksize=1)
            with ctx.Pool(2, maxtasksperchild=2) as second:
                assert second.map(square, range(50), chunksize=1) == [x * x for x in range(50)]
            assert busy.get(60) == [x * x for x in range(2000)]
            print("two pools")
    """,
    "put then fork": """
        q = ctx.Queue()
        for i in range(100):
            q.put(i)
        child = ctx.Process(target=put_in, args=(q, "child"))
        child.start()
        child.join()
        got = [q.get(timeout=30) for _ in range(101)]
        assert "child" in got and [x for x in got if x != "child"] == list(range(100)), got
        print("queue", len(got), child.exitcode)
    """,
    "more put than the pipe holds, then the reader is forked": """
        def drain(q, count, results):
            results.put(sum(len(q.get(timeout=30)) for _ in range(count)))
        q, results = ctx.Queue(), ctx.Queue()
        for _ in range(8):
            q.put(b"x" * (256 << 10))  # the feeder is stuck writing until the child reads
        child = ctx.Process(target=drain, args=(q, 8, results))
        child.start()
        assert results.get(timeout=60) == 8 * (256 << 10)
        child.join()
        print("drained", child.exitcode)
    """,
    "a pool, then a queue and a process": """
        with ctx.Pool(2) as pool:
            q = ctx.Queue()
            q.put("parent")
            results = pool.map_async(square, range(500), chunksize=1)
            child = ctx.Process(target=put_in, args=(q, "child"))
            child.start()
            child.join()
            assert sorted([q.get(timeout=30), q.get(timeout=30)]) == ["child", "parent"]
            assert results.get(60) == [x * x for x in range(500)]
            print("pool and queue", child.exitcode)
    """,
    "an imap reading a generator while a process starts": """
        def numbers():
            for i in range(3000):
                yield i
        with ctx.Pool(2) as pool:
            results = pool.imap(square, numbers(), chunksize=1)
            first = [next(results) for _ in range(10)]
            child = ctx.Process(target=square, args=(3,))
            child.start()
            child.join()
            assert first + list(results) == [x * x for x in range(3000)]
            print("imap", child.exitcode)
    """,
    "the resource sharer serving while a process starts": """
        import socket
        from multiprocess import reduction
        left, right = socket.socketpair()
        shared = reduction.DupFd(left.fileno())  # not creating a child: the sharer thread serves it
        child = ctx.Process(target=square, args=(3,))
        child.start()
        child.join()
        print("sharer", child.exitcode)
    """,
}


def run_program(body: str) -> subprocess.CompletedProcess:
    program = PROLOGUE + "\nif __name__ == '__main__':\n" + textwrap.indent(textwrap.dedent(body), "    ")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [
            sys.executable,
            "-W",
            "error::DeprecationWarning",
            "-W",
            "always:This process:DeprecationWarning",
            "-c",
            program,
        ],
        capture_output=True,
        text=True,
        timeout=150,
        env=env,
    )


@pytest.mark.parametrize("case", sorted(PROGRAMS))
def test_no_fork_warning_from_our_threads(case):
    result = run_program(PROGRAMS[case])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), result.stderr
    if sys.version_info >= (3, 12):
        assert "Warning" not in result.stderr, result.stderr


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the fork warning exists from CPython 3.12")
def test_the_check_can_see_the_warning():
    # The flags above make a fork with a thread of the program's own alive
    # show the warning: the check above is not blind.
    result = run_program("""
        import threading
        done = threading.Event()
        helper = threading.Thread(target=done.wait)
        helper.start()
        child = ctx.Process(target=square, args=(3,))
        child.start()
        child.join()
        done.set()
        helper.join()
        print("forked with a thread alive")
    """)
    assert result.returncode == 0, result.stderr
    assert "DeprecationWarning: This process" in result.stderr, result.stderr
