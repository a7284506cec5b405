"""util: finalizers, after-fork hooks, the temp dir and the exit sequence."""

from __future__ import annotations

import gc
import os
import time

import pytest

from mp_core import util

from ..support import run_python

pytestmark = pytest.mark.timeout(120)


class Resource:
    pass


def test_finalize_runs_once_on_collection_or_call():
    calls = []
    obj = Resource()
    fin = util.Finalize(obj, calls.append, args=("collected",))
    assert fin.still_active()
    del obj
    gc.collect()
    assert calls == ["collected"]
    assert not fin.still_active()
    assert fin() is None  # a second call does nothing
    assert calls == ["collected"]

    obj = Resource()
    fin = util.Finalize(obj, lambda a, b=0: a + b, args=(1,), kwargs={"b": 2})
    assert fin() == 3
    assert "dead" in repr(fin)


def test_finalize_cancel_and_validation():
    calls = []
    obj = Resource()
    fin = util.Finalize(obj, calls.append, args=("x",))
    fin.cancel()
    del obj
    gc.collect()
    assert calls == [] and not fin.still_active()
    with pytest.raises(ValueError, match="Without object, exitpriority cannot be None"):
        util.Finalize(None, calls.append)
    with pytest.raises(TypeError, match="must be None or int"):
        util.Finalize(Resource(), calls.append, exitpriority="high")


