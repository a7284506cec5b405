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


@pytest.mark.parametrize("how", ["pidfd", "kqueue", "polling"])
def test_waiting_for_a_process_that_is_not_a_child(monkeypatch, how):
    if how == "pidfd" and not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open on this platform")
    if how == "kqueue":
        import select
        if not hasattr(select, "kqueue"):
            pytest.skip("no kqueue on this platform")
    if how != "pidfd":
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    if how == "polling":
        import select
        monkeypatch.delattr(select, "kqueue", raising=False)
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
