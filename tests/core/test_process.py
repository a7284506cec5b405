"""Process: the threading.Thread API, exit codes, misuse errors, nesting, daemons."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

import mp_core
from mp_core import process as process_module

pytestmark = pytest.mark.timeout(90)

# Targets are module-level so that every start method can run them; the
# lambda/closure cases are covered separately.


def exit_with(code):
    sys.exit(code)


def raise_value_error():
    raise ValueError("boom in child")


def sleep_forever():
    while True:
        time.sleep(1)


def restore_default_sigint():
    # A suite started in the background by a non-interactive shell (CI, `cmd &`)
    # inherits SIGINT ignored, and Python then leaves it ignored in every child:
    # interrupt() (like the stdlib's, like Ctrl-C) would do nothing there.  The
    # tests are about what a child with Python's usual handler does.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def signal_ready_then_sleep(conn):
    restore_default_sigint()
    conn.send("ready")
    sleep_forever()


def report_keyboard_interrupt(conn):
    restore_default_sigint()
    try:
        conn.send("ready")
        sleep_forever()
    except KeyboardInterrupt:
        conn.send("KeyboardInterrupt")


def report_identity(conn, extra_kw=None):
    current = mp_core.current_process()
    parent = mp_core.parent_process()
    conn.send(
        {
            "name": current.name,
            "pid": current.pid,
            "ident": current.ident,
            "daemon": current.daemon,
            "authkey": bytes(current.authkey),
            "parent_pid": parent.pid if parent else None,
            "parent_name": parent.name if parent else None,
            "parent_alive": parent.is_alive() if parent else None,
            "extra_kw": extra_kw,
            "start_method": mp_core.get_start_method(),
            "is_alive_self": current.is_alive(),
        }
    )
    conn.close()


def start_grandchild(conn, method):
    ctx = mp_core.get_context(method)
    r, w = ctx.Pipe(duplex=False)
    child = ctx.Process(target=report_identity, args=(w,))
    child.start()
    w.close()
    info = r.recv()
    child.join()
    conn.send((info["parent_pid"] == os.getpid(), child.exitcode, mp_core.active_children()))


def try_to_start_child(conn):
    try:
        mp_core.Process(target=exit_with, args=(0,)).start()
    except AssertionError as exc:
        conn.send(("AssertionError", str(exc)))
    else:
        conn.send(("no error", ""))


class DoublingMixin:
    """run() overridden in a subclass, combined with each context's Process."""

    def __init__(self, conn, value):
        super().__init__()
        self.conn = conn
        self.value = value

    def run(self):
        self.conn.send(self.value * 2)


# Module-level classes (one per start method) so that spawned children can
# import them by name.
for _method in mp_core.get_all_start_methods():
    _name = f"Doubling_{_method}"
    globals()[_name] = type(_name, (DoublingMixin, mp_core.get_context(_method).Process), {})


def test_lifecycle_and_attributes(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=report_identity, args=(w,), kwargs={"extra_kw": "kw"}, name="worker-1")
    assert p.name == "worker-1"
    assert p.exitcode is None and p.pid is None and not p.is_alive()
    assert "initial" in repr(p)
    with pytest.raises(ValueError, match="process not started"):
        p.sentinel  # noqa: B018 - the property access is what raises
    p.start()
    w.close()
    assert isinstance(p.sentinel, int)
    info = r.recv()
    p.join()
    assert p.exitcode == 0 and not p.is_alive()
    assert info["name"] == "worker-1"
    assert info["pid"] == info["ident"] == p.pid == p.ident
    assert info["authkey"] == bytes(mp_core.current_process().authkey) == bytes(p.authkey)
    assert info["parent_pid"] == os.getpid()
    assert info["parent_name"] == "MainProcess"
    assert info["parent_alive"] is True
    assert info["extra_kw"] == "kw"
    assert info["start_method"] == ctx.get_start_method()
    assert info["is_alive_self"] is True
    assert info["daemon"] is False
    assert "stopped exitcode=0" in repr(p)
    p.close()
    with pytest.raises(ValueError, match="process object is closed"):
        p.is_alive()
    assert "closed" in repr(p)


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_codes_from_sys_exit(ctx, code):
    p = ctx.Process(target=exit_with, args=(code,))
    p.start()
    p.join()
    assert p.exitcode == code


def test_sys_exit_with_a_message_gives_1(ctx, capfd):
    p = ctx.Process(target=exit_with, args=("fatal message",))
    p.start()
    p.join()
    assert p.exitcode == 1
    assert "fatal message" in capfd.readouterr().err


def test_uncaught_exception_prints_traceback_and_gives_1(ctx, capfd):
    p = ctx.Process(target=raise_value_error, name="failing")
    p.start()
    p.join()
    assert p.exitcode == 1
    err = capfd.readouterr().err
    assert "Process failing:" in err
    assert "Traceback (most recent call last)" in err
    assert "ValueError: boom in child" in err


@pytest.mark.parametrize("how, sig", [("terminate", signal.SIGTERM), ("kill", signal.SIGKILL)])
def test_terminate_and_kill_give_negative_signal(ctx, how, sig):
    p = ctx.Process(target=sleep_forever)
    p.start()
    assert p.is_alive()
    getattr(p, how)()
    p.join(30)
    assert p.exitcode == -sig
    assert f"exitcode=-{sig.name}" in repr(p)