def test_exit_priorities_run_highest_first_then_equal_in_reverse_creation_order():
    out = run_python("""
        from mp_core import util
        for name, priority in [("a", 1), ("b", 10), ("c", 1), ("d", 0), ("never", None)]:
            obj = type("O", (), {})()
            globals()["keep_" + name] = obj
            util.Finalize(obj, print, args=(name,), exitpriority=priority)
        util.Finalize(None, print, args=("negative",), exitpriority=-5)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["b", "c", "a", "d", "negative"]


def test_run_finalizers_with_minpriority():
    calls = []
    keep = [Resource() for _ in range(3)]
    fins = [util.Finalize(o, calls.append, args=(p,), exitpriority=p) for o, p in zip(keep, (5, 1, -1))]
    util._run_finalizers(1)
    assert calls == [5, 1]
    assert fins[2].still_active()
    fins[2]()
    assert calls == [5, 1, -1]


def test_after_fork_hooks_run_in_forked_child_only():
    out = run_python("""
        import os
        import mp_core as mp
        from mp_core import util

        class Thing:
            value = "parent"
        thing = Thing()
        util.register_after_fork(thing, lambda obj: setattr(obj, "value", "reset in child"))

        def show(conn):
            conn.send(thing.value)

        if __name__ == "__main__":
            for method in ("fork", "forkserver", "spawn"):
                ctx = mp.get_context(method)
                r, w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=show, args=(w,))
                p.start()
                print(method, r.recv())
                p.join()
            print("parent", thing.value)
    """)
    assert out.returncode == 0, out.stderr
    # A spawned child imports the program afresh (nothing inherited to reset);
    # under -c there is no main module to import, so the function travels by
    # value with its globals, the hook having never run.
    assert out.stdout.splitlines()[0] == "fork reset in child"
    assert out.stdout.splitlines()[-1] == "parent parent"


def test_a_replaced_exit_function_is_the_one_a_forked_child_runs():
    # The bootstrap reaches util through hooks util installs (process cannot
    # import util); they must look the function up when the child exits, as
    # a direct call did, so that replacing it keeps working.
    out = run_python("""
        import os
        import mp_core as mp
        from mp_core import util

        original = util._exit_function

        def replaced(*args, **kwargs):
            os.write(1, f"replaced exit function ran in {os.getpid()}\\n".encode())
            return original(*args, **kwargs)

        if __name__ == "__main__":
            util._exit_function = replaced
            p = mp.get_context("fork").Process(target=print, args=("target ran",))
            p.start()
            p.join()
            print("child", p.pid, "exit code", p.exitcode, flush=True)
    """)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    child = next(line for line in lines if line.startswith("child "))
    pid = child.split()[1]
    assert child == f"child {pid} exit code 0"
    # Twice in the child: the bootstrap's call, then the atexit handler that
    # the child registered again after the fork (a forked child runs the
    # handlers registered in it).  A hook bound at import gives only the second.
    assert lines.count(f"replaced exit function ran in {pid}") == 2
    assert lines.index("target ran") < lines.index(f"replaced exit function ran in {pid}") < lines.index(child)


def test_temp_dir_is_private_and_removed_at_exit():
    out = run_python("""
        import os, stat
        from mp_core import util
        d = util.get_temp_dir()
        assert util.get_temp_dir() == d
        print(d, oct(stat.S_IMODE(os.stat(d).st_mode)))
    """)
    assert out.returncode == 0, out.stderr
    path, mode = out.stdout.split()
    assert mode == "0o700"
    assert os.path.basename(path).startswith("pymp-")
    assert not os.path.exists(path)


def test_cleanup_tests_stops_every_helper_running_and_forgets_the_start_method():
    # Each helper's module registers its stop with util when it loads; the
    # tracker must stop last (the fork server holds its descriptor: stopped
    # first, it would wait for ever, and the run would time out).
    out = run_python(
        """
        import os
        import mp_core
        from mp_core import forkserver, resource_sharer, resource_tracker, util

        mp_core.set_start_method("forkserver")
        child = mp_core.Process(target=os.getpid)
        child.start()
        child.join()
        server_pid = forkserver._forkserver._forkserver_pid
        tracker_pid = resource_tracker._resource_tracker._pid
        r, w = os.pipe()
        resource_sharer.DupFd(r)  # starts the sharer's thread
        sharer_thread = resource_sharer._resource_sharer._thread
        print(child.exitcode, server_pid is not None, tracker_pid is not None, sharer_thread.is_alive())
        util._cleanup_tests()
        for pid in (server_pid, tracker_pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print("reaped")
            else:
                print("still running", pid)
        print(sharer_thread.is_alive(), mp_core.get_start_method(allow_none=True))
        """,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["0 True True True", "reaped", "reaped", "False None"]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_exit_terminates_daemonic_children_and_joins_the_others(tmp_path, method):
    marker = tmp_path / "nondaemon-finished"
    out = run_python(
        """
        import os, sys, time
        import mp_core as mp

        def forever():
            while True:
                time.sleep(1)

        def slow(path):
            time.sleep(1.0)
            with open(path, "w") as f:  # closed here: PyPy does not close a dropped file at once
                f.write("done")

        if __name__ == "__main__":
            ctx = mp.get_context(sys.argv[1])
            d = ctx.Process(target=forever, daemon=True)
            d.start()
            n = ctx.Process(target=slow, args=(sys.argv[2],))
            n.start()
            print(d.pid, n.pid, flush=True)
            # leave without joining either
    """,
        method,
        str(marker),
    )
    assert out.returncode == 0, out.stderr
    daemon_pid, normal_pid = map(int, out.stdout.split())
    assert marker.read_text() == "done"  # the parent waited for it
    for pid in (daemon_pid, normal_pid):
        assert not _pid_running(pid), pid


def test_forked_child_does_not_run_parent_atexit_handlers():
    out = run_python("""
        import atexit, os, sys
        import mp_core as mp
        atexit.register(lambda: print("atexit in", "parent" if os.getpid() == PARENT else "child", flush=True))
        PARENT = os.getpid()
        if __name__ == "__main__":
            p = mp.get_context("fork").Process(target=print, args=("child ran",))
            p.start()
            p.join()
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["child ran", "atexit in parent"]


def test_close_all_fds_except(tmp_path):
    out = run_python("""
        import os
        from mp_core import util
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        util.close_all_fds_except([0, 1, 2, r2])
        alive = []
        for fd in (r1, w1, r2, w2):
            try:
                os.fstat(fd)
                alive.append(fd == r2)
            except OSError:
                pass
        print(alive)
    """)
    assert out.stdout.strip() == "[True]", out.stderr


def _pid_running(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True
