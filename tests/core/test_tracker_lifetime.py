"""When the resource tracker starts, and how long one started by a child lives."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from mp_core import resource_tracker

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FORK_ONLY = """
import mp_core
from mp_core import resource_tracker

def nothing():
    pass

if __name__ == "__main__":
    ctx = mp_core.get_context("fork")
    for _ in range(3):
        child = ctx.Process(target=nothing)
        child.start()
        child.join()
        assert child.exitcode == 0
    print("tracker started:", resource_tracker._resource_tracker._fd is not None)
"""


def test_forking_children_starts_no_tracker(tmp_path):
    # As with the standard library: a fork-method program that registers
    # nothing pays for no tracker process.
    script = tmp_path / "fork_only.py"
    script.write_text(FORK_ONLY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tracker started: False"


def use_only(how, monkeypatch):
    """Make ``_wait_for_exit`` wait with a pidfd, kqueue or by polling (skip if not available here)."""
    import select

    if how == "pidfd" and not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open on this platform")
    if how == "kqueue" and not hasattr(select, "kqueue"):
        pytest.skip("no kqueue on this platform")
    if how != "pidfd":
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    if how == "polling":
        monkeypatch.delattr(select, "kqueue", raising=False)


@pytest.mark.parametrize("how", ["pidfd", "kqueue", "polling"])
def test_waiting_for_a_process_that_is_not_a_child(monkeypatch, how):
    use_only(how, monkeypatch)
    # A process that runs until its stdin reaches end of file.
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    returned = threading.Event()
    waiter = threading.Thread(target=lambda: (resource_tracker._wait_for_exit(other.pid), returned.set()))
    try:
        waiter.start()
        assert not returned.wait(0.3), "returned while the process was running"
        other.stdin.close()
        other.wait(60)
        assert returned.wait(60), "did not notice the exit"
    finally:
        if other.poll() is None:
            other.kill()
            other.wait(60)
        waiter.join(60)


def test_waiting_for_a_process_that_is_already_gone():
    other = subprocess.Popen([sys.executable, "-c", "pass"])
    other.wait(60)
    resource_tracker._wait_for_exit(other.pid)  # returns at once (ESRCH), whatever the method


@pytest.mark.parametrize("how", ["pidfd", "kqueue", "polling"])
def test_waiting_for_a_process_that_exited_and_is_not_reaped_yet(monkeypatch, how):
    # The lingering tracker's case: the program it waits for has exited, and
    # the program's parent (subprocess.run) reaps it only once the output
    # the tracker holds reaches its end.  A zombie has exited (PyPy 3.9, with
    # no os.pidfd_open, polled and waited for it forever).
    use_only(how, monkeypatch)
    other = subprocess.Popen([sys.executable, "-c", "pass"], stdout=subprocess.PIPE)
    returned = threading.Event()
    waiter = threading.Thread(target=lambda: (resource_tracker._wait_for_exit(other.pid), returned.set()))
    try:
        assert other.stdout.read() == b""  # end of file: it is exiting (not reaped: we do not wait)
        waiter.start()
        assert returned.wait(60), "did not notice the exit of a process not reaped yet"
    finally:
        other.stdout.close()
        other.wait(60)
        waiter.join(60)