def test_interrupt_raises_keyboard_interrupt_in_the_child_which_exits_with_1(ctx, capfd):
    # Python 3.14's Process.interrupt(), on every version: SIGINT, which the
    # child's default handler turns into KeyboardInterrupt (exit code 1 and a
    # traceback, as any uncaught exception), not a death by signal.
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=signal_ready_then_sleep, args=(w,), name="interruptible")
    p.start()
    assert r.recv() == "ready"  # the child runs its target: its handlers are in place
    p.interrupt()
    p.join(30)
    assert p.exitcode == 1
    err = capfd.readouterr().err
    assert "Process interruptible:" in err
    assert "KeyboardInterrupt" in err
    p.interrupt()  # after the child's end: nothing to do, no error
    p.close()
    with pytest.raises(ValueError, match="process object is closed"):
        p.interrupt()


def test_interrupt_can_be_handled_by_the_child(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=report_keyboard_interrupt, args=(w,))
    p.start()
    assert r.recv() == "ready"
    p.interrupt()
    assert r.poll(30) and r.recv() == "KeyboardInterrupt"
    p.join(30)
    assert p.exitcode == 0


def test_join_with_timeout_returns_while_running(ctx):
    p = ctx.Process(target=sleep_forever)
    p.start()
    started = time.monotonic()
    p.join(0.3)
    assert time.monotonic() - started >= 0.25
    assert p.is_alive() and p.exitcode is None
    with pytest.raises(ValueError, match="still running"):
        p.close()
    p.kill()
    p.join()


def test_subclass_with_run(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = globals()[f"Doubling_{ctx.get_start_method()}"](w, 21)
    p.start()
    w.close()
    assert r.recv() == 42
    p.join()
    assert p.exitcode == 0


def test_misuse_errors(ctx):
    p = ctx.Process(target=exit_with, args=(0,))
    with pytest.raises(AssertionError, match="can only join a started process"):
        p.join()
    p.start()
    with pytest.raises(AssertionError, match="cannot start a process twice"):
        p.start()
    p.join()
    with pytest.raises(AssertionError, match="process has already started"):
        p.daemon = True
    with pytest.raises(AssertionError, match="group argument must be None"):
        ctx.Process(group=object())
    with pytest.raises(TypeError, match="name must be a string"):
        p.name = 5


def test_daemonic_process_cannot_have_children(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=try_to_start_child, args=(w,), daemon=True)
    assert p.daemon is True
    p.start()
    w.close()
    assert r.recv() == ("AssertionError", "daemonic processes are not allowed to have children")
    p.join()


def test_nested_processes(ctx, start_method):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=start_grandchild, args=(w, start_method))
    p.start()
    w.close()
    parent_ok, exitcode, leftovers = r.recv()
    p.join()
    assert (parent_ok, exitcode, leftovers) == (True, 0, [])
    assert p.exitcode == 0


def test_authkey_is_inherited_and_settable(ctx):
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=report_identity, args=(w,))
    p.authkey = b"a different key"
    p.start()
    w.close()
    assert r.recv()["authkey"] == b"a different key"
    p.join()


def test_active_children_and_sentinel(ctx):
    from mp_core.connection import wait

    procs = [ctx.Process(target=exit_with, args=(i,)) for i in range(3)]
    for p in procs:
        p.start()
    sentinels = {p.sentinel: p for p in procs}
    done = set()
    deadline = time.monotonic() + 60
    while len(done) < 3 and time.monotonic() < deadline:
        for s in wait(list(set(sentinels) - done), timeout=5):
            done.add(s)
    assert len(done) == 3
    for p in procs:
        p.join()
    assert sorted(p.exitcode for p in procs) == [0, 1, 2]
    assert mp_core.active_children() == []


def test_current_process_in_main():
    main = mp_core.current_process()
    assert main.name == "MainProcess"
    assert main.pid == os.getpid()
    assert mp_core.parent_process() is None
    assert main.is_alive()
    assert isinstance(main.authkey, process_module.AuthenticationString)


def test_parent_death_is_visible_to_the_child(ctx, tmp_path):
    # The middle process starts a grandchild and exits; the grandchild's
    # parent_process().join() returns and it writes a marker.
    marker = tmp_path / "marker"
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=spawn_orphan_watcher, args=(w, str(marker), ctx.get_start_method()))
    p.start()
    w.close()
    grandchild_pid = r.recv()
    p.join()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "parent gone"
    _wait_pid_gone(grandchild_pid)


def watch_parent(marker):
    parent = mp_core.parent_process()
    parent.join(timeout=60)
    alive = parent.is_alive()
    # Written aside, then renamed: the test reads the marker once it exists.
    with open(marker + ".part", "w") as f:
        f.write("parent gone" if not alive else "parent alive")
    os.replace(marker + ".part", marker)


def spawn_orphan_watcher(conn, marker, method):
    child = mp_core.get_context(method).Process(target=watch_parent, args=(marker,))
    child.start()
    conn.send(child.pid)
    # Leave without joining: the watcher outlives us on purpose (and the
    # test waits for it through its marker file).
    os._exit(0)


def _wait_pid_gone(pid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} is still running")
