"""When the resource tracker starts, how long one started by a child lives, and stopping it while the program runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from mp_core import resource_tracker

from ..support import START_METHODS

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


STOP_WHILE_RUNNING = """
import json, os, sys
import mp_core
from mp_core import forkserver, resource_tracker, util
from mp_core.connection import Client, Listener

def greet(address):
    with Client(address) as conn:
        conn.send(os.getpid())

def start_one(ctx, listener):
    child = ctx.Process(target=greet, args=(listener.address,))
    child.start()
    child.join(60)
    assert child.exitcode == 0, f"child exit code {child.exitcode}"
    with listener.accept() as conn:  # pending since the child connected
        assert conn.recv() == child.pid

if __name__ == "__main__":
    ctx = mp_core.get_context(sys.argv[1])
    tracker = resource_tracker._resource_tracker
    # A listener in our temp dir, as a fork server's socket or a manager's address.
    listener = Listener(family="AF_UNIX")
    tempdir = util.get_temp_dir()
    start_one(ctx, listener)
    first_tracker, server = tracker._pid, forkserver._forkserver._forkserver_pid
    # As CPython's test helpers (util._cleanup_tests) and some programs do.
    stopped_with = tracker._stop(timeout=60)
    start_one(ctx, listener)
    assert os.path.isdir(tempdir), "the tracker removed the temp dir of a process still using it"
    print(json.dumps({
        "stopped_with": stopped_with,
        "tempdir": tempdir,
        "trackers": [first_tracker, tracker._pid],
        "servers": [server, forkserver._forkserver._forkserver_pid],
    }))
"""


def _gone(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` has exited (a zombie counts) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks processes in /proc")
@pytest.mark.parametrize("method", START_METHODS)
def test_stopping_the_tracker_while_the_program_runs(tmp_path, method):
    # Stopping the tracker once removed the program's temp dir (the tracker
    # removes those of processes that are gone, and took the program for
    # one): the fork server's socket went with it and the next forkserver
    # start failed with FileNotFoundError; any listener there was lost.
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    script = tmp_path / "stop_tracker.py"
    script.write_text(STOP_WHILE_RUNNING)
    env = {**os.environ, "TMPDIR": str(temp_root)}
    result = subprocess.run([sys.executable, str(script), method], capture_output=True, text=True, timeout=90, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["stopped_with"] == 0  # nothing leaked: the temp dir was no leak
    first_tracker, second_tracker = report["trackers"]
    assert first_tracker is not None  # the listener's temp dir started one, even under fork
    # The tracker is started again where a start needs it (fork needs none)...
    if method == "fork":
        assert second_tracker is None
    else:
        assert second_tracker not in (None, first_tracker)
    # ...and the fork server, which does not depend on it, runs on.
    first_server, second_server = report["servers"]
    if method == "forkserver":
        assert first_server is not None and second_server == first_server
    else:
        assert first_server is None and second_server is None
    # Nothing is left once the program is gone.
    assert os.listdir(temp_root) == []
    for pid in filter(None, [first_tracker, second_tracker, first_server]):
        assert _gone(pid, 30), f"helper {pid} outlived the program"
    assert "Traceback" not in result.stderr and "leaked" not in result.stderr, result.stderr
