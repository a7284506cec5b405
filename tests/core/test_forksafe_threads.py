"""ForkSafeThread: our background threads are gone (for the kernel too) while the process forks.

The fork hooks are driven directly (``_before_fork``/``_resume_paused``)
where a test looks at the state in between, and through a real fork where
it checks what the child and the parent see after it.  Programs that must
not warn on 3.12+ are in tests/compat/test_fork_warnings.py.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from mp_core import _forksafe_threads
from mp_core._forksafe_threads import BLOCKED_GRACE, ForkSafeThread

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]


class Waiter:
    """A body that waits for ``stop``, steps aside when asked, and counts its runs and their threads."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.stop = False
        self.runs: list[threading.Thread] = []
        self.thread = ForkSafeThread(self.body, name="test-forksafe", wake=self.wake)

    def body(self) -> bool:
        with self.cond:
            self.runs.append(threading.current_thread())
            self.cond.notify_all()
            while not self.stop:
                if self.thread.pausing:
                    return True
                self.cond.wait()
        return False

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait_for_runs(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.runs) >= count, 10), self.runs

    def finish(self) -> None:
        with self.cond:
            self.stop = True
            self.cond.notify_all()
        self.thread.join(10)
        assert not self.thread.is_alive()


def os_thread_exists(thread: threading.Thread) -> bool:
    return os.path.exists(f"/proc/self/task/{thread.native_id}")


def test_before_a_fork_the_thread_is_gone_and_after_it_carries_on():
    waiter = Waiter()
    waiter.thread.start()
    waiter.wait_for_runs(1)
    first = waiter.runs[0]
    _forksafe_threads._before_fork()
    try:
        assert not first.is_alive()
        if sys.platform.startswith("linux"):
            assert not os_thread_exists(first)  # what CPython 3.12+ counts
        assert waiter.thread.is_alive()  # paused, not finished: join would wait
        waiter.thread.join(0.05)
        assert waiter.thread.is_alive()
    finally:
        _forksafe_threads._resume_paused()
    waiter.wait_for_runs(2)
    assert waiter.runs[1] is not first and not waiter.thread.pausing
    waiter.finish()
    assert len(waiter.runs) == 2


def test_a_real_fork_the_child_has_no_such_thread_and_the_parent_gets_it_back():
    waiter = Waiter()
    waiter.thread.start()
    waiter.wait_for_runs(1)
    pid = _forksafe_threads.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        ok = not waiter.thread.is_alive() and all(t.name != "test-forksafe" for t in threading.enumerate())
        waiter.thread.join(0)  # returns at once: nothing to wait for here
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    waiter.wait_for_runs(2)
    waiter.finish()


def test_a_thread_that_says_it_is_blocked_is_not_waited_for():
    release = threading.Event()
    entered = threading.Event()
    runs = []

    def body() -> bool:
        runs.append(threading.current_thread())
        thread.blocked = True
        entered.set()
        release.wait()  # deaf to ``pausing`` while blocked, as a write to a full pipe
        thread.blocked = False
        return thread.pausing

    thread = ForkSafeThread(body, name="test-blocked")
    thread.start()
    assert entered.wait(10)
    started = time.monotonic()
    _forksafe_threads._before_fork()
    waited = time.monotonic() - started
    _forksafe_threads._resume_paused()
    assert waited < 10 * BLOCKED_GRACE + 0.5, waited  # the grace, not the whole PAUSE_WAIT
    assert runs[0].is_alive()  # left running: the fork went ahead without it
    release.set()
    thread.join(10)
    assert not thread.is_alive() and len(runs) == 1


def test_a_thread_that_just_ended_is_gone_for_the_kernel_when_the_process_forks():
    thread = ForkSafeThread(lambda: False, name="test-short")
    thread.start()
    thread.join(10)
    inner = thread._thread
    assert not thread.is_alive() and not inner.is_alive()
    _forksafe_threads._before_fork()  # the kernel may count it a moment after join: a fork waits for that
    try:
        if sys.platform.startswith("linux"):
            assert not os_thread_exists(inner)
    finally:
        _forksafe_threads._resume_paused()


def test_a_thread_that_cannot_be_restarted_finishes_its_work_in_join():
    waiter = Waiter()
    waiter.thread.start()
    waiter.wait_for_runs(1)

    def no_new_threads() -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    waiter.thread._spawn = no_new_threads
    _forksafe_threads._before_fork()
    _forksafe_threads._resume_paused()
    assert waiter.thread.is_alive() and len(waiter.runs) == 1  # stranded: paused, nobody to restart it
    with waiter.cond:
        waiter.stop = True
    waiter.thread.join(10)
    assert not waiter.thread.is_alive()
    assert waiter.runs[-1] is threading.current_thread()  # the rest ran in the joining thread


def test_start_twice_is_refused_and_the_body_is_dropped_when_done():
    held = object()
    thread = ForkSafeThread(lambda: held is None, name="test-once")
    thread.start()
    with pytest.raises(RuntimeError, match="only be started once"):
        thread.start()
    thread.join(10)
    assert thread._body is None  # what the body held can go, as a finished Thread's target
