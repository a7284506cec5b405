"""Private temp dirs (``pymp-*``): removed after a SIGKILL, and the only folders the tracker removes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from mp_core import util
from mp_core.resource_tracker import ResourceTracker

pytestmark = pytest.mark.timeout(180)

SCENARIO = os.path.join(os.path.dirname(__file__), "_killed_program_scenario.py")


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the scenario uses PR_SET_CHILD_SUBREAPER and /dev/shm (Linux)"
)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_killed_program_leaves_nothing_in_tmp_or_dev_shm(method):
    result = subprocess.run([sys.executable, SCENARIO, "reaper", method], capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in report, (report, result.stderr)
    # It was all there while the program lived...
    assert all(report["before_kill"].values()), report
    temp_root = os.path.realpath(tempfile.gettempdir())
    for child in report["children"]:
        assert os.path.dirname(child["tempdir"]) in (tempfile.gettempdir(), temp_root)
        assert child["tempdir"] != report["tempdir"] or child["method"] == "fork"
    # ...and nothing of it is left once the tree is gone.
    assert report["left"] == [], (report, result.stderr)
    # The segment the program leaked is the one warning; the temp dirs go quietly.
    assert "leaked folder" not in result.stderr


def test_the_temp_dir_is_tracked_while_the_process_lives_and_untracked_when_removed(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            """if True:
        import os
        from mp_core import resource_tracker, util
        sent = []
        original = os.write
        def spy(fd, data):
            if fd == resource_tracker._resource_tracker._fd:
                sent.append(bytes(data).decode())
            return original(fd, data)
        os.write = spy
        d = util.get_temp_dir()
        print(d)
        # Removed while the tracker runs (in a child, say): the tracker is told.
        remove, = [f for f in list(util._finalizer_registry.values()) if f._callback is util._remove_temp_dir]
        remove()
        os.write = original
        print(os.path.exists(d))
        print([line for line in sent if "folder" in line])
        """,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    tempdir, exists, sent = out.stdout.splitlines()
    assert exists == "False"
    assert sent == str([f"REGISTER:{tempdir}:folder\n", f"UNREGISTER:{tempdir}:folder\n"])
    assert "leaked" not in out.stderr


# ---------------------------------------------------------------- confinement


def test_is_private_temp_dir(tmp_path, monkeypatch):
    real = tempfile.mkdtemp(prefix="pymp-")
    try:
        assert util.is_private_temp_dir(real)
        root, name = os.path.split(real)
        assert not util.is_private_temp_dir(name)  # relative
        assert not util.is_private_temp_dir(os.path.join(root, ".", name))  # not normalized
        assert not util.is_private_temp_dir(os.path.join(root, "x", "..", name))
        assert not util.is_private_temp_dir(real + "/")
        assert not util.is_private_temp_dir(os.path.join(root, "pymp-missing1"))  # not there
        assert util.is_private_temp_dir(os.path.join(root, "pymp-missing1"), existing=False)
        assert not util.is_private_temp_dir(str(tmp_path / "pymp-missing1"), existing=False)
        elsewhere = tmp_path / name
        elsewhere.mkdir()
        assert not util.is_private_temp_dir(str(elsewhere))  # not in the temp root
        link = tempfile.mktemp(prefix="pymp-")
        os.symlink(str(tmp_path), link)
        try:
            assert not util.is_private_temp_dir(link)  # a link, even to a directory
        finally:
            os.unlink(link)
        other = tempfile.mkdtemp(prefix="other-")
        try:
            assert not util.is_private_temp_dir(other)
        finally:
            os.rmdir(other)
        assert not util.is_private_temp_dir(b"/tmp/pymp-abcdefgh")  # type: ignore[arg-type]
    finally:
        shutil.rmtree(real)


def test_the_tracker_refuses_folders_other_than_private_temp_dirs(tmp_path, monkeypatch, capfd):
    # The tracker's working directory is ours: a relative name would land here.
    monkeypatch.chdir(tmp_path)
    victims = {}
    for name in ("victim", "pymp-abcdefgh"):
        (tmp_path / name / "inside").mkdir(parents=True)
        victims[name] = tmp_path / name
    root_victim = tmp_path / "behind-a-link"
    (root_victim / "inside").mkdir(parents=True)
    link = tempfile.mktemp(prefix="pymp-")
    os.symlink(str(root_victim), link)
    private = tempfile.mkdtemp(prefix="pymp-")
    (open(os.path.join(private, "socket-file"), "w")).close()
    tracker = ResourceTracker()
    try:
        tracker.register(private, "folder")
        # Any process holding the pipe may write any line: the tracker checks.
        hostile = [
            str(victims["victim"]),
            "pymp-abcdefgh",
            str(victims["pymp-abcdefgh"]),
            link,
            os.path.join(os.path.dirname(private), ".", os.path.basename(private) + "x"),
        ]
        for name in hostile:
            os.write(tracker.getfd(), f"REGISTER:{name}:folder\n".encode())
        # Exit code 2 (Python 3.13's meaning): something registered could not
        # be cleaned up -- the link, refused when its turn to go came.
        assert tracker._stop(timeout=30) == 2
    finally:
        os.unlink(link)
        shutil.rmtree(private, ignore_errors=True)
    assert not os.path.exists(private)  # ours, removed
    for victim in [*victims.values(), root_victim]:
        assert (victim / "inside").is_dir(), f"{victim} was removed"
    err = capfd.readouterr().err
    for name in hostile:
        if name == link:  # a well-formed path: judged (and refused) when its turn to go comes
            assert f"resource_tracker: {link!r}: not a private temp dir of this library; left alone" in err
        else:
            assert f"ignoring malformed message b'REGISTER:{name}:folder\\n': not a private temp dir" in err
    assert "leaked folder" not in err


def test_remove_private_temp_dir_removes_only_those(tmp_path):
    private = tempfile.mkdtemp(prefix="pymp-")
    (open(os.path.join(private, "listener-x"), "w")).close()
    assert util.remove_private_temp_dir(private) is True
    assert not os.path.exists(private)
    (tmp_path / "inside").mkdir()
    assert util.remove_private_temp_dir(str(tmp_path)) is False
    assert (tmp_path / "inside").is_dir()


def test_register_refuses_other_folders_at_once(tmp_path):
    tracker = ResourceTracker()
    for name in (str(tmp_path), "pymp-abcdefgh", tempfile.gettempdir()):
        with pytest.raises(ValueError, match="is not a private temp dir of this library"):
            tracker.register(name, "folder")
    assert tracker._fd is None  # refused before anything was started or sent


def test_a_folder_removed_by_its_owner_is_no_error(capfd):
    private = tempfile.mkdtemp(prefix="pymp-")
    tracker = ResourceTracker()
    tracker.register(private, "folder")
    os.rmdir(private)  # removed without telling the tracker (as at exit, when it was stopped first)
    assert tracker._stop(timeout=30) == 0
    assert "resource_tracker" not in capfd.readouterr().err


def test_a_tracker_started_again_is_told_about_the_temp_dir(tmp_path):
    # Stopping the tracker withdraws the temp dir of the process, which still
    # uses it; the next tracker must know it again, so that it goes when the
    # process is killed.
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    program = """if True:
        import os, signal
        from mp_core import resource_tracker, util
        tracker = resource_tracker._resource_tracker
        tempdir = util.get_temp_dir()
        first = tracker._pid
        assert tracker._stop(timeout=60) == 0
        assert os.path.isdir(tempdir), "the tracker removed the temp dir of a process still using it"
        tracker.ensure_running()
        assert tracker._pid not in (None, first)
        print(tempdir, tracker._pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no exit handlers: only the tracker can remove it
        """
    env = {**os.environ, "TMPDIR": str(temp_root)}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == -signal.SIGKILL, result.stderr
    tempdir, tracker_pid = result.stdout.split()
    assert os.path.dirname(tempdir) == str(temp_root)
    deadline = time.monotonic() + 30
    while os.path.exists(tempdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(tempdir), f"the restarted tracker (pid {tracker_pid}) did not remove {tempdir}"
    assert "leaked" not in result.stderr  # temp dirs go quietly
