"""The test helpers themselves: a program run by ``run_python`` leaves nothing behind, even when it times out."""

from __future__ import annotations

import subprocess
import time

import pytest

from ..support import run_python

pytestmark = pytest.mark.timeout(60)

HANGING_PARENT = """
import os, sys, time
pid = os.fork()
if pid == 0:
    time.sleep(600)  # a child that would outlive its killed parent
    os._exit(0)
with open(sys.argv[1], "w") as f:
    f.write(str(pid))
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_program_that_times_out_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run_python(HANGING_PARENT, str(pid_file), timeout=5)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 30  # the kill is sent; init reaps the orphan on its own time
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), f"the timed-out program's child {child} outlived it"


def test_a_program_that_ends_gives_its_output_and_status():
    done = run_python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
