"""atexit in children, as Python 3.13 has it on every version.

A child runs the ``atexit`` handlers registered in it when it ends, whatever
the start method; a forked child (fork, forkserver) never runs the handlers
it inherited from its parent or from the fork server.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def register_writer(path, text, then_exit=None):
    def write():
        with open(path, "a") as f:
            f.write(text)

    atexit.register(write)
    if then_exit is not None:
        sys.exit(then_exit)


def register_failing_then_writer(path):
    # A forked child inherits pytest's unraisable-exception hook, which would
    # keep the report in memory: report as a program does.
    sys.unraisablehook = sys.__unraisablehook__

    def fail():
        raise RuntimeError("this handler fails")

    register_writer(path, "ran despite the failing one\n")
    atexit.register(fail)  # runs first (last registered), fails, and the writer still runs


@pytest.mark.parametrize("then_exit, exitcode", [(None, 0), (3, 3)])
def test_handlers_registered_in_a_child_run_when_it_ends(ctx, tmp_path, then_exit, exitcode):
    path = tmp_path / "out.txt"
    p = ctx.Process(target=register_writer, args=(str(path), "deadbeef", then_exit))
    p.start()
    p.join(60)
    assert p.exitcode == exitcode
    assert path.read_text() == "deadbeef"


def test_a_failing_handler_is_reported_and_the_others_still_run(ctx, tmp_path, capfd):
    path = tmp_path / "out.txt"
    p = ctx.Process(target=register_failing_then_writer, args=(str(path),))
    p.start()
    p.join(60)
    assert p.exitcode == 0  # a handler's error does not change the exit code
    assert path.read_text() == "ran despite the failing one\n"
    err = capfd.readouterr().err
    assert "RuntimeError: this handler fails" in err


INHERITED = textwrap.dedent("""
    import atexit, os, sys
    import mp_core

    log = sys.argv[1]

    def child(path):
        with open(path, "a") as f:
            f.write(f"child {os.getpid()} ran\\n")

    def parents_handler():
        with open(log, "a") as f:
            f.write(f"parent handler in {os.getpid()}\\n")

    if __name__ == "__main__":
        atexit.register(parents_handler)
        mp_core.set_forkserver_preload(["tests.core._atexit_preload"])
        for method in ("fork", "forkserver", "spawn"):
            p = mp_core.get_context(method).Process(target=child, args=(log,))
            p.start()
            p.join(60)
            assert p.exitcode == 0, (method, p.exitcode)
        print(os.getpid())
""")


def test_inherited_handlers_never_run_in_a_forked_child(tmp_path):
    # The program's handler runs once, in the program; the fork server's
    # (from a preloaded module) runs nowhere: neither in its children nor
    # in the server, which leaves through os._exit.
    log = tmp_path / "log.txt"
    env = dict(os.environ, MP_ATEXIT_TEST_LOG=str(log))
    result = subprocess.run(
        [sys.executable, "-c", INHERITED, str(log)], capture_output=True, text=True, timeout=90, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stderr
    parent = int(result.stdout)
    lines = log.read_text().splitlines()
    assert [line for line in lines if "handler" in line] == [f"parent handler in {parent}"]
    assert len([line for line in lines if line.startswith("child ")]) == 3
