"""The resource tracker: one per process tree, cleans up after killed owners."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import warnings

import pytest

from mp_core import resource_tracker
from mp_core.resource_tracker import ReentrantCallError, ResourceTracker

pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(os.name != "posix", reason="the tracker is POSIX-only")]

SCENARIO = os.path.join(os.path.dirname(__file__), "_tracker_scenario.py")


def unique(kind: str) -> str:
    return f"/mp-test-{kind}-{os.getpid()}-{os.urandom(4).hex()}"


def shm_path(name: str) -> str:
    return "/dev/shm" + name


def create_segment(name: str) -> None:
    import _posixshmem

    os.close(_posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))


def unlink_segment(name: str) -> None:
    import _posixshmem

    try:
        _posixshmem.shm_unlink(name)
    except FileNotFoundError:
        pass


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ---------------------------------------------------------------- protocol


@pytest.mark.parametrize(
    "name, rtype, message",
    [
        ("a:b", "noop", "without ':'"),
        ("a\nb", "noop", "line breaks"),
        ("x" * 600, "noop", "too long"),
        ("ok", "no-such-type", "unknown resource type"),
        ("caf\u00e9", "noop", "ascii"),
    ],
)
def test_bad_names_and_types_are_refused(name, rtype, message):
    tracker = ResourceTracker()
    with pytest.raises(ValueError, match=message):
        tracker.register(name, rtype)
    assert tracker._fd is None  # refused before anything was started


def test_a_reentrant_call_raises_instead_of_deadlocking():
    tracker = ResourceTracker()
    tracker._enter()  # as if a finalizer ran in the middle of a call
    try:
        with pytest.raises(ReentrantCallError):
            tracker.register("name", "noop")
    finally:
        tracker._leave()
    assert tracker._fd is None


def test_tracked_types_are_the_stdlib_ones_plus_ours():
    # Code written for the standard library (its own test suite among it)
    # expects to create a resource of every type in _CLEANUP_FUNCS.
    import multiprocessing.resource_tracker as stdlib  # the comparison only

    assert sorted(resource_tracker._CLEANUP_FUNCS) == sorted(stdlib._CLEANUP_FUNCS)
    assert sorted(resource_tracker._CLEANUP_FUNCS) == (
        ["dummy", "noop", "semaphore", "shared_memory"]
        if sys.version_info >= (3, 13)
        else ["noop", "semaphore", "shared_memory"]
    )
    assert sorted(resource_tracker._EXTRA_CLEANUP_FUNCS) == (
        ["folder", "oob_segment"] if sys.version_info >= (3, 13) else ["dummy", "folder", "oob_segment"]
    )
    assert resource_tracker._cleanup_func("folder") is resource_tracker._remove_folder
    assert resource_tracker._cleanup_func("oob_segment") is resource_tracker._remove_oob_segment
    assert resource_tracker._cleanup_func("bogus") is None


def test_an_extra_type_is_cleaned_up_too(capfd):
    # A private temp dir (the only folders the tracker takes: see test_temp_dirs), quietly.
    folder = pathlib.Path(tempfile.mkdtemp(prefix="pymp-"))
    (folder / "inside").mkdir()
    tracker = ResourceTracker()
    tracker.register(str(folder), "folder")
    # The library's own temp dir: removed, and not a leak of the program's.
    assert tracker._stop(timeout=30) == 0 == tracker._exitcode
    assert not folder.exists()
    assert "resource_tracker" not in capfd.readouterr().err


def test_check_alive():
    tracker = ResourceTracker()
    assert tracker._check_alive() is False  # nothing started yet
    tracker.ensure_running()
    assert tracker._check_alive() is True
    pid = tracker._pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _zombie_or_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tracker._check_alive() is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker.ensure_running()
        assert tracker._check_alive() is True
        assert tracker._stop(timeout=30) == 0


# ---------------------------------------------------------------- one tracker


def test_private_tracker_cleans_up_what_is_still_registered(capfd):
    tracker = ResourceTracker()
    segment = unique("shm")
    create_segment(segment)
    try:
        tracker.register("/leaked-a", "noop")
        tracker.register("/returned", "noop")
        tracker.unregister("/returned", "noop")
        tracker.register(segment, "shared_memory")
        pid = tracker._pid
        assert tracker.getfd() == tracker._fd and tracker._pid == pid  # idempotent
        assert os.path.exists(shm_path(segment))
        assert tracker._stop(timeout=30) == 1
        assert tracker._fd is None and _zombie_or_gone(pid)
        assert not os.path.exists(shm_path(segment))
    finally:
        unlink_segment(segment)
    err = capfd.readouterr().err
    assert "There appear to be 1 leaked noop objects to clean up at shutdown: ['/leaked-a']" in err
    assert f"There appear to be 1 leaked shared_memory objects to clean up at shutdown: ['{segment}']" in err
    assert "/returned" not in err


def test_nothing_registered_means_no_warning(capfd):
    tracker = ResourceTracker()
    tracker.register("/x", "noop")
    tracker.unregister("/x", "noop")
    assert tracker._stop(timeout=30) == 0 == tracker._exitcode
    assert "resource_tracker" not in capfd.readouterr().err


@pytest.mark.parametrize("cleanup", [True, False])
def test_the_exit_code_says_whether_resources_leaked(cleanup, capfd):
    # Python 3.13's _exitcode: None until a stopped tracker is reaped, then
    # 0 (nothing left registered) or 1 (leaks cleaned up); 'dummy' leaks
    # are counted but not announced.
    tracker = ResourceTracker()
    tracker.ensure_running()
    assert tracker._check_alive() and tracker._exitcode is None
    tracker.register("somename", "dummy")
    if cleanup:
        tracker.unregister("somename", "dummy")
    assert tracker._check_alive() and tracker._exitcode is None
    returned = tracker._stop()
    assert returned == tracker._exitcode == (0 if cleanup else 1)
    assert "resource_tracker" not in capfd.readouterr().err
    tracker.ensure_running()  # a new tracker: nothing known of its exit yet
    assert tracker._exitcode is None
    assert tracker._stop(timeout=30) == 0


def test_exit_codes_for_failed_cleanups_and_malformed_messages(capfd):
    tracker = ResourceTracker()
    tracker.register(unique("never-created"), "shared_memory")  # unlinking it will fail
    assert tracker._stop(timeout=30) == 2
    assert "No such file or directory" in capfd.readouterr().err
    tracker.ensure_running()
    os.write(tracker._fd, b"BOGUS:x:noop\n")
    assert tracker._stop(timeout=30) == 3
    assert "malformed message" in capfd.readouterr().err
    tracker.ensure_running()
    os.write(tracker._fd, b"BOGUS:x:noop\n")
    tracker.register("/leaked", "noop")
    assert tracker._stop(timeout=30) == 1  # a leak matters more than a bad line
    capfd.readouterr()


def test_a_tracker_not_ours_to_reap_leaves_the_exit_code_unknown(ctx, start):
    tracker = resource_tracker._resource_tracker
    tracker.ensure_running()
    reader, writer = ctx.Pipe(duplex=False)
    proc = start(stop_the_inherited_tracker, writer)
    assert reader.recv() == (None, None)
    proc.join(30)
    assert proc.exitcode == 0
    assert tracker._check_alive()  # the child only dropped its own copy


def test_a_dead_tracker_is_restarted_with_a_warning():
    tracker = ResourceTracker()
    tracker.ensure_running()
    first = tracker._pid
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _zombie_or_gone(first) and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.warns(UserWarning, match="died unexpectedly"):
        tracker.ensure_running()
    assert tracker._pid != first
    assert not os.path.exists(f"/proc/{first}")  # reaped, not a zombie
    # A registration whose write finds the tracker dead is not lost either.
    second = tracker._pid
    os.kill(second, signal.SIGKILL)
    while not _zombie_or_gone(second) and time.monotonic() < deadline + 10:
        time.sleep(0.01)
    with pytest.warns(UserWarning, match="died unexpectedly"):
        tracker.register("/after-restart", "noop")
    assert tracker._pid not in (first, second)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert tracker._stop(timeout=30) == 1  # the new tracker had it: left registered, a leak


def stop_the_inherited_tracker(conn):
    tracker = resource_tracker._resource_tracker
    tracker.getfd()
    conn.send((tracker._stop(timeout=5), tracker._exitcode))
    conn.close()


def report_tracker_use(conn):
    tracker = resource_tracker._resource_tracker
    fd = resource_tracker.getfd()
    resource_tracker.register("/from-a-child", "noop")
    resource_tracker.unregister("/from-a-child", "noop")
    conn.send((fd == tracker._fd, tracker._starter == os.getpid(), tracker._check_alive()))
    conn.close()


def test_children_of_every_start_method_share_the_parents_tracker(ctx, start):
    resource_tracker.ensure_running()
    pid = resource_tracker._resource_tracker._pid
    reader, writer = ctx.Pipe(duplex=False)
    proc = start(report_tracker_use, writer)
    writer.close()
    same_fd, started_own, alive = reader.recv()
    reader.close()
    proc.join(30)
    assert proc.exitcode == 0
    assert same_fd and not started_own and alive
    assert resource_tracker._resource_tracker._pid == pid


# ---------------------------------------------------------------- killed owners


def test_leaks_are_cleaned_up_after_owner_and_starter_are_killed(start_method):
    if not sys.platform.startswith("linux"):
        pytest.skip("the scenario uses PR_SET_CHILD_SUBREAPER and /dev/shm (Linux)")
    shm, sem = unique("shm"), unique("sem")
    try:
        result = subprocess.run(
            [sys.executable, SCENARIO, "reaper", start_method, shm, sem], capture_output=True, text=True, timeout=50
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert "error" not in report, report
        # The owner's registrations went to the starter's tracker, which waits
        # for the whole tree: nothing was unlinked while the starter lived.
        assert report["owner_exitcode"] == -signal.SIGKILL
        assert report["child_started_own_tracker"] is False
        assert report["after_owner_killed"] == {"shm": True, "sem": True}
        assert report["tracker_survived_signals"] is True
        # Once the starter was killed too, the tracker cleaned up, said so, and left.
        assert report["tracker_exited"] is True
        assert report["at_end"] == {"shm": False, "sem": False}
        err = report["stderr"]
        assert err.count("leaked shared_memory objects") == 1, err
        assert err.count("leaked semaphore objects") == 1, err
        assert f"['{shm}']" in err and f"['{sem}']" in err
    finally:
        unlink_segment(shm)
        try:
            import _multiprocessing

            _multiprocessing.sem_unlink(sem)
        except (FileNotFoundError, OSError):
            pass


def test_an_oob_segment_name_is_unlinked_quietly_and_only_in_dev_shm(tmp_path):
    name = f"psm_t{os.getpid()}_oob_tracker_test"
    path = os.path.join("/dev/shm", name)
    with open(path, "wb"):
        pass
    resource_tracker._remove_oob_segment(name)
    assert not os.path.exists(path)
    resource_tracker._remove_oob_segment(name)  # gone already: received meanwhile
    for bad in ("../etc/passwd", "other_file", "psm_x/../../y"):
        with pytest.raises(ValueError, match="not the name of an out-of-band segment"):
            resource_tracker._remove_oob_segment(bad)
    assert "oob_segment" in resource_tracker._HOUSEKEEPING_TYPES
