"""Our helpers hold none of the program's inheritable descriptors.

A pipe that the program made inheritable (a shell redirection, make's
jobserver, ``subprocess``'s ``pass_fds``) must reach end of file once the
program closes its end, whatever of ours is running: spawned children, the
resource tracker, the fork server and its children.  The standard library
closes every descriptor it does not pass (``close_fds=True``); so do we.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from mp_core import util

pytestmark = pytest.mark.timeout(120)

SCENARIO = """
import os
import select
import sys

import mp_core
from mp_core import forkserver, resource_tracker


def hold(conn):
    conn.send("started")
    conn.recv()  # until the parent says so (or goes)


if __name__ == "__main__":
    # Made before any helper exists: each one would inherit it.
    read_fd, write_fd = os.pipe()
    os.set_inheritable(write_fd, True)
    methods = sys.argv[1].split(",")
    holders = []
    for method in methods:
        ctx = mp_core.get_context(method)
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=hold, args=(theirs,), daemon=True)
        proc.start()
        theirs.close()
        assert ours.recv() == "started"
        holders.append((proc, ours))
    resource_tracker.ensure_running()
    helpers = {"tracker": resource_tracker._resource_tracker._pid,
               "fork server": forkserver._forkserver._forkserver_pid}
    os.close(write_fd)
    ready, _, _ = select.select([read_fd], [], [], 20)
    eof = bool(ready) and os.read(read_fd, 1) == b""
    # Who still holds the pipe (when someone does): name them in the failure.
    holding = []
    if not eof:
        target = os.readlink(f"/proc/self/fd/{read_fd}")
        for pid in [proc.pid for proc, _ in holders] + [p for p in helpers.values() if p]:
            try:
                links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            except OSError:
                continue
            if target in links:
                holding.append(pid)
    print("eof" if eof else f"no eof; still held by {holding}; helpers {helpers}", flush=True)
    for method, (proc, conn) in zip(methods, holders):
        conn.send("exit")
        proc.join(30)
        print(method, proc.exitcode, flush=True)
"""


@pytest.mark.parametrize("methods", ["spawn", "forkserver", "spawn,forkserver"])
def test_an_inheritable_pipe_reaches_eof_while_our_helpers_live(tmp_path, methods):
    script = tmp_path / "scenario.py"
    script.write_text(textwrap.dedent(SCENARIO))
    out = subprocess.run(
        [sys.executable, str(script), methods], capture_output=True, text=True, timeout=90, cwd=tmp_path
    )
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr
    assert lines[0] == "eof", out.stderr
    assert [line.split()[1] for line in lines[1:]] == ["0"] * len(methods.split(","))


def test_spawnv_passfds_passes_exactly_the_listed_descriptors(tmp_path):
    kept_r, kept_w = os.pipe()
    stray_r, stray_w = os.pipe()
    os.set_inheritable(stray_w, True)
    report = tmp_path / "fds.txt"
    program = f"import os; open({str(report)!r}, 'w').write(' '.join(sorted(os.listdir('/proc/self/fd'), key=int)))"
    try:
        pid = util.spawnv_passfds(sys.executable, [sys.executable, "-c", program], [kept_w])
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not os.get_inheritable(kept_w)  # inheritable in the child only
    finally:
        for fd in (kept_r, kept_w, stray_r, stray_w):
            os.close(fd)
    open_in_child = {int(fd) for fd in report.read_text().split()}
    assert kept_w in open_in_child
    assert stray_w not in open_in_child


def test_the_portable_path_closes_the_others_too(tmp_path, monkeypatch):
    monkeypatch.setattr(util, "_inheritable_fds", lambda: None)  # as without /proc: fork and exec
    kept_r, kept_w = os.pipe()
    stray_r, stray_w = os.pipe()
    os.set_inheritable(stray_w, True)
    report = tmp_path / "fds.txt"
    program = f"import os; open({str(report)!r}, 'w').write(' '.join(sorted(os.listdir('/proc/self/fd'), key=int)))"
    try:
        pid = util.spawnv_passfds(sys.executable, [sys.executable, "-c", program], [kept_w])
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not os.get_inheritable(kept_w)  # made inheritable in the child only
    finally:
        for fd in (kept_r, kept_w, stray_r, stray_w):
            os.close(fd)
    open_in_child = {int(fd) for fd in report.read_text().split()}
    assert kept_w in open_in_child
    assert stray_w not in open_in_child
