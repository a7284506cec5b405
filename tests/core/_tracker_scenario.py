"""A process tree whose owner and starter are SIGKILLed, for test_resource_tracker.

    python _tracker_scenario.py reaper METHOD SHM_NAME SEM_NAME

The reaper (a child subreaper, so that orphans are handed to it and reaped)
starts the starter; the starter starts the tracker and, with METHOD, an
owner child that creates and registers a shared-memory segment and a
semaphore.  The starter kills the owner; the reaper sends SIGINT/SIGTERM to
the tracker, kills the starter, collects the tracker's stderr and reaps every
orphan.  It prints one JSON line describing what it saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time


def exists(shm_name: str, sem_name: str) -> dict:
    return {"shm": os.path.exists("/dev/shm" + shm_name), "sem": os.path.exists("/dev/shm/sem." + sem_name.lstrip("/"))}


def owner(shm_name: str, sem_name: str, conn) -> None:
    import _multiprocessing
    import _posixshmem

    from mp_core import resource_tracker

    fd = _posixshmem.shm_open(shm_name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    resource_tracker.register(shm_name, "shared_memory")
    _multiprocessing.SemLock(1, 1, 1, sem_name, False)  # a named semaphore, left linked
    resource_tracker.register(sem_name, "semaphore")
    conn.send(resource_tracker._resource_tracker._starter == os.getpid())
    time.sleep(600)


def starter(method: str, shm_name: str, sem_name: str) -> None:
    import mp_core
    from mp_core import resource_tracker

    ctx = mp_core.get_context(method)
    resource_tracker.ensure_running()
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=owner, args=(shm_name, sem_name, writer))
    proc.start()
    writer.close()
    child_started_own_tracker = reader.recv()
    proc.kill()
    proc.join()
    time.sleep(0.3)  # a tracker of the owner's own would have cleaned up by now
    print(
        json.dumps(
            {
                "tracker_pid": resource_tracker._resource_tracker._pid,
                "child_started_own_tracker": child_started_own_tracker,
                "owner_exitcode": proc.exitcode,
                "after_owner_killed": exists(shm_name, sem_name),
            }
        ),
        flush=True,
    )
    time.sleep(600)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def reaper(method: str, shm_name: str, sem_name: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        print(json.dumps({"error": "cannot become a subreaper"}))
        return
    child = subprocess.Popen(
        [sys.executable, __file__, "starter", method, shm_name, sem_name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    report = json.loads(child.stdout.readline())
    tracker = report["tracker_pid"]
    os.kill(tracker, signal.SIGINT)
    os.kill(tracker, signal.SIGTERM)
    time.sleep(0.3)
    report["tracker_survived_signals"] = _alive(tracker)
    stderr: list[str] = []
    reading = threading.Thread(target=lambda: stderr.append(child.stderr.read()))
    reading.start()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # EOF on the starter's stderr: the tracker, which shares it, has exited.
    reading.join(30)
    report["tracker_exited"] = not reading.is_alive()
    report["stderr"] = "".join(stderr)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
    report["at_end"] = exists(shm_name, sem_name)
    child.stdout.close()
    child.stderr.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    {"reaper": reaper, "starter": starter}[role](*args)
