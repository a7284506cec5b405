"""A program that is SIGKILLed while it uses temp dirs and shared memory, for test_temp_dirs.

    python _killed_program_scenario.py reaper METHOD

The reaper (a child subreaper, so that the orphans are handed to it and
reaped) starts the program and waits for its report; the program starts a
child with METHOD and a fork server child, listens on a Unix socket (in its
temp dir, as the child does in its own), maps a heap arena and creates a
shared-memory segment, then says where all of it lives.  The reaper kills
the program with SIGKILL and waits (bounded) for every process of the tree
to be gone; it prints one JSON line: what the program reported and what was
still there at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

GRACE = 60.0


def hold(report) -> None:
    """A child: make a temp dir of its own, report, and live until the parent is gone."""
    import mp_core
    from mp_core import util
    from mp_core.connection import Listener

    with Listener() as listener:  # its socket lives in this child's temp dir
        report.send((os.getpid(), util.get_temp_dir(), listener.address))
        report.close()
        mp_core.parent_process().join()


def program(method: str) -> None:
    import mp_core
    from mp_core import forkserver, resource_tracker, util
    from mp_core.connection import Listener

    children = []
    keep = []
    for child_method in dict.fromkeys([method, "forkserver"]):
        ctx = mp_core.get_context(child_method)
        report_r, report_w = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=hold, args=(report_w,), daemon=True)
        proc.start()
        report_w.close()
        pid, tempdir, address = report_r.recv()
        children.append({"method": child_method, "pid": pid, "tempdir": tempdir, "address": address})
        keep.append(proc)
    listener = Listener()  # in the program's own temp dir
    try:
        from mp_managers import heap, shared_memory

        arena = heap.Arena(1 << 16)
        segment = shared_memory.SharedMemory(create=True, size=4096)
        shm = "/dev/shm/" + segment.name.lstrip("/")
    except ImportError:  # mp-core installed alone
        arena = segment = None
        shm = None
    print(
        json.dumps(
            {
                "tempdir": util.get_temp_dir(),
                "address": listener.address,
                "children": children,
                "shm": shm,
                "helpers": [resource_tracker._resource_tracker._pid, forkserver._forkserver._forkserver_pid],
            }
        ),
        flush=True,
    )
    time.sleep(600)
    print(arena, segment, keep)  # kept alive until killed


def _children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[1] == me:
                    found.append(int(entry))
        except (OSError, IndexError):
            continue
    return found


def reaper(method: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        print(json.dumps({"error": "cannot become a subreaper"}))
        return
    child = subprocess.Popen([sys.executable, __file__, "program", method], stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline()
    try:
        report = json.loads(line)
    except ValueError:
        child.kill()
        child.wait()
        print(json.dumps({"error": f"no report from the program: {line!r}"}))
        return
    paths = [report["tempdir"], report["address"], *[c["tempdir"] for c in report["children"]]]
    if report["shm"]:
        paths.append(report["shm"])
    report["before_kill"] = {path: os.path.exists(path) for path in paths}
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    # Every process of the tree is handed to us when its parent dies: wait
    # until all are gone (the tracker last), then see what they left.
    deadline = time.monotonic() + GRACE
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
    else:
        report["error"] = f"processes of the killed program still running: {_children()}"
        for pid in _children():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    report["left"] = sorted(path for path in paths if os.path.lexists(path))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    {"reaper": reaper, "program": program}[role](*args)
